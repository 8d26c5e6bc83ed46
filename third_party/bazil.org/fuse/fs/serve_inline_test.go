package fs_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"bazil.org/fuse/fs/fstestutil"
)

// bigFile serves content, recording the largest Read request.
type bigFile struct {
	fstestutil.File
	content []byte

	mu      sync.Mutex
	largest int
}

func (f *bigFile) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = 0o444
	a.Size = uint64(len(f.content))
	return nil
}

func (f *bigFile) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	f.mu.Lock()
	if req.Size > f.largest {
		f.largest = req.Size
	}
	f.mu.Unlock()
	if req.Offset >= int64(len(f.content)) {
		return nil
	}
	// resp.Data comes from ReadRequest.DataBuffer: fill it in place.
	n := copy(resp.Data[:req.Size], f.content[req.Offset:])
	resp.Data = resp.Data[:n]
	return nil
}

// Reads served where they are read, with requests up to MaxIOSize,
// replied to from the request's own buffer: the bytes arrive intact, and
// requests larger than 128 KiB arrive where the kernel grants them.
func TestServeInlineLargeReads(t *testing.T) {
	maybeParallel(t)
	content := make([]byte, 8<<20)
	for i := range content {
		content[i] = byte(i * 7 / 3)
	}
	f := &bigFile{content: content}
	var mu sync.Mutex
	inline := map[string]int{}
	conf := &fs.Config{
		ServeInline: func(r fuse.Request) bool {
			_, ok := r.(*fuse.ReadRequest)
			if ok {
				mu.Lock()
				inline["read"]++
				mu.Unlock()
			}
			return ok
		},
		Readers: 3,
	}
	mnt, err := fstestutil.MountedT(t, fstestutil.SimpleFS{&fstestutil.ChildMap{"child": f}}, conf,
		fuse.MaxIOSize(1<<20), fuse.MaxReadahead(1<<20), fuse.AsyncRead())
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	// O_DIRECT: each read(2) of 1 MiB is sent as it is, not as
	// readahead (which the kernel keeps to 128 KiB here).
	file, err := os.OpenFile(mnt.Dir+"/child", os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	buf := make([]byte, 1<<20+4096)
	buf = buf[4096-int(uintptr(unsafe.Pointer(&buf[0]))%4096):][:1<<20]
	for off := 0; off < len(content); off += len(buf) {
		n, err := file.ReadAt(buf, int64(off))
		if n != len(buf) || err != nil {
			t.Fatalf("read at %d: %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, content[off:off+n]) {
			t.Fatalf("content differs in the MiB at %d", off)
		}
	}
	mu.Lock()
	n := inline["read"]
	mu.Unlock()
	if n == 0 {
		t.Error("no Read request was served inline")
	}
	f.mu.Lock()
	largest := f.largest
	f.mu.Unlock()
	if max := mnt.Conn.MaxIOSize(); max > 128<<10 && largest <= 128<<10 {
		t.Errorf("largest Read request %d bytes with MaxIOSize %d granted", largest, max)
	}
	t.Logf("MaxIOSize %d, largest Read %d, %d reads inline", mnt.Conn.MaxIOSize(), largest, n)
}

// A read served through DataBuffer allocates no buffer for its data: the
// bytes allocated per 1 MiB read stay far below its size.
func TestServeReadNoBufferAlloc(t *testing.T) {
	f := &bigFile{content: make([]byte, 8<<20)}
	conf := &fs.Config{
		Debug:       func(interface{}) {}, // the test logger allocates
		ServeInline: func(r fuse.Request) bool { _, ok := r.(*fuse.ReadRequest); return ok },
		Readers:     2,
	}
	mnt, err := fstestutil.MountedT(t, fstestutil.SimpleFS{&fstestutil.ChildMap{"child": f}}, conf, fuse.MaxIOSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	file, err := os.OpenFile(mnt.Dir+"/child", os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	buf := make([]byte, 1<<20+4096)
	buf = buf[4096-int(uintptr(unsafe.Pointer(&buf[0]))%4096):][:1<<20]
	const n = 200
	for i := 0; i < 20; i++ { // fill the buffer pools
		file.ReadAt(buf, 0)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		if _, err := file.ReadAt(buf, int64(i%8)<<20); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	perRead := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes in %.1f allocations per read of %d bytes", perRead, float64(after.Mallocs-before.Mallocs)/n, len(buf))
	if perRead > 16<<10 {
		t.Fatalf("%d bytes allocated per 1 MiB read", perRead)
	}
}
