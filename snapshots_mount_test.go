package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// qcow2WithSnapshots makes base.qcow2 and disk.qcow2 backed by it, with
// internal snapshots "before" and "a/b", then one more write. It returns
// disk.qcow2, base.qcow2 and qemu's reading of each point in time.
func qcow2WithSnapshots(t *testing.T) (img, base string, want map[string][]byte) {
	dir := t.TempDir()
	base = filepath.Join(dir, "base.qcow2")
	img = filepath.Join(dir, "disk.qcow2")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "qcow2", base, "2M")
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 2M", base)
	runTool(t, "", "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", img)
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 64k", img)
	runTool(t, "", "qemu-img", "snapshot", "-c", "before", img)
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x22 32k 1M", img)
	runTool(t, "", "qemu-img", "snapshot", "-c", "a/b", img)
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x23 0 4k", img)
	raw := func(args ...string) []byte {
		out := filepath.Join(t.TempDir(), "oracle.raw")
		runTool(t, "", "qemu-img", append(append([]string{"convert", "-O", "raw"}, args...), out)...)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want = map[string][]byte{
		"before":              raw("-l", "snapshot.name=before", img),
		`a\x2fb`:              raw("-l", "snapshot.name=a/b", img),
		"parent-1-base.qcow2": raw(base),
		"":                    raw(img),
	}
	return img, base, want
}

// fdsOf counts the daemon's open descriptors of path.
func (m *mount) fdsOf(path string) int {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", m.cmd.Process.Pid))
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			n++
		}
	}
	return n
}

func TestMountSnapshots(t *testing.T) {
	img, _, want := qcow2WithSnapshots(t)
	m := startMount(t)
	p := m.attach(t, img, "disk")
	sdir := filepath.Join(m.dir, "Snapshots", "disk")
	ents, err := os.ReadDir(sdir)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.log())
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, "|"); got != `a\x2fb|before|parent-1-base.qcow2` {
		t.Fatalf("Snapshots/disk holds %q", names)
	}
	// Nothing is opened for a point in time until it is read.
	idle := m.fdsOf(img)
	for name, data := range want {
		if name == "" {
			continue
		}
		sp := filepath.Join(sdir, name)
		st, err := os.Stat(sp)
		if err != nil || st.Size() != int64(len(data)) || st.Mode().Perm()&0o222 != 0 {
			t.Fatalf("%s: %v, %v; want %d bytes, read-only", name, st, err, len(data))
		}
		_, err = os.OpenFile(sp, os.O_WRONLY, 0)
		wantErrno(t, "write-open of "+name, err, syscall.EROFS)
		f, err := os.Open(sp)
		if err != nil {
			t.Fatal(err)
		}
		if name != "parent-1-base.qcow2" && m.fdsOf(img) != idle+1 {
			t.Fatalf("%s open: the daemon has %d descriptors of the image, want %d", name, m.fdsOf(img), idle+1)
		}
		// A reader of a point in time is a reader of the chain: the
		// disk cannot be opened for writing meanwhile.
		_, err = os.OpenFile(p, os.O_WRONLY, 0)
		wantErrno(t, "write-open of the disk while "+name+" is read", err, syscall.ETXTBSY)
		got := make([]byte, len(data)+512)
		n, _ := f.ReadAt(got, 0)
		if n != len(data) || !bytes.Equal(got[:n], data) {
			t.Fatalf("%s: read %d bytes, first difference at %d", name, n, firstDiff(got[:n], data))
		}
		f.Close()
		if !eventually(func() bool { return m.fdsOf(img) == idle }) {
			t.Fatalf("%s: still open after its last handle closed", name)
		}
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want[""]) {
		t.Fatalf("the current state: %v", err)
	}
	// The directories are read-only.
	wantErrno(t, "mkdir in Snapshots", os.Mkdir(filepath.Join(m.dir, "Snapshots", "x"), 0o755), syscall.EROFS)
	wantErrno(t, "unlink of a point in time", os.Remove(filepath.Join(sdir, "before")), syscall.EROFS)
	wantErrno(t, "rmdir of Snapshots", os.Remove(filepath.Join(m.dir, "Snapshots")), syscall.EROFS)
	wantErrno(t, "rename out of Snapshots", os.Rename(filepath.Join(sdir, "before"), filepath.Join(m.flat, "x")), syscall.EROFS)
	wantErrno(t, "attach in Snapshots", os.Symlink(img, filepath.Join(sdir, "again")), syscall.EROFS)

	// A handle open across the detach keeps reading; the directory goes.
	f, err := os.Open(filepath.Join(sdir, "before"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sdir); !os.IsNotExist(err) {
		t.Fatalf("Snapshots/disk after detach: %v", err)
	}
	got := make([]byte, len(want["before"]))
	if n, err := f.ReadAt(got, 0); n != len(got) || !bytes.Equal(got, want["before"]) {
		t.Fatalf("read after detach: %d, %v", n, err)
	}
	f.Close()
	if !eventually(func() bool { return !isOpenBy(img) }) {
		t.Fatal("the image is still open after detach and the last release")
	}
}

// eventually reports whether cond holds within a second: the kernel
// tells the daemon of a release after close(2) returned.
func eventually(cond func() bool) bool {
	for i := 0; i < 100; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// A point in time is opened with the rights of whoever attached the
// disk, never the daemon's: once the user may no longer read the base
// image, its level cannot be opened through the user's attachment.
func TestSecuritySnapshotCallerRights(t *testing.T) {
	needTool(t, "setpriv")
	const user = "65534"
	pub := publicDir(t)
	base := filepath.Join(pub, "base.qcow2")
	top := filepath.Join(pub, "top.qcow2")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "qcow2", base, "1M")
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 64k", base)
	runTool(t, "", "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	for _, f := range []string{base, top} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := startMountAt(t, filepath.Join(pub, "mnt"), "-o", "allow_other,uid=65534,gid=65534")
	if out, err := as(user, "ln", "-s", top, filepath.Join(m.flat, "u")); err != nil {
		t.Fatalf("user attaching: %v %s\n%s", err, out, m.log())
	}
	m.attach(t, top, "r")
	if err := os.Chmod(base, 0o600); err != nil { // root's only from now on
		t.Fatal(err)
	}
	_, err := os.ReadFile(filepath.Join(m.dir, "Snapshots", "u", "parent-1-base.qcow2"))
	wantErrno(t, "opening the base level through the user's attachment", err, syscall.EACCES)
	if b, err := os.ReadFile(filepath.Join(m.dir, "Snapshots", "r", "parent-1-base.qcow2")); err != nil || b[0] != 0x33 {
		t.Fatalf("through root's attachment: %v", err)
	}
}
