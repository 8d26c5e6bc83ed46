package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"unsafe"
)

// asCaller runs fn with the file system rights of caller c: on an OS
// thread of its own whose fsuid, fsgid and supplementary groups are the
// caller's, so every file fn opens (target, parents, extents, segments)
// is opened as the caller would open it, and the daemon's own rights are
// never lent out. When the daemon may, that thread also gets a private
// mount namespace without this mount (nor its bind mounts): whatever path
// an image names, nothing fn does can look a path up inside the mount.
//
// fn must do all its work on the calling goroutine. The thread is never
// unlocked: with its changed credentials and namespace it exits with the
// goroutine.
func asCaller(c caller, g mountGuard, fn func() error) error {
	if os.Geteuid() != 0 {
		// Without privileges the thread cannot change identity: the
		// daemon's user may act as itself, nobody else may act at all.
		if c.uid != uint32(os.Geteuid()) {
			return fmt.Errorf("only %d may attach and open images on this mount: %w", os.Geteuid(), syscall.EPERM)
		}
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := g.detachMount(); err != nil {
			errc <- err
			return
		}
		if err := becomeCaller(c); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// becomeCaller gives the current thread c's file system identity, with
// raw system calls that change this thread only (Go's syscall.Setgroups
// and friends change every thread of the process).
func becomeCaller(c caller) error {
	if c.uid == 0 {
		return nil
	}
	groups := callerGroups(c.pid)
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("taking the caller's groups: %w", e)
	}
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(c.gid), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(c.uid), 0, 0)
	// setfsuid reports no errors; asking with an invalid id returns the
	// current one.
	uid, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0)
	gid, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, ^uintptr(0), 0, 0)
	if uint32(uid) != c.uid || uint32(gid) != c.gid {
		return fmt.Errorf("taking the caller's identity %d:%d: got %d:%d: %w", c.uid, c.gid, uid, gid, syscall.EPERM)
	}
	return nil
}

// detachMount gives the current thread a private mount namespace without
// this mount. Nothing is done before mounting (the guard has no mount
// point yet). The namespace is made private first, so that the unmount
// does not propagate back to the real one.
func (g mountGuard) detachMount() error {
	if g.dir == "" {
		return nil
	}
	dev, err := mountDevice(g.dir)
	if err != nil {
		return fmt.Errorf("finding this mount: %w", err)
	}
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		return fmt.Errorf("private mount namespace: %w", err)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mount namespace: %w", err)
	}
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[2] == dev {
			mps = append(mps, unescapeMountinfo(f[4]))
		}
	}
	// Deepest first, so no unmount hides another.
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("hiding this mount at %s: %w", mp, err)
		}
	}
	return nil
}

// noatimeAllowed tells whether uid may open a file owned by owner with
// O_NOATIME: its owner, or root (CAP_FOWNER).
func noatimeAllowed(owner, uid uint32) bool { return uid == 0 || owner == uid }

const noatimeRule = "O_NOATIME needs the file's owner or root"
