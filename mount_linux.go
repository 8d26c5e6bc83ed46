package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// fusermountName is the helper to name in messages.
func fusermountName() string {
	if _, err := exec.LookPath("fusermount3"); err == nil {
		return "fusermount3"
	}
	return "fusermount"
}

func preflightPlatform() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse (%v): load the kernel module (modprobe fuse), or in a container pass --device /dev/fuse --cap-add SYS_ADMIN; without FUSE, use vdflat flatten", err)
	}
	_, err3 := exec.LookPath("fusermount3")
	_, err2 := exec.LookPath("fusermount")
	if err3 != nil && err2 != nil {
		return errors.New("neither fusermount3 nor fusermount is installed: install the fuse3 package (Debian/Ubuntu: apt-get install fuse3; Fedora: dnf install fuse3)")
	}
	return nil
}

// ensureFusermount makes "fusermount", which the FUSE library runs, find
// fusermount3 on hosts that have only FUSE 3: a private directory with a
// link is put first on PATH. The returned function removes it.
func ensureFusermount() (func(), error) {
	if _, err := exec.LookPath("fusermount"); err == nil {
		return func() {}, nil
	}
	fm3, err := exec.LookPath("fusermount3")
	if err != nil {
		return nil, errors.New("fusermount3 not found: install the fuse3 package")
	}
	dir, err := os.MkdirTemp("", "vdflat-fusermount-")
	if err != nil {
		return nil, err
	}
	if err := os.Symlink(fm3, filepath.Join(dir, "fusermount")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() { os.RemoveAll(dir) }, nil
}

func lazyUnmount(mountpoint string) error {
	out, err := exec.Command(fusermountName(), "-u", "-z", mountpoint).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
