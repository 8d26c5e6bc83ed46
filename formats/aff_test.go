package formats

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// affConvert writes data as NAME.raw and converts it with affconvert;
// it returns the .aff path. args are extra affconvert flags.
func affConvert(t testing.TB, dir string, data []byte, args ...string) string {
	t.Helper()
	in := filepath.Join(dir, "input.raw")
	writeFile(t, in, data)
	out := filepath.Join(dir, "image.aff")
	run(t, "affconvert", append(append([]string{"-q"}, args...), "-o", out, in)...)
	removeFile(t, in)
	return out
}

// affCat is the oracle: afflib's affcat.
func affCat(t testing.TB, path string) []byte {
	t.Helper()
	return run(t, "affcat", path)
}

func TestAFFVariants(t *testing.T) {
	cases := []struct {
		name string
		size int64
		args []string
	}{
		{"zlib-64k", 2<<20 + 7*512, []string{"-s64k"}},
		{"lzma-64k", 1<<20 + 7*512, []string{"-L", "-s64k"}},
		{"raw-64k", 2<<20 + 3*512, []string{"-x", "-s64k"}},
		{"zlib-fast-1m", 3<<20 + 100, []string{"-X1", "-s1m"}},
		{"default-16m", 1<<20 + 512, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := patternDisk(c.size, c.size)
			p := affConvert(t, t.TempDir(), want, c.args...)
			oracle := affCat(t, p)
			if !bytes.Equal(oracle, want) {
				t.Fatalf("affcat output differs from the input (%d vs %d bytes)", len(oracle), len(want))
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			info := d.Info()
			if info.Format != "aff" || info.Variant != "aff1" || !info.ReadOnly || info.ReadOnlyReason == "" {
				t.Fatalf("info %+v", info)
			}
			m, s := md5.Sum(want), sha1.Sum(want)
			if info.Metadata["md5"] != hex.EncodeToString(m[:]) || info.Metadata["sha1"] != hex.EncodeToString(s[:]) {
				t.Fatalf("stored hashes %q %q, want %x %x", info.Metadata["md5"], info.Metadata["sha1"], m, s)
			}
			if info.Metadata["acquisition_date"] == "" || info.Metadata["acquisition_commandline"] == "" {
				t.Fatalf("metadata %v", info.Metadata)
			}
			if h := info.Hashes; h["md5"] != info.Metadata["md5"] || h["sha1"] != info.Metadata["sha1"] {
				t.Fatalf("Hashes %v, metadata %v", h, info.Metadata)
			}
			if info.Acquisition == nil || info.Acquisition.Date != info.Metadata["acquisition_date"] {
				t.Fatalf("Acquisition %+v, metadata %v", info.Acquisition, info.Metadata)
			}
			if c.name == "zlib-64k" {
				checkDisk(t, d, oracle)
			} else {
				checkDiskReads(t, 40, d, oracle)
			}
			if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("WriteAt: %v", err)
			}
			if c.name == "zlib-64k" {
				checkConcurrentReads(t, d, want)
				if checkMap(t, d, want, nil) == 0 {
					t.Fatal("no zero pages found")
				}
			}
		})
	}
}

// affSegmentOffsets lists each segment's name and data offset.
func affSegments(t testing.TB, b []byte) (names []string, data []int) {
	t.Helper()
	off := len(affMagic)
	for off+affHeadSize <= len(b) {
		nl := int(binary.BigEndian.Uint32(b[off+4:]))
		dl := int(binary.BigEndian.Uint32(b[off+8:]))
		names = append(names, string(b[off+16:off+16+nl]))
		data = append(data, off+16+nl)
		off += 24 + nl + dl
	}
	return names, data
}

func TestAFFDamagedPage(t *testing.T) {
	want := patternDisk(1<<20, 31)
	for i := 2 * 65536; i < 3*65536; i++ {
		want[i] = byte('a' + i%13)
	}
	p := affConvert(t, t.TempDir(), want, "-s64k")
	b := readFile(t, p)
	names, offs := affSegments(t, b)
	for i, n := range names {
		if n == "page2" {
			b[offs[i]+20] ^= 0x20
		}
	}
	writeFile(t, p, b)
	d := mustOpen(t, p, Options{ReadOnly: true})
	if _, err := d.ReadAt(make([]byte, 4096), 2*65536); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "page 2") {
		t.Fatalf("damaged page: %v, want ErrCorrupt naming page 2", err)
	}
	compareRead(t, d, make([]byte, 65536), 65536, want)
	compareRead(t, d, make([]byte, 65536), 3*65536, want)
}

// affSeg encodes one segment, for crafted files.
func affSeg(name string, arg uint32, data []byte) []byte {
	var b bytes.Buffer
	b.Write(affSegHead)
	binary.Write(&b, binary.BigEndian, uint32(len(name)))
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	binary.Write(&b, binary.BigEndian, arg)
	b.WriteString(name)
	b.Write(data)
	b.Write(affSegTail)
	binary.Write(&b, binary.BigEndian, uint32(24+len(name)+len(data)))
	return b.Bytes()
}

func affQuadBytes(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:], uint32(v))
	binary.BigEndian.PutUint32(b[4:], uint32(uint64(v)>>32))
	return b
}

func TestAFFUnsupported(t *testing.T) {
	base := append(append([]byte(nil), affMagic...), affSeg("pagesize", 65536, nil)...)
	for name, extra := range map[string][]byte{
		"encrypted page": affSeg("page0/aes256", 1, make([]byte, 64)),
		"affkey":         affSeg("affkey_aes256", 0, make([]byte, 52)),
		"bzip2 page":     append(affSeg("page0", affPageCompressed|affPageAlgBzip, []byte("BZh9")), affSeg("imagesize", affSegQuad, affQuadBytes(65536))...),
	} {
		p := writeTemp(t, "x.aff", append(append([]byte(nil), base...), extra...))
		d, err := Open(p, Options{ReadOnly: true})
		if err == nil {
			_, err = d.ReadAt(make([]byte, 512), 0)
			d.Close()
		}
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}

func TestAFFDirectory(t *testing.T) {
	// An AFD directory made by affconvert: pages spread over file_000.aff,
	// file_001.aff, ...; file_000.aff alone is refused with a hint.
	want := patternDisk(3<<20+512, 37)
	dir := t.TempDir()
	in := filepath.Join(dir, "input.raw")
	writeFile(t, in, want)
	afd := filepath.Join(dir, "out.afd")
	run(t, "affconvert", "-q", "-x", "-s64k", "-M1m", "-o", afd, in)
	oracle := affCat(t, afd)
	if !bytes.Equal(oracle, want) {
		t.Fatal("affcat of the AFD differs from the input")
	}
	d := mustOpen(t, afd, Options{ReadOnly: true})
	info := d.Info()
	if info.Variant != "afd" || len(info.Files) < 3 || info.Files[0] != afd {
		t.Fatalf("info %+v", info)
	}
	m := md5.Sum(want)
	if info.Metadata["md5"] != hex.EncodeToString(m[:]) {
		t.Fatalf("stored md5 %q", info.Metadata["md5"])
	}
	checkDiskReads(t, 40, d, oracle)
	_, err := Open(filepath.Join(afd, "file_000.aff"), Options{ReadOnly: true})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "out.afd") {
		t.Fatalf("AFD member alone: %v, want ErrUnsupported naming the directory", err)
	}
}

func TestAFFSparse(t *testing.T) {
	// Pages absent from the file read as zeros; imagesize sets the size.
	// Also a file without imagesize takes its size from the last page.
	page := bytes.Repeat([]byte("x"), 65536)
	f := append(append([]byte(nil), affMagic...), affSeg("pagesize", 65536, nil)...)
	f = append(f, affSeg("page3", 0, page[:1000])...)
	f = append(f, affSeg("seg1", affPageCompressed|affPageAlgZero, []byte{0, 1, 0, 0})...)
	sized := append(append([]byte(nil), f...), affSeg("imagesize", affSegQuad, affQuadBytes(10*65536))...)
	d := mustOpen(t, writeTemp(t, "s.aff", sized), Options{ReadOnly: true})
	want := make([]byte, 10*65536)
	copy(want[3*65536:], page[:1000])
	checkDisk(t, d, want)
	for _, c := range []struct {
		off, n int64
		alloc  bool
	}{{0, 3 * 65536, false}, {65536, 2 * 65536, false}, {3 * 65536, 65536, true}, {4 * 65536, 6 * 65536, false}} {
		alloc, n, err := d.(Mapper).Map(c.off, 10*65536)
		if err != nil || alloc != c.alloc || n != c.n {
			t.Fatalf("Map(%d) = %v %d %v, want %v %d", c.off, alloc, n, err, c.alloc, c.n)
		}
	}
	d2 := mustOpen(t, writeTemp(t, "u.aff", f), Options{ReadOnly: true})
	if d2.Size() != 3*65536+1000 || len(d2.Info().Warnings) == 0 {
		t.Fatalf("unsized image: size %d warnings %v", d2.Size(), d2.Info().Warnings)
	}
}

func TestAFFCorruptVariants(t *testing.T) {
	want := patternDisk(256<<10, 32)
	for _, args := range [][]string{{"-s64k"}, {"-L", "-s64k"}} {
		b := readFile(t, affConvert(t, t.TempDir(), want, args...))
		opened := 0
		for _, c := range corruptVariants(b, 2, 30) {
			tryCrafted(t, "c.aff", c, func(d Disk) {
				opened++
				readAll(d)
			})
		}
		// Damage that leaves the image readable must be among the variants,
		// or the reads above tested nothing.
		if opened == 0 {
			t.Fatalf("%v: no damaged variant opened", args)
		}
	}
}

func FuzzAFF(f *testing.F) {
	want := patternDisk(128<<10, 33)
	for _, args := range [][]string{{"-s64k"}, {"-L", "-s64k"}, {"-x", "-s64k"}} {
		b := readFile(f, affConvert(f, f.TempDir(), want, args...))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "fuzz.aff", data, readSome)
	})
}

func affBenchImage(b *testing.B, args ...string) Disk {
	p := affConvert(b, b.TempDir(), patternDisk(8<<20, 34), args...)
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

func BenchmarkAFFSeqRead(b *testing.B)  { benchReads(b, affBenchImage(b, "-s1m"), false) }
func BenchmarkAFFRandRead(b *testing.B) { benchReads(b, affBenchImage(b, "-s1m"), true) }

// BenchmarkAFFOpen2TiB opens a crafted 2 TiB image of 16 MiB pages (all
// absent but the last) against a 2 MiB affconvert image.
func BenchmarkAFFOpen2TiB(b *testing.B) {
	const size = 2 << 40
	f := append(append([]byte(nil), affMagic...), affSeg("pagesize", 16<<20, nil)...)
	f = append(f, affSeg("page131071", 0, make([]byte, 512))...)
	f = append(f, affSeg("imagesize", affSegQuad, affQuadBytes(size))...)
	big := writeTemp(b, "big.aff", f)
	small := affConvert(b, b.TempDir(), patternDisk(2<<20, 35))
	benchOpens(b, false, benchOpenCase{"2TiB", big}, benchOpenCase{"2MiB", small})
}
