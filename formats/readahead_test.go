package formats

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadaheadAgainstQemu reads a zlib-compressed qcow2 made by qemu-img
// through the readahead, the way the kernel does (sequential 128 KiB
// requests, two streams at once) and at random, and compares with qemu's
// own conversion to raw.
func TestReadaheadAgainstQemu(t *testing.T) {
	dir := t.TempDir()
	size := int64(5<<20 + 3*SectorSize) // not a multiple of the block size
	src := writeTemp(t, "src.raw", patternDisk(size, 7))
	img := filepath.Join(dir, "z.qcow2")
	qemuImg(t, "convert", "-c", "-f", "raw", "-O", "qcow2", src, img)
	want := qemuRaw(t, "qcow2", img)

	d := Readahead(mustOpen(t, img, Options{ReadOnly: true}))
	defer d.Close()
	checkDisk(t, d, want)
	checkConcurrentReads(t, d, want)

	var wg sync.WaitGroup
	for _, start := range []int64{0, 2 << 20} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			for off := start; off < roundUp(size, SectorSize); off += int64(len(buf)) {
				n := min(int64(len(buf)), roundUp(size, SectorSize)-off)
				got, err := d.ReadAt(buf[:n], off)
				if err != nil || int64(got) != n {
					t.Errorf("ReadAt(%d at %d) = %d, %v", n, off, got, err)
					return
				}
				if !bytes.Equal(buf[:min(n, size-off)], want[off:min(off+n, size)]) {
					t.Errorf("stream from %d: mismatch at %d", start, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	ra := d.(*readahead)
	ra.mu.Lock()
	held := len(ra.blocks)
	ra.mu.Unlock()
	if held == 0 || held > raMaxBlocks {
		t.Errorf("%d blocks held after sequential reads, want 1..%d", held, raMaxBlocks)
	}
}

// failingDisk is a memory disk whose reads fail when they touch bad, and
// which counts reads.
type failingDisk struct {
	Disk
	data  []byte
	bad   int64 // offset of a sector that fails to read; -1 for none
	reads atomic.Int64
	gate  chan struct{} // when set, reads past the first block wait for it

	inflight atomic.Int64
	closed   atomic.Bool
	mu       sync.RWMutex // data: reads ahead may run while a write does
}

var errBadSector = errors.New("bad sector")

func (f *failingDisk) Size() int64 { return int64(len(f.data)) }
func (f *failingDisk) Info() Info  { return Info{Format: "test", Size: f.Size()} }
func (f *failingDisk) Close() error {
	f.closed.Store(true)
	return nil
}
func (f *failingDisk) ReadAt(p []byte, off int64) (int, error) {
	f.reads.Add(1)
	f.inflight.Add(1)
	defer f.inflight.Add(-1)
	if f.gate != nil && off >= raBlockSize {
		<-f.gate
	}
	if f.bad >= 0 && off <= f.bad && f.bad < off+int64(len(p)) {
		return 0, errBadSector
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return copy(p, f.data[off:]), nil
}
func (f *failingDisk) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return copy(f.data[off:], p), nil
}

// A bad sector inside a block read ahead fails only the reads that
// touch it; the rest of that block still reads.
func TestReadaheadErrorStaysInItsRange(t *testing.T) {
	fd := &failingDisk{data: patternDisk(4*raBlockSize, 3), bad: raBlockSize + 64*SectorSize}
	d := Readahead(fd)
	defer d.Close()
	buf := make([]byte, 128<<10)
	for off := int64(0); off < fd.Size(); off += int64(len(buf)) {
		_, err := d.ReadAt(buf, off)
		touches := off <= fd.bad && fd.bad < off+int64(len(buf))
		if touches != errors.Is(err, errBadSector) {
			t.Fatalf("read at %d: err %v, touches the bad sector: %v", off, err, touches)
		}
		if err == nil && !bytes.Equal(buf, fd.data[off:off+int64(len(buf))]) {
			t.Fatalf("read at %d: wrong data", off)
		}
	}
}

// Writes drop what was read ahead, so later reads see the new bytes.
func TestReadaheadWriteDropsBlocks(t *testing.T) {
	fd := &failingDisk{data: patternDisk(4*raBlockSize, 4), bad: -1}
	d := Readahead(fd)
	defer d.Close()
	buf := make([]byte, 64<<10)
	for off := int64(0); off < 4*int64(len(buf)); off += int64(len(buf)) {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	patch := bytes.Repeat([]byte{0xAB}, SectorSize)
	at := int64(raBlockSize + 8*SectorSize) // in a block read ahead
	if _, err := d.WriteAt(patch, at); err != nil {
		t.Fatal(err)
	}
	for off := 4 * int64(len(buf)); off < fd.Size(); off += int64(len(buf)) {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		fd.mu.RLock()
		same := bytes.Equal(buf, fd.data[off:off+int64(len(buf))])
		fd.mu.RUnlock()
		if !same {
			t.Fatalf("read at %d after a write: stale data", off)
		}
	}
}

// Random reads go straight to the disk: nothing is read ahead for them.
func TestReadaheadRandomReadsPassThrough(t *testing.T) {
	fd := &failingDisk{data: patternDisk(16*raBlockSize, 5), bad: -1}
	d := Readahead(fd)
	defer d.Close()
	buf := make([]byte, 4096)
	for i, blk := range []int64{9, 2, 14, 5, 11, 0, 7} {
		if _, err := d.ReadAt(buf, blk*raBlockSize+4096); err != nil {
			t.Fatal(err)
		}
		if got := fd.reads.Load(); got != int64(i+1) {
			t.Fatalf("after %d random reads the disk saw %d reads", i+1, got)
		}
	}
}

// Close returns only once the blocks being read ahead are done, so the
// caller may close the disk right after it; the disk itself stays open.
func TestReadaheadCloseWaits(t *testing.T) {
	fd := &failingDisk{data: patternDisk(8*raBlockSize, 6), bad: -1, gate: make(chan struct{})}
	d := Readahead(fd)
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 4096} { // the second read is sequential: blocks 1-3 are read ahead
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// The blocks read ahead start in goroutines: wait until one reaches the gate.
	for deadline := time.Now().Add(10 * time.Second); fd.inflight.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing is being read ahead")
		}
	}
	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	time.Sleep(50 * time.Millisecond) // time enough for a Close that does not wait
	select {
	case <-closed:
		t.Fatalf("Close returned with %d reads in flight", fd.inflight.Load())
	default:
	}
	close(fd.gate)
	<-closed
	if n := fd.inflight.Load(); n != 0 {
		t.Fatalf("%d reads in flight after Close", n)
	}
	if fd.closed.Load() {
		t.Fatal("Close closed the disk under it")
	}
}

// BenchmarkReadaheadCompressedRead reads a zlib qcow2 in 1 MiB sequential
// reads (as flatten does) directly and through Readahead.
func BenchmarkReadaheadCompressedRead(b *testing.B) {
	b.Run("direct", func(b *testing.B) { benchReads(b, qcow2BenchImage(b, true), false) })
	b.Run("readahead", func(b *testing.B) {
		d := Readahead(qcow2BenchImage(b, true))
		defer d.Close()
		benchReads(b, d, false)
	})
}
