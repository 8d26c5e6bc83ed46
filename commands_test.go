package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func vdflatCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(vdflatBin, args...).CombinedOutput()
	return string(out), err
}

// info --json agrees with qemu-img info and sfdisk --json.
func TestInfoJSON(t *testing.T) {
	raw, _ := mbrDisk(t, 5<<20)
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img)
	out, err := exec.Command(vdflatBin, "info", "--json", img).Output()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	var reports []imageReport
	if err := json.Unmarshal(out, &reports); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var q struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
		ClusterSize int64  `json:"cluster-size"`
	}
	json.Unmarshal([]byte(runTool(t, "", "qemu-img", "info", "--output=json", img)), &q)
	r := reports[0]
	if r.Format != q.Format || r.Size != q.VirtualSize || r.Info.ClusterSize != q.ClusterSize {
		t.Fatalf("info: %s %d %d; qemu-img: %s %d %d", r.Format, r.Size, r.Info.ClusterSize, q.Format, q.VirtualSize, q.ClusterSize)
	}
	var sf struct {
		PartitionTable struct {
			Partitions []struct{ Start, Size int64 } `json:"partitions"`
		} `json:"partitiontable"`
	}
	json.Unmarshal([]byte(runTool(t, "", "sfdisk", "--json", raw)), &sf)
	if len(r.Partitions) != len(sf.PartitionTable.Partitions) {
		t.Fatalf("partitions: %+v; sfdisk: %+v", r.Partitions, sf.PartitionTable.Partitions)
	}
	for i, p := range sf.PartitionTable.Partitions {
		if r.Partitions[i].Start != p.Start*512 || r.Partitions[i].Size != p.Size*512 {
			t.Fatalf("partition %d: %+v; sfdisk: %+v", i, r.Partitions[i], p)
		}
	}
	text, err := vdflatCmd(t, "info", img)
	if err != nil || !strings.Contains(text, "qcow2") || !strings.Contains(text, "(5242880 bytes)") {
		t.Fatalf("info text: %v\n%s", err, text)
	}
}

// flatten writes what qemu-img convert writes, with holes, and never
// overwrites without --force.
func TestFlatten(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "sparse.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", img, "64M")
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 3M", "-c", "write -P 0x11 40M 64k", img)
	want := filepath.Join(dir, "want.raw")
	runTool(t, "", "qemu-img", "convert", "-O", "raw", img, want)
	out := filepath.Join(dir, "out.raw")
	text, err := vdflatCmd(t, "flatten", "--hash", "sha256", img, out)
	if err != nil {
		t.Fatalf("flatten: %v\n%s", err, text)
	}
	runTool(t, "", "cmp", want, out)
	if !strings.Contains(text, sha256File(t, want)) {
		t.Fatalf("flatten --hash printed %q, want the sha256 of the content", text)
	}
	// 3 MiB + 64 KiB of data in 64 MiB: the rest must be holes.
	if kib, _ := strconv.Atoi(strings.Fields(runTool(t, "", "du", "-k", out))[0]); kib > 8<<10 {
		t.Fatalf("output not sparse: %d KiB used", kib)
	}
	if text, err := vdflatCmd(t, "flatten", img, out); err == nil || !strings.Contains(text, "--force") {
		t.Fatalf("flatten over an existing file: %v %s", err, text)
	}
	if text, err := vdflatCmd(t, "flatten", "--force", img, out); err != nil {
		t.Fatalf("flatten --force: %v %s", err, text)
	}
	runTool(t, "", "cmp", want, out)
	// To stdout.
	cmd := exec.Command(vdflatBin, "flatten", img, "-")
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	wantBytes, _ := os.ReadFile(want)
	if string(stdout) != string(wantBytes) {
		t.Fatal("flatten to stdout differs from qemu-img convert")
	}
	// No partial file is left when the image cannot be read.
	if _, err := vdflatCmd(t, "flatten", filepath.Join(dir, "missing.qcow2"), filepath.Join(dir, "x.raw")); err == nil {
		t.Fatal("flatten of a missing image succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "partial") || e.Name() == "x.raw" {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
}

// verify prints the hashes sha256sum and md5sum compute, exits 0 on a
// sound image and 1 on a damaged one.
func TestVerify(t *testing.T) {
	raw, _ := mbrDisk(t, 2<<20)
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img)
	text, err := vdflatCmd(t, "verify", "-q", img)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, text)
	}
	if !strings.Contains(text, sha256File(t, raw)) || !strings.Contains(text, strings.Fields(runTool(t, "", "md5sum", raw))[0]) {
		t.Fatalf("verify output lacks the content's hashes:\n%s", text)
	}
	// A truncated image: the data clusters are gone.
	st, _ := os.Stat(img)
	os.Truncate(img, st.Size()/2)
	if text, err := vdflatCmd(t, "verify", "-q", img); err == nil {
		t.Fatalf("verify of a truncated image succeeded:\n%s", text)
	}
}

// verify compares a VMDK's grain tables with their redundant copies.
func TestVerifyVMDKRedundantTables(t *testing.T) {
	raw, _ := mbrDisk(t, 2<<20)
	img := filepath.Join(t.TempDir(), "disk.vmdk")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, img)
	if text, err := vdflatCmd(t, "verify", "-q", img); err != nil {
		t.Fatalf("verify of a sound vmdk: %v\n%s", err, text)
	}
	// Damage one entry of the primary grain table (the redundant
	// directory and tables come first in qemu's layout): the data read
	// changes, and verify must say the copies disagree.
	hdr := make([]byte, 512)
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.ReadAt(hdr, 0)
	gdOff := int64(binary.LittleEndian.Uint64(hdr[56:])) * 512
	ent := make([]byte, 4)
	f.ReadAt(ent, gdOff)
	gtOff := int64(binary.LittleEndian.Uint32(ent)) * 512
	f.WriteAt([]byte{0, 0, 0, 0}, gtOff)
	f.Close()
	text, err := vdflatCmd(t, "verify", "-q", img)
	if err == nil || !strings.Contains(text, "differs from its redundant copy") {
		t.Fatalf("verify of a damaged vmdk: %v\n%s", err, text)
	}
}
