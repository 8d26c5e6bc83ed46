package main

// Trust: what a user, or a hostile local user, can make the mount do.
// Each test plays the attack for real on a mount and expects the refusal.

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
