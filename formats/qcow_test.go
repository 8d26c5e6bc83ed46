package formats

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// qcow1Fixture converts data to a qcow v1 image with qemu-img (extra
// arguments such as -B base -F raw are passed through).
func qcow1Fixture(t testing.TB, data []byte, extra ...string) string {
	t.Helper()
	return qemuConvert(t, t.TempDir(), data, "qcow", "img.qcow", extra...)
}

// qcow1CompressedFixture makes a compressed qcow v1 image. qemu-img 7.2 writes
// every cluster and then fails the final zero-length "end of stream"
// compressed write that qcow v1 does not accept (exit status 1, no
// message), so the status is ignored and the result checked against the
// input through qemu-img itself.
func qcow1CompressedFixture(t testing.TB, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeFile(t, src, data)
	dst := filepath.Join(dir, "img.qcow")
	out, err := exec.Command("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow", src, dst).CombinedOutput()
	if _, statErr := os.Stat(dst); statErr != nil {
		t.Fatalf("qemu-img convert -c: %v\n%s", err, out)
	}
	if got := qemuRaw(t, "qcow", dst); !bytes.Equal(got, data) {
		t.Fatalf("qemu-img convert -c -O qcow did not round-trip (%v: %s)", err, out)
	}
	return dst
}

func TestQcow1Read(t *testing.T) {
	for _, size := range []int64{512 * 3, 1<<20 + 7*512, 2<<20 + 4096} {
		data := patternDisk(size, size)
		p := qcow1Fixture(t, data)
		want := qemuRaw(t, "qcow", p)
		d := mustOpen(t, p, Options{ReadOnly: true})
		info := d.Info()
		if info.Format != "qcow" || !info.ReadOnly || info.ClusterSize != 4096 {
			t.Fatalf("info %+v", info)
		}
		checkDisk(t, d, want)
		checkMap(t, d, want, qemuMapData(t, "qcow", p, d.Size()))
		checkConcurrentReads(t, d, want)
		if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
		}
		// A read-write open is still read-only.
		d2 := mustOpen(t, p, Options{})
		if !d2.Info().ReadOnly {
			t.Fatal("qcow v1 opened writable")
		}
		if _, err := d2.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
		}
	}
}

func TestQcow1Compressed(t *testing.T) {
	data := patternDisk(2<<20+3*512, 7)
	p := qcow1CompressedFixture(t, data)
	d := mustOpen(t, p, Options{ReadOnly: true})
	checkDisk(t, d, data)
	checkMap(t, d, data, qemuMapData(t, "qcow", p, d.Size()))
	checkConcurrentReads(t, d, data)
}

func TestQcow1Map(t *testing.T) {
	data := make([]byte, 1<<20)
	copy(data[64<<10:], bytes.Repeat([]byte{7}, 8192))
	p := qcow1Fixture(t, data)
	d := mustOpen(t, p, Options{ReadOnly: true})
	m := d.(Mapper)
	alloc, n, err := m.Map(0, 1<<20)
	if err != nil || alloc || n != 64<<10 {
		t.Fatalf("Map(0) = %v %d %v, want hole of 64 KiB", alloc, n, err)
	}
	alloc, n, err = m.Map(64<<10, 1<<20)
	if err != nil || !alloc || n != 8192 {
		t.Fatalf("Map(64K) = %v %d %v, want 8 KiB of data", alloc, n, err)
	}
}

func TestQcow1Backing(t *testing.T) {
	size := int64(2<<20 + 512)
	base := patternDisk(size, 11)
	top := append([]byte(nil), base...)
	copy(top[100*512:], bytes.Repeat([]byte{0xab}, 70*512))
	copy(top[size-1024:], bytes.Repeat([]byte{0xcd}, 1024))
	clear(top[1<<20 : 1<<20+4096])

	// raw backing file
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.raw")
	writeFile(t, basePath, base)
	topSrc := filepath.Join(dir, "top.raw")
	writeFile(t, topSrc, top)
	child := filepath.Join(dir, "child.qcow")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow", "-B", "base.raw", "-F", "raw", topSrc, child)
	want := qemuRaw(t, "qcow", child)
	if !bytes.Equal(want, top) {
		t.Fatal("qemu-img disagrees with the model")
	}
	d := mustOpen(t, child, Options{ReadOnly: true})
	checkDisk(t, d, want)
	info := d.Info()
	if info.Parent == nil || info.Parent.Format != "raw" {
		t.Fatalf("parent info %+v", info.Parent)
	}

	// qcow backing a qcow (created with -b, then written with qemu-io)
	mid := filepath.Join(dir, "mid.qcow")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow", basePath, mid)
	leaf := filepath.Join(dir, "leaf.qcow")
	qemuImg(t, "create", "-f", "qcow", "-b", "mid.qcow", "-F", "qcow", leaf)
	run(t, "qemu-io", "-f", "qcow", "-c", "write -P 0x5a 4096 8192", "-c", "write -P 0x33 1048576 512", leaf)
	want = qemuRaw(t, "qcow", leaf)
	d = mustOpen(t, leaf, Options{ReadOnly: true})
	checkDisk(t, d, want)
	checkMap(t, d, want, qemuMapData(t, "qcow", leaf, d.Size()))
	if pi := d.Info().Parent; pi == nil || pi.Format != "qcow" {
		t.Fatalf("parent %+v", pi)
	}

	// missing backing file
	removeFile(t, mid)
	if _, err := Open(leaf, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing backing file: %v, want ErrNotExist", err)
	}
}

func TestQcow1Refusals(t *testing.T) {
	p := qcow1Fixture(t, patternDisk(64<<10, 3))
	img := readFile(t, p)
	// encryption
	enc := append([]byte(nil), img...)
	enc[39] = 1
	if _, err := Open(writeTemp(t, "enc.qcow", enc), Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("encrypted: %v, want ErrUnsupported", err)
	}
	// qcow2 is not claimed by the qcow v1 probe
	q2 := filepath.Join(t.TempDir(), "x.qcow2")
	qemuImg(t, "create", "-f", "qcow2", q2, "1M")
	head := readFile(t, q2)
	if qcow1Probe(&ProbeData{Head: head}) {
		t.Fatal("qcow v1 probe claimed a qcow2 image")
	}
	// bad cluster bits
	bad := append([]byte(nil), img...)
	bad[32] = 30
	if _, err := Open(writeTemp(t, "bad.qcow", bad), Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad cluster bits: %v, want ErrCorrupt", err)
	}
	// huge size with a tiny file: the L1 table cannot fit
	huge := append([]byte(nil), img...)
	copy(huge[24:32], []byte{0x3f, 0, 0, 0, 0, 0, 0, 0})
	if _, err := Open(writeTemp(t, "huge.qcow", huge), Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge: %v, want ErrCorrupt", err)
	}
}

func TestQcow1CorruptVariants(t *testing.T) {
	data := patternDisk(256<<10, 5)
	for _, p := range []string{qcow1Fixture(t, data), qcow1CompressedFixture(t, data)} {
		img := readFile(t, p)
		for i, c := range corruptVariants(img, int64(len(img)), 60) {
			tryCrafted(t, "c"+string(rune('a'+i%26))+".qcow", c, readSome)
		}
	}
}

func FuzzQcow1(f *testing.F) {
	data := patternDisk(128<<10, 9)
	for _, p := range []string{qcow1Fixture(f, data), qcow1CompressedFixture(f, data)} {
		img := readFile(f, p)
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, b []byte) { commonFuzzDisk(t, "fuzz.qcow", b) })
}

func BenchmarkQcow1SeqRead(b *testing.B) { benchReads(b, benchFixture(b, qcow1Fixture), false) }

func BenchmarkQcow1RandRead(b *testing.B) { benchReads(b, benchFixture(b, qcow1Fixture), true) }

func BenchmarkQcow1Open2TiB(b *testing.B) { benchOpen(b, "qcow", "qcow") }
