package main

// Trust: what a user, or a hostile local user, can make the mount do.
// Each test plays the attack for real on a mount and expects the refusal.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fileStamp is what an examiner is asked about: the three times and the
// content of a file.
type fileStamp struct {
	atime, mtime, ctime syscall.Timespec
	sum                 string
}

func stampDir(t *testing.T, dir string) map[string]fileStamp {
	t.Helper()
	out := map[string]fileStamp{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOATIME, 0) // the test's own read must not count
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileStamp{st.Atim, st.Mtim, st.Ctim, hex.EncodeToString(h.Sum(nil))}
	}
	return out
}

// Attaching, reading everything, detaching and unmounting leave every
// image file's atime, mtime, ctime and content as they were, on a file
// system that updates atime at every read.
func TestSecurityNoAtime(t *testing.T) {
	tmpfs := t.TempDir()
	runTool(t, "", "mount", "-t", "tmpfs", "-o", "strictatime,size=512m", "tmpfs", tmpfs)
	t.Cleanup(func() { exec.Command("umount", tmpfs).Run() })
	m := startMount(t)
	before := map[string]map[string]fileStamp{}
	for _, c := range formatCases(t) {
		dir := filepath.Join(tmpfs, c.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		img, _ := c.make(t, dir)
		if filepath.Dir(img) != dir { // a sample: copy it onto the tmpfs
			runTool(t, "", "cp", img, dir)
			img = filepath.Join(dir, filepath.Base(img))
		}
		// A read after the last write, so that strictatime's "atime
		// older than mtime" rule does not hide a read.
		time.Sleep(10 * time.Millisecond)
		before[c.name] = stampDir(t, dir)
		p := m.attach(t, img, c.name)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, f); err != nil {
			t.Fatalf("%s: reading: %v", c.name, err)
		}
		f.Close()
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	if err := m.wait(); err != nil {
		t.Fatal(err)
	}
	for name, files := range before {
		after := stampDir(t, filepath.Join(tmpfs, name))
		for f, b := range files {
			if a := after[f]; a != b {
				t.Errorf("%s: %s changed: before %+v, after %+v", name, f, b, a)
			}
		}
	}
}

func TestEscapeText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/evidence/disk one.E01", "/evidence/disk one.E01"},
		{"/tmp/x\n2026-01-01T00:00:00Z  forged -> line", `/tmp/x\n2026-01-01T00:00:00Z  forged -> line`},
		{"a\x1b[31mred", `a\x1b[31mred`},
		{"tab\there\r", `tab\there\r`},
		{`back\slash`, `back\\slash`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"disque-été.vmdk", "disque-été.vmdk"},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"line\u2028sep", `line\U00002028sep`},
	}
	for _, c := range cases {
		if got := escapeText(c.in); got != c.want {
			t.Errorf("escapeText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A newline or an escape sequence in a target cannot forge a line of the
// status file or the log, nor reach a terminal through info.
func TestSecurityEscapedText(t *testing.T) {
	m := startMount(t)
	forged := "2026-01-01T00:00:00Z  evil -> /forged: attached fine"
	target := filepath.Join(t.TempDir(), "missing\n"+forged+"\x1b[2J")
	err := os.Symlink(target, filepath.Join(m.flat, "x"))
	wantErrno(t, "attaching a missing target", err, syscall.ENOENT)
	status, err := os.ReadFile(filepath.Join(m.dir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"status": string(status), "log": m.log()} {
		if !strings.Contains(text, `missing\n`+forged+`\x1b[2J`) {
			t.Errorf("%s does not show the escaped target:\n%s", name, text)
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, forged) || strings.Contains(l, "\x1b") {
				t.Errorf("%s has a forged or raw line %q", name, l)
			}
		}
	}
	img := filepath.Join(t.TempDir(), "disk\x1b]0;owned\x07.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := vdflatCmd(t, "info", img)
	if err != nil {
		t.Fatalf("info: %v\n%s", err, out)
	}
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `disk\x1b]0;owned\x07.img`) {
		t.Errorf("info printed the name raw:\n%q", out)
	}
}

// within runs fn, and fails the test if it takes longer than d. A mount
// that deadlocked is aborted through /sys/fs/fuse/connections, so the
// test fails instead of hanging.
func (m *mount) within(t *testing.T, d time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		if dev, err := mountDevice(m.dir); err == nil {
			_, minor, _ := strings.Cut(dev, ":")
			abort := "/sys/fs/fuse/connections/" + minor + "/abort"
			if _, err := os.Stat(abort); err != nil {
				exec.Command("mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections").Run()
			}
			os.WriteFile(abort, []byte("1"), 0)
		}
		t.Fatalf("%s: no answer within %v: the mount hangs\n%s", what, d, m.log())
		return nil
	}
}

// ln runs ln -s target name in dir and returns its output and error.
func ln(dir, target, name string) (string, error) {
	cmd := exec.Command("ln", "-s", target, name)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A target that resolves into the mount is refused at once, whatever
// the form, and the mount keeps answering.
func TestSecurityTargetInsideMount(t *testing.T) {
	img, data := mbrDisk(t, 1<<20)
	m := startMount(t)
	a := m.attach(t, img, "a")
	outside := t.TempDir()
	if err := os.Symlink(m.flat, filepath.Join(outside, "in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "in", "a"), filepath.Join(outside, "deep")); err != nil {
		t.Fatal(err)
	}
	fromOutside, err := filepath.Rel(outside, a)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(outside, "child.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", a, "-u", child, "1M")
	cases := []struct{ name, cwd, target string }{
		{"relative from inside", m.flat, "a"},
		{"relative missing from inside", m.flat, "missing"},
		{"dotdot from inside", m.flat, "../FlattenedImages/a"},
		{"absolute", "/", a},
		{"absolute missing", "/", filepath.Join(m.flat, "missing")},
		{"the mount point", "/", m.dir},
		{"the status file", "/", filepath.Join(m.dir, "status")},
		{"dotdot", "/", m.flat + "/../FlattenedImages/./a"},
		{"relative from outside", outside, fromOutside},
		{"through a symlink outside", "/", filepath.Join(outside, "in", "a")},
		{"relative through a symlink", outside, "in/missing"},
		{"through two symlinks", "/", filepath.Join(outside, "deep")},
		{"a parent inside", "/", child},
	}
	for i, c := range cases {
		name := filepath.Join(m.flat, fmt.Sprintf("x%d", i))
		var out string
		err := m.within(t, 5*time.Second, c.name, func() error {
			var err error
			out, err = ln(c.cwd, c.target, name)
			return err
		})
		if err == nil || !strings.Contains(out, "Too many levels of symbolic links") {
			t.Errorf("%s: ln -s %s: %v %s; want ELOOP\n%s", c.name, c.target, err, out, m.log())
		}
		m.within(t, time.Second, c.name+": ls", func() error {
			ents, err := os.ReadDir(m.flat)
			if err != nil || len(ents) != 1 {
				t.Errorf("%s: after the attach, FlattenedImages holds %v (%v), want only a", c.name, ents, err)
			}
			return nil
		})
		m.within(t, time.Second, c.name+": read", func() error {
			got, err := os.ReadFile(a)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: reading a: %v", c.name, err)
			}
			return nil
		})
	}
	// An extent named inside the mount is refused before it is looked up
	// (formats.SetPathGuard), whoever runs the daemon.
	desc := filepath.Join(outside, "desc.vmdk")
	writeVMDKDescriptor(t, desc, a)
	err = m.within(t, 5*time.Second, "extent inside", func() error { return os.Symlink(desc, filepath.Join(m.flat, "extent")) })
	wantErrno(t, "attaching a VMDK whose extent is inside the mount", err, syscall.ELOOP)
	status, err := os.ReadFile(filepath.Join(m.dir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "inside this mount") {
		t.Errorf("status does not say why:\n%s", status)
	}
	if err := m.within(t, 5*time.Second, "unmount", m.unmount); err != nil {
		t.Fatal(err)
	}
}

// as runs a command as user uid (group uid, no other groups).
func as(uid string, args ...string) (string, error) {
	cmd := exec.Command("setpriv", append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// publicDir is a fresh directory every user may enter.
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vdflat-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// The owner given with -o uid= attaches and opens files only as itself:
// never through root's rights, whatever the image names.
func TestSecurityCallerRights(t *testing.T) {
	needTool(t, "setpriv")
	const user = "65534"
	pub := publicDir(t)
	mine := filepath.Join(pub, "mine") // the user's own directory
	priv := filepath.Join(pub, "priv") // root's, closed to others
	for _, d := range []string{mine, priv} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(mine, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(priv, "secret.img")
	secretData := bytes.Repeat([]byte("root only "), 110<<10)[:1<<20]
	if err := os.WriteFile(secret, secretData, 0o600); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(priv, "readable.img") // 0644, but in a 0700 directory
	if err := os.WriteFile(readable, secretData, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	// (a) a symlink in the user's directory into root's 0700 directory
	if err := os.Symlink(readable, filepath.Join(mine, "link.img")); err != nil {
		t.Fatal(err)
	}
	// (b) the user's own qcow2 backed by a root-only file, and the user's
	// own VMDK descriptor with a flat extent naming it
	child := filepath.Join(mine, "child.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", secret, "-u", child, "1M")
	desc := filepath.Join(mine, "desc.vmdk")
	writeVMDKDescriptor(t, desc, secret)
	for _, f := range []string{child, desc} {
		if err := os.Chown(f, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	// The same as root, to show the fixtures themselves are sound.
	m := startMountAt(t, filepath.Join(pub, "mnt"), "-o", "allow_other,uid=65534,gid=65534")
	for _, f := range []string{filepath.Join(mine, "link.img"), child, desc} {
		p := m.attach(t, f, "root-"+filepath.Base(f))
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, secretData) {
			t.Fatalf("root reading %s through %s: %v", f, p, err)
		}
	}
	for _, c := range []struct{ name, target string }{
		{"(a) symlink into a 0700 directory", filepath.Join(mine, "link.img")},
		{"(b) qcow2 backed by a root-only file", child},
		{"(b) VMDK extent naming a root-only file", desc},
		{"root-only file itself", secret},
	} {
		out, err := as(user, "ln", "-s", c.target, filepath.Join(m.flat, "u"))
		if err == nil || !strings.Contains(out, "Permission denied") || !strings.Contains(m.log(), "attach u -> "+c.target+" failed") {
			t.Errorf("%s: %v %s; want Permission denied from the attach\n%s", c.name, err, out, m.log())
		}
	}
	// (c) a root-owned 0644 file the user may read: attached, but writes
	// are refused, and the file stays as it was.
	world := filepath.Join(pub, "world.img")
	if err := os.WriteFile(world, secretData, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := as(user, "ln", "-s", world, filepath.Join(m.flat, "w")); err != nil {
		t.Fatalf("user attaching a file it may read: %v %s\n%s", err, out, m.log())
	}
	// The user does not own it: O_NOATIME is refused, and the status says so.
	if status, _ := os.ReadFile(filepath.Join(m.dir, "status")); !strings.Contains(string(status), world+": reading may change its access time") {
		t.Errorf("status does not say the atime of %s may change:\n%s", world, status)
	}
	out, err := as(user, "dd", "if=/dev/zero", "of="+filepath.Join(m.flat, "w"), "bs=4k", "count=1", "conv=notrunc")
	if err == nil || !strings.Contains(out, "Permission denied") && !strings.Contains(out, "Read-only") {
		t.Errorf("user writing root's 0644 file: %v %s; want EACCES or EROFS", err, out)
	}
	if got, err := os.ReadFile(world); err != nil || !bytes.Equal(got, secretData) {
		t.Errorf("root's file changed (%v)", err)
	}
}

// With allow_other, a flattened file grants what its image file grants,
// and only root and the mounting user learn image paths.
func TestSecurityAllowOtherShowsImageRights(t *testing.T) {
	needTool(t, "setpriv")
	pub := publicDir(t)
	private := filepath.Join(pub, "private.img")
	if err := os.WriteFile(private, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	group := filepath.Join(pub, "group.img")
	if err := os.WriteFile(group, make([]byte, 1<<20), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(group, 0, 4242); err != nil {
		t.Fatal(err)
	}
	m := startMountAt(t, filepath.Join(pub, "mnt"), "-o", "allow_other,uid=65534,gid=65534", "--read-only")
	public := filepath.Join(pub, "public.img")
	if err := os.WriteFile(public, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	pubp := m.attach(t, public, "public")
	pp := m.attach(t, private, "private")
	gp := m.attach(t, group, "group")
	for _, c := range []struct {
		path     string
		uid, gid uint32
		perm     os.FileMode
	}{{pp, 0, 0, 0o400}, {gp, 0, 4242, 0o440}} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != c.uid || sys.Gid != c.gid || st.Mode().Perm() != c.perm {
			t.Errorf("%s: %d:%d %v, want %d:%d %v (the image's, read-only)", c.path, sys.Uid, sys.Gid, st.Mode().Perm(), c.uid, c.gid, c.perm)
		}
	}
	// The directories keep the owner given with uid= and gid=.
	if st, err := os.Stat(m.flat); err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 || st.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Errorf("FlattenedImages: %v, want owned by 65534:65534", err)
	}
	if out, err := as("12345", "cat", pp); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user reading a 0600 image: %v %s; want Permission denied", err, out)
	}
	cmd := exec.Command("setpriv", "--reuid=12345", "--regid=12345", "--groups=4242", "cmp", group, gp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("a member of the image's group reading it: %v %s", err, out)
	}
	for _, user := range []string{"12345", "65534"} {
		if out, err := as(user, "cat", filepath.Join(m.dir, "status")); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("user %s reading the status file: %v %s; want Permission denied", user, err, out)
		}
		// The file system rights of the user, on a thread of this test.
		uid, _ := strconv.Atoi(user)
		buf := make([]byte, 4096)
		err := asCaller(caller{uid: uint32(uid), gid: uint32(uid)}, mountGuard{}, func() error {
			_, err := syscall.Getxattr(pubp, "user.vdflat.image", buf) // a file the user may read
			return err
		})
		wantErrno(t, "user "+user+" reading the image path xattr", err, syscall.ENODATA)
	}
	if n, err := syscall.Getxattr(pubp, "user.vdflat.image", make([]byte, 4096)); err != nil || n != len(public) {
		t.Errorf("root reading the image path xattr: %d bytes, %v", n, err)
	}
	if b, err := os.ReadFile(filepath.Join(m.dir, "status")); err != nil || !strings.Contains(string(b), private) {
		t.Errorf("root reading the status file: %v\n%s", err, b)
	}
}

// One image attached under two names has one writer at a time, and
// concurrent writers through both names leave a consistent qcow2.
func TestSecurityOneWriterAcrossNames(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", img, "16M")
	if err := os.Symlink(img, filepath.Join(dir, "other-name.qcow2")); err != nil {
		t.Fatal(err)
	}
	m := startMount(t)
	a := m.attach(t, img, "a")
	b := m.attach(t, filepath.Join(dir, "other-name.qcow2"), "b")
	// Readers of both names at once are fine.
	ra, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.OpenFile(b, os.O_WRONLY, 0)
	wantErrno(t, "writing b while a and b are read", err, syscall.ETXTBSY)
	ra.Close()
	rb.Close()
	time.Sleep(100 * time.Millisecond) // the releases reach the daemon
	wa, err := os.OpenFile(a, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.OpenFile(b, os.O_WRONLY, 0)
	wantErrno(t, "writing b while a is written", err, syscall.ETXTBSY)
	_, err = os.Open(b)
	wantErrno(t, "reading b while a is written", err, syscall.ETXTBSY)
	wa.Close()

	// Writers through both names at once: whoever gets the image writes,
	// the other is refused; the image stays consistent.
	var wg sync.WaitGroup
	var refused atomic.Int32
	for w, p := range []string{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{byte('a' + w)}, 64<<10)
			for i := 0; i < 40; i++ {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if errnoOf(err) == syscall.ETXTBSY {
					refused.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("opening %s: %v", p, err)
					return
				}
				if _, err := f.WriteAt(buf, int64(i%32)*(512<<10)+int64(w)*(64<<10)); err != nil {
					t.Errorf("writing %s: %v", p, err)
				}
				f.Close()
			}
		}()
	}
	wg.Wait()
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	if err := m.wait(); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, "", "qemu-img", "check", img)
	if !strings.Contains(out, "No errors were found") {
		t.Errorf("qemu-img check after writers through two names:\n%s", out)
	}
	t.Logf("%d write-opens refused while the other name was written", refused.Load())
}

// vdflat takes qemu's image locks while it writes, and honours them.
func TestSecurityQemuLocks(t *testing.T) {
	needTool(t, "qemu-io")
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", img, "16M")
	m := startMount(t)
	p := m.attach(t, img, "disk")

	// vdflat writes: qemu may neither write nor inspect the image.
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"qemu-io", "-f", "qcow2", "-c", "write 0 512", img}, {"qemu-img", "info", img}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			t.Errorf("%s while vdflat writes: %v %s; want a lock refusal", strings.Join(args, " "), err, out)
		}
	}
	w.Close()
	time.Sleep(100 * time.Millisecond)
	if out, err := exec.Command("qemu-img", "info", img).CombinedOutput(); err != nil {
		t.Errorf("qemu-img info after vdflat stopped writing: %v %s", err, out)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}

	// qemu writes: vdflat attaches with a warning, and refuses to write.
	qio := exec.Command("qemu-io", "-f", "qcow2", img)
	stdin, err := qio.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var qout bytes.Buffer
	qio.Stdout, qio.Stderr = &qout, &qout
	if err := qio.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); qio.Wait() }()
	for i := 0; ; i++ { // until qemu-io holds its locks
		if out, err := exec.Command("qemu-img", "info", img).CombinedOutput(); err != nil && strings.Contains(string(out), "lock") {
			break
		}
		if i == 100 {
			t.Fatalf("qemu-io took no lock within 5s: %s", qout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p = m.attach(t, img, "busy")
	status, _ := os.ReadFile(filepath.Join(m.dir, "status"))
	if !strings.Contains(string(status), "qemu's write lock") {
		t.Errorf("status does not warn of the other writer:\n%s", status)
	}
	if !strings.Contains(m.log(), "qemu's write lock") {
		t.Errorf("log does not warn of the other writer:\n%s", m.log())
	}
	_, err = os.OpenFile(p, os.O_WRONLY, 0)
	wantErrno(t, "writing an image qemu-io writes", err, syscall.ETXTBSY)
	status, _ = os.ReadFile(filepath.Join(m.dir, "status"))
	if !strings.Contains(string(status), "qemu's image lock") {
		t.Errorf("status does not name the lock:\n%s", status)
	}
	if got, err := os.ReadFile(p); err != nil || len(got) != 16<<20 {
		t.Errorf("reading an image qemu-io writes: %d bytes, %v", len(got), err)
	}
	stdin.Close()
	qio.Wait()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("writing after qemu-io exited: %v", err)
	}
	f.Close()
}

// writeVMDKDescriptor writes a monolithicFlat descriptor of 1 MiB whose
// one extent is the file extent.
func writeVMDKDescriptor(t *testing.T, path, extent string) {
	t.Helper()
	text := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
		"RW 2048 FLAT \"" + extent + "\" 0\n\nddb.virtualHWVersion = \"4\"\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
