package main

import (
	"fmt"
	"os"
	"syscall"
)

// asCaller runs fn for caller c. FreeBSD has no per-thread credentials:
// files are opened with the daemon's rights, so only root and the
// daemon's own user may have anything opened (EPERM for everyone else).
func asCaller(c caller, g mountGuard, fn func() error) error {
	if c.uid != 0 && c.uid != uint32(os.Geteuid()) {
		return fmt.Errorf("only root and %d may attach and open images on this mount: %w", os.Geteuid(), syscall.EPERM)
	}
	return fn()
}

// noatimeAllowed: FreeBSD has no O_NOATIME; only a noatime mount keeps
// access times.
func noatimeAllowed(owner, uid uint32) bool { return false }

const noatimeRule = "FreeBSD has no O_NOATIME; mount the file system noatime"
