package main

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"bazil.org/fuse"
)

// callerMayRead checks that the process making a request could itself
// read target, since the daemon opens it with its own (often root's)
// rights: search permission on every directory above it and read
// permission on the file.
func callerMayRead(target string, h fuse.Header) error {
	if h.Uid == 0 {
		return nil
	}
	groups := append(callerGroups(h.Pid), h.Gid)
	allowed := func(p string, bit uint32) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := uint32(st.Mode().Perm())
		switch {
		case sys.Uid == h.Uid:
			perm >>= 6
		case slices.Contains(groups, sys.Gid):
			perm >>= 3
		}
		if perm&bit == 0 {
			return &os.PathError{Op: "attach", Path: p, Err: syscall.EACCES}
		}
		return nil
	}
	for d := filepath.Dir(target); ; d = filepath.Dir(d) {
		if err := allowed(d, 1); err != nil {
			return err
		}
		if d == "/" || d == "." {
			break
		}
	}
	return allowed(target, 4)
}
