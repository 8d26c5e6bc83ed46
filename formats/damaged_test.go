package formats

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// wantCorruptAt wants Open to refuse path as a corrupt format image,
// naming offset off.
func wantCorruptAt(t *testing.T, path, format string, off int64) {
	t.Helper()
	d, err := Open(path, Options{ReadOnly: true})
	if err == nil {
		d.Close()
		t.Fatalf("Open(%s) = %s disk, want corrupt %s", path, d.Info().Format, format)
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Format != format || fe.Off != off || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(%s): got %v, want a corrupt %s error at offset %#x", path, err, format, off)
	}
}

// wantRawWarned wants path opened as raw with a warning that its name
// names format.
func wantRawWarned(t *testing.T, path, ext string) {
	t.Helper()
	d := mustOpen(t, path, Options{ReadOnly: true})
	info := d.Info()
	if info.Format != "raw" || len(info.Warnings) != 1 || !strings.Contains(info.Warnings[0], "the name says "+ext) {
		t.Fatalf("%s: got %s with warnings %q, want raw with a warning about .%s", path, info.Format, info.Warnings, ext)
	}
}

func TestDamagedParallelsHeader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.hds")
	qemuImg(t, "create", "-q", "-f", "parallels", p, "4M")
	b := patchFile(t, p, func(b []byte) {
		binary.LittleEndian.PutUint32(b[16:], 3) // version
	})
	wantCorruptAt(t, p, "parallels", 16)
	if err := os.WriteFile(p, b[:40], 0o644); err != nil { // header cut short
		t.Fatal(err)
	}
	wantCorruptAt(t, p, "parallels", 0)
}

func TestDamagedDMGTrailer(t *testing.T) {
	b := patternDisk(1<<20, 7)
	k := b[len(b)-512:]
	copy(k, "koly")
	binary.BigEndian.PutUint32(k[4:], 5) // version
	binary.BigEndian.PutUint32(k[8:], 512)
	p := writeTemp(t, "a.dmg", b)
	wantCorruptAt(t, p, "dmg", int64(len(b))-512+4)
	binary.BigEndian.PutUint32(k[4:], 4)
	binary.BigEndian.PutUint32(k[8:], 200) // header size
	p = writeTemp(t, "b.dmg", b)
	wantCorruptAt(t, p, "dmg", int64(len(b))-512+8)
	// A trailer cut off by truncation leaves no trace: raw, with a warning.
	p = writeTemp(t, "c.dmg", b[:len(b)-1024])
	wantRawWarned(t, p, "dmg")
}

func TestDamagedQcow2Version(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", p, "1M")
	b := patchFile(t, p, func(b []byte) {
		binary.BigEndian.PutUint32(b[4:], 0)
	})
	wantCorruptAt(t, p, "qcow2", 4)
	binary.BigEndian.PutUint32(b[4:], 1)
	if err := os.WriteFile(p, b[:20], 0o644); err != nil { // qcow 1 header cut short
		t.Fatal(err)
	}
	wantCorruptAt(t, p, "qcow", 0)
}

func TestDamagedTruncatedVHD(t *testing.T) {
	dir := t.TempDir()
	fixed := filepath.Join(dir, "fixed.vhd")
	qemuImg(t, "create", "-q", "-f", "vpc", "-o", "subformat=fixed", fixed, "4M")
	st, err := os.Stat(fixed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fixed, st.Size()-512); err != nil { // the footer is gone
		t.Fatal(err)
	}
	wantRawWarned(t, fixed, "vhd")
	dyn := filepath.Join(dir, "dyn.vhd")
	qemuImg(t, "create", "-q", "-f", "vpc", dyn, "4M")
	if err := os.Truncate(dyn, 1024); err != nil { // footer copy only
		t.Fatal(err)
	}
	if _, err := Open(dyn, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated dynamic VHD: got %v, want corrupt", err)
	}
}

func TestDamagedVMDK(t *testing.T) {
	dir := t.TempDir()
	// A hosted sparse extent cut short is refused.
	sp := filepath.Join(dir, "sparse.vmdk")
	qemuImg(t, "create", "-q", "-f", "vmdk", sp, "4M")
	if err := os.Truncate(sp, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(sp, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated sparse VMDK: got %v, want corrupt", err)
	}
	// A flat extent without its descriptor: raw, with a warning.
	flat := filepath.Join(dir, "flat.vmdk")
	qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", flat, "4M")
	wantRawWarned(t, filepath.Join(dir, "flat-flat.vmdk"), "vmdk")
	// A flat extent shorter than the descriptor says: exactly the missing
	// range fails to read, and the attach warns with the same sentence.
	if err := os.Truncate(filepath.Join(dir, "flat-flat.vmdk"), 3<<20); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, flat, Options{ReadOnly: true})
	w := d.Info().Warnings
	if len(w) != 1 || !strings.Contains(w[0], "bytes 3145728 to 4194304 of the disk are missing") {
		t.Fatalf("warnings %q, want one naming the missing range", w)
	}
	buf := make([]byte, 64<<10)
	if _, err := d.ReadAt(buf, 3<<20-64<<10); err != nil {
		t.Errorf("read before the missing range: %v", err)
	}
	if _, err := d.ReadAt(buf[:512], 3<<20); !errors.Is(err, ErrCorrupt) || err.Error() != w[0] {
		t.Errorf("read of the missing range: got %v, want the warning's error", err)
	}
}

func TestDamagedTinyRaw(t *testing.T) {
	p := writeTemp(t, "one", []byte{1})
	if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "smaller than one") {
		t.Fatalf("1-byte file: got %v, want refused as corrupt", err)
	}
	// A plain raw file with a neutral name gets no warning.
	d := mustOpen(t, writeTemp(t, "disk.img", make([]byte, 4096)), Options{ReadOnly: true})
	if w := d.Info().Warnings; len(w) != 0 {
		t.Errorf("raw disk.img: warnings %q", w)
	}
}

func TestDamagedPartitionPastEnd(t *testing.T) {
	p := writeTemp(t, "disk.img", make([]byte, 4<<20))
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=4096, type=83\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if err := os.Truncate(p, 2<<20); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, p, Options{ReadOnly: true})
	parts, err := Partitions(d)
	if err != nil {
		t.Fatal(err)
	}
	w := PartitionWarnings(parts, d.Size())
	if len(w) != 1 || !strings.Contains(w[0], "partition 1 (mbr) at bytes 1048576 to 3145728 runs past the end of the 2097152-byte disk") {
		t.Fatalf("warnings %q", w)
	}
}
