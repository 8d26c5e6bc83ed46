package main

import (
	"fmt"
	"os"
	"os/exec"
)

func fusermountName() string { return "umount" }

func preflightPlatform() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse (%v): load the fusefs kernel module (kldload fusefs)", err)
	}
	return nil
}

func ensureFusermount() (func(), error) { return func() {}, nil }

func lazyUnmount(mountpoint string) error {
	out, err := exec.Command("umount", "-f", mountpoint).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// raiseReadahead is Linux-only: FreeBSD's fusefs reads ahead by its own
// rules.
func raiseReadahead(mountpoint string, kib int) error { return nil }

// mountDev is unknown on FreeBSD: only the mount point's path guards it.
func mountDev(mountpoint string) (uint64, bool) { return 0, false }

func mountReadahead(mountpoint string) string { return "as fusefs decides" }
