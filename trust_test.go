package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A write that would land on the image's own metadata fails with EIO,
// leaves the image file as it was, and the image read-only for the rest
// of the attach, with the reason in the status file and the log.
func TestMountOverlapRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.qcow2")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "qcow2", p, "1M")
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 64k", p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Point guest cluster 0's L2 entry at the L1 table (with COPIED set).
	be := binary.BigEndian
	l1 := be.Uint64(b[40:])
	l2 := be.Uint64(b[l1:]) & 0x00fffffffffffe00
	be.PutUint64(b[l2:], l1|1<<63)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMount(t)
	flat := m.attach(t, p, "a")
	f, err := os.OpenFile(flat, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(bytes.Repeat([]byte{1}, 16), 0)
	f.Close()
	wantErrno(t, "write onto the L1 table", err, syscall.EIO)
	after, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(after, b) {
		t.Fatalf("image changed by a refused write (%v)", err)
	}
	_, err = os.OpenFile(flat, os.O_WRONLY, 0)
	wantErrno(t, "write-open after the refusal", err, syscall.EROFS)
	status, _ := os.ReadFile(filepath.Join(m.dir, "status"))
	if !strings.Contains(string(status), "L1 table") || !strings.Contains(string(status), "writes refused") {
		t.Errorf("status does not say why writes are refused:\n%s", status)
	}
	if !strings.Contains(m.log(), "read-only until it is attached again") {
		t.Errorf("log does not say why writes are refused:\n%s", m.log())
	}
}

// Damaged input through the mount: a header that fails its format's
// checks and a file under one sector are refused with EIO (the status
// file says why); a .vhd without its footer is served as raw with a
// warning in the status file.
func TestMountDamagedInput(t *testing.T) {
	dir := t.TempDir()
	m := startMount(t)
	tiny := filepath.Join(dir, "tiny")
	if err := os.WriteFile(tiny, []byte{1}, 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "1-byte file", os.Symlink(tiny, filepath.Join(m.flat, "tiny")), syscall.EIO)
	hds := filepath.Join(dir, "bad.hds")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "parallels", hds, "4M")
	b, err := os.ReadFile(hds)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[16:], 9)
	if err := os.WriteFile(hds, b, 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "Parallels header version 9", os.Symlink(hds, filepath.Join(m.flat, "hds")), syscall.EIO)
	vhd := filepath.Join(dir, "cut.vhd")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed", vhd, "4M")
	st, err := os.Stat(vhd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(vhd, st.Size()-512); err != nil {
		t.Fatal(err)
	}
	m.attach(t, vhd, "cut")
	status, _ := os.ReadFile(filepath.Join(m.dir, "status"))
	for _, want := range []string{"smaller than one 512-byte sector", "at offset 0x10: header version 9", "warning: /FlattenedImages/cut: the name says vhd"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if !strings.Contains(m.log(), "the name says vhd") {
		t.Errorf("log lacks the warning:\n%s", m.log())
	}
}

// info shows the raw-by-name warning and partitions past the end; verify
// reports them and a VMDK grain stored on its own grain table.
func TestCommandsDamagedFindings(t *testing.T) {
	dir := t.TempDir()
	raw, _ := mbrDisk(t, 4<<20)
	cut := filepath.Join(dir, "cut.vhd")
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, b[:1<<20], 0o644); err != nil { // the second partition runs past the end
		t.Fatal(err)
	}
	out, _ := vdflatCmd(t, "info", cut)
	for _, want := range []string{"the name says vhd", "partition 2 (mbr)", "runs past the end of the 1048576-byte disk"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	out, err = vdflatCmd(t, "verify", "-q", cut)
	if err == nil || !strings.Contains(out, "finding: partition 2 (mbr)") {
		t.Errorf("verify: %v\n%s", err, out)
	}

	vmdk := filepath.Join(dir, "a.vmdk")
	runTool(t, "", "qemu-img", "create", "-q", "-f", "vmdk", vmdk, "4M")
	runTool(t, "", "qemu-io", "-f", "vmdk", "-c", "write -P 0xaa 0 64k", vmdk)
	if b, err = os.ReadFile(vmdk); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	gt := le.Uint32(b[le.Uint64(b[56:])*512:])
	le.PutUint32(b[int64(gt)*512:], gt)
	if err := os.WriteFile(vmdk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = vdflatCmd(t, "verify", "-q", vmdk)
	if err == nil || !strings.Contains(out, "on the grain table at") {
		t.Errorf("verify of a grain on its grain table: %v\n%s", err, out)
	}
}
