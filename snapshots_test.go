package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// info lists the points in time; flatten and verify --snapshot read one
// as qemu-img convert -l (or of the chain member) does.
func TestSnapshotCommands(t *testing.T) {
	img, _, want := qcow2WithSnapshots(t)
	out, err := exec.Command(vdflatBin, "info", "--json", img).Output()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	var reports []imageReport
	if err := json.Unmarshal(out, &reports); err != nil || len(reports) != 1 {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	var names []string
	for _, s := range reports[0].Snapshots {
		names = append(names, s.Name)
		if s.Kind == "snapshot" && s.Created.IsZero() {
			t.Fatalf("snapshot %+v without its date", s)
		}
	}
	if got := strings.Join(names, "|"); got != `before|a\x2fb|parent-1-base.qcow2` {
		t.Fatalf("info lists %q", names)
	}
	text, err := vdflatCmd(t, "info", img)
	if err != nil || !strings.Contains(text, "point in time before:") || !strings.Contains(text, "snapshot id 1, 20") {
		t.Fatalf("info: %v\n%s", err, text)
	}
	for _, name := range []string{"before", `a\x2fb`, "a/b", "2", "parent-1-base.qcow2"} {
		key := name
		if name == "a/b" || name == "2" {
			key = `a\x2fb` // by label and by id
		}
		dst := filepath.Join(t.TempDir(), "out.raw")
		if out, err := vdflatCmd(t, "flatten", "-q", "--snapshot", name, img, dst); err != nil {
			t.Fatalf("flatten --snapshot %s: %v\n%s", name, err, out)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want[key]) {
			t.Fatalf("flatten --snapshot %s: %d bytes differ from qemu's %d (%v)", name, len(got), len(want[key]), err)
		}
		sum := md5.Sum(want[key])
		out, err := vdflatCmd(t, "verify", "-q", "--snapshot", name, img)
		if err != nil || !strings.Contains(out, "md5     "+hex.EncodeToString(sum[:])) {
			t.Fatalf("verify --snapshot %s: %v\n%s", name, err, out)
		}
	}
	out2, err := vdflatCmd(t, "flatten", "-q", "--snapshot", "nope", img, filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(out2, `no snapshot "nope"`) {
		t.Fatalf("an unknown snapshot: %v\n%s", err, out2)
	}
}

// The tree keeps /Snapshots and its directories read-only.
func TestSnapshotDirsReadOnly(t *testing.T) {
	tr := newTree(0, 0, 8)
	top, _ := tr.lookup(tr.root, snapshotsDirName)
	sd := top.(*dir)
	if _, err := tr.mkdir(sd, "x"); err != syscall.EROFS {
		t.Fatalf("mkdir: %v, want EROFS", err)
	}
	if err := tr.available(sd, "x"); err != syscall.EROFS {
		t.Fatalf("available: %v, want EROFS", err)
	}
	if _, _, err := tr.remove(tr.root, snapshotsDirName, true); err != syscall.EROFS {
		t.Fatalf("rmdir: %v, want EROFS", err)
	}
	if _, err := tr.rename(tr.root, snapshotsDirName, tr.root, "y"); err != syscall.EROFS {
		t.Fatalf("rename: %v, want EROFS", err)
	}
	if _, err := tr.mkdir(tr.root, "z"); err != nil {
		t.Fatalf("mkdir elsewhere: %v", err)
	}
}
