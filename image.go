package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	overlay  string // with --overlay: the qcow2 file that takes every write
	opts     formats.Options
	writable bool // format, variant, files and --read-only allow writing
	size     int64
	owner    caller     // who attached it: read-only reopens are done with their rights
	guard    mountGuard // where the mount is, so no reopen looks inside it
	files    []fileID   // every file of the chain
	written  []fileID   // the files a writer writes (none with an overlay)
	warnings []string   // found at attach, besides the format's own

	mu     sync.RWMutex // readers hold it shared across I/O; only the reopen takes it exclusively
	disk   formats.Disk
	info   formats.Info
	mtime  time.Time
	blocks int64 // 512-byte blocks of real allocation
	uid    uint32
	gid    uint32
	perm   uint32 // the image file's owner, group and permission bits

	lazy       *lazyDisk // a point in time: its disk is open only while a handle is (snapshots.go)
	writeLocks rangeLock
	qemuLocks  *imageLocks // held while open for writing

	refused atomic.Pointer[error] // a write that would have hit metadata: read-only from then on
}

// openImage opens path read-only with its whole chain, for user uid.
// With an overlay path, writes will go to that qcow2 file, made at the
// first write-open; an overlay that exists already is resumed if it is
// backed by path.
func openImage(path string, opts formats.Options, readOnly bool, overlay string, uid uint32) (*image, error) {
	opts.ReadOnly = true
	im := &image{path: path, overlay: overlay, opts: opts}
	d, err := formats.Open(path, opts)
	if err != nil {
		return nil, err
	}
	im.size = d.Size()
	if im.overlayExists() {
		d.Close()
		if d, err = im.openOverlay(true); err != nil {
			return nil, err
		}
	}
	im.disk = d
	info, complete := formats.QuickInfo(d)
	im.setInfo(info)
	if overlay != "" {
		im.writable = !readOnly && syscall.Access(filepath.Dir(overlay), 2 /* W_OK */) == nil
	} else {
		im.writable = !readOnly && formats.CanWrite(d) && filesWritable(info.Files)
	}
	im.identify(uid)
	if !complete {
		time.AfterFunc(allocCountDelay, func() { im.completeInfo(d) })
	}
	return im, nil
}

// identify records the device and inode of every file of the chain, for
// the one-writer rule across attachments, and warns about files whose
// access time uid's reads may change and files another process writes.
func (im *image) identify(uid uint32) {
	for level := &im.info; level != nil; level = level.Parent {
		for _, p := range level.Files {
			id, ok := fileIDOf(p)
			if !ok {
				continue
			}
			im.files = append(im.files, id)
			if level == &im.info && im.overlay == "" {
				im.written = append(im.written, id)
			}
		}
	}
	im.warnings = append(im.warnings, atimeWarnings(&im.info, uid)...)
	for _, p := range im.info.Files {
		if foreignWriter(p) {
			im.warnings = append(im.warnings, fmt.Sprintf("%s is open for writing by another process (it holds qemu's write lock): what is read may change meanwhile", p))
		}
	}
}

func fileIDOf(p string) (fileID, bool) {
	st, err := os.Stat(p)
	if err != nil {
		return fileID{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(sys.Dev), ino: uint64(sys.Ino)}, true
}

// writtenFiles are the paths a writer writes: the overlay, or the top
// image's files.
func (im *image) writtenFiles() []string {
	if im.overlay != "" {
		return []string{im.overlay}
	}
	return im.Info().Files
}

func (im *image) overlayExists() bool {
	if im.overlay == "" {
		return false
	}
	_, err := os.Stat(im.overlay)
	return err == nil
}

// openOverlay opens the overlay and checks that it is backed by the image.
func (im *image) openOverlay(readOnly bool) (formats.Disk, error) {
	opts := im.opts
	opts.ReadOnly = readOnly
	d, err := formats.Open(im.overlay, opts)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	info := d.Info()
	if info.Format != "qcow2" || info.Parent == nil || filepath.Clean(info.Parent.Path) != im.path || d.Size() != im.size {
		d.Close()
		backing := "nothing"
		if info.Parent != nil {
			backing = info.Parent.Path
		}
		return nil, fmt.Errorf("overlay %s is backed by %s, not by %s (%s of %d bytes): refusing it: %w",
			im.overlay, backing, im.path, info.Format, d.Size(), formats.ErrCorrupt)
	}
	return d, nil
}

// openTarget opens what reads and writes go to: the overlay once it
// exists, else the image itself.
func (im *image) openTarget(readOnly bool) (formats.Disk, error) {
	if im.overlayExists() {
		return im.openOverlay(readOnly)
	}
	opts := im.opts
	opts.ReadOnly = readOnly
	return formats.Open(im.path, opts)
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
func (im *image) refresh() { im.setInfo(im.disk.Info()) }

// allocCountDelay is how long after attach the allocation is counted.
// Counting can mean reading a table of megabytes; right after attach the
// first requests (a stat, the partition table) would wait for it, since
// bazil's reader thread keeps one of the daemon's two Ps in read(2).
const allocCountDelay = time.Second

// completeInfo counts the allocation that attaching left out while the
// image is already served; until then st_blocks is the image files' own.
func (im *image) completeInfo(d formats.Disk) {
	im.mu.RLock()
	if im.disk != d { // reopened (which counted it) or closed meanwhile
		im.mu.RUnlock()
		return
	}
	info := d.Info()
	im.mu.RUnlock()
	im.mu.Lock()
	if im.disk == d {
		im.setInfo(info)
	}
	im.mu.Unlock()
}

// setInfo sets what getattr shows from info and the image files.
func (im *image) setInfo(info formats.Info) {
	im.info = info
	var blocks int64
	for i, f := range im.info.Files {
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		if i == 0 {
			im.mtime = st.ModTime()
			im.perm = uint32(st.Mode().Perm())
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				im.uid, im.gid = sys.Uid, sys.Gid
			}
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

// owners is the image file's owner, group and permission bits, which
// the flattened file shows.
func (im *image) owners() (uid, gid, perm uint32) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return im.uid, im.gid, im.perm
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
		return n, readError(len(p), off, err)
	}
	return n, nil
}

// readError is out of line to keep ReadAt's frame small (see readFailed).
func readError(n int, off int64, err error) error {
	return fmt.Errorf("read %d bytes at %d: %w", n, off, err)
}

// WriteAt writes any byte range within the disk.
func (im *image) WriteAt(p []byte, off int64) (int, error) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	if err := im.refusal(); err != nil {
		return 0, err
	}
	n, err := writeBytes(im.disk, &im.writeLocks, p, off)
	if formats.IsOverlap(err) {
		im.refuseWrites(err)
	}
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

// caller is whom a request comes from: files opened for it are opened
// with its rights (see asCaller).
type caller struct{ uid, gid, pid uint32 }

// daemon is the daemon itself, attaching the images of its command line.
func daemon() caller {
	return caller{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), pid: uint32(os.Getpid())}
}

// beginWrite reopens the image read-write with the rights of c, the
// process opening the flattened file for writing: only what c may write
// is written. The caller guarantees no other handle is open.
func (im *image) beginWrite(c caller) error {
	if !im.isWritable() {
		return syscall.EROFS
	}
	var d formats.Disk
	var locks *imageLocks
	err := asCaller(c, im.guard, func() error {
		if im.overlay != "" && !im.overlayExists() {
			format := formats.QemuFormatName(im.Info().Format)
			if err := formats.CreateOverlay(im.overlay, im.path, format, im.size); err != nil {
				return fmt.Errorf("creating overlay: %w", err)
			}
			log.Printf("%s: writes go to the new overlay %s", im.path, im.overlay)
		}
		var err error
		if locks, err = lockForWriting(im.writtenFiles()); err != nil {
			return err
		}
		if d, err = im.openTarget(false); err != nil {
			locks.release()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("reopening read-write: %w", err)
	}
	if d.Size() != im.size {
		d.Close()
		locks.release()
		return fmt.Errorf("reopening read-write: size changed from %d to %d: %w", im.size, d.Size(), formats.ErrCorrupt)
	}
	im.mu.Lock()
	old := im.disk
	im.disk = d
	im.qemuLocks = locks
	im.refresh()
	im.mu.Unlock()
	return old.Close()
}

// endWrite flushes and closes the read-write disk and returns to a
// read-only one.
func (im *image) endWrite() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	ferr := im.disk.Close()
	im.qemuLocks.release()
	im.qemuLocks = nil
	var d formats.Disk
	err := asCaller(im.owner, im.guard, func() error {
		var err error
		d, err = im.openTarget(true)
		return err
	})
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
	err := im.disk.Close()
	im.qemuLocks.release()
	im.qemuLocks = nil
	im.disk = brokenDisk{size: im.size, err: os.ErrClosed}
	return err
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
