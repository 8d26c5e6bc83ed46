package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parallelsFixture converts data to a Parallels image with qemu-img.
func parallelsFixture(t testing.TB, data []byte, extra ...string) string {
	t.Helper()
	return qemuConvert(t, t.TempDir(), data, "parallels", "img.hds", extra...)
}

// parallelsChainRaw reads top over base with qemu: qemu opens a Parallels
// image with a backing node given as JSON options (it has no bundle
// support of its own).
func parallelsChainRaw(t testing.TB, top, base, baseFmt string) []byte {
	t.Helper()
	spec := parallelsChainSpec(top, base, baseFmt)
	out := filepath.Join(t.TempDir(), "chain.raw")
	qemuImg(t, "convert", "-O", "raw", spec, out)
	b := readFile(t, out)
	return b
}

func parallelsChainSpec(top, base, baseFmt string) string {
	return fmt.Sprintf(`json:{"driver":"parallels","file":{"driver":"file","filename":%q},"backing":{"driver":%q,"file":{"driver":"file","filename":%q}}}`, top, baseFmt, base)
}

func TestParallelsSamples(t *testing.T) {
	for _, s := range samples(t, "parallels") {
		t.Run(filepath.Base(s.Path), func(t *testing.T) {
			p := sampleFile(t, s.Path)
			before := fileMD5(t, p)
			d := openSample(t, p, s, true)
			if d.Info().Format != "parallels" {
				t.Fatalf("info %+v", d.Info())
			}
			d.Close()
			if fileMD5(t, p) != before {
				t.Fatal("read-only open changed the sample")
			}
		})
	}
}

func TestParallelsRead(t *testing.T) {
	for _, c := range []struct {
		size int64
		opts []string
	}{
		{512 * 7, nil},
		{2<<20 + 512*5, nil},
		{1<<20 + 4096 + 512, []string{"-o", "cluster_size=64K"}},
		{512<<10 + 1024, []string{"-o", "cluster_size=4K"}},
	} {
		data := patternDisk(c.size, c.size)
		p := parallelsFixture(t, data, c.opts...)
		want := qemuRaw(t, "parallels", p)
		d := mustOpen(t, p, Options{ReadOnly: true})
		checkDisk(t, d, want)
		checkMap(t, d, want, qemuMapData(t, "parallels", p, d.Size()))
		if c.opts != nil {
			checkConcurrentReads(t, d, want)
		}
		if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("WriteAt read-only: %v", err)
		}
		if info := d.Info(); info.Allocated <= 0 || info.Variant == "" {
			t.Fatalf("info %+v", info)
		}
	}
}

func parallelsInUseField(t testing.TB, p string) uint32 {
	t.Helper()
	b := readFile(t, p)
	return binary.LittleEndian.Uint32(b[parallelsInUseOff:])
}

func parallelsWriteAndCheck(t *testing.T, p string, model []byte) {
	t.Helper()
	inuse := parallelsInUseField(t, p)
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, d, model, 60, 1)
	if got := parallelsInUseField(t, p); got != parallelsInUse {
		t.Fatalf("in-use field %#x while writing", got)
	}
	concurrentWrites(t, d, model, 48*1024)
	randomWrites(t, d, model, 30, 2)
	checkDisk(t, d, model)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := parallelsInUseField(t, p); got != inuse {
		t.Fatalf("in-use field %#x after close, want %#x", got, inuse)
	}
	if !bytes.Equal(qemuRaw(t, "parallels", p), model) {
		t.Fatal("qemu-img reads something else than was written")
	}
	qemuCheck(t, "parallels", p)
}

func TestParallelsWrite(t *testing.T) {
	// converted with data, 64 KiB clusters
	model := patternDisk(2<<20+3*512, 4)
	parallelsWriteAndCheck(t, parallelsFixture(t, model, "-o", "cluster_size=64K"), model)

	// empty, default 1 MiB clusters
	p := filepath.Join(t.TempDir(), "empty.hds")
	size := int64(5<<20 + 512)
	qemuImg(t, "create", "-f", "parallels", p, strconv.FormatInt(size, 10))
	parallelsWriteAndCheck(t, p, make([]byte, size))

	// the old "WithoutFreeSpace" format (BAT in sectors) from the samples
	for _, s := range []string{"qemu-iotests/parallels-v1.bz2", "qemu-iotests/parallels-v2.bz2"} {
		p := sampleFile(t, s)
		model := qemuRaw(t, "parallels", p)
		parallelsWriteAndCheck(t, p, model)
	}
}

func TestParallelsInUse(t *testing.T) {
	data := patternDisk(1<<20, 6)
	p := parallelsFixture(t, data, "-o", "cluster_size=64K")
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], parallelsInUse)
	pokeFile(t, p, parallelsInUseOff, b[:])
	before := fileMD5(t, p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	checkDisk(t, d, data)
	if len(d.Info().Warnings) == 0 {
		t.Fatal("no warning for an in-use image")
	}
	d.Close()
	if _, err := Open(p, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("read-write open of an in-use image: %v, want ErrUnsupported", err)
	}
	if fileMD5(t, p) != before {
		t.Fatal("image changed")
	}
}

// parallelsDescriptorXML writes a DiskDescriptor.xml (prl-xml.rst) for a
// chain of images, root first.
func parallelsDescriptorXML(sizeSectors int64, blockSectors int64, files, types, guids []string) string {
	var images, shots string
	for i := range files {
		images += fmt.Sprintf("      <Image>\n        <GUID>%s</GUID>\n        <Type>%s</Type>\n        <File>%s</File>\n      </Image>\n", guids[i], types[i], files[i])
		parent := parallelsRootGUID
		if i > 0 {
			parent = guids[i-1]
		}
		shots += fmt.Sprintf("    <Shot>\n      <GUID>%s</GUID>\n      <ParentGUID>%s</ParentGUID>\n    </Shot>\n", guids[i], parent)
	}
	return fmt.Sprintf(`<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
  <Disk_Parameters>
    <Disk_size>%d</Disk_size>
    <Cylinders>%d</Cylinders>
    <Heads>16</Heads>
    <Sectors>32</Sectors>
    <Padding>0</Padding>
  </Disk_Parameters>
  <StorageData>
    <Storage>
      <Start>0</Start>
      <End>%d</End>
      <Blocksize>%d</Blocksize>
%s    </Storage>
  </StorageData>
  <Snapshots>
%s  </Snapshots>
</Parallels_disk_image>
`, sizeSectors, sizeSectors/16/32, sizeSectors, blockSectors, images, shots)
}

func TestParallelsBundle(t *testing.T) {
	size := int64(4 << 20)
	data := patternDisk(size, 12)
	dir := filepath.Join(t.TempDir(), "disk.hdd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src.raw")
	writeFile(t, src, data)
	single := "disk.hdd.0." + parallelsTopGUID + ".hds"
	qemuImg(t, "convert", "-f", "raw", "-O", "parallels", "-o", "cluster_size=64K", src, filepath.Join(dir, single))
	xmlPath := filepath.Join(dir, parallelsXMLName)
	writeFile(t, xmlPath, []byte(parallelsDescriptorXML(size/512, 128, []string{single}, []string{"Compressed"}, []string{parallelsTopGUID})))

	want := qemuRaw(t, "parallels", filepath.Join(dir, single))
	if d := mustOpen(t, filepath.Join(dir, single), Options{ReadOnly: true}); len(d.Info().Warnings) == 0 {
		t.Fatal("no warning for an image opened outside its bundle")
	} else {
		d.Close()
	}
	for _, p := range []string{dir, xmlPath} {
		if f, err := Detect(p); err != nil || f != "parallels" {
			t.Fatalf("Detect(%s) = %q, %v", p, f, err)
		}
		d := mustOpen(t, p, Options{ReadOnly: true})
		checkDisk(t, d, want)
		info := d.Info()
		if info.Path != xmlPath || info.Files[0] != xmlPath || len(info.Files) != 2 || info.Format != "parallels" {
			t.Fatalf("info %+v", info)
		}
		d.Close()
	}

	// Two snapshots: a root with data and an overlay (top) written by qemu.
	root := "disk.hdd.0.{11111111-2222-3333-4444-555555555555}.hds"
	if err := os.Rename(filepath.Join(dir, single), filepath.Join(dir, root)); err != nil {
		t.Fatal(err)
	}
	top := "disk.hdd.1." + parallelsTopGUID + ".hds"
	topPath := filepath.Join(dir, top)
	rootPath := filepath.Join(dir, root)
	qemuImg(t, "create", "-f", "parallels", "-o", "cluster_size=64K", topPath, strconv.FormatInt(size, 10))
	run(t, "qemu-io", "-f", "parallels", "-c", "write -P 0x5a 131072 65536", "-c", "write -P 0x5b 3145728 131072", topPath)
	writeFile(t, xmlPath, []byte(parallelsDescriptorXML(size/512, 128,
		[]string{root, top}, []string{"Compressed", "Compressed"},
		[]string{"{11111111-2222-3333-4444-555555555555}", parallelsTopGUID})))
	want = parallelsChainRaw(t, topPath, rootPath, "parallels")
	rootSum := fileMD5(t, rootPath)
	d := mustOpen(t, dir, Options{ReadOnly: true})
	checkDisk(t, d, want)
	checkMap(t, d, want, qemuMapData(t, "", parallelsChainSpec(topPath, rootPath, "parallels"), d.Size()))
	if info := d.Info(); info.Parent == nil || info.Parent.Path != rootPath {
		t.Fatalf("bundle chain %+v", info)
	}
	d.Close()

	// The same chain with the top named by <TopGUID> instead of the
	// predefined GUID.
	other := "{aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}"
	x := parallelsDescriptorXML(size/512, 128, []string{root, top}, []string{"Compressed", "Compressed"},
		[]string{"{11111111-2222-3333-4444-555555555555}", other})
	x = strings.Replace(x, "<Snapshots>\n", "<Snapshots>\n    <TopGUID>"+other+"</TopGUID>\n", 1)
	writeFile(t, xmlPath, []byte(x))
	d = mustOpen(t, dir, Options{ReadOnly: true})
	checkDisk(t, d, want)
	d.Close()
	writeFile(t, xmlPath, []byte(parallelsDescriptorXML(size/512, 128,
		[]string{root, top}, []string{"Compressed", "Compressed"},
		[]string{"{11111111-2222-3333-4444-555555555555}", parallelsTopGUID})))

	// Writes go to the top snapshot only; partial clusters copy the root.
	model := append([]byte(nil), want...)
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, d, model, 50, 9)
	concurrentWrites(t, d, model, 40*1024)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parallelsChainRaw(t, topPath, rootPath, "parallels"), model) {
		t.Fatal("qemu reads the written chain differently")
	}
	qemuCheck(t, "parallels", topPath)
	if fileMD5(t, rootPath) != rootSum {
		t.Fatal("a write changed the root snapshot")
	}

	// A plain (raw) root under an expanding overlay.
	plain := "disk.hdd.0.plain.hds"
	writeFile(t, filepath.Join(dir, plain), data)
	os.WriteFile(xmlPath, []byte(parallelsDescriptorXML(size/512, 128,
		[]string{plain, top}, []string{"Plain", "Compressed"},
		[]string{"{11111111-2222-3333-4444-555555555555}", parallelsTopGUID})), 0o644)
	want = parallelsChainRaw(t, topPath, filepath.Join(dir, plain), "raw")
	d = mustOpen(t, xmlPath, Options{ReadOnly: true})
	checkDisk(t, d, want)
	d.Close()

	// A missing snapshot file.
	removeFile(t, filepath.Join(dir, plain))
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing image: %v, want ErrNotExist", err)
	}
	// Empty storages and unknown XML.
	writeFile(t, xmlPath, []byte(`<Parallels_disk_image Version="1.0"><StorageData><Storage/><Storage/></StorageData></Parallels_disk_image>`))
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty storages: %v, want ErrCorrupt", err)
	}
	writeFile(t, xmlPath, []byte(`<Parallels_disk_image Version="1.0"><StorageData>`))
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("broken XML: %v, want ErrCorrupt", err)
	}
}

func TestParallelsCorruptVariants(t *testing.T) {
	for _, s := range []string{"qemu-iotests/parallels-v1.bz2", "qemu-iotests/parallels-v2.bz2"} {
		img := readFile(t, sampleFile(t, s))
		for i, c := range corruptVariants(img, 7, 60) {
			tryCrafted(t, "c"+strconv.Itoa(i)+".hds", c, readSome)
		}
	}
}

func FuzzParallels(f *testing.F) {
	for _, s := range []string{"qemu-iotests/parallels-v1.bz2", "qemu-iotests/parallels-v2.bz2"} {
		img := readFile(f, sampleFile(f, s))
		f.Add(img[:128<<10]) // header, BAT and the first clusters
	}
	f.Add([]byte(parallelsDescriptorXML(8192, 2048, []string{"a.hds"}, []string{"Compressed"}, []string{parallelsTopGUID})))
	f.Fuzz(func(t *testing.T, b []byte) { commonFuzzDisk(t, "fuzz.hds", b) })
}

func BenchmarkParallelsSeqRead(b *testing.B) { benchReads(b, benchFixture(b, parallelsFixture), false) }

func BenchmarkParallelsRandRead(b *testing.B) { benchReads(b, benchFixture(b, parallelsFixture), true) }

func BenchmarkParallelsOpen2TiB(b *testing.B) { benchOpen(b, "parallels", "hds") }
