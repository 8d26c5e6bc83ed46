package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"vdflat/formats"
)

// image is one attached image: a formats.Disk plus what the mount needs
// around it. It is opened read-only at attach; the first write-open
// reopens it read-write and the last writer's release returns it to
// read-only, so attaching and reading never modify the evidence.
type image struct {
	path     string // absolute path of the attach target
	opts     formats.Options
	writable bool // format, variant, files and --read-only allow writing
	size     int64

	mu     sync.RWMutex // readers hold it shared across I/O; only the reopen takes it exclusively
	disk   formats.Disk
	info   formats.Info
	mtime  time.Time
	blocks int64 // 512-byte blocks of real allocation

	writeLocks rangeLock
}

// openImage opens path read-only with its whole chain.
func openImage(path string, opts formats.Options, readOnly bool) (*image, error) {
	opts.ReadOnly = true
	d, err := formats.Open(path, opts)
	if err != nil {
		return nil, err
	}
	im := &image{path: path, opts: opts, disk: d, size: d.Size()}
	im.refresh()
	im.writable = !readOnly && formats.CanWrite(d) && filesWritable(im.info.Files)
	return im, nil
}

// filesWritable reports whether the daemon may write every file of the
// top image.
func filesWritable(files []string) bool {
	for _, f := range files {
		if syscall.Access(f, 2 /* W_OK */) != nil {
			return false
		}
	}
	return len(files) > 0
}

// refresh rereads what getattr shows: Info, mtime and allocation.
// Called with mu held exclusively, or before the image is shared.
func (im *image) refresh() {
	im.info = im.disk.Info()
	var blocks int64
	for i, f := range im.info.Files {
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		if i == 0 {
			im.mtime = st.ModTime()
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			blocks += int64(sys.Blocks)
		}
	}
	if im.info.Allocated >= 0 {
		blocks = (im.info.Allocated + 511) / 512
	}
	im.blocks = blocks
}

func (im *image) Size() int64 { return im.size }

func (im *image) Info() formats.Info {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return im.info
}

func (im *image) attrs() (mtime time.Time, blocks int64) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return im.mtime, im.blocks
}

// ReadAt reads any byte range; it runs in parallel with other reads.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	n, err := readBytes(im.disk, p, off)
	if err != nil {
		return n, fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
	}
	return n, nil
}

// WriteAt writes any byte range within the disk.
func (im *image) WriteAt(p []byte, off int64) (int, error) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	n, err := writeBytes(im.disk, &im.writeLocks, p, off)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		return n, fmt.Errorf("write %d bytes at %d: %w", len(p), off, err)
	}
	return n, err
}

// partitions reads the disk's partition table.
func (im *image) partitions() ([]formats.Partition, error) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return formats.Partitions(im.disk)
}

func (im *image) Flush() error {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return im.disk.Flush()
}

// beginWrite reopens the image read-write. The caller guarantees no other
// handle is open.
func (im *image) beginWrite() error {
	if !im.writable {
		return syscall.EROFS
	}
	opts := im.opts
	opts.ReadOnly = false
	d, err := formats.Open(im.path, opts)
	if err != nil {
		return fmt.Errorf("reopening read-write: %w", err)
	}
	if d.Size() != im.size {
		d.Close()
		return fmt.Errorf("reopening read-write: size changed from %d to %d: %w", im.size, d.Size(), formats.ErrCorrupt)
	}
	im.mu.Lock()
	old := im.disk
	im.disk = d
	im.refresh()
	im.mu.Unlock()
	return old.Close()
}

// endWrite flushes and closes the read-write disk and returns to a
// read-only one.
func (im *image) endWrite() error {
	opts := im.opts
	opts.ReadOnly = true
	im.mu.Lock()
	defer im.mu.Unlock()
	ferr := im.disk.Close()
	d, err := formats.Open(im.path, opts)
	if err != nil {
		// Keep serving nothing rather than a closed disk: reads fail with EIO.
		im.disk = brokenDisk{size: im.size, err: err}
		return fmt.Errorf("reopening read-only after writing: %w", err)
	}
	im.disk = d
	im.refresh()
	return ferr
}

func (im *image) Close() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.disk.Close()
}

// brokenDisk stands in for a disk that could not be reopened.
type brokenDisk struct {
	size int64
	err  error
}

func (b brokenDisk) Size() int64                            { return b.size }
func (b brokenDisk) ReadAt(p []byte, _ int64) (int, error)  { return 0, b.err }
func (b brokenDisk) WriteAt(p []byte, _ int64) (int, error) { return 0, b.err }
func (b brokenDisk) Flush() error                           { return b.err }
func (b brokenDisk) Close() error                           { return nil }
func (b brokenDisk) Info() formats.Info {
	return formats.Info{Format: "unavailable", Size: b.size, Allocated: -1}
}
