package formats

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vmdkFixture converts patternDisk data of size bytes to a VMDK of the
// given subformat with qemu-img and returns its path and qemu's reading
// of it (the oracle).
func vmdkFixture(t testing.TB, dir, name, subformat string, size, seed int64, opts ...string) (string, []byte) {
	t.Helper()
	raw := filepath.Join(dir, name+".raw")
	if err := os.WriteFile(raw, patternDisk(size, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".vmdk")
	o := "subformat=" + subformat
	for _, x := range opts {
		o += "," + x
	}
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", o, raw, p)
	os.Remove(raw)
	return p, qemuRaw(t, "vmdk", p)
}

// qemuIO runs qemu-io commands on a vmdk image.
func vmdkQemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "vmdk"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, path)...)
}

// vmdkHashFiles returns the md5 of each file, to prove a parent unchanged.
func vmdkHashFiles(t testing.TB, paths ...string) string {
	t.Helper()
	h := md5.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func vmdkDirFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var vmdkSubformats = []string{"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"}

// vmdkCompare is a quicker checkDisk (bytes.Equal instead of a per-byte
// loop, which is slow under -race): whole-disk 1 MiB reads and a few
// unaligned-length reads.
func vmdkCompare(t testing.TB, d Disk, want []byte) {
	t.Helper()
	if d.Size() != int64(len(want)) {
		t.Fatalf("Size() = %d, want %d", d.Size(), len(want))
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
		n := min(int64(len(buf)), int64(len(want))-off)
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], want[off:off+n]) {
			t.Fatalf("data at %d+%d differs", off, n)
		}
	}
	for i, off := range []int64{512, 65536 - 1024, int64(len(want)) - 3*512} {
		n := int64(512 * (1 + 37*i))
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
		w := make([]byte, n)
		copy(w, want[min(off, int64(len(want))):])
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("data at %d+%d differs", off, n)
		}
	}
}

func TestVMDKSubformatsRead(t *testing.T) {
	// Sizes that are not multiples of the 64 KiB grain, nor of a grain table's 32 MiB.
	for i, size := range []int64{1<<20 + 7*512, 3<<20 + 512} {
		for _, sf := range vmdkSubformats {
			if i > 0 && sf != "monolithicSparse" {
				continue // keep the race-enabled run short
			}
			t.Run(fmt.Sprintf("%s-%d", sf, size), func(t *testing.T) {
				dir := t.TempDir()
				p, want := vmdkFixture(t, dir, "disk", sf, size, int64(i+1), "adapter_type=lsilogic")
				before := vmdkHashFiles(t, vmdkDirFiles(t, dir)...)
				d := mustOpen(t, p, Options{ReadOnly: true})
				if sf == "monolithicSparse" || sf == "streamOptimized" {
					checkDisk(t, d, want)
					checkConcurrentReads(t, d, want)
				} else {
					vmdkCompare(t, d, want)
				}
				info := d.Info()
				if info.Format != "vmdk" || info.Variant != sf || !info.ReadOnly {
					t.Fatalf("info %+v", info)
				}
				if strings.Contains(sf, "Sparse") || sf == "streamOptimized" {
					if info.ClusterSize != 65536 {
						t.Fatalf("cluster size %d", info.ClusterSize)
					}
				}
				if info.Metadata["CID"] == "" || info.Metadata["parentCID"] != "ffffffff" || info.Metadata["ddb.adapterType"] != "lsilogic" {
					t.Fatalf("metadata %v", info.Metadata)
				}
				if len(info.Files) < 1 || info.Files[0] != p || (strings.Contains(sf, "Flat") && len(info.Files) != 2) {
					t.Fatalf("files %v", info.Files)
				}
				vmdkCheckMap(t, d, want)
				d.Close()
				if after := vmdkHashFiles(t, vmdkDirFiles(t, dir)...); after != before {
					t.Fatal("a read-only open changed the image files")
				}
			})
		}
	}
}

// vmdkCheckMap checks that every range Map calls unallocated reads as zeros.
func vmdkCheckMap(t testing.TB, d Disk, want []byte) {
	t.Helper()
	m := d.(Mapper)
	for off := int64(0); off < d.Size(); {
		alloc, n, err := m.Map(off, d.Size()-off)
		if err != nil || n <= 0 {
			t.Fatalf("Map(%d) = %v, %d, %v", off, alloc, n, err)
		}
		if !alloc {
			end := min(off+n, int64(len(want)))
			if !allZero(want[off:end]) {
				t.Fatalf("Map says %d+%d unallocated but it holds data", off, n)
			}
		}
		off += n
	}
}

func TestVMDKSamples(t *testing.T) {
	for _, s := range samples(t, "vmdk") {
		t.Run(s.Path, func(t *testing.T) {
			p := sampleFile(t, s.Path)
			if s.ExpectError() || s.MD5 == "-" {
				_, err := Open(p, Options{ReadOnly: true})
				if err == nil || !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("open: %v, want a corrupt-image error", err)
				}
				t.Logf("%s: %v", s.Path, err)
				return
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Size() != s.VSize {
				t.Fatalf("size %d, want %d", d.Size(), s.VSize)
			}
			if d.Size() <= 64<<20 {
				if got := diskMD5(t, d); got != s.MD5 {
					t.Fatalf("md5 %s, want %s", got, s.MD5)
				}
				return
			}
			// Huge and mostly zero: compare the stored grains and samples of
			// the rest with qemu's conversion (a sparse file).
			raw := filepath.Join(t.TempDir(), "oracle.raw")
			qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
			rf, err := os.Open(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer rf.Close()
			m := d.(Mapper)
			stored := int64(0)
			for off := int64(0); off < d.Size(); {
				alloc, n, err := m.Map(off, d.Size()-off)
				if err != nil {
					t.Fatal(err)
				}
				if alloc || off%(1<<30) == 0 {
					k := min(n, 4<<20)
					if alloc {
						k = n
						stored += n
					}
					got, want := make([]byte, k), make([]byte, k)
					if _, err := d.ReadAt(got, off); err != nil {
						t.Fatal(err)
					}
					if _, err := rf.ReadAt(want, off); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("data at %d+%d differs from qemu's", off, k)
					}
				}
				off += n
			}
			// Every byte qemu wrote lies in a range Map calls stored.
			for off := int64(0); ; {
				data, err := rf.Seek(off, 3) // SEEK_DATA
				if err != nil {
					break
				}
				hole, _ := rf.Seek(data, 4) // SEEK_HOLE
				buf := make([]byte, hole-data)
				rf.ReadAt(buf, data)
				for i := 0; i < len(buf); i += 512 {
					if !allZero(buf[i:min(len(buf), i+512)]) {
						if alloc, _, _ := m.Map(data+int64(i), 512); !alloc {
							t.Fatalf("qemu has data at %d, Map says unallocated", data+int64(i))
						}
					}
				}
				off = hole
			}
			if stored == 0 {
				t.Fatal("no stored grains found")
			}
		})
	}
}

func TestVMDKSampleRenamed(t *testing.T) {
	// The embedded descriptor names "ext2.vmdk"; the file itself is the extent.
	p := sampleFile(t, "dfvfs/ext2.vmdk")
	q := filepath.Join(filepath.Dir(p), "renamed disk.img")
	if err := os.Rename(p, q); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, q, Options{ReadOnly: true})
	if got := diskMD5(t, d); got != "196066add11fb71c4c49cf1bb50d6d24" {
		t.Fatalf("md5 %s", got)
	}
}

// vmdkWriteCheck writes through an open read-write disk, closes it, and
// compares qemu's reading with the model; qemu-img check must be clean.
func vmdkWriteCheck(t *testing.T, p string, model []byte, seed int64) {
	t.Helper()
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Info().ReadOnly {
		t.Fatalf("read-write open is read-only: %s", d.Info().ReadOnlyReason)
	}
	randomWrites(t, d, model, 40, seed)
	concurrentWrites(t, d, model, 64<<10+512)
	randomWrites(t, d, model, 20, seed+1)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := qemuRaw(t, "vmdk", p); !bytes.Equal(got, model) {
		t.Fatalf("qemu reads something else than was written (len %d vs %d)", len(got), len(model))
	}
	qemuCheck(t, "vmdk", p)
	d = mustOpen(t, p, Options{ReadOnly: true})
	vmdkCompare(t, d, model)
}

func TestVMDKWrite(t *testing.T) {
	for _, sf := range []string{"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"} {
		t.Run(sf, func(t *testing.T) {
			dir := t.TempDir()
			p, want := vmdkFixture(t, dir, "disk", sf, 1<<20+7*512, 7)
			oldCID := mustOpen(t, p, Options{ReadOnly: true}).Info().Metadata["CID"]
			vmdkWriteCheck(t, p, want, 3)
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Info().Metadata["CID"] == oldCID {
				t.Errorf("CID %s unchanged after writes", oldCID)
			}
		})
	}
}

func TestVMDKWriteZeroedGrain(t *testing.T) {
	dir := t.TempDir()
	p, _ := vmdkFixture(t, dir, "disk", "monolithicSparse", 2<<20, 9, "zeroed_grain=on")
	vmdkQemuIO(t, p, "write -z 0 128k", "write -z 1M 64k")
	want := qemuRaw(t, "vmdk", p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	if !strings.Contains(strings.Join(d.Info().Features, ","), "zeroed-grain") {
		t.Fatalf("features %v", d.Info().Features)
	}
	checkDisk(t, d, want)
	d.Close()
	vmdkWriteCheck(t, p, want, 5)
}

// TestVMDKWriteNewGrainTable writes where the grain directory has no table,
// so a grain table (and its redundant copy) must be allocated.
func TestVMDKWriteNewGrainTable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big.vmdk")
	qemuImg(t, "create", "-q", "-f", "vmdk", p, "70M")
	vmdkQemuIO(t, p, "write -P 0x11 0 100k", "write -P 0x22 33M 64k")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 512)
	f.ReadAt(hdr, 0)
	gd, rgd := int64(binary.LittleEndian.Uint64(hdr[56:]))*512, int64(binary.LittleEndian.Uint64(hdr[48:]))*512
	// Tables 2 (64..70 MiB) is empty: drop it from both directories.
	f.WriteAt(make([]byte, 4), gd+2*4)
	f.WriteAt(make([]byte, 4), rgd+2*4)
	f.Close()
	want := qemuRaw(t, "vmdk", p)
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{64 << 20, 66<<20 + 4096, 70<<20 - 512} {
		buf := bytes.Repeat([]byte{byte(off >> 12)}, 8192)
		buf = buf[:min(int64(len(buf)), int64(len(want))-off)]
		if _, err := d.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], buf)
	}
	vmdkCompare(t, d, want)
	d.Close()
	if got := qemuRaw(t, "vmdk", p); !bytes.Equal(got, want) {
		t.Fatal("qemu reads something else than was written")
	}
	qemuCheck(t, "vmdk", p)
	f, _ = os.Open(p)
	defer f.Close()
	var e, re [4]byte
	f.ReadAt(e[:], gd+2*4)
	f.ReadAt(re[:], rgd+2*4)
	if binary.LittleEndian.Uint32(e[:]) == 0 || binary.LittleEndian.Uint32(re[:]) == 0 || e == re {
		t.Fatalf("grain directory entries after allocation: %x %x", e, re)
	}
}

func TestVMDKRedundantDirectory(t *testing.T) {
	dir := t.TempDir()
	p, want := vmdkFixture(t, dir, "disk", "monolithicSparse", 3<<20, 11)
	orig, _ := os.ReadFile(p)
	le := binary.LittleEndian
	gd, rgd := int64(le.Uint64(orig[56:]))*512, int64(le.Uint64(orig[48:]))*512
	gt := int64(le.Uint32(orig[gd:])) * 512
	for name, damage := range map[string]func(b []byte){
		"gd-garbage": func(b []byte) { le.PutUint32(b[gd:], 0xdeadbeef) },
		"gd-zeroed":  func(b []byte) { clear(b[gd : gd+512]) },
		"gd-out-of-file": func(b []byte) {
			le.PutUint64(b[56:], 1<<40)
		},
		"gt-garbage": func(b []byte) {
			for i := int64(0); i < 48; i++ {
				le.PutUint32(b[gt+4*i:], 0xfffffff0-uint32(i))
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			damage(b)
			_ = rgd
			q := writeTemp(t, "damaged.vmdk", b)
			d := mustOpen(t, q, Options{ReadOnly: true})
			vmdkCompare(t, d, want)
		})
	}
}

func TestVMDKChain(t *testing.T) {
	dir := t.TempDir()
	const size = 3<<20 + 7*512
	base, _ := vmdkFixture(t, dir, "base", "monolithicSparse", size, 21)
	mid := filepath.Join(dir, "mid.vmdk")
	top := filepath.Join(dir, "top.vmdk")
	qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", "-b", "base.vmdk", "-F", "vmdk", mid)
	vmdkQemuIO(t, mid, "write -P 0x55 64k 100k", "write -z 128k 128k", "write -P 0x66 2M 4k")
	qemuImg(t, "create", "-q", "-f", "vmdk", "-b", "mid.vmdk", "-F", "vmdk", top)
	vmdkQemuIO(t, top, "write -P 0x77 1M 64k", "write -P 0x88 3M 512")
	want := qemuRaw(t, "vmdk", top)

	d := mustOpen(t, top, Options{ReadOnly: true})
	checkDisk(t, d, want)
	vmdkCheckMap(t, d, want)
	info := d.Info()
	if info.Parent == nil || info.Parent.Parent == nil || info.Parent.Parent.Path != base || len(info.Warnings) != 0 {
		t.Fatalf("chain info %+v", info)
	}
	d.Close()

	parents := vmdkHashFiles(t, base, mid)
	vmdkWriteCheck(t, top, want, 13)
	if vmdkHashFiles(t, base, mid) != parents {
		t.Fatal("writing the child changed a parent")
	}

	// Writing the middle image gives it a new CID: the top's parentCID no
	// longer matches. That is a warning, or an error when strict.
	m := mustOpen(t, mid, Options{})
	if _, err := m.WriteAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	m.Close()
	d = mustOpen(t, top, Options{ReadOnly: true})
	if w := d.Info().Warnings; len(w) != 1 || !strings.Contains(w[0], "CID") {
		t.Fatalf("warnings %q", w)
	}
	if _, err := Open(top, Options{ReadOnly: true, Strict: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("strict open with a CID mismatch: %v", err)
	}

	os.Remove(base)
	_, err := Open(top, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "base.vmdk") {
		t.Fatalf("missing grandparent: %v", err)
	}
}

func TestVMDKReadOnlyVariants(t *testing.T) {
	dir := t.TempDir()
	p, want := vmdkFixture(t, dir, "so", "streamOptimized", 1<<20, 5)
	before := vmdkHashFiles(t, p)
	d := mustOpen(t, p, Options{})
	info := d.Info()
	if !info.ReadOnly || !strings.Contains(info.ReadOnlyReason, "streamOptimized") {
		t.Fatalf("streamOptimized: read-only %v %q", info.ReadOnly, info.ReadOnlyReason)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v", err)
	}
	checkDisk(t, d, want)
	d.Close()
	if vmdkHashFiles(t, p) != before {
		t.Fatal("file changed")
	}
}
