package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// qedFixture converts data to QED with qemu-img (extra arguments, such as
// -o cluster_size=..., passed through).
func qedFixture(t testing.TB, data []byte, extra ...string) string {
	t.Helper()
	return qemuConvert(t, t.TempDir(), data, "qed", "img.qed", extra...)
}

func TestQEDRead(t *testing.T) {
	cases := []struct {
		size int64
		opts []string
	}{
		{512 * 5, nil},
		{1<<20 + 512*9, nil},
		{1<<20 + 4096, []string{"-o", "cluster_size=4096,table_size=2"}},
		{1<<20 + 512, []string{"-o", "cluster_size=8192,table_size=16"}},
	}
	for _, c := range cases {
		data := patternDisk(c.size, c.size)
		p := qedFixture(t, data, c.opts...)
		before := fileMD5(t, p)
		want := qemuRaw(t, "qed", p)
		d := mustOpen(t, p, Options{ReadOnly: true})
		if info := d.Info(); info.Format != "qed" || !info.ReadOnly {
			t.Fatalf("info %+v", info)
		}
		checkDisk(t, d, want)
		checkMap(t, d, want, qemuMapData(t, "qed", p, d.Size()))
		if c.opts != nil {
			checkConcurrentReads(t, d, want)
		}
		if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("WriteAt read-only: %v", err)
		}
		d.Close()
		if fileMD5(t, p) != before {
			t.Fatal("read-only open changed the image")
		}
	}
}

func TestQEDBackingAndZeroClusters(t *testing.T) {
	dir := t.TempDir()
	size := int64(3<<20 + 1024)
	base := patternDisk(size, 21)
	basePath := filepath.Join(dir, "base.raw")
	writeFile(t, basePath, base)
	baseSum := fileMD5(t, basePath)

	// raw backing with the no-probe feature (-F raw)
	child := filepath.Join(dir, "child.qed")
	qemuImg(t, "create", "-f", "qed", "-b", "base.raw", "-F", "raw", child)
	run(t, "qemu-io", "-f", "qed",
		"-c", "write -P 0x61 4096 8192",
		"-c", "write -z 131072 131072", // whole clusters: zero clusters over the backing file
		"-c", "write -P 0x62 3145728 1024",
		child)
	want := qemuRaw(t, "qed", child)
	d := mustOpen(t, child, Options{ReadOnly: true})
	checkDisk(t, d, want)
	info := d.Info()
	if info.Parent == nil || info.Parent.Format != "raw" {
		t.Fatalf("parent %+v", info.Parent)
	}
	checkMap(t, d, want, qemuMapData(t, "qed", child, d.Size()))
	alloc, n, err := d.(Mapper).Map(131072, 131072)
	if err != nil || alloc || n != 131072 {
		t.Fatalf("Map of zero clusters = %v %d %v", alloc, n, err)
	}
	d.Close()

	// QED over qcow over raw
	mid := filepath.Join(dir, "mid.qcow")
	qemuImg(t, "create", "-f", "qcow", "-b", "base.raw", "-F", "raw", mid)
	run(t, "qemu-io", "-f", "qcow", "-c", "write -P 0x71 65536 4096", mid)
	top := filepath.Join(dir, "top.qed")
	qemuImg(t, "create", "-f", "qed", "-b", "mid.qcow", "-F", "qcow", top)
	run(t, "qemu-io", "-f", "qed", "-c", "write -P 0x72 0 512", top)
	want = qemuRaw(t, "qed", top)
	d = mustOpen(t, top, Options{ReadOnly: true})
	checkDisk(t, d, want)
	checkMap(t, d, want, qemuMapData(t, "qed", top, d.Size()))
	if pi := d.Info().Parent; pi == nil || pi.Format != "qcow" || pi.Parent == nil {
		t.Fatalf("chain %+v", pi)
	}
	d.Close()
	if fileMD5(t, basePath) != baseSum {
		t.Fatal("backing file changed")
	}

	// missing backing file
	if err := os.Rename(mid, mid+".gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(top, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing backing file: %v, want ErrNotExist", err)
	}
}

func TestQEDWrite(t *testing.T) {
	for _, c := range []struct {
		size int64
		opts []string
	}{
		{2<<20 + 3*512, nil},
		{1<<20 + 512, []string{"-o", "cluster_size=4096,table_size=2"}},
	} {
		model := patternDisk(c.size, 5)
		p := qedFixture(t, model, c.opts...)
		d, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Info().ReadOnly {
			t.Fatal("opened read-only")
		}
		randomWrites(t, d, model, 80, 1)
		concurrentWrites(t, d, model, 24*1024)
		randomWrites(t, d, model, 40, 2)
		checkDisk(t, d, model)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := qemuRaw(t, "qed", p); !bytes.Equal(got, model) {
			t.Fatal("qemu-img reads something else than was written")
		}
		qemuCheck(t, "qed", p)
		if f := qedFeatures(t, p); f&qedFNeedCheck != 0 {
			t.Fatalf("need-check left set after Close (features %#x)", f)
		}
	}
}

func TestQEDWriteEmptyAndBacking(t *testing.T) {
	dir := t.TempDir()
	size := int64(4<<20 + 1536)
	// empty image, nothing allocated
	empty := filepath.Join(dir, "empty.qed")
	qemuImg(t, "create", "-f", "qed", empty, strconv.FormatInt(size, 10))
	model := make([]byte, size)
	d := mustOpen(t, empty, Options{})
	randomWrites(t, d, model, 60, 3)
	concurrentWrites(t, d, model, 40*1024)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(qemuRaw(t, "qed", empty), model) {
		t.Fatal("empty image: qemu-img disagrees")
	}
	qemuCheck(t, "qed", empty)

	// child of a raw backing file: copy-on-write of partial clusters
	base := patternDisk(size, 31)
	basePath := filepath.Join(dir, "base.raw")
	writeFile(t, basePath, base)
	baseSum := fileMD5(t, basePath)
	child := filepath.Join(dir, "child.qed")
	qemuImg(t, "create", "-f", "qed", "-b", "base.raw", "-F", "raw", child)
	model = append([]byte(nil), base...)
	d = mustOpen(t, child, Options{})
	randomWrites(t, d, model, 60, 4)
	// whole zero clusters over the backing file
	z := make([]byte, 128<<10)
	if _, err := d.WriteAt(z, 256<<10); err != nil {
		t.Fatal(err)
	}
	copy(model[256<<10:], z)
	concurrentWrites(t, d, model, 20*1024)
	checkDisk(t, d, model)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(qemuRaw(t, "qed", child), model) {
		t.Fatal("child: qemu-img disagrees")
	}
	qemuCheck(t, "qed", child)
	if fileMD5(t, basePath) != baseSum {
		t.Fatal("a write changed the backing file")
	}
}

func qedFeatures(t testing.TB, p string) uint64 {
	t.Helper()
	b := readFile(t, p)
	return binary.LittleEndian.Uint64(b[qedFeaturesOff:])
}

func qedSetFeatures(t testing.TB, p string, v uint64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if _, err := f.WriteAt(b[:], qedFeaturesOff); err != nil {
		t.Fatal(err)
	}
}

func TestQEDNeedCheckAndFeatures(t *testing.T) {
	data := patternDisk(1<<20, 8)
	p := qedFixture(t, data)
	qedSetFeatures(t, p, qedFNeedCheck)
	before := fileMD5(t, p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	checkDisk(t, d, data)
	if info := d.Info(); len(info.Warnings) == 0 {
		t.Fatal("no warning for need-check")
	}
	d.Close()
	if fileMD5(t, p) != before {
		t.Fatal("read-only open of a need-check image changed it")
	}

	// Consistent tables: a read-write open works and Close clears the flag.
	d = mustOpen(t, p, Options{})
	model := append([]byte(nil), data...)
	randomWrites(t, d, model, 20, 3)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if f := qedFeatures(t, p); f&qedFNeedCheck != 0 {
		t.Fatalf("need-check still set: %#x", f)
	}
	if !bytes.Equal(qemuRaw(t, "qed", p), model) {
		t.Fatal("qemu-img disagrees after writing to a checked image")
	}
	qemuCheck(t, "qed", p)

	// Inconsistent tables (an L2 table offset that is the L1 table):
	// refused for writing, with the image untouched.
	img := readFile(t, p)
	l1 := binary.LittleEndian.Uint64(img[40:])
	binary.LittleEndian.PutUint64(img[l1:], l1)
	binary.LittleEndian.PutUint64(img[qedFeaturesOff:], qedFNeedCheck)
	writeFile(t, p, img)
	before = fileMD5(t, p)
	if _, err := Open(p, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("read-write open of an inconsistent image: %v, want ErrUnsupported", err)
	}
	if fileMD5(t, p) != before {
		t.Fatal("refused open changed the image")
	}
	qedSetFeatures(t, p, 0x10)
	if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown feature: %v, want ErrUnsupported", err)
	}
}

func TestQEDCorruptVariants(t *testing.T) {
	p := qedFixture(t, patternDisk(256<<10, 5), "-o", "cluster_size=4096,table_size=2")
	img := readFile(t, p)
	for i, c := range corruptVariants(img, 3, 80) {
		tryCrafted(t, "c"+string(rune('a'+i%26))+".qed", c, readSome)
	}
}

func FuzzQED(f *testing.F) {
	p := qedFixture(f, patternDisk(16<<10, 5), "-o", "cluster_size=4096,table_size=2")
	img := readFile(f, p)
	f.Add(img)
	f.Fuzz(func(t *testing.T, b []byte) { commonFuzzDisk(t, "fuzz.qed", b) })
}

func BenchmarkQEDSeqRead(b *testing.B) { benchReads(b, benchFixture(b, qedFixture), false) }

func BenchmarkQEDRandRead(b *testing.B) { benchReads(b, benchFixture(b, qedFixture), true) }

func BenchmarkQEDOpen2TiB(b *testing.B) { benchOpen(b, "qed", "qed") }
