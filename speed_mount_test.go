package main

// Mount tests of the serve loop vdflat carries in third_party/bazil.org/fuse:
// large requests, requests served where they are read, interrupts.

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// alignedBuf returns n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	skip := (align - int(uintptr(unsafe.Pointer(&b[0]))%align)) % align
	return b[skip : skip+n]
}

// randomImage writes a raw image of random bytes and returns its path
// and content.
func randomImage(t testing.TB, name string, size int, seed int64) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

var readSizeRE = regexp.MustCompile(`<- Read \[[^\]]*\] 0x[0-9a-f]+ ([0-9]+) @`)

// The kernel grants 1 MiB requests (FUSE_MAX_PAGES): 1 MiB O_DIRECT reads
// arrive as requests larger than the 128 KiB bazil used to allow, and the
// data is right.
func TestMountLargeRequests(t *testing.T) {
	img, data := randomImage(t, "disk.raw", 8<<20, 1)
	m := startMount(t, "-d")
	p := m.attach(t, img, "disk")
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := alignedBuf(1 << 20)
	for off := 0; off < len(data); off += len(buf) {
		n, err := syscall.Pread(int(f.Fd()), buf, int64(off))
		if n != len(buf) || err != nil {
			t.Fatalf("pread at %d: %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, data[off:off+n]) {
			t.Fatalf("data differs in the MiB at %d", off)
		}
	}
	f.Close()
	log := m.log()
	if !strings.Contains(log, "requests up to 1024 KiB") {
		t.Errorf("-d does not log 1 MiB requests agreed at INIT:\n%s", firstLines(log, 20))
	}
	largest := 0
	for _, sm := range readSizeRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(sm[1])
		largest = max(largest, n)
	}
	if largest <= 128<<10 {
		t.Fatalf("largest Read request in the -d trace: %d bytes, want more than 128 KiB\n%s", largest, firstLines(log, 40))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// A bounded mix of everything at once: readers of a raw and a qcow2 image
// (1 MiB O_DIRECT and buffered, random ranges), a writer on a third image,
// attach and detach of a fourth under changing names, then unmount. Every
// byte read is checked, and the written image against a model.
func TestMountStress(t *testing.T) {
	rawImg, rawData := randomImage(t, "r.raw", 16<<20, 2)
	qcow := filepath.Join(t.TempDir(), "q.qcow2")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", rawImg, qcow)
	wImg, wData := randomImage(t, "w.raw", 4<<20, 3)
	cImg, cData := randomImage(t, "c.raw", 1<<20, 4)
	m := startMount(t)
	readers := map[string][]byte{
		m.attach(t, rawImg, "raw"): rawData,
		m.attach(t, qcow, "qcow2"): rawData,
	}
	wPath := m.attach(t, wImg, "w")

	const rounds = 40
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	fail := func(format string, args ...any) {
		select {
		case errc <- fmt.Errorf(format, args...):
		default:
		}
	}
	g := 0
	for p, want := range readers {
		for _, direct := range []bool{true, false} {
			g++
			wg.Add(1)
			go func(p string, want []byte, direct bool, seed int64) {
				defer wg.Done()
				flags := os.O_RDONLY
				if direct {
					flags |= syscall.O_DIRECT
				}
				f, err := os.OpenFile(p, flags, 0)
				if err != nil {
					fail("open %s: %v", p, err)
					return
				}
				defer f.Close()
				r := rand.New(rand.NewSource(seed))
				buf := alignedBuf(1 << 20)
				for i := 0; i < rounds*4; i++ {
					off, n := int64(r.Intn(len(want)/4096))*4096, 4096*(1+r.Intn(256))
					if !direct {
						off, n = r.Int63n(int64(len(want))), 1+r.Intn(1<<20)
					}
					got, err := syscall.Pread(int(f.Fd()), buf[:n], off)
					wantN := min(n, len(want)-int(off))
					if err != nil || got != wantN || !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
						fail("%s (direct %v): read %d at %d: got %d, %v; want %d bytes equal to the image", p, direct, n, off, got, err, wantN)
						return
					}
				}
			}(p, want, direct, int64(g))
		}
	}

	model := append([]byte(nil), wData...)
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(wPath, os.O_RDWR, 0)
		if err != nil {
			fail("write-open: %v", err)
			return
		}
		defer f.Close()
		r := rand.New(rand.NewSource(5))
		for i := 0; i < rounds*4; i++ {
			off := r.Int63n(int64(len(model)))
			b := make([]byte, 1+r.Intn(300000))
			r.Read(b)
			n, err := syscall.Pwrite(int(f.Fd()), b, off)
			if want := min(len(b), len(model)-int(off)); n != want || err != nil {
				fail("pwrite %d at %d: %d, %v", len(b), off, n, err)
				return
			}
			copy(model[off:], b[:n])
			if i%16 == 0 {
				if err := f.Sync(); err != nil {
					fail("fsync: %v", err)
					return
				}
			}
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			name := filepath.Join(m.flat, fmt.Sprintf("c%d", i%3))
			if err := os.Symlink(cImg, name); err != nil {
				fail("attach %s: %v", name, err)
				return
			}
			got, err := os.ReadFile(name)
			if err != nil || !bytes.Equal(got, cData) {
				fail("read %s after attach: %d bytes, %v", name, len(got), err)
				return
			}
			if err := os.Remove(name); err != nil {
				fail("detach %s: %v", name, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("%v\n%s", err, m.log())
	}

	if got, err := os.ReadFile(wPath); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("written file read back: %v, first difference at %d", err, firstDiff(got, model))
	}
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	if err := m.wait(); err != nil {
		t.Fatalf("vdflat after unmount: %v\n%s", err, m.log())
	}
	if got, _ := os.ReadFile(wImg); !bytes.Equal(got, model) {
		t.Fatalf("image after unmount differs from the model at %d", firstDiff(got, model))
	}
	for _, p := range []string{rawImg, cImg} {
		if isOpenBy(p) {
			t.Fatalf("%s is still open after the unmount", p)
		}
	}
}

// A reader killed in the middle of a read makes the kernel send an
// interrupt for the request being served; the daemon answers it and
// keeps serving everyone else.
func TestMountReaderKilled(t *testing.T) {
	img, data := randomImage(t, "disk.raw", 64<<20, 6)
	m := startMount(t, "-d")
	p := m.attach(t, img, "disk")
	needTool(t, "dd")
	interrupts := 0
	for i := 0; i < 60 && interrupts < 3; i++ {
		cmd := exec.Command("dd", "if="+p, "of=/dev/null", "bs=1M", "iflag=direct")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+i%20) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		interrupts = strings.Count(m.log(), "<- Interrupt")
	}
	if interrupts == 0 {
		t.Fatalf("no interrupt reached the daemon in 60 killed readers\n%s", firstLines(m.log(), 40))
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after %d interrupts: %d bytes, %v", interrupts, len(got), err)
	}
	if _, err := os.ReadFile(filepath.Join(m.dir, "status")); err != nil {
		t.Fatal(err)
	}
}
