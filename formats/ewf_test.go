package formats

import (
	"bytes"
	"compress/zlib"
	"crypto/md5"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/adler32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ewfAcquire writes data with ewfacquire into dir as NAME.<ext> segments
// and returns the first segment's path. args are extra ewfacquire flags.
func ewfAcquire(t testing.TB, dir, name string, data []byte, args ...string) string {
	t.Helper()
	in := filepath.Join(dir, name+".input")
	writeFile(t, in, data)
	target := filepath.Join(dir, name)
	all := append([]string{"-u", "-q", "-t", target, "-C", "case-7", "-D", "test description",
		"-E", "evidence-3", "-e", "examiner x", "-N", "some notes"}, args...)
	run(t, "ewfacquire", append(all, in)...)
	removeFile(t, in)
	for _, ext := range []string{".E01", ".e01", ".s01"} {
		if _, err := os.Stat(target + ext); err == nil {
			return target + ext
		}
	}
	t.Fatalf("ewfacquire wrote no first segment for %s", target)
	return ""
}

// ewfExport is the oracle: libewf's ewfexport to raw.
func ewfExport(t testing.TB, first string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle")
	run(t, "ewfexport", "-u", "-q", "-f", "raw", "-t", out, first)
	b := readFile(t, out+".raw")
	return b
}

func ewfSegmentFiles(t testing.TB, first string) []string {
	t.Helper()
	base := strings.TrimSuffix(first, filepath.Ext(first))
	m, err := filepath.Glob(base + ".[EeSs][0-9A-Za-z][0-9A-Za-z]")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEWFVariants(t *testing.T) {
	const size = 3<<20 + 7*512 // not a multiple of the chunk size
	want := patternDisk(size, 11)
	cases := []struct {
		format, comp, variant string
	}{
		{"encase6", "deflate:fast", "encase6"},
		{"encase6", "none", "encase6"},
		{"encase6", "deflate:best", "encase6"},
		{"encase6", "empty-block", "encase6"},
		{"encase7", "deflate:fast", "encase6"},
		{"encase5", "deflate:fast", "encase5"},
		{"encase4", "deflate:best", "encase4"},
		{"encase3", "none", "encase2"},
		{"encase2", "deflate:fast", "encase2"},
		{"linen5", "deflate:fast", "linen5"},
		{"linen6", "none", "linen6"},
		{"linen7", "deflate:fast", "encase6"},
		{"ftk", "deflate:fast", "ftk"},
		{"smart", "deflate:fast", "smart"},
		{"smart", "none", "smart"},
		{"ewf", "deflate:best", "ewf"},
		{"ewfx", "deflate:fast", "ewfx"},
	}
	for _, c := range cases {
		t.Run(c.format+"-"+strings.ReplaceAll(c.comp, ":", "-"), func(t *testing.T) {
			dir := t.TempDir()
			first := ewfAcquire(t, dir, "img", want, "-f", c.format, "-c", c.comp, "-b", "64", "-S", "1048576")
			segs := ewfSegmentFiles(t, first)
			if len(segs) < 2 {
				t.Fatalf("only %d segments: %v", len(segs), segs)
			}
			oracle := ewfExport(t, first)
			if !bytes.Equal(oracle, want) {
				t.Fatalf("ewfexport output differs from the input (%d vs %d bytes)", len(oracle), len(want))
			}
			d := mustOpen(t, first, Options{ReadOnly: true})
			info := d.Info()
			if info.Format != "ewf" || info.Variant != c.variant {
				t.Fatalf("format %s variant %q, want ewf %q", info.Format, info.Variant, c.variant)
			}
			if len(info.Files) != len(segs) || info.Files[0] != first {
				t.Fatalf("Files %v, want %d segments from %s", info.Files, len(segs), first)
			}
			if !info.ReadOnly || info.ReadOnlyReason == "" || info.ClusterSize != 32768 {
				t.Fatalf("info %+v", info)
			}
			sum := md5.Sum(want)
			if got, typed := info.Metadata["md5"], info.Hashes["md5"]; got != hex.EncodeToString(sum[:]) || typed != got {
				t.Fatalf("stored md5 %q (Hashes %q), want %x", got, typed, sum)
			}
			acq := info.Acquisition
			if acq == nil || acq.CaseNumber != "case-7" || acq.EvidenceNumber != "evidence-3" || acq.Examiner != "examiner x" ||
				acq.Description != "test description" || acq.Notes != "some notes" || acq.Date != info.Metadata["acquiry_date"] {
				t.Fatalf("Acquisition %+v (metadata %v)", acq, info.Metadata)
			}
			for k, v := range map[string]string{"case_number": "case-7", "evidence_number": "evidence-3",
				"examiner_name": "examiner x", "description": "test description", "notes": "some notes"} {
				if info.Metadata[k] != v {
					t.Fatalf("metadata %s = %q, want %q (all: %v)", k, info.Metadata[k], v, info.Metadata)
				}
			}
			if date := info.Metadata["acquiry_date"]; len(date) < 19 || date[4] != '-' || date[10] != 'T' && date[10] != ' ' {
				t.Fatalf("acquiry_date %q is not a normalised date", date)
			}
			if info.Metadata["acquiry_software_version"] == "" && c.format != "ewf" {
				t.Fatalf("acquisition metadata missing: %v", info.Metadata)
			}
			if c.comp == "deflate:fast" && (c.format == "encase6" || c.format == "smart") || c.format == "ewf" {
				checkDisk(t, d, oracle)
			} else {
				checkDiskReads(t, 40, d, oracle)
			}
		})
	}
}

func TestEWFChunkSizes(t *testing.T) {
	want := patternDisk(2<<20+4096, 12)
	for _, c := range []struct {
		spc, bps string
		chunk    int64
	}{{"16", "512", 8 << 10}, {"128", "512", 64 << 10}, {"1024", "512", 512 << 10}, {"16", "4096", 64 << 10}} {
		t.Run(c.spc+"x"+c.bps, func(t *testing.T) {
			first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6", "-c", "deflate:fast", "-b", c.spc, "-P", c.bps, "-S", "1048576")
			oracle := ewfExport(t, first)
			d := mustOpen(t, first, Options{ReadOnly: true})
			if got := d.Info().ClusterSize; got != c.chunk {
				t.Fatalf("ClusterSize %d, want %d", got, c.chunk)
			}
			checkDiskReads(t, 40, d, oracle)
		})
	}
}

func TestEWFHashes(t *testing.T) {
	want := patternDisk(1<<20, 13)
	first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6", "-c", "deflate:fast", "-d", "sha1")
	out := string(run(t, "ewfverify", "-q", first))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("ewfverify: %s", out)
	}
	d := mustOpen(t, first, Options{ReadOnly: true})
	m, s := md5.Sum(want), sha1.Sum(want)
	meta := d.Info().Metadata
	if meta["md5"] != hex.EncodeToString(m[:]) || meta["sha1"] != hex.EncodeToString(s[:]) {
		t.Fatalf("stored hashes %q %q, want %x %x", meta["md5"], meta["sha1"], m, s)
	}
	if h := d.Info().Hashes; len(h) != 2 || h["md5"] != meta["md5"] || h["sha1"] != meta["sha1"] {
		t.Fatalf("Hashes %v, want the stored md5 and sha1", h)
	}
	if !strings.Contains(out, meta["md5"]) {
		t.Fatalf("ewfverify does not report md5 %s:\n%s", meta["md5"], out)
	}
	checkConcurrentReads(t, d, want)
}

func TestEWFSamples(t *testing.T) {
	siblings := map[string][]string{
		"ext2.split.E01.gz": {"ext2.split.E02.gz"},
		"rand.dd.E01":       {"rand.dd.E02", "rand.dd.E03", "rand.dd.E04", "rand.dd.E05", "rand.dd.E06"},
	}
	for _, s := range samples(t, "ewf") {
		t.Run(filepath.Base(s.Path), func(t *testing.T) {
			p := sampleFile(t, s.Path, siblings[filepath.Base(s.Path)]...)
			if s.ExpectError() {
				if d, err := Open(p, Options{ReadOnly: true}); err == nil {
					d.Close()
					t.Fatalf("%s opened, want an error", s.Path)
				}
				return
			}
			d := openSample(t, p, s, true)
			if got := d.Info().Metadata["md5"]; got != s.MD5 {
				t.Fatalf("stored md5 %q, want %s", got, s.MD5)
			}
		})
	}
}

// ewfSectionOffset finds the first section of type typ in a segment.
func ewfSectionOffset(t testing.TB, b []byte, typ string) int {
	t.Helper()
	off := ewfFileHeaderSize
	for off+ewfDescriptorSize <= len(b) {
		name := string(bytes.TrimRight(b[off:off+16], "\x00"))
		if name == typ {
			return off
		}
		next := int(binary.LittleEndian.Uint64(b[off+16:]))
		if next <= off {
			break
		}
		off = next
	}
	t.Fatalf("no %s section", typ)
	return 0
}

func TestEWFDamagedChunk(t *testing.T) {
	for _, comp := range []string{"deflate:fast", "none"} {
		t.Run(strings.ReplaceAll(comp, ":", "-"), func(t *testing.T) {
			want := patternDisk(1<<20, 14)
			// Chunk 3 of text makes sure the fast case has a compressed chunk.
			for i := 3 * 32768; i < 4*32768; i++ {
				want[i] = byte('a' + i%7)
			}
			first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6", "-c", comp)
			b := readFile(t, first)
			tab := ewfSectionOffset(t, b, "table")
			base := int64(binary.LittleEndian.Uint64(b[tab+ewfDescriptorSize+8:]))
			e := binary.LittleEndian.Uint32(b[tab+ewfDescriptorSize+ewfTableHeaderSize+3*4:])
			if comp != "none" && e&0x80000000 == 0 {
				t.Fatal("chunk 3 is not compressed")
			}
			next := binary.LittleEndian.Uint32(b[tab+ewfDescriptorSize+ewfTableHeaderSize+4*4:])
			pos := base + int64(e&0x7fffffff) + int64(next&0x7fffffff-e&0x7fffffff)/2
			b[pos] ^= 0x55
			writeFile(t, first, b)
			d := mustOpen(t, first, Options{ReadOnly: true})
			buf := make([]byte, 4096)
			_, err := d.ReadAt(buf, 3*32768+4096)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "chunk 3") {
				t.Fatalf("read of the damaged chunk: %v, want ErrCorrupt naming chunk 3", err)
			}
			// A read spanning into it fails too; its neighbours read fine.
			if _, err := d.ReadAt(make([]byte, 65536), 2*32768); err == nil {
				t.Fatal("read spanning the damaged chunk succeeded")
			}
			compareRead(t, d, make([]byte, 32768), 2*32768, want)
			compareRead(t, d, make([]byte, 32768), 4*32768, want)
		})
	}
}

func TestEWFDamagedTable(t *testing.T) {
	want := patternDisk(1<<20, 15)
	first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6", "-c", "deflate:fast")
	b := readFile(t, first)
	// Damage the table's entries (then its header); table2 must be used.
	tab := ewfSectionOffset(t, b, "table")
	for _, pos := range []int{tab + ewfDescriptorSize + ewfTableHeaderSize + 8, tab + ewfDescriptorSize + 1} {
		c := append([]byte(nil), b...)
		c[pos] ^= 0x40
		p := writeTemp(t, "img.E01", c)
		d := mustOpen(t, p, Options{ReadOnly: true})
		checkDisk(t, d, want)
	}
	// Both copies damaged: reads fail with ErrCorrupt, never wrong bytes.
	c := append([]byte(nil), b...)
	tab2 := ewfSectionOffset(t, c, "table2")
	c[tab+ewfDescriptorSize+ewfTableHeaderSize+8] ^= 0x40
	c[tab2+ewfDescriptorSize+ewfTableHeaderSize+8] ^= 0x40
	p := writeTemp(t, "img.E01", c)
	d, err := Open(p, Options{ReadOnly: true})
	if err == nil {
		defer d.Close()
		_, err = d.ReadAt(make([]byte, 512), 0)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("both tables damaged: %v, want ErrCorrupt", err)
	}
}

func TestEWFSegmentSet(t *testing.T) {
	want := patternDisk(3<<20, 16)
	dir := t.TempDir()
	first := ewfAcquire(t, dir, "img", want, "-f", "encase6", "-c", "none", "-S", "1048576")

	// Symlink with another name: the set is found beside the target.
	link := filepath.Join(t.TempDir(), "evidence")
	if err := os.Symlink(first, link); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, link, Options{ReadOnly: true})
	checkDisk(t, d, want)
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
	}
	d2 := mustOpen(t, first, Options{}) // a read-write open is still read-only
	if _, err := d2.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
	}

	// A segment from another position: segment number mismatch.
	e2 := filepath.Join(dir, "img.E02")
	e3 := filepath.Join(dir, "img.E03")
	orig2 := readFile(t, e2)
	b3 := readFile(t, e3)
	writeFile(t, e2, b3)
	if _, err := Open(first, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segment number") {
		t.Fatalf("swapped segment: %v, want ErrCorrupt about the segment number", err)
	}
	writeFile(t, e2, orig2)

	// A missing segment names the file and wraps os.ErrNotExist.
	removeFile(t, e2)
	_, err := Open(first, Options{ReadOnly: true})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "img.E02") {
		t.Fatalf("missing E02: %v, want ErrNotExist naming img.E02", err)
	}
	// Opening a later segment alone is refused.
	if _, err := Open(e3, Options{ReadOnly: true}); err == nil {
		t.Fatal("opened segment 3 as an image")
	}
}

func TestEWFSegmentNames(t *testing.T) {
	for _, c := range []struct {
		first string
		n     int
		want  string
	}{
		{"E01", 1, "E01"}, {"E01", 99, "E99"}, {"E01", 100, "EAA"}, {"E01", 101, "EAB"},
		{"E01", 126, "EBA"}, {"E01", 775, "EZZ"}, {"E01", 776, "FAA"}, {"e01", 100, "eaa"},
		{"s01", 2, "s02"}, {"s01", 777, "tab"}, {"E01", 14971, "ZZZ"},
	} {
		got, err := ewfSegmentExt(c.first, c.n)
		if err != nil || got != c.want {
			t.Errorf("ewfSegmentExt(%s, %d) = %q, %v; want %q", c.first, c.n, got, err, c.want)
		}
	}
	if _, err := ewfSegmentExt("E01", 14972); err == nil {
		t.Error("segment 14972 named")
	}
}

func TestEWFUnsupported(t *testing.T) {
	want := patternDisk(256<<10, 17)
	first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6")
	b := readFile(t, first)
	for _, sig := range []string{"EVF2\r\n\x81\x00", "LVF\x09\x0d\x0a\xff\x00"} {
		c := append([]byte(sig), b[8:]...)
		p := writeTemp(t, "img.E01", c)
		if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("signature %q: %v, want ErrUnsupported", sig, err)
		}
	}
	// An ltree section (logical evidence) is refused too.
	c := append([]byte(nil), b...)
	vol := ewfSectionOffset(t, c, "header")
	copy(c[vol:vol+16], "ltree\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binary.LittleEndian.PutUint32(c[vol+72:], adler32.Checksum(c[vol:vol+72]))
	p := writeTemp(t, "img.E01", c)
	if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ltree: %v, want ErrUnsupported", err)
	}
}

func TestEWFCorruptVariants(t *testing.T) {
	want := patternDisk(256<<10, 18)
	dir := t.TempDir()
	var seeds [][]byte
	for _, f := range []string{"encase6", "smart"} {
		first := ewfAcquire(t, dir, f, want, "-f", f, "-c", "deflate:fast")
		b := readFile(t, first)
		seeds = append(seeds, b)
	}
	for _, b := range seeds {
		for i, c := range corruptVariants(b, 1, 40) {
			tryCrafted(t, "c.E01", c, func(d Disk) {
				buf := make([]byte, 64<<10)
				for off := int64(0); off < d.Size(); off += int64(len(buf)) {
					// Reads that succeed must give the original bytes: every
					// chunk is checksummed.
					if _, err := d.ReadAt(buf, off); err == nil && d.Size() == int64(len(want)) && !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
						t.Fatalf("variant %d: wrong bytes at %d without an error", i, off)
					}
				}
			})
		}
	}
}

func FuzzEWF(f *testing.F) {
	want := patternDisk(64<<10, 19)
	dir := f.TempDir()
	for _, fm := range []string{"encase6", "smart", "ftk"} {
		first := ewfAcquire(f, dir, fm, want, "-f", fm, "-c", "deflate:fast", "-b", "16")
		b := readFile(f, first)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "fuzz.E01", data, readSome)
	})
}

func ewfBenchImage(b *testing.B) Disk {
	want := patternDisk(8<<20, 20)
	first := ewfAcquire(b, b.TempDir(), "img", want, "-f", "encase6", "-c", "deflate:fast", "-S", "2097152")
	d, err := Open(first, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

func BenchmarkEWFSeqRead(b *testing.B)  { benchReads(b, ewfBenchImage(b), false) }
func BenchmarkEWFRandRead(b *testing.B) { benchReads(b, ewfBenchImage(b), true) }

// ewfSynthZero writes a single-segment EnCase-style image of size bytes
// whose chunks all point at one stored zlib chunk of zeros: a stand-in
// for a 2 TiB acquisition (ewfacquire would have to read 2 TiB).
func ewfSynthZero(t testing.TB, path string, size int64, spc int64) {
	t.Helper()
	chunk := spc * 512
	nchunks := (size + chunk - 1) / chunk
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write(make([]byte, chunk))
	zw.Close()
	var f bytes.Buffer
	f.Write(ewfSigE01)
	f.Write([]byte{1, 1, 0, 0, 0})
	desc := func(typ string, dataLen int, last bool) {
		off := f.Len()
		d := make([]byte, ewfDescriptorSize)
		copy(d, typ)
		next, sz := uint64(off+ewfDescriptorSize+dataLen), uint64(ewfDescriptorSize+dataLen)
		if last {
			next, sz = uint64(off), 0
		}
		binary.LittleEndian.PutUint64(d[16:], next)
		binary.LittleEndian.PutUint64(d[24:], sz)
		binary.LittleEndian.PutUint32(d[72:], adler32.Checksum(d[:72]))
		f.Write(d)
	}
	vol := make([]byte, 1052)
	vol[0] = 1
	binary.LittleEndian.PutUint32(vol[4:], uint32(nchunks))
	binary.LittleEndian.PutUint32(vol[8:], uint32(spc))
	binary.LittleEndian.PutUint32(vol[12:], 512)
	binary.LittleEndian.PutUint64(vol[16:], uint64(size/512))
	binary.LittleEndian.PutUint32(vol[1048:], adler32.Checksum(vol[:1048]))
	desc("volume", len(vol), false)
	f.Write(vol)
	sectors := f.Len()
	desc("sectors", zb.Len(), false)
	f.Write(zb.Bytes())
	for first := int64(0); first < nchunks; first += 16375 {
		n := min(16375, nchunks-first)
		tab := make([]byte, ewfTableHeaderSize+4*n+4)
		binary.LittleEndian.PutUint32(tab[0:], uint32(n))
		binary.LittleEndian.PutUint64(tab[8:], uint64(sectors))
		binary.LittleEndian.PutUint32(tab[20:], adler32.Checksum(tab[:20]))
		for j := int64(0); j < n; j++ {
			binary.LittleEndian.PutUint32(tab[ewfTableHeaderSize+4*j:], 0x80000000|ewfDescriptorSize)
		}
		ents := tab[ewfTableHeaderSize : ewfTableHeaderSize+4*n]
		binary.LittleEndian.PutUint32(tab[ewfTableHeaderSize+4*n:], adler32.Checksum(ents))
		desc("table", len(tab), false)
		f.Write(tab)
	}
	desc("done", 0, true)
	writeFile(t, path, f.Bytes())
}

func TestEWFHuge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.E01")
	ewfSynthZero(t, p, 64<<30, 2048)
	d := mustOpen(t, p, Options{ReadOnly: true})
	if d.Size() != 64<<30 || d.Info().ClusterSize != 1<<20 {
		t.Fatalf("size %d cluster %d", d.Size(), d.Info().ClusterSize)
	}
	buf := bytes.Repeat([]byte{1}, 8192)
	compareRead(t, d, buf, d.Size()-4096, nil)
}

// BenchmarkEWFOpen2TiB opens a synthetic 2 TiB image (131072 chunks in 9
// tables) against a 2 MiB ewfacquire image.
func BenchmarkEWFOpen2TiB(b *testing.B) {
	big := filepath.Join(b.TempDir(), "big.E01")
	ewfSynthZero(b, big, 2<<40, 32768)
	small := ewfAcquire(b, b.TempDir(), "small", patternDisk(2<<20, 36), "-f", "encase6", "-c", "deflate:fast")
	benchOpens(b, false, benchOpenCase{"2TiB", big}, benchOpenCase{"2MiB", small})
}

// ewfAddErrors replaces the done section of a last segment with an error2
// section listing ranges, followed by a new done section.
func ewfAddErrors(t testing.TB, path string, ranges [][2]uint32) {
	t.Helper()
	b := readFile(t, path)
	done := ewfSectionOffset(t, b, "done")
	b = b[:done]
	desc := func(typ string, off, next, size int) []byte {
		d := make([]byte, ewfDescriptorSize)
		copy(d, typ)
		binary.LittleEndian.PutUint64(d[16:], uint64(next))
		binary.LittleEndian.PutUint64(d[24:], uint64(size))
		binary.LittleEndian.PutUint32(d[72:], adler32.Checksum(d[:72]))
		return d
	}
	data := make([]byte, 520+8*len(ranges)+4)
	binary.LittleEndian.PutUint32(data, uint32(len(ranges)))
	binary.LittleEndian.PutUint32(data[516:], adler32.Checksum(data[:516]))
	for i, r := range ranges {
		binary.LittleEndian.PutUint32(data[520+8*i:], r[0])
		binary.LittleEndian.PutUint32(data[524+8*i:], r[1])
	}
	ents := data[520 : 520+8*len(ranges)]
	binary.LittleEndian.PutUint32(data[520+8*len(ranges):], adler32.Checksum(ents))
	size := ewfDescriptorSize + len(data)
	b = append(b, desc("error2", done, done+size, size)...)
	b = append(b, data...)
	b = append(b, desc("done", done+size, done+size, 0)...)
	writeFile(t, path, b)
}

func TestEWFReadErrors(t *testing.T) {
	want := patternDisk(512<<10, 38)
	first := ewfAcquire(t, t.TempDir(), "img", want, "-f", "encase6", "-c", "deflate:fast")
	ewfAddErrors(t, first, [][2]uint32{{10, 4}, {700, 1}})
	// Oracle: libewf's ewfinfo lists the same ranges.
	out := string(run(t, "ewfinfo", first))
	if !strings.Contains(out, "10 - 13 number: 4") || !strings.Contains(out, "700 - 700 number: 1") {
		t.Fatalf("ewfinfo does not list the crafted errors:\n%s", out)
	}
	d := mustOpen(t, first, Options{ReadOnly: true})
	info := d.Info()
	if got := info.Metadata["acquiry_read_errors"]; got != "10+4,700+1" || len(info.Warnings) == 0 {
		t.Fatalf("read errors %q, warnings %v", got, info.Warnings)
	}
	checkDiskReads(t, 40, d, want)
}
