package formats

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
)

// A FUSE daemon serving images must never look up a path inside its own
// mount while it serves a request (the kernel may hold that directory
// locked for the very request: the lookup would wait forever). Options
// carry CheckPath for the paths Open is given; the files an image names
// itself (extents, segments, data files, volumes, parents found by
// search) are looked up deep inside the formats, so every lookup of the
// package goes through the functions below, which ask the guard first.

var pathGuard atomic.Pointer[func(path string) error]

// SetPathGuard makes every file lookup of this package ask check first
// and fail with its error. nil removes the guard. A process has one.
func SetPathGuard(check func(path string) error) {
	if check == nil {
		pathGuard.Store(nil)
		return
	}
	pathGuard.Store(&check)
}

// guardPath asks the guard about p, made absolute.
func guardPath(p string) error {
	check := pathGuard.Load()
	if check == nil {
		return nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	return (*check)(abs)
}

func statPath(p string) (fs.FileInfo, error) {
	if err := guardPath(p); err != nil {
		return nil, err
	}
	return os.Stat(p)
}

func lstatPath(p string) (fs.FileInfo, error) {
	if err := guardPath(p); err != nil {
		return nil, err
	}
	return os.Lstat(p)
}

func readDirPath(p string) ([]os.DirEntry, error) {
	if err := guardPath(p); err != nil {
		return nil, err
	}
	return os.ReadDir(p)
}

func evalSymlinksPath(p string) (string, error) {
	if err := guardPath(p); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}
