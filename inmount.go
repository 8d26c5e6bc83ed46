package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Nothing a request does may look a path up inside the mount serving
// it: the kernel holds the directory of a symlink request locked, and a
// stat there waits for that request forever. Paths from outside (attach
// targets, parents named by images) are therefore checked before use,
// without looking anything up inside the mount.

// maxSymlinks bounds the links followed while resolving one path, as the
// kernel's own 40.
const maxSymlinks = 40

// mountGuard knows where the mount is.
type mountGuard struct {
	dir string // the mount point, symlinks resolved; "" before mounting
}

// inside reports whether the clean absolute path p is the mount point
// or below it.
func (g mountGuard) inside(p string) bool {
	if g.dir == "" {
		return false
	}
	return p == g.dir || g.dir == "/" || strings.HasPrefix(p, g.dir+"/")
}

// check refuses with ELOOP a path that is, or resolves through symlinks
// to, a path inside the mount, or that crosses another mount of the same
// file system (a bind mount of it). It resolves one component at a time
// and compares each with the mount point before looking at it, so it
// never looks anything up inside the mount. A path that does not exist
// passes: opening it will say so.
func (g mountGuard) check(p string) error {
	if g.dir == "" {
		return nil
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s: not an absolute path: %w", p, syscall.EINVAL)
	}
	if g.inside(filepath.Clean(p)) {
		return g.refuse(p, p)
	}
	dev, devKnown := mountDev(g.dir)
	done, rest, links := "/", p, 0
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, comp)
		if g.inside(next) {
			return g.refuse(p, next)
		}
		st, err := os.Lstat(next)
		if err != nil {
			return nil
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && devKnown && uint64(sys.Dev) == dev {
			return g.refuse(p, next)
		}
		if st.Mode()&os.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxSymlinks {
			return &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		link, err := os.Readlink(next)
		if err != nil {
			return nil
		}
		if filepath.IsAbs(link) {
			done = "/"
		}
		rest = link + "/" + rest
	}
	return nil
}

func (g mountGuard) refuse(p, at string) error {
	if p == at {
		return fmt.Errorf("%s is inside this mount (%s), which cannot serve itself: %w", p, g.dir, syscall.ELOOP)
	}
	return fmt.Errorf("%s resolves to %s, inside this mount (%s), which cannot serve itself: %w", p, at, g.dir, syscall.ELOOP)
}
