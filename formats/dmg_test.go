package formats

import (
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// No Debian package writes UDIF images (libdmg-hfsplus is not packaged),
// so fixtures come from dmgTestBuild, a small test-only UDIF writer, and
// the oracles are real readers: dmg2img and qemu-img (zlib/raw/zero
// chunks only; Debian's qemu has no bzip2 module and does not know ADC).
// The chunk compressors are real tools where Go has none (bzip2, xz).
//
// Layout written (big-endian, as hdiutil writes it): the data fork at
// dataOff (chunks back to back), then either an XML plist
// (plist/dict/resource-fork/dict/blkx/array of dicts with Attributes,
// CFName, Data = base64 mish table, ID, Name) or a classic resource fork
// with one 'blkx' resource per table, then the 512-byte koly trailer.
// Each blkx ("mish") table: 204-byte header (magic, version 1, first
// sector, sector count, data offset 0, buffers needed, descriptor, CRC32
// checksum of the data, chunk count) and 40-byte chunk entries (type,
// comment, sector relative to the table, sector count, data offset
// relative to the data fork, stored length), ending with a terminator.

type dmgTestOpts struct {
	chunkSectors int64
	types        []uint32 // chunk types used in turn for chunks with data
	zeroType     uint32   // for all-zero chunks: dmgZero, dmgIgnore or a data type
	parts        int      // blkx tables, splitting the disk evenly
	rsrc         bool     // block tables in a resource fork, no XML plist
	dataOff      int      // bytes of padding before the data fork
	lzmaAlone    bool     // LZMA chunks as classic .lzma streams, not xz
}

// dmgTestBuild writes a UDIF image of data (a multiple of 512 bytes).
func dmgTestBuild(t testing.TB, data []byte, o dmgTestOpts) []byte {
	t.Helper()
	if len(data)%SectorSize != 0 {
		t.Fatalf("dmgTestBuild: %d bytes is not whole sectors", len(data))
	}
	sectors := int64(len(data) / SectorSize)
	var fork bytes.Buffer
	var tables [][]byte
	var names []string
	ti := 0
	for p := 0; p < o.parts; p++ {
		first, last := sectors*int64(p)/int64(o.parts), sectors*int64(p+1)/int64(o.parts)
		var ents bytes.Buffer
		n := 0
		entry := func(typ uint32, sec, cnt int64, off, length int) {
			var e [dmgChunkLen]byte
			binary.BigEndian.PutUint32(e[0:], typ)
			binary.BigEndian.PutUint64(e[8:], uint64(sec))
			binary.BigEndian.PutUint64(e[16:], uint64(cnt))
			binary.BigEndian.PutUint64(e[24:], uint64(off))
			binary.BigEndian.PutUint64(e[32:], uint64(length))
			ents.Write(e[:])
			n++
		}
		if p == 0 {
			entry(dmgComment, 0, 0, 0, 0) // comments are skipped
		}
		for s := first; s < last; s += o.chunkSectors {
			cnt := min(o.chunkSectors, last-s)
			b := data[s*SectorSize : (s+cnt)*SectorSize]
			typ := o.zeroType
			if !isZero(b) || typ != dmgZero && typ != dmgIgnore {
				typ = o.types[ti%len(o.types)]
				ti++
			}
			var stored []byte
			switch typ {
			case dmgZero, dmgIgnore:
			case dmgRaw:
				stored = b
			case dmgZlib:
				var z bytes.Buffer
				w, err := zlib.NewWriterLevel(&z, zlib.BestSpeed)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(b); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				stored = z.Bytes()
			case dmgBzip2:
				stored = dmgTestPipe(t, b, "bzip2", "-c", "-9")
			case dmgLZMA:
				if o.lzmaAlone {
					stored = dmgTestPipe(t, b, "xz", "-c", "--format=lzma", "-6")
				} else {
					stored = dmgTestPipe(t, b, "xz", "-c", "--format=xz", "--check=crc32", "-6")
				}
			case dmgADC:
				stored = dmgTestADCEncode(b)
			default:
				t.Fatalf("dmgTestBuild: no encoder for chunk type %#x", typ)
			}
			entry(typ, s-first, cnt, fork.Len(), len(stored))
			fork.Write(stored)
		}
		entry(dmgTerminator, last-first, 0, fork.Len(), 0)
		h := make([]byte, dmgMishSize)
		copy(h, "mish")
		binary.BigEndian.PutUint32(h[4:], 1)
		binary.BigEndian.PutUint64(h[8:], uint64(first))
		binary.BigEndian.PutUint64(h[16:], uint64(last-first))
		binary.BigEndian.PutUint32(h[32:], 0x208)
		binary.BigEndian.PutUint32(h[36:], uint32(p))
		binary.BigEndian.PutUint32(h[64:], 2) // CRC32
		binary.BigEndian.PutUint32(h[68:], 32)
		binary.BigEndian.PutUint32(h[72:], crc32.ChecksumIEEE(data[first*SectorSize:last*SectorSize]))
		binary.BigEndian.PutUint32(h[200:], uint32(n))
		tables = append(tables, append(h, ents.Bytes()...))
		names = append(names, fmt.Sprintf("disk image part %d (Apple_HFS : %d)", p, p+1))
	}

	out := make([]byte, o.dataOff)
	rand.Read(out) // padding the data fork offset must skip
	forkOff := len(out)
	out = append(out, fork.Bytes()...)
	koly := make([]byte, dmgKolySize)
	copy(koly, "koly")
	be := binary.BigEndian
	be.PutUint32(koly[4:], 4)
	be.PutUint32(koly[8:], dmgKolySize)
	be.PutUint32(koly[12:], 1)
	be.PutUint64(koly[24:], uint64(forkOff))
	be.PutUint64(koly[32:], uint64(fork.Len()))
	be.PutUint32(koly[56:], 1)
	be.PutUint32(koly[60:], 1)
	rand.Read(koly[64:80])
	be.PutUint32(koly[80:], 2)
	be.PutUint32(koly[84:], 32)
	be.PutUint32(koly[88:], crc32.ChecksumIEEE(fork.Bytes()))
	if o.rsrc {
		r := dmgTestRsrc(tables, names)
		be.PutUint64(koly[40:], uint64(len(out)))
		be.PutUint64(koly[48:], uint64(len(r)))
		out = append(out, r...)
	} else {
		x := dmgTestPlist(tables, names)
		be.PutUint64(koly[216:], uint64(len(out)))
		be.PutUint64(koly[224:], uint64(len(x)))
		out = append(out, x...)
	}
	be.PutUint32(koly[488:], 1)
	be.PutUint64(koly[492:], uint64(sectors))
	return append(out, koly...)
}

func dmgTestPlist(tables [][]byte, names []string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>resource-fork</key>
	<dict>
		<key>blkx</key>
		<array>
`)
	for i, tb := range tables {
		enc := base64.StdEncoding.EncodeToString(tb)
		fmt.Fprintf(&b, "\t\t\t<dict>\n\t\t\t\t<key>Attributes</key>\n\t\t\t\t<string>0x0050</string>\n")
		fmt.Fprintf(&b, "\t\t\t\t<key>CFName</key>\n\t\t\t\t<string>%s</string>\n", names[i])
		b.WriteString("\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n")
		for len(enc) > 0 {
			n := min(52, len(enc))
			fmt.Fprintf(&b, "\t\t\t\t%s\n", enc[:n])
			enc = enc[n:]
		}
		b.WriteString("\t\t\t\t</data>\n")
		fmt.Fprintf(&b, "\t\t\t\t<key>ID</key>\n\t\t\t\t<string>%d</string>\n", i-1)
		fmt.Fprintf(&b, "\t\t\t\t<key>Name</key>\n\t\t\t\t<string>%s</string>\n\t\t\t</dict>\n", names[i])
	}
	b.WriteString("\t\t</array>\n\t</dict>\n</dict>\n</plist>\n")
	return []byte(b.String())
}

// dmgTestRsrc writes a classic resource fork holding the tables as 'blkx'
// resources: header, data (length-prefixed), map (header copy, next
// handle, file ref, attributes, type list offset, name list offset),
// type list, references, name list.
func dmgTestRsrc(tables [][]byte, names []string) []byte {
	be := binary.BigEndian
	const dataOff = 256
	var data, nameList bytes.Buffer
	refs := make([]byte, 12*len(tables))
	for i, tb := range tables {
		r := refs[12*i:]
		be.PutUint16(r[0:], uint16(int16(i-1)))
		be.PutUint16(r[2:], uint16(nameList.Len()))
		nameList.WriteByte(byte(len(names[i])))
		nameList.WriteString(names[i])
		r[4] = 0x50
		off := data.Len()
		r[5], r[6], r[7] = byte(off>>16), byte(off>>8), byte(off)
		var l [4]byte
		be.PutUint32(l[:], uint32(len(tb)))
		data.Write(l[:])
		data.Write(tb)
	}
	typeList := make([]byte, 2+8)
	be.PutUint16(typeList[0:], 0) // one type
	copy(typeList[2:], "blkx")
	be.PutUint16(typeList[6:], uint16(len(tables)-1))
	be.PutUint16(typeList[8:], uint16(len(typeList)))
	m := make([]byte, 28)
	be.PutUint16(m[24:], 28)
	be.PutUint16(m[26:], uint16(28+len(typeList)+len(refs)))
	m = append(m, typeList...)
	m = append(m, refs...)
	m = append(m, nameList.Bytes()...)
	out := make([]byte, dataOff)
	mapOff := dataOff + data.Len()
	be.PutUint32(out[0:], dataOff)
	be.PutUint32(out[4:], uint32(mapOff))
	be.PutUint32(out[8:], uint32(data.Len()))
	be.PutUint32(out[12:], uint32(len(m)))
	copy(m, out[:16])
	out = append(out, data.Bytes()...)
	return append(out, m...)
}

// dmgTestPipe compresses b with a real tool.
func dmgTestPipe(t testing.TB, b []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (CI installs it): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// dmgTestADCEncode is a greedy ADC compressor (test only): literal runs,
// 2-byte copies (3-18 bytes, distance <= 1024), 3-byte copies (4-67
// bytes, distance <= 65536). dmg2img decodes its output in the tests.
func dmgTestADCEncode(src []byte) []byte {
	var out, lit []byte
	flush := func() {
		for len(lit) > 0 {
			n := min(128, len(lit))
			out = append(out, byte(0x80|(n-1)))
			out = append(out, lit[:n]...)
			lit = lit[n:]
		}
	}
	last := map[uint32]int{}
	for i := 0; i < len(src); {
		if i+3 <= len(src) {
			key := uint32(src[i])<<16 | uint32(src[i+1])<<8 | uint32(src[i+2])
			j, ok := last[key]
			last[key] = i
			if ok && i-j <= 65536 {
				n := 0
				for i+n < len(src) && src[j+n] == src[i+n] && n < 67 {
					n++
				}
				dist := i - j - 1
				switch {
				case n >= 3 && n <= 18 && dist < 1024:
					flush()
					out = append(out, byte((n-3)<<2|dist>>8), byte(dist))
					i += n
					continue
				case n >= 4:
					flush()
					out = append(out, byte(0x40|(n-4)), byte(dist>>8), byte(dist))
					i += n
					continue
				}
			}
		}
		lit = append(lit, src[i])
		i++
	}
	flush()
	return out
}

// dmgOracle flattens an image with dmg2img.
func dmgOracle(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dmg2img.raw")
	run(t, "dmg2img", "-s", "-i", path, "-o", out)
	b := readFile(t, out)
	return b
}

// dmgFixture builds an image of size bytes of patternDisk data.
func dmgFixture(t testing.TB, size int64, seed int64, o dmgTestOpts) (path string, want []byte) {
	t.Helper()
	want = patternDisk(size, seed)
	return writeTemp(t, "fixture.dmg", dmgTestBuild(t, want, o)), want
}

func TestDMGFixtures(t *testing.T) {
	zlibOnly := []uint32{dmgZlib}
	cases := []struct {
		name                string
		size                int64
		o                   dmgTestOpts
		qemu, dmg2img, conc bool
	}{
		{"udzo-ignore", 1<<20 + 7*512, dmgTestOpts{chunkSectors: 128, types: zlibOnly, zeroType: dmgIgnore, parts: 3}, true, true, true},
		{"udzo-zero", 1<<20 + 512, dmgTestOpts{chunkSectors: 1024, types: zlibOnly, zeroType: dmgZero, parts: 1}, true, true, false},
		{"raw-zlib", 1<<20 + 3*512, dmgTestOpts{chunkSectors: 100, types: []uint32{dmgRaw, dmgZlib, dmgRaw}, zeroType: dmgZero, parts: 2}, true, true, false},
		{"udro", 512<<10 + 512, dmgTestOpts{chunkSectors: 64, types: []uint32{dmgRaw}, zeroType: dmgRaw, parts: 2}, true, true, false},
		{"data-fork-offset", 512 << 10, dmgTestOpts{chunkSectors: 128, types: []uint32{dmgZlib, dmgRaw}, zeroType: dmgIgnore, parts: 2, dataOff: 4096}, true, true, false},
		{"bzip2-adc-mixed", 1<<20 + 9*512, dmgTestOpts{chunkSectors: 200, types: []uint32{dmgBzip2, dmgADC, dmgZlib, dmgRaw}, zeroType: dmgIgnore, parts: 2}, false, true, true},
		{"udco", 512<<10 + 512, dmgTestOpts{chunkSectors: 256, types: []uint32{dmgADC}, zeroType: dmgZero, parts: 1}, false, true, false},
		{"rsrc-fork", 1<<20 + 5*512, dmgTestOpts{chunkSectors: 256, types: []uint32{dmgZlib, dmgRaw}, zeroType: dmgIgnore, parts: 3, rsrc: true}, true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, want := dmgFixture(t, tc.size, int64(len(tc.name)), tc.o)
			if tc.qemu {
				if got := qemuRaw(t, "dmg", p); !bytes.Equal(got, want) {
					t.Fatalf("qemu-img disagrees with the fixture's data (%d vs %d bytes)", len(got), len(want))
				}
			}
			if tc.dmg2img {
				if got := dmgOracle(t, p); !bytes.Equal(got, want) {
					t.Fatalf("dmg2img disagrees with the fixture's data (%d vs %d bytes)", len(got), len(want))
				}
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			info := d.Info()
			if info.Format != "dmg" || !info.ReadOnly || info.Metadata["partition.0"] != "disk image part 0 (Apple_HFS : 1)" {
				t.Fatalf("Info() = %+v", info)
			}
			feats := strings.Join(info.Features, ",")
			for _, typ := range append(tc.o.types, tc.o.zeroType) {
				if typ != dmgZero && !strings.Contains(feats, dmgTypeNames[typ]) {
					t.Errorf("Features %v lack %s", info.Features, dmgTypeNames[typ])
				}
			}
			if tc.name == "udzo-ignore" && (info.Variant != "UDZO" || info.ClusterSize != 128*SectorSize) {
				t.Errorf("Variant %q ClusterSize %d, want UDZO, %d", info.Variant, info.ClusterSize, 128*SectorSize)
			}
			if tc.o.rsrc != strings.Contains(feats, "resource-fork") {
				t.Errorf("Features %v", info.Features)
			}
			checkDisk(t, d, want)
			if tc.conc {
				checkConcurrentReads(t, d, want)
			}
			checkMap(t, d, want, nil)
		})
	}
}

// TestDMGLZMA: xz-compressed chunks (ULMO). No installed reader decodes
// them, so the oracle is the xz tool that compressed the data.
func TestDMGLZMA(t *testing.T) {
	p, want := dmgFixture(t, 512<<10+3*512, 5, dmgTestOpts{chunkSectors: 256, types: []uint32{dmgLZMA, dmgLZMA, dmgZlib}, zeroType: dmgIgnore, parts: 1})
	d := mustOpen(t, p, Options{ReadOnly: true})
	if v := d.Info().Variant; v != "ULMO" {
		t.Errorf("Variant = %q", v)
	}
	checkDisk(t, d, want)

	p, want = dmgFixture(t, 256<<10, 6, dmgTestOpts{chunkSectors: 128, types: []uint32{dmgLZMA}, zeroType: dmgIgnore, parts: 1, lzmaAlone: true})
	checkDisk(t, mustOpen(t, p, Options{ReadOnly: true}), want)
}

// TestDMGXZDictLimit: an xz chunk that asks for a dictionary larger than
// any chunk is refused before the reader allocates it.
func TestDMGXZDictLimit(t *testing.T) {
	data := patternDisk(64<<10, 7)
	x := dmgTestPipe(t, data, "xz", "-c", "--format=xz", "--check=crc32", "-6")
	out := make([]byte, len(data))
	if n, err := dmgLZMADecode(out, x); err != nil || n != len(data) || !bytes.Equal(out, data) {
		t.Fatalf("dmgLZMADecode = %d, %v", n, err)
	}
	// Block header: size byte, flags (one filter, no sizes), filter
	// 0x21 with one property byte: the dictionary size code.
	if x[12+2] != 0x21 || x[12+3] != 1 {
		t.Fatalf("unexpected xz block header % x", x[12:20])
	}
	x[12+4] = 40 // 4 GiB
	if _, err := dmgLZMADecode(out, x); err == nil || !strings.Contains(err.Error(), "dictionary") {
		t.Errorf("huge dictionary: %v", err)
	}
}

func TestDMGSamples(t *testing.T) {
	for _, row := range samples(t, "dmg") {
		t.Run(row.Path, func(t *testing.T) {
			p := sampleFile(t, row.Path)
			d, err := Open(p, Options{ReadOnly: true})
			if row.ExpectError() {
				if err == nil {
					d.Close()
					t.Fatalf("Open succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if d.Size() != row.VSize {
				t.Fatalf("Size() = %d, want %d", d.Size(), row.VSize)
			}
			if got := diskMD5(t, d); got != row.MD5 {
				t.Fatalf("md5 %s, want %s", got, row.MD5)
			}
			info := d.Info()
			if info.Format != "dmg" || !info.ReadOnly || info.ReadOnlyReason == "" || info.Metadata["partition.0"] == "" {
				t.Errorf("Info() = %+v", info)
			}
			if _, err := d.WriteAt(make([]byte, SectorSize), 0); !errors.Is(err, ErrReadOnly) {
				t.Errorf("WriteAt: %v, want ErrReadOnly", err)
			}
		})
	}
}

// TestDMGSampleVariants checks Info on the five compression samples, which
// hold the same disk.
func TestDMGSampleVariants(t *testing.T) {
	for name, want := range map[string]string{
		"compression-zlib.dmg": "UDZO", "compression-bz2.dmg": "UDBZ", "compression-adc.dmg": "UDCO",
		"compression-raw.dmg": "UDRO", "compression-lzfse.dmg": "ULFO",
	} {
		d := mustOpen(t, filepath.Join(samplesDir, "udif", name), Options{ReadOnly: true})
		info := d.Info()
		if info.Variant != want {
			t.Errorf("%s: Variant = %q, want %q", name, info.Variant, want)
		}
		if !strings.Contains(strings.Join(info.Features, ","), "xml-plist") {
			t.Errorf("%s: Features = %v", name, info.Features)
		}
	}
	d := mustOpen(t, filepath.Join(samplesDir, "udif", "compression-lzfse.dmg"), Options{ReadOnly: true})
	want := make([]byte, d.Size())
	if _, err := d.ReadAt(want, 0); err != nil {
		t.Fatal(err)
	}
	checkConcurrentReads(t, d, want)
}

func TestDMGEncrypted(t *testing.T) {
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	v2 := append([]byte("encrcdsa\x00\x00\x00\x02"), junk...)
	v1 := append(append([]byte(nil), junk...), "cdsaencr"...)
	for name, b := range map[string][]byte{"v2.dmg": v2, "v1.dmg": v1} {
		_, err := Open(writeTemp(t, name, b), Options{ReadOnly: true})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "encrypted") {
			t.Errorf("%s: Open = %v, want ErrUnsupported naming encryption", name, err)
		}
	}
}

// TestDMGCrafted edits single fields of a valid image.
func TestDMGCrafted(t *testing.T) {
	data := patternDisk(256<<10, 9)
	o := dmgTestOpts{chunkSectors: 128, types: []uint32{dmgZlib, dmgRaw}, zeroType: dmgIgnore, parts: 1, rsrc: true}
	img := dmgTestBuild(t, data, o)
	// With a resource fork the mish table is at a fixed place: fork
	// offset from the koly + 256 + 4.
	kolyOff := len(img) - dmgKolySize
	rsrcOff := int(binary.BigEndian.Uint64(img[kolyOff+40:]))
	mish := rsrcOff + 256 + 4
	chunk := func(i int) int { return mish + dmgMishSize + dmgChunkLen*(i+1) } // entry 0 is a comment
	be := binary.BigEndian
	cases := []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"huge-chunk", func(b []byte) { be.PutUint64(b[chunk(0)+16:], 1<<20) }, ErrCorrupt},
		{"chunk-past-file", func(b []byte) { be.PutUint64(b[chunk(0)+24:], 1<<40) }, ErrCorrupt},
		{"chunk-length-huge", func(b []byte) { be.PutUint64(b[chunk(0)+32:], 1<<62) }, ErrCorrupt},
		{"unknown-type", func(b []byte) { be.PutUint32(b[chunk(0):], 0x80000009) }, ErrUnsupported},
		{"overlap", func(b []byte) { be.PutUint64(b[chunk(1)+8:], 0) }, ErrCorrupt},
		{"chunk-count", func(b []byte) { be.PutUint32(b[mish+200:], 1<<30) }, ErrCorrupt},
		{"no-mish", func(b []byte) { copy(b[mish:], "hsim") }, ErrCorrupt},
		{"sector-count", func(b []byte) { be.PutUint64(b[kolyOff+492:], 3) }, ErrCorrupt},
		{"segmented", func(b []byte) { be.PutUint32(b[kolyOff+60:], 2) }, ErrUnsupported},
		{"rsrc-outside", func(b []byte) { be.PutUint64(b[kolyOff+48:], 1<<40) }, ErrCorrupt},
		{"no-tables", func(b []byte) { be.PutUint64(b[kolyOff+48:], 0) }, ErrUnsupported},
	}
	for _, tc := range cases {
		b := append([]byte(nil), img...)
		tc.edit(b)
		d, err := Open(writeTemp(t, "crafted.dmg", b), Options{ReadOnly: true})
		if err == nil {
			d.Close()
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A damaged compressed chunk opens but fails to read, with an error.
	b := append([]byte(nil), img...)
	off := be.Uint64(b[chunk(0)+24:])
	copy(b[off:], "garbage garbage garbage")
	d := mustOpen(t, writeTemp(t, "damaged.dmg", b), Options{ReadOnly: true})
	if _, err := d.ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAt of a damaged zlib chunk: %v, want ErrCorrupt", err)
	}
}

// TestDMGCorruptVariants: truncated and bit-flipped images must open or
// fail cleanly, and reads must not panic.
func TestDMGCorruptVariants(t *testing.T) {
	var images [][]byte
	for _, name := range []string{"compression-zlib.dmg", "compression-adc.dmg", "compression-lzfse.dmg", "compression-bz2.dmg"} {
		b := readFile(t, filepath.Join(samplesDir, "udif", name))
		images = append(images, b)
	}
	images = append(images, dmgTestBuild(t, patternDisk(128<<10, 3), dmgTestOpts{chunkSectors: 64, types: []uint32{dmgZlib, dmgADC, dmgRaw}, zeroType: dmgZero, parts: 2, rsrc: true}))
	dir := t.TempDir()
	buf := make([]byte, 64<<10)
	for i, img := range images {
		for j, c := range corruptVariants(img, int64(i), 40) {
			p := filepath.Join(dir, fmt.Sprintf("v%d-%d.dmg", i, j))
			writeFile(t, p, c)
			d, err := Open(p, Options{ReadOnly: true})
			if err != nil {
				continue
			}
			// A flipped sector count can make the disk huge: read the
			// start and a few places.
			for off := int64(0); off < min(d.Size(), 8<<20); off += int64(len(buf)) {
				d.ReadAt(buf, off)
			}
			for _, off := range []int64{d.Size() / 3, d.Size() / 2, d.Size() - 1} {
				d.ReadAt(buf, max(0, off)/SectorSize*SectorSize)
			}
			d.Close()
		}
	}
}

func TestADCDecode(t *testing.T) {
	src := []byte("abcabcabcabcabcabc xyz xyz xyz, a sentence, a sentence, a sentence.")
	src = append(src, bytes.Repeat([]byte{7}, 300)...)
	src = append(src, patternDisk(8192, 2)...)
	enc := dmgTestADCEncode(src)
	out := make([]byte, len(src))
	n, err := adcDecode(out, enc)
	if err != nil || n != len(src) || !bytes.Equal(out, src) {
		t.Fatalf("adcDecode = %d, %v (equal %v)", n, err, bytes.Equal(out, src))
	}
	for _, tc := range []struct {
		name string
		in   []byte
		size int
		want error
	}{
		{"truncated-literal", []byte{0x85, 1, 2}, 10, adcErrTruncated},
		{"truncated-copy3", []byte{0x80, 1, 0x40, 0}, 10, adcErrTruncated},
		{"truncated-copy2", []byte{0x80, 1, 0x00}, 10, adcErrTruncated},
		{"distance", []byte{0x80, 1, 0x00, 5}, 10, adcErrDistance},
		{"overflow", []byte{0x80, 1, 0x3c, 0}, 10, adcErrOverflow},
		{"literal-overflow", []byte{0x83, 1, 2, 3, 4}, 2, adcErrOverflow},
	} {
		if _, err := adcDecode(make([]byte, tc.size), tc.in); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzADC(f *testing.F) {
	f.Add(dmgTestADCEncode([]byte("abcabcabcabc hello hello hello")), 64)
	f.Add([]byte{0x80, 1, 0x3c, 0, 0x40, 0, 0}, 100)
	f.Fuzz(func(t *testing.T, src []byte, size int) {
		size = max(0, size) % (1 << 20)
		out := make([]byte, size)
		n, _ := adcDecode(out, src)
		if n < 0 || n > size {
			t.Fatalf("adcDecode wrote %d bytes into %d", n, size)
		}
	})
}

func FuzzDMG(f *testing.F) {
	for _, name := range []string{"compression-zlib.dmg", "compression-adc.dmg", "compression-lzfse.dmg"} {
		b := readFile(f, filepath.Join(samplesDir, "udif", name))
		f.Add(b)
	}
	f.Add(dmgTestBuild(f, patternDisk(64<<10, 4), dmgTestOpts{chunkSectors: 32, types: []uint32{dmgZlib, dmgADC, dmgRaw}, zeroType: dmgZero, parts: 2, rsrc: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "fuzz.dmg", data, readSome)
	})
}

// BenchmarkDMGSeqRead reads a disk larger than the chunk cache, so every
// pass decompresses every 1 MiB chunk once.
func BenchmarkDMGSeqRead(b *testing.B) {
	p, _ := dmgFixture(b, 48<<20, 1, dmgTestOpts{chunkSectors: 2048, types: []uint32{dmgZlib}, zeroType: dmgIgnore, parts: 1})
	benchReads(b, mustOpen(b, p, Options{ReadOnly: true}), false)
}

func BenchmarkDMGRandRead(b *testing.B) {
	p, _ := dmgFixture(b, 16<<20, 1, dmgTestOpts{chunkSectors: 2048, types: []uint32{dmgZlib}, zeroType: dmgIgnore, parts: 1})
	benchReads(b, mustOpen(b, p, Options{ReadOnly: true}), true)
}

// BenchmarkDMGOpen2TiB compares opening a 2 TiB image (one data chunk and
// a 2 TiB zero-fill chunk) with a 2 MiB one: the cost is in the tables.
func BenchmarkDMGOpen2TiB(b *testing.B) {
	small := dmgTestBuild(b, patternDisk(2<<20, 1), dmgTestOpts{chunkSectors: 2048, types: []uint32{dmgZlib}, zeroType: dmgIgnore, parts: 1})
	big := dmgTestBuild(b, make([]byte, 1<<20), dmgTestOpts{chunkSectors: 2048, types: []uint32{dmgZlib}, zeroType: dmgZlib, parts: 1})
	// Grow the big image to 2 TiB: its table's terminator moves to the
	// end, a zero-fill entry would be equivalent; koly SectorCount grows.
	const sectors = 2 << 40 / SectorSize
	binary.BigEndian.PutUint64(big[len(big)-dmgKolySize+492:], sectors)
	benchOpens(b, false, benchOpenCase{"2MiB", writeTemp(b, "2MiB.dmg", small)}, benchOpenCase{"2TiB", writeTemp(b, "2TiB.dmg", big)})
}

// TestDMGTrailerPlacement: a truncated image fails with a clear error
// (it is not taken for a raw disk); padding after the trailer (as qemu
// allows) is ignored with a warning.
func TestDMGTrailerPlacement(t *testing.T) {
	img := readFile(t, filepath.Join(samplesDir, "udif", "compression-zlib.dmg"))
	for _, cut := range []int{1, 100, 508} {
		_, err := Open(writeTemp(t, "cut.dmg", img[:len(img)-cut]), Options{ReadOnly: true})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("cut by %d: Open = %v, want ErrCorrupt saying truncated", cut, err)
		}
	}
	padded := append(append([]byte(nil), img...), make([]byte, 300)...)
	d := mustOpen(t, writeTemp(t, "padded.dmg", padded), Options{ReadOnly: true})
	if got := diskMD5(t, d); got != "2e126e3716d656287eb9e754270095d6" || len(d.Info().Warnings) != 1 {
		t.Errorf("padded image: md5 %s, warnings %v", got, d.Info().Warnings)
	}
}
