package main

// Real mounts: these tests build vdflat, mount it with fusermount3 and
// use ordinary syscalls and real tools on the flattened files.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var vdflatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vdflat-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vdflatBin = filepath.Join(dir, "vdflat")
	args := []string{"build", "-o", vdflatBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vdflat:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mount is one running vdflat daemon under test.
type mount struct {
	t       *testing.T
	dir     string // mount point
	flat    string // dir/FlattenedImages
	logPath string
	cmd     *exec.Cmd
	done    chan error
}

// startMount runs `vdflat -f ARGS... MOUNTPOINT` and waits until the mount
// is ready. Cleanup unmounts (with retries) and fails the test if the
// daemon reported a data race or a mount is left behind.
func startMount(t *testing.T, args ...string) *mount {
	t.Helper()
	return startMountAt(t, filepath.Join(t.TempDir(), "mnt"), args...)
}

// startMountAt is startMount on a mount point of the caller's choosing.
func startMountAt(t *testing.T, dir string, args ...string) *mount {
	t.Helper()
	needTool(t, "fusermount3")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &mount{t: t, dir: dir, flat: filepath.Join(dir, "FlattenedImages"), logPath: filepath.Join(t.TempDir(), "vdflat.log"), done: make(chan error, 1)}
	logf, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	// Image arguments follow the mount point.
	var opts, images []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			images = args[i+1:]
			break
		}
		opts = append(opts, args[i])
	}
	if os.Getenv("VDFLAT_TEST_DEBUG") != "" {
		opts = append(opts, "-d")
	}
	m.cmd = exec.Command(vdflatBin, append(append(append([]string{"-f"}, opts...), dir), images...)...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait(); logf.Close() }()
	t.Cleanup(m.cleanup)
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(dir) {
		select {
		case err := <-m.done:
			m.done <- err
			t.Fatalf("vdflat exited before mounting: %v\n%s", err, m.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount not ready after 20s\n%s", m.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte(" "+strings.ReplaceAll(dir, " ", `\040`)+" ")) // mountinfo escapes spaces
}

func (m *mount) log() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

func (m *mount) unmount() error {
	var err error
	for i := 0; i < 50; i++ {
		var out []byte
		out, err = exec.Command("fusermount3", "-u", m.dir).CombinedOutput()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("%v: %s", err, out)
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// wait waits for the daemon to exit after an unmount and returns its error.
func (m *mount) wait() error {
	select {
	case err := <-m.done:
		m.done <- err
		return err
	case <-time.After(20 * time.Second):
		return errors.New("vdflat did not exit within 20s of the unmount")
	}
}

func (m *mount) cleanup() {
	if isMounted(m.dir) {
		if err := m.unmount(); err != nil {
			exec.Command("fusermount3", "-u", "-z", m.dir).Run()
			m.t.Errorf("unmount: %v", err)
		}
	}
	if err := m.wait(); err != nil {
		m.cmd.Process.Kill()
		m.t.Errorf("vdflat: %v\n%s", err, m.log())
	}
	if l := m.log(); strings.Contains(l, "DATA RACE") || strings.Contains(l, "panic") {
		m.t.Errorf("vdflat log:\n%s", l)
	}
	if isMounted(m.dir) {
		m.t.Errorf("%s is still mounted", m.dir)
	}
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (CI installs it in .ci/run): %v", name, err)
	}
}

func runTool(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mbrDisk writes a raw disk image with an MBR (two partitions) and
// random content, made by sfdisk.
func mbrDisk(t testing.TB, size int64) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, size)
	rand.New(rand.NewSource(size)).Read(data)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	needTool(t, "sfdisk")
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader("label: dos\nstart=64, size=512, type=83\nstart=576, type=7\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, data
}

func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return 0
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if got := errnoOf(err); got != want {
		t.Fatalf("%s: got %v, want %v (%d)", what, err, want, want)
	}
}

// attach symlinks target into FlattenedImages as name and waits for the
// regular file to appear.
func (m *mount) attach(t *testing.T, target, name string) string {
	t.Helper()
	p := filepath.Join(m.flat, name)
	if err := os.Symlink(target, p); err != nil {
		t.Fatalf("attach %s: %v\n%s", target, err, m.log())
	}
	// Following the name right away already reaches the flattened file.
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Mode().IsRegular() {
		t.Fatalf("%s: mode %v after attach, want a regular file", p, st.Mode())
	}
	// And the entry itself turns into the regular file.
	for i := 0; ; i++ {
		st, err := os.Lstat(p)
		if err == nil && st.Mode().IsRegular() {
			break
		}
		if i == 100 {
			t.Fatalf("%s: still %v, %v a second after attach", p, st.Mode(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

func TestMountAttachReadDetach(t *testing.T) {
	img, data := mbrDisk(t, 8<<20+512*3)
	m := startMount(t)
	for _, d := range []string{m.dir, m.flat} {
		st, err := os.Stat(d)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", d, st.Mode(), err)
		}
	}
	p := m.attach(t, img, "disk")
	st, _ := os.Stat(p)
	if st.Size() != int64(len(data)) || st.Mode().Perm() != 0o644 {
		t.Fatalf("attached file: size %d mode %v; want %d 0644", st.Size(), st.Mode(), len(data))
	}
	runTool(t, "", "cmp", img, p)

	// Reads at odd offsets and lengths, and past the end.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		off := r.Int63n(int64(len(data)) + 4096)
		buf := make([]byte, r.Intn(300000))
		n, err := f.ReadAt(buf, off)
		want := max(0, min(int64(len(buf)), int64(len(data))-off))
		if int64(n) != want || (err != nil && n == len(buf)) {
			t.Fatalf("ReadAt(%d at %d) = %d, %v; want %d bytes", len(buf), off, n, err, want)
		}
		if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d at %d): data differs", len(buf), off)
		}
	}
	f.Close()

	// Real clients.
	if out := runTool(t, "", "fdisk", "-l", p); !strings.Contains(out, p+"1") || !strings.Contains(out, "HPFS/NTFS/exFAT") {
		t.Fatalf("fdisk -l:\n%s", out)
	}
	if out := runTool(t, "", "blkid", p); !strings.Contains(out, `PTTYPE="dos"`) {
		t.Fatalf("blkid: %s", out)
	}
	if out := runTool(t, "", "file", "-s", p); !strings.Contains(out, "DOS/MBR boot sector") {
		t.Fatalf("file -s: %s", out)
	}
	if out := runTool(t, "", "mmls", p); !strings.Contains(out, "0000000064") || !strings.Contains(out, "0000000576") {
		t.Fatalf("mmls:\n%s", out)
	}

	// Extended attributes name the image and the format.
	buf := make([]byte, 4096)
	n, err := syscall.Getxattr(p, "user.vdflat.image", buf)
	if err != nil || string(buf[:n]) != img {
		t.Fatalf("xattr image: %q, %v", buf[:n], err)
	}
	n, err = syscall.Getxattr(p, "user.vdflat.format", buf)
	if err != nil || string(buf[:n]) != "raw" {
		t.Fatalf("xattr format: %q, %v", buf[:n], err)
	}

	status, err := os.ReadFile(filepath.Join(m.dir, "status"))
	if err != nil || !strings.Contains(string(status), "/FlattenedImages/disk") || !strings.Contains(string(status), img) {
		t.Fatalf("status: %v\n%s", err, status)
	}

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("after rm: %v", err)
	}
	status, _ = os.ReadFile(filepath.Join(m.dir, "status"))
	if strings.Contains(string(status), "/FlattenedImages/disk") {
		t.Fatalf("status still lists the detached image:\n%s", status)
	}
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	if err := m.wait(); err != nil {
		t.Fatalf("vdflat exit after unmount: %v", err)
	}
}

func TestMountRelativeTarget(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t)
	// ln runs in the image's directory: the target resolves against its cwd.
	runTool(t, filepath.Dir(img), "ln", "-s", filepath.Base(img), filepath.Join(m.flat, "rel"))
	runTool(t, "", "cmp", img, filepath.Join(m.flat, "rel"))
}

func TestMountAttachErrors(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t)
	m.attach(t, img, "disk")
	wantErrno(t, "attach over an existing name", os.Symlink(img, filepath.Join(m.flat, "disk")), syscall.EEXIST)
	missing := filepath.Join(t.TempDir(), "missing.vmdk")
	wantErrno(t, "missing target", os.Symlink(missing, filepath.Join(m.flat, "missing")), syscall.ENOENT)
	wantErrno(t, "directory target", os.Symlink(t.TempDir(), filepath.Join(m.flat, "dir")), syscall.EISDIR)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	wantErrno(t, "empty file", os.Symlink(empty, filepath.Join(m.flat, "empty")), syscall.EMEDIUMTYPE)
	status, _ := os.ReadFile(filepath.Join(m.dir, "status"))
	for _, want := range []string{"missing -> " + missing, "empty -> " + empty, "unknown image format"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if !strings.Contains(m.log(), "attach missing -> "+missing+" failed") {
		t.Errorf("log lacks the failed attach:\n%s", m.log())
	}
	// A failed attach leaves nothing behind.
	if _, err := os.Lstat(filepath.Join(m.flat, "missing")); !os.IsNotExist(err) {
		t.Fatalf("failed attach left an entry: %v", err)
	}
}

func TestMountOpenRules(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t, "--max-readers", "2")
	p := m.attach(t, img, "disk")
	open := func(flags int) (*os.File, error) { return os.OpenFile(p, flags, 0) }

	r1, err := open(os.O_RDONLY | syscall.O_NONBLOCK)
	if err != nil {
		t.Fatalf("O_NONBLOCK read-open: %v", err)
	}
	_, err = open(os.O_WRONLY)
	wantErrno(t, "write-open while a reader", err, syscall.ETXTBSY)
	r2, err := open(os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	_, err = open(os.O_RDONLY)
	wantErrno(t, "third reader with --max-readers 2", err, syscall.EMLINK)
	r1.Close()
	r2.Close()

	w, err := open(os.O_RDWR)
	if err != nil {
		t.Fatalf("write-open alone: %v\n%s", err, m.log())
	}
	_, err = open(os.O_RDONLY)
	wantErrno(t, "read-open while a writer", err, syscall.ETXTBSY)
	_, err = open(os.O_WRONLY)
	wantErrno(t, "second writer", err, syscall.ETXTBSY)
	w.Close()

	_, err = open(os.O_RDWR | os.O_APPEND)
	wantErrno(t, "O_APPEND", err, syscall.EINVAL)
	fd, err := syscall.Open(p, syscall.O_ACCMODE, 0)
	if err == nil {
		syscall.Close(fd)
	}
	wantErrno(t, "O_ACCMODE 3", err, syscall.EINVAL)
}

func TestMountReadOnlyFlag(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t, "--read-only")
	p := m.attach(t, img, "disk")
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v with --read-only, want 0444", st.Mode())
	}
	_, err := os.OpenFile(p, os.O_RDWR, 0)
	wantErrno(t, "write-open with --read-only", err, syscall.EROFS)
}

func TestMountWrites(t *testing.T) {
	img, data := mbrDisk(t, 2<<20+700) // not a multiple of 512
	before, _ := os.Stat(img)
	m := startMount(t)
	p := m.attach(t, img, "disk")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	model := append([]byte(nil), data...)
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 300; i++ {
		off := r.Int63n(int64(len(data)))
		buf := make([]byte, 1+r.Intn(70000))
		r.Read(buf)
		// One pwrite: os.File.WriteAt would retry the short write at EOF.
		n, err := syscall.Pwrite(int(f.Fd()), buf, off)
		want := min(len(buf), len(data)-int(off))
		if n != want || err != nil {
			t.Fatalf("WriteAt(%d at %d) = %d, %v; want %d", len(buf), off, n, err, want)
		}
		copy(model[off:], buf[:n])
	}
	// Concurrent unaligned writes of neighbouring byte ranges.
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for off := g * 100; off+100 <= 1<<20; off += 800 {
				b := bytes.Repeat([]byte{byte(g + 1)}, 100)
				if _, err := f.WriteAt(b, int64(off)); err != nil {
					t.Errorf("concurrent write: %v", err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	for g := 0; g < 8; g++ {
		for off := g * 100; off+100 <= 1<<20; off += 800 {
			copy(model[off:], bytes.Repeat([]byte{byte(g + 1)}, 100))
		}
	}
	_, err = f.WriteAt([]byte("x"), int64(len(data)))
	wantErrno(t, "write at EOF", err, syscall.ENOSPC)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	wantErrno(t, "ftruncate", f.Truncate(1000), syscall.EINVAL)
	f.Close()

	got, _ := os.ReadFile(p)
	if i := firstDiff(got, model); i >= 0 {
		raw, _ := os.ReadFile(img)
		t.Fatalf("flattened file differs from the model after writes at %d (len %d/%d); image differs at %d", i, len(got), len(model), firstDiff(raw, model))
	}
	got, _ = os.ReadFile(img)
	if !bytes.Equal(got, model) {
		t.Fatal("image differs from the model after writes")
	}

	// O_TRUNC changes nothing and loses nothing; cp onto the file works.
	f, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("O_TRUNC open: %v", err)
	}
	f.Close()
	if st, _ := os.Stat(p); st.Size() != int64(len(data)) {
		t.Fatalf("size after O_TRUNC: %d", st.Size())
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, model) {
		t.Fatal("O_TRUNC lost data")
	}
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, data, 0o644)
	runTool(t, "", "cp", src, p)
	runTool(t, "", "cmp", src, p)
	if after, _ := os.Stat(img); after.Size() != before.Size() {
		t.Fatalf("image size changed: %d -> %d", before.Size(), after.Size())
	}
}

func TestMountConcurrentReads(t *testing.T) {
	img, data := mbrDisk(t, 16<<20)
	m := startMount(t)
	p := m.attach(t, img, "disk")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			f, err := os.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 100; i++ {
				off := r.Int63n(int64(len(data)))
				buf := make([]byte, 1+r.Intn(200000))
				n, _ := f.ReadAt(buf, off)
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					t.Errorf("reader %d: data differs at %d", g, off)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestMountDirectories(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t)
	sub := filepath.Join(m.flat, "case1")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	m.attach(t, img, "disk")
	if err := os.Rename(filepath.Join(m.flat, "disk"), filepath.Join(sub, "evidence")); err != nil {
		t.Fatal(err)
	}
	runTool(t, "", "cmp", img, filepath.Join(sub, "evidence"))
	wantErrno(t, "rmdir of a non-empty dir", syscall.Rmdir(sub), syscall.ENOTEMPTY)
	os.Remove(filepath.Join(sub, "evidence"))
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
}

func TestMountImageArgsAndUnmountBusy(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t, "--", img)
	p := filepath.Join(m.flat, "disk") // disk.img without its extension
	runTool(t, "", "cmp", img, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("fusermount3", "-u", m.dir).CombinedOutput(); err == nil {
		t.Fatalf("unmount with a file open succeeded: %s", out)
	}
	f.Close()
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	if err := m.wait(); err != nil {
		t.Fatalf("exit after unmount: %v", err)
	}
}

func TestMountSignalUnmounts(t *testing.T) {
	m := startMount(t)
	m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, m.log())
	}
	if isMounted(m.dir) {
		t.Fatal("still mounted after SIGTERM")
	}
}

func TestMountDaemonAndMessages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	out, err := exec.Command(vdflatBin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("vdflat MOUNTPOINT: %v\n%s", err, out)
	}
	if !isMounted(dir) {
		t.Fatal("not mounted when vdflat returned")
	}
	if _, err := os.Stat(filepath.Join(dir, "FlattenedImages")); err != nil {
		t.Fatal(err)
	}
	runTool(t, "", "fusermount3", "-u", dir)

	// Clear errors for the usual mistakes.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(dir, "nope")}, "does not exist"},
		{[]string{}, "missing MOUNTPOINT"},
		{[]string{"-o", "bogus", dir}, "unknown mount option"},
		{[]string{dir, filepath.Join(dir, "missing.img")}, "no such file"},
	} {
		out, err := exec.Command(vdflatBin, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("vdflat %v: %v, %q; want failure saying %q", c.args, err, out, c.want)
		}
	}
	if isMounted(dir) {
		exec.Command("fusermount3", "-u", dir).Run()
		t.Fatal("a failed start left a mount behind")
	}

	// A stale mount (daemon killed) is explained.
	cmd := exec.Command(vdflatBin, "-f", dir)
	cmd.Start()
	for i := 0; i < 200 && !isMounted(dir); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	defer exec.Command("fusermount3", "-u", "-z", dir).Run()
	out, err = exec.Command(vdflatBin, dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fusermount3 -u "+dir) {
		t.Fatalf("stale mount: %v, %q; want advice to run fusermount3 -u", err, out)
	}
}

// As root with allow_other, other users read what the mode bits allow and
// may not change the tree; the owner given with uid= may attach only
// what it can read itself.
func TestMountPermissions(t *testing.T) {
	needTool(t, "setpriv")
	img, _ := mbrDisk(t, 1<<20)
	os.Chmod(filepath.Dir(img), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(img)), 0o755)
	secret := filepath.Join(filepath.Dir(img), "secret.img")
	os.WriteFile(secret, make([]byte, 4096), 0o600)
	m := startMount(t, "-o", "allow_other,uid=65534,gid=65534")
	as := func(uid string, args ...string) error {
		if out, err := as(uid, args...); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	// The owner (65534) attaches a world-readable image, not a root-only one.
	if err := as("65534", "ln", "-s", img, filepath.Join(m.flat, "ok")); err != nil {
		t.Fatalf("owner attach: %v\n%s", err, m.log())
	}
	if err := as("65534", "ln", "-s", secret, filepath.Join(m.flat, "secret")); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("owner attaching an unreadable image: %v; want Permission denied", err)
	}
	// Another user reads but cannot detach or attach.
	if err := as("12345", "cmp", img, filepath.Join(m.flat, "ok")); err != nil {
		t.Fatalf("other user reading: %v", err)
	}
	if err := as("12345", "rm", "-f", filepath.Join(m.flat, "ok")); err == nil {
		t.Fatal("another user detached an image")
	}
	if err := as("12345", "ln", "-s", img, filepath.Join(m.flat, "other")); err == nil {
		t.Fatal("another user attached an image")
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestMountPartitions(t *testing.T) {
	img, _ := mbrDisk(t, 4<<20)
	// An ext4 file system inside partition 1 (sectors 64..575).
	runTool(t, "", "mkfs.ext4", "-q", "-F", "-E", "offset=32768", img, "256k")
	m := startMount(t)
	p := m.attach(t, img, "disk")
	pdir := filepath.Join(m.dir, "Partitions", "disk")
	p1 := filepath.Join(pdir, "p1")
	st, err := os.Stat(p1)
	if err != nil || st.Size() != 512*512 {
		t.Fatalf("p1: %v %v; want 262144 bytes", st, err)
	}
	if st, err := os.Stat(filepath.Join(pdir, "p2")); err != nil || st.Size() != (8192-576)*512 {
		t.Fatalf("p2: %v, %v", st, err)
	}
	runTool(t, "", "fsck.ext4", "-n", p1)
	if out := runTool(t, "", "fls", p1); !strings.Contains(out, "lost+found") {
		t.Fatalf("fls p1:\n%s", out)
	}
	// A reader of a partition is a reader of the disk.
	r, err := os.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.OpenFile(p, os.O_WRONLY, 0)
	wantErrno(t, "write-open of the disk while a partition is open", err, syscall.ETXTBSY)
	r.Close()
	// Writes stay inside the partition.
	w, err := os.OpenFile(filepath.Join(pdir, "p2"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteAt([]byte("x"), (8192-576)*512)
	wantErrno(t, "write at the partition's end", err, syscall.ENOSPC)
	w.Close()

	// Repartitioning through the flattened file shows the new table
	// once the writer closes.
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader("label: dos\nstart=64, size=512, type=83\nstart=576, size=1000, type=7\nstart=2048, type=c\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk on the flattened file: %v\n%s", err, out)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(pdir, "p3")); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("p3 did not appear after repartitioning")
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(p)
	// The kernel's cached entry is dropped in the background.
	for i := 0; ; i++ {
		if _, err := os.Stat(pdir); os.IsNotExist(err) {
			break
		}
		if i == 100 {
			t.Fatal("partitions stay after detach")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	return strings.Fields(runTool(t, "", "sha256sum", p))[0]
}

// With --overlay, writes land in DIR/NAME.qcow2 and never in the image;
// qemu reads the overlay, and attaching again resumes it.
func TestMountOverlay(t *testing.T) {
	raw, _ := mbrDisk(t, 3<<20+512)
	base := filepath.Join(t.TempDir(), "base.vmdk")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, base)
	baseHash := sha256File(t, base)
	ovDir := t.TempDir()
	m := startMount(t, "--overlay", ovDir)
	p := m.attach(t, base, "disk")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("write-open with --overlay: %v\n%s", err, m.log())
	}
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 50; i++ {
		buf := make([]byte, 1+r.Intn(100000))
		r.Read(buf)
		if _, err := f.WriteAt(buf, r.Int63n(3<<20-100000)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	through := filepath.Join(t.TempDir(), "through.raw")
	runTool(t, "", "cp", p, through)
	if got := sha256File(t, base); got != baseHash {
		t.Fatal("the image changed although writes go to the overlay")
	}
	ov := filepath.Join(ovDir, "disk.qcow2")
	if out := runTool(t, "", "qemu-img", "info", "--backing-chain", ov); !strings.Contains(out, base) {
		t.Fatalf("qemu-img info of the overlay:\n%s", out)
	}
	runTool(t, "", "qemu-img", "check", ov)
	conv := filepath.Join(t.TempDir(), "conv.raw")
	runTool(t, "", "qemu-img", "convert", "-O", "raw", ov, conv)
	runTool(t, "", "cmp", conv, through)

	// Detach and attach again: the overlay is resumed.
	os.Remove(p)
	p = m.attach(t, base, "disk")
	runTool(t, "", "cmp", p, through)
	os.Remove(p)
	// Another image under the same name does not match the overlay.
	wantErrno(t, "attach of another image over an existing overlay", os.Symlink(raw, p), syscall.EIO)
	if st, _ := os.ReadFile(filepath.Join(m.dir, "status")); !strings.Contains(string(st), "refusing it") {
		t.Fatalf("status does not explain the refused overlay:\n%s", st)
	}
}

// Pages the kernel keeps for readers are dropped once a writer of the
// disk, or of one of its partitions, has changed it.
func TestMountCacheDroppedAfterWrite(t *testing.T) {
	img, data := mbrDisk(t, 1<<20)
	m := startMount(t)
	p := m.attach(t, img, "disk")
	p1 := filepath.Join(m.dir, "Partitions", "disk", "p1")
	for round := 0; round < 3; round++ {
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("round %d: disk content differs before the write", round)
		}
		os.ReadFile(p1) // fill its cache too
		// Write through the partition, then through the disk.
		target, off := p1, int64(100)
		if round%2 == 1 {
			target, off = p, 64*512+100
		}
		patch := bytes.Repeat([]byte{byte(0xa0 + round)}, 5000)
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(patch, off); err != nil {
			t.Fatal(err)
		}
		f.Close()
		copy(data[64*512+100:], patch)
		for i := 0; ; i++ {
			got, err := os.ReadFile(p)
			if err == nil {
				if !bytes.Equal(got, data) {
					t.Fatalf("round %d: stale data read after a write through %s", round, filepath.Base(target))
				}
				break
			}
			if i == 100 {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got, _ := os.ReadFile(p1); !bytes.Equal(got, data[64*512:64*512+len(got)]) || len(got) != 512*512 {
			t.Fatalf("round %d: stale partition data", round)
		}
	}
}

// Writable formats attach as 0644 and take unaligned writes through the
// mount; qemu-img then reads exactly what was written and finds the image
// consistent.
func TestMountWriteFormats(t *testing.T) {
	raw, orig := mbrDisk(t, 4<<20)
	m := startMount(t)
	for _, c := range []struct {
		format string // qemu's name
		opts   []string
		check  bool // qemu-img check supports the format
	}{
		{"vdi", nil, true},
		{"vmdk", nil, true},
		{"qcow2", nil, true},
		{"qed", nil, true},
		{"vpc", []string{"-o", "force_size=on"}, false},
		{"parallels", nil, true},
	} {
		t.Run(c.format, func(t *testing.T) {
			data := append([]byte(nil), orig...)
			img := filepath.Join(t.TempDir(), "disk."+c.format)
			runTool(t, "", "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", c.format}, c.opts...), raw, img)...)
			p := m.attach(t, img, c.format)
			if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
				t.Fatalf("mode %v, want 0644", st.Mode())
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(3))
			for i := 0; i < 100; i++ {
				buf := make([]byte, 1+r.Intn(50000))
				r.Read(buf)
				off := r.Int63n(int64(len(data) - len(buf)))
				if _, err := f.WriteAt(buf, off); err != nil {
					t.Fatal(err)
				}
				copy(data[off:], buf)
			}
			f.Close()
			os.Remove(p)
			for i := 0; isOpenBy(img) && i < 100; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if c.check {
				runTool(t, "", "qemu-img", "check", "-f", c.format, img)
			}
			out := filepath.Join(t.TempDir(), "out.raw")
			runTool(t, "", "qemu-img", "convert", "-f", c.format, "-O", "raw", img, out)
			if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
				t.Fatal("qemu-img reads something else than what was written through the mount")
			}
		})
	}
}

// isOpenBy reports whether any process has path open.
func isOpenBy(path string) bool {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			return true
		}
	}
	return false
}

// A detached file stays readable through handles opened before; the
// image is closed at the last release.
func TestMountDetachWhileOpen(t *testing.T) {
	img, data := mbrDisk(t, 1<<20)
	m := startMount(t)
	p := m.attach(t, img, "disk")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(data))
	if n, err := f.ReadAt(buf, 0); n != len(data) || !bytes.Equal(buf, data) {
		t.Fatalf("read after detach: %d, %v", n, err)
	}
	f.Close()
	for i := 0; isOpenBy(img) && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if isOpenBy(img) {
		t.Fatal("the image is still open after the last handle of a detached file closed")
	}
}

// -o ro mounts read-only: nothing can be attached; IMAGE arguments show.
func TestMountReadOnlyMount(t *testing.T) {
	img, _ := mbrDisk(t, 1<<20)
	m := startMount(t, "-o", "ro", "--", img)
	runTool(t, "", "cmp", img, filepath.Join(m.flat, "disk"))
	wantErrno(t, "attach on a read-only mount", os.Symlink(img, filepath.Join(m.flat, "x")), syscall.EROFS)
	_, err := os.OpenFile(filepath.Join(m.flat, "disk"), os.O_WRONLY, 0)
	wantErrno(t, "write-open on a read-only mount", err, syscall.EROFS)
}

// The daemon raises the kernel's readahead for its files to 1 MiB. It
// finds its mount through /proc/self/mountinfo, where a space in the path
// is escaped.
func TestMountReadahead(t *testing.T) {
	m := startMountAt(t, filepath.Join(t.TempDir(), "mount point"))
	dev := strings.TrimSpace(runTool(t, "", "mountpoint", "-d", m.dir))
	knob := "/sys/class/bdi/" + dev + "/read_ahead_kb"
	got := ""
	// The mount is visible a moment before the daemon sets the knob.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(knob)
		if err != nil {
			t.Fatal(err)
		}
		if got = strings.TrimSpace(string(b)); got == "1024" {
			return
		}
	}
	t.Fatalf("%s = %s, want 1024\n%s", knob, got, m.log())
}
