package main

import (
	"fmt"
	"os"
	"syscall"

	"vdflat/formats"
)

// qemu's image locks, as its file-posix driver takes them: open file
// description locks (shared, one byte each) at 100+i for each permission
// i a user holds and at 200+i for each permission it will not share
// with others. Taking the same locks keeps qemu from writing an image
// vdflat writes, and honouring them keeps vdflat from writing one qemu
// uses.
const (
	qemuLockPermBase   = 100
	qemuLockSharedBase = 200

	permConsistentRead = 0
	permWrite          = 1
	permWriteUnchanged = 2
	permResize         = 3
)

var qemuPermNames = [...]string{"consistent read", "write", "write unchanged", "resize"}

const (
	fOFDGetlk = 36 // F_OFD_GETLK
	fOFDSetlk = 37 // F_OFD_SETLK
)

// A writer holds consistent read, write and write unchanged, and shares
// neither write nor resize: what qemu's own writers do.
var (
	writerHolds     = []int{permConsistentRead, permWrite, permWriteUnchanged}
	writerNotShared = []int{permWrite, permResize}
)

// imageLocks are qemu's write locks on the files of an image, held on
// descriptors of their own for as long as vdflat writes the image.
type imageLocks struct{ files []*os.File }

// lockForWriting takes qemu's write locks on files, or fails with
// ETXTBSY naming the lock another process holds.
func lockForWriting(paths []string) (*imageLocks, error) {
	l := &imageLocks{}
	for _, p := range paths {
		f, err := formats.OpenImageFile(p, false)
		if err != nil {
			l.release()
			return nil, err
		}
		l.files = append(l.files, f)
		if err := checkQemuLocks(f); err != nil {
			l.release()
			return nil, err
		}
		var bytes []int
		for _, i := range writerHolds {
			bytes = append(bytes, qemuLockPermBase+i)
		}
		for _, i := range writerNotShared {
			bytes = append(bytes, qemuLockSharedBase+i)
		}
		for _, off := range bytes {
			if err = ofdLock(f, off, syscall.F_RDLCK); err != nil {
				break
			}
		}
		if err != nil {
			l.release()
			return nil, fmt.Errorf("%s: taking qemu's write lock: %w", p, err)
		}
	}
	return l, nil
}

// checkQemuLocks fails when another process holds a permission a writer
// needs, or refuses to share one.
func checkQemuLocks(f *os.File) error {
	for _, i := range writerHolds {
		if held, err := ofdHeld(f, qemuLockSharedBase+i); err != nil || held {
			return lockConflict(f.Name(), fmt.Sprintf("does not share %q (byte %d)", qemuPermNames[i], qemuLockSharedBase+i), err)
		}
	}
	for _, i := range writerNotShared {
		if held, err := ofdHeld(f, qemuLockPermBase+i); err != nil || held {
			return lockConflict(f.Name(), fmt.Sprintf("holds %q (byte %d)", qemuPermNames[i], qemuLockPermBase+i), err)
		}
	}
	return nil
}

func lockConflict(path, what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: testing qemu's image locks: %w", path, err)
	}
	return fmt.Errorf("%s: another process %s in qemu's image lock: %w", path, what, syscall.ETXTBSY)
}

// foreignWriter says whether another process holds qemu's write lock on
// path (an attach goes on, with a warning).
func foreignWriter(path string) bool {
	f, err := formats.OpenImageFile(path, false)
	if err != nil {
		return false
	}
	defer f.Close()
	held, err := ofdHeld(f, qemuLockPermBase+permWrite)
	return err == nil && held
}

func (l *imageLocks) release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close() // closing the description drops its locks
	}
	l.files = nil
}

func ofdLock(f *os.File, off int, typ int16) error {
	lk := syscall.Flock_t{Type: typ, Whence: 0, Start: int64(off), Len: 1}
	return syscall.FcntlFlock(f.Fd(), fOFDSetlk, &lk)
}

// ofdHeld reports whether an exclusive lock on byte off would conflict
// with a lock someone else holds.
func ofdHeld(f *os.File, off int) (bool, error) {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(off), Len: 1}
	if err := syscall.FcntlFlock(f.Fd(), fOFDGetlk, &lk); err != nil {
		return false, err
	}
	return lk.Type != syscall.F_UNLCK, nil
}
