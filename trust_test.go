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
