package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// refuseOverlap opens path writable, writes one sector at guest offset
// off and wants the write refused as an overlap, with the file unchanged.
func refuseOverlap(t *testing.T, path string, off int64, what string) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := bytes.Repeat([]byte{0x5a}, SectorSize)
	_, err = d.WriteAt(p, off)
	if !IsOverlap(err) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), what) {
		t.Errorf("write at %d: got %v, want an overlap with the %s wrapping ErrCorrupt", off, err, what)
	}
	found, err := CheckOverlaps(d)
	if err == nil && len(found) == 0 {
		if ck, ok := d.(Checker); ok {
			found, err = ck.Check()
		}
	}
	if err != nil || !strings.Contains(strings.Join(found, "\n"), what) {
		t.Errorf("checks: got %q, %v; want a finding naming the %s", found, err, what)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the image file changed although the write was refused")
	}
}

// A qcow2 L2 entry that points at the L1 table's cluster, made by editing
// an image qemu-img made; qemu-io refuses the same write.
func TestOverlapQcow2L2OnL1(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", p, "1M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 64k", p)
	b := qcow2PointL2AtL1(t, p)
	// The oracle, on a copy: qemu marks an image corrupt when it refuses.
	cp := filepath.Join(t.TempDir(), "copy.qcow2")
	if err := os.WriteFile(cp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("qemu-io", "-f", "qcow2", "-c", "write 0 16", cp).CombinedOutput()
	if !strings.Contains(string(out), "Preventing invalid write on metadata") {
		t.Fatalf("qemu-io did not refuse the write:\n%s", out)
	}
	refuseOverlap(t, p, 0, "L1 table")
}

// An image made by qemu-img with 64 KiB written at 0 by qemu-io, then
// patched so that the first data cluster points at metadata: writing
// there must be refused and leave the file as it was.
func TestOverlapCrafted(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	cases := []struct {
		name, qemuFmt string
		opts          []string
		patch         func(b []byte)
		what          string
	}{
		// The case: a VMDK whose grain 0 points at its own grain table.
		{"a.vmdk", "vmdk", []string{"-o", "subformat=monolithicSparse"}, func(b []byte) {
			gt := le.Uint32(b[le.Uint64(b[56:])*512:])
			le.PutUint32(b[int64(gt)*512:], gt)
		}, "grain table"},
		// A QED L2 entry that points at the L1 table.
		{"a.qed", "qed", nil, func(b []byte) {
			l1 := le.Uint64(b[40:])
			le.PutUint64(b[le.Uint64(b[l1:]):], l1)
		}, "L1 table"},
		// A dynamic VHD whose BAT entry for block 0 points at the BAT.
		{"a.vhd", "vpc", nil, func(b []byte) {
			bat := be.Uint64(b[be.Uint64(b[16:])+16:]) // footer copy -> dynamic header -> BAT
			be.PutUint32(b[bat:], uint32(bat/512))
		}, "block table"},
		// A Parallels BAT entry for cluster 0 pointing at the BAT. In the
		// extended format entries count clusters and the data area starts
		// at cluster 1, so no entry can point below it; in the older
		// format entries count sectors: sector 1 is the BAT.
		{"a.hds", "parallels", nil, func(b []byte) {
			copy(b, "WithoutFreeSpace")
			le.PutUint32(b[parallelsHeaderLen:], 1)
		}, "block table"},
	}
	for _, c := range cases {
		t.Run(c.qemuFmt, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), c.name)
			qemuImg(t, append(append([]string{"create", "-q", "-f", c.qemuFmt}, c.opts...), p, "8M")...)
			run(t, "qemu-io", "-f", c.qemuFmt, "-c", "write -P 0xaa 0 64k", p)
			patchFile(t, p, c.patch)
			refuseOverlap(t, p, 0, c.what)
		})
	}
}

// A qcow2 overlay as vdflat creates it (--overlay), whose L2 entry was
// then pointed at its L1 table.
func TestOverlapOverlay(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "ov.qcow2")
	if err := CreateOverlay(ov, base, "raw", 1<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 64k", ov)
	qcow2PointL2AtL1(t, ov)
	refuseOverlap(t, ov, 0, "L1 table")
}

// VDI data lies at data_off + block * size, and Open checks that data_off
// follows the header and block map: a VDI whose data offset lies inside
// its block map is refused at attach, so no write can reach the map.
func TestOverlapVDIDataInMap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.vdi")
	qemuImg(t, "create", "-q", "-f", "vdi", p, "4M")
	patchFile(t, p, func(b []byte) {
		le := binary.LittleEndian
		le.PutUint32(b[0x158:], le.Uint32(b[0x154:])) // data offset = block map offset
	})
	_, err := Open(p, Options{})
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Off != 0x158 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: got %v, want a corrupt data offset at 0x158", err)
	}
}

// patchFile applies edit to the bytes of the file at p, writes them back
// and returns them.
func patchFile(t *testing.T, p string, edit func(b []byte)) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edit(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// qcow2PointL2AtL1 points guest cluster 0's L2 entry (allocated, with
// COPIED set) at the L1 table of the qcow2 file p, and returns the bytes.
func qcow2PointL2AtL1(t *testing.T, p string) []byte {
	return patchFile(t, p, func(b []byte) {
		be := binary.BigEndian
		l1 := be.Uint64(b[40:])
		l2 := be.Uint64(b[l1:]) & qcow2OffMask
		be.PutUint64(b[l2:], l1|qcow2Copied)
	})
}
