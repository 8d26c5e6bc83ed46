package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// raiseReadahead lets the kernel read up to kib KiB ahead in the mount's
// files instead of its 128 KiB default. With more requests in flight,
// compressed formats decode on every CPU (E01, DMG and zlib qcow2 read
// 1.15-1.3x faster sequentially; bench/RESULTS.md). FUSE's INIT reply can
// only lower the readahead; the mount's bdi in sysfs raises it, for root.
func raiseReadahead(mountpoint string, kib int) error {
	dev, err := mountDevice(mountpoint)
	if err != nil {
		return err
	}
	return os.WriteFile("/sys/class/bdi/"+dev+"/read_ahead_kb", []byte(strconv.Itoa(kib)), 0)
}

// mountReadahead describes the readahead of the mount's files, as the
// kernel has it now.
func mountReadahead(mountpoint string) string {
	dev, err := mountDevice(mountpoint)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	b, err := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	return strings.TrimSpace(string(b)) + " KiB (read_ahead_kb of bdi " + dev + ")"
}

// mountDevice returns the "major:minor" of the FUSE mount at mountpoint
// (the topmost, if mounts are stacked) from the mountinfo file: a stat
// of the mount point would ask this daemon, which is not serving yet.
func mountDevice(mountpoint string) (string, error) {
	// thread-self, not self: self is the main thread's view, and the main
	// thread may be one that asCaller moved to a namespace of its own.
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return "", err
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 5 || !strings.HasPrefix(post, "fuse") {
			continue
		}
		if unescapeMountinfo(f[4]) == mountpoint {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s is not in /proc/thread-self/mountinfo", mountpoint)
	}
	return dev, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// path in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountDev is the device number of the mount at mountpoint, read from
// /proc/self/mountinfo rather than by a stat that the mount would serve.
func mountDev(mountpoint string) (uint64, bool) {
	s, err := mountDevice(mountpoint)
	if err != nil {
		return 0, false
	}
	var major, minor uint64
	if _, err := fmt.Sscanf(s, "%d:%d", &major, &minor); err != nil {
		return 0, false
	}
	// The kernel's encoding of dev_t for user space (new_encode_dev).
	return (major&0xfff)<<8 | (major&^0xfff)<<32 | minor&0xff | (minor&^0xff)<<12, true
}
