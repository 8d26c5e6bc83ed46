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
	"regexp"
	"slices"
	"strings"
	"testing"
)

// vmdkFixture converts patternDisk data of size bytes to a VMDK of the
// given subformat with qemu-img and returns its path and qemu's reading
// of it (the oracle).
func vmdkFixture(t testing.TB, dir, name, subformat string, size, seed int64, opts ...string) (string, []byte) {
	t.Helper()
	o := "subformat=" + subformat
	for _, x := range opts {
		o += "," + x
	}
	p := qemuConvert(t, dir, patternDisk(size, seed), "vmdk", name+".vmdk", "-o", o)
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
		b := readFile(t, p)
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
				if i == 0 && (sf == "monolithicSparse" || sf == "streamOptimized") {
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
				checkMap(t, d, want, nil)
				d.Close()
				if after := vmdkHashFiles(t, vmdkDirFiles(t, dir)...); after != before {
					t.Fatal("a read-only open changed the image files")
				}
			})
		}
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
			small := s.VSize <= 64<<20
			d := openSample(t, p, s, small)
			if small {
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
					if !isZero(buf[i:min(len(buf), i+512)]) {
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
	orig := readFile(t, p)
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
	checkMap(t, d, want, nil)
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

	removeFile(t, base)
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

func TestVMDKCustomDescriptor(t *testing.T) {
	dir := t.TempDir()
	// A sparse extent made by qemu (the extent file of a split image).
	_, spWant := vmdkFixture(t, dir, "split", "twoGbMaxExtentSparse", 1<<20, 31)
	// Its extent file alone has an empty descriptor area: an error, not data.
	if _, err := Open(filepath.Join(dir, "split-s001.vmdk"), Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "descriptor") {
		t.Fatalf("split extent opened alone: %v", err)
	}
	// A flat extent with a space in its name, starting 4 sectors in.
	flat := patternDisk(512<<10, 32)
	writeFile(t, filepath.Join(dir, "my flat file.bin"), append(bytes.Repeat([]byte{0xee}, 4*512), flat...))
	desc := strings.Join([]string{
		"# Disk DescriptorFile",
		"version=1",
		"encoding=\"UTF-8\"",
		"CID=0badc0de",
		"parentCID=ffffffff",
		"createType=\"custom\"",
		"",
		"# Extent description",
		"RW 2048 SPARSE \"split-s001.vmdk\"",
		"RW 300 ZERO",
		"RW 1024 FLAT \"my flat file.bin\" 4 3b9c5e5a-4e4b1a8c-2d8f-0050569a1c2b",
		"RW 8 ZERO",
		"",
		"ddb.adapterType = \"lsilogic\"",
	}, "\r\n") + "\r\n"
	p := filepath.Join(dir, "custom.vmdk")
	writeFile(t, p, []byte(desc))
	// The oracle: qemu's reading of each piece, placed end to end.
	want := append(append(append(append([]byte(nil), spWant...), make([]byte, 300*512)...), flat...), make([]byte, 8*512)...)
	d := mustOpen(t, p, Options{})
	vmdkCompare(t, d, want)
	checkMap(t, d, want, nil)
	info := d.Info()
	if info.Variant != "custom" || len(info.Files) != 3 || !info.ReadOnly || !strings.Contains(info.ReadOnlyReason, "ZERO") {
		t.Fatalf("info %+v", info)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}

	// An RDONLY extent makes the disk read-only; a missing extent is a clear error.
	ro := strings.Replace(desc, "RW 300 ZERO", "RDONLY 300 FLAT \"my flat file.bin\" 0", 1)
	ro = strings.ReplaceAll(ro, "RW 8 ZERO\r\n", "")
	q := filepath.Join(dir, "ro.vmdk")
	writeFile(t, q, []byte(ro))
	d2 := mustOpen(t, q, Options{})
	if info := d2.Info(); !info.ReadOnly || !strings.Contains(info.ReadOnlyReason, "RDONLY") {
		t.Fatalf("RDONLY extent: %+v", info)
	}
	if err := os.Rename(filepath.Join(dir, "my flat file.bin"), filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(p, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "my flat file.bin") {
		t.Fatalf("missing extent: %v", err)
	}
}

func TestVMDKVMFSFlat(t *testing.T) {
	dir := t.TempDir()
	data := patternDisk(1<<20+3*512, 41)
	writeFile(t, filepath.Join(dir, "esx-flat.vmdk"), data)
	p := filepath.Join(dir, "esx.vmdk")
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n# Extent description\nRW %d VMFS \"esx-flat.vmdk\"\n\nddb.adapterType = \"lsilogic\"\n", len(data)/512)
	writeFile(t, p, []byte(desc))
	want := qemuRaw(t, "vmdk", p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	vmdkCompare(t, d, want)
	if d.Info().Variant != "vmfs" {
		t.Fatalf("variant %q", d.Info().Variant)
	}
	d.Close()
	vmdkWriteCheck(t, p, want, 42)
}

// Test-only writers for the two sparse extents qemu reads but cannot
// create. Layouts as qemu's block/vmdk.c reads them (and libvmdk's notes
// for COWD); the oracle is still qemu-img convert of the result.

// vmdkMakeCOWD writes an ESX COWD sparse extent holding the non-zero
// grains of data (grain = grainSectors sectors); zero grains stay
// unallocated.
func vmdkMakeCOWD(t testing.TB, path string, data []byte, grainSectors int) {
	t.Helper()
	le := binary.LittleEndian
	gs := grainSectors * 512
	grains := (len(data) + gs - 1) / gs
	gdEntries := (grains + 4095) / 4096
	gdSectors := (gdEntries*4 + 511) / 512
	hdr := make([]byte, 2048)
	copy(hdr, "COWD")
	le.PutUint32(hdr[4:], 1)
	le.PutUint32(hdr[8:], 3)
	le.PutUint32(hdr[12:], uint32(len(data)/512))
	le.PutUint32(hdr[16:], uint32(grainSectors))
	le.PutUint32(hdr[20:], 4)
	le.PutUint32(hdr[24:], uint32(gdEntries))
	file := append(hdr, make([]byte, gdSectors*512)...)
	for gt := 0; gt < gdEntries; gt++ {
		table := make([]byte, 4096*4)
		used := false
		var grainData []byte
		next := len(file)/512 + 32 // grains after this table
		for i := 0; i < 4096; i++ {
			g := gt*4096 + i
			if g >= grains {
				break
			}
			chunk := make([]byte, gs)
			copy(chunk, data[g*gs:min(len(data), (g+1)*gs)])
			if isZero(chunk) {
				continue
			}
			used = true
			le.PutUint32(table[i*4:], uint32(next+len(grainData)/512))
			grainData = append(grainData, chunk...)
		}
		if !used {
			continue
		}
		le.PutUint32(file[2048+gt*4:], uint32(len(file)/512))
		file = append(append(file, table...), grainData...)
	}
	le.PutUint32(file[28:], uint32(len(file)/512)) // next free sector
	writeFile(t, path, file)
}

// vmdkMakeSESparse writes an ESXi seSparse extent over data: non-zero
// grains are stored (in reverse order, the last one at a grain index past
// 4096 so both halves of the entry encoding are used), all-zero grains in
// zeroGrains are marked zero (or unmapped), others stay unallocated.
func vmdkMakeSESparse(t testing.TB, path string, data []byte, zeroGrains map[int]bool, far bool) {
	t.Helper()
	le := binary.LittleEndian
	const gs, gtEntries = 4096, 4096
	grains := (len(data) + gs - 1) / gs
	gts := (grains + gtEntries - 1) / gtEntries
	gdSectors := (gts*8 + 511) / 512
	gdOff := int64(2)
	gtOff := gdOff + int64(gdSectors)
	grOff := gtOff + int64(gts)*64
	h := make([]byte, 512)
	for i, v := range []uint64{0: vmdkSEConstMagic, 1: 0x0000000200000001, 2: uint64(len(data) / 512), 3: 8, 4: 64,
		10: 1, 11: 1, 16: uint64(gdOff), 17: uint64(gdSectors), 18: uint64(gtOff), 19: uint64(gts) * 64, 24: uint64(grOff), 25: 0} {
		le.PutUint64(h[8*i:], v)
	}
	vol := make([]byte, 512)
	le.PutUint64(vol, vmdkSEVolMagic)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(h, 0)
	f.WriteAt(vol, 512)
	gd := make([]byte, gdSectors*512)
	tables := make([]byte, gts*64*512)
	var stored []int
	for g := 0; g < grains; g++ {
		chunk := data[g*gs : min(len(data), (g+1)*gs)]
		if !isZero(chunk) {
			stored = append(stored, g)
		}
	}
	for g := 0; g < grains; g++ {
		var e uint64
		chunk := make([]byte, gs)
		copy(chunk, data[g*gs:min(len(data), (g+1)*gs)])
		switch {
		case !isZero(chunk):
			c := uint64(len(stored) - 1)
			for i, s := range stored {
				if s == g {
					c = uint64(len(stored) - 1 - i)
				}
			}
			if far && g == stored[0] {
				c = 4097 + 5 // past 4096: exercises the high part
			}
			e = 3<<60 | (c&0xfff)<<48 | c>>12
			f.WriteAt(chunk, (grOff+int64(c)*8)*512)
		case zeroGrains[g] && g%2 == 0:
			e = 2 << 60 // zero
		case zeroGrains[g]:
			e = 1 << 60 // unmapped
		default:
			continue
		}
		gt := g / gtEntries
		le.PutUint64(gd[gt*8:], 0x1000000000000000|uint64(gt))
		le.PutUint64(tables[gt*64*512+(g%gtEntries)*8:], e)
	}
	f.WriteAt(gd, gdOff*512)
	f.WriteAt(tables, gtOff*512)
	if st, _ := f.Stat(); st.Size() < (grOff)*512 {
		f.Truncate(grOff * 512)
	}
}

// vmdkESXChild writes a descriptor for an ESX child extent over parent.
func vmdkESXChild(t testing.TB, path, createType, extType, extent string, sectors int, parent string) {
	t.Helper()
	pd := mustOpen(t, parent, Options{ReadOnly: true})
	pcid := pd.Info().Metadata["CID"]
	pd.Close()
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fedcba98\nparentCID=%s\nisNativeSnapshot=\"no\"\ncreateType=\"%s\"\nparentFileNameHint=\"%s\"\n# Extent description\nRW %d %s \"%s\"\n\n# The Disk Data Base\n#DDB\n\nddb.longContentID = \"0123456789abcdef0123456789abcdef\"\n",
		pcid, createType, filepath.Base(parent), sectors, extType, extent)
	writeFile(t, path, []byte(desc))
}

// vmdkOverlay returns parent with the non-zero 4 KiB blocks of child over it.
func vmdkOverlay(parent, child []byte, bs int) []byte {
	out := append([]byte(nil), parent...)
	for o := 0; o < len(child); o += bs {
		c := child[o:min(len(child), o+bs)]
		if !isZero(c) {
			copy(out[o:], c)
		}
	}
	return out
}

func TestVMDKVMFSSparse(t *testing.T) {
	dir := t.TempDir()
	const size = 3<<20 + 8*512
	base, baseWant := vmdkFixture(t, dir, "base", "monolithicFlat", size, 51)
	delta := patternDisk(size, 52)
	vmdkMakeCOWD(t, filepath.Join(dir, "snap-delta.vmdk"), delta, 16)
	p := filepath.Join(dir, "snap.vmdk")
	vmdkESXChild(t, p, "vmfsSparse", "VMFSSPARSE", "snap-delta.vmdk", size/512, base)
	want := qemuRaw(t, "vmdk", p)
	if !bytes.Equal(want, vmdkOverlay(baseWant, delta, 16*512)) {
		t.Fatal("test writer and qemu disagree on the COWD layout")
	}
	d := mustOpen(t, p, Options{})
	vmdkCompare(t, d, want)
	checkMap(t, d, want, nil)
	info := d.Info()
	if !info.ReadOnly || info.Variant != "vmfsSparse" || info.ClusterSize != 8192 || info.Parent == nil || len(info.Warnings) != 0 {
		t.Fatalf("info %+v", info)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}
	// The extent alone has no descriptor: a clear error, not raw data.
	if _, err := Open(filepath.Join(dir, "snap-delta.vmdk"), Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("COWD extent opened alone: %v", err)
	}
}

func TestVMDKSESparse(t *testing.T) {
	dir := t.TempDir()
	const size = 2<<20 + 8*512
	base, baseWant := vmdkFixture(t, dir, "base", "monolithicSparse", size, 61)
	delta := patternDisk(size, 62)
	zero := map[int]bool{}
	for g := 0; g < size/4096; g++ {
		if isZero(delta[g*4096 : (g+1)*4096]) {
			zero[g] = g%3 == 0
		}
	}
	ext := filepath.Join(dir, "snap-sesparse.vmdk")
	vmdkMakeSESparse(t, ext, delta, zero, true)
	p := filepath.Join(dir, "snap.vmdk")
	vmdkESXChild(t, p, "seSparse", "SESPARSE", "snap-sesparse.vmdk", size/512, base)
	want := qemuRaw(t, "vmdk", p)
	model := vmdkOverlay(baseWant, delta, 4096)
	for g, z := range zero {
		if z {
			clear(model[g*4096 : (g+1)*4096])
		}
	}
	if !bytes.Equal(want, model) || bytes.Equal(want, baseWant) {
		t.Fatal("test writer and qemu disagree on the seSparse layout")
	}
	d := mustOpen(t, p, Options{})
	vmdkCompare(t, d, want)
	checkMap(t, d, want, nil)
	info := d.Info()
	if !info.ReadOnly || info.Variant != "seSparse" || info.ClusterSize != 4096 || info.Parent == nil {
		t.Fatalf("info %+v", info)
	}
	if _, err := Open(ext, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("seSparse extent opened alone: %v", err)
	}
}

func TestVMDKCorruptVariants(t *testing.T) {
	dir := t.TempDir()
	const size = 256 << 10
	mono, _ := vmdkFixture(t, dir, "mono", "monolithicSparse", size, 71, "zeroed_grain=on")
	stream, _ := vmdkFixture(t, dir, "stream", "streamOptimized", size, 72)
	base, _ := vmdkFixture(t, dir, "base", "monolithicFlat", size, 73)
	cowd := filepath.Join(dir, "c-delta.vmdk")
	vmdkMakeCOWD(t, cowd, patternDisk(size, 74), 8)
	vmdkESXChild(t, filepath.Join(dir, "c.vmdk"), "vmfsSparse", "VMFSSPARSE", "c-delta.vmdk", size/512, base)
	se := filepath.Join(dir, "s-sesparse.vmdk")
	vmdkMakeSESparse(t, se, patternDisk(size, 75), map[int]bool{3: true, 4: true}, false)
	vmdkESXChild(t, filepath.Join(dir, "s.vmdk"), "seSparse", "SESPARSE", "s-sesparse.vmdk", size/512, base)
	for _, c := range []struct{ file, open string }{
		{mono, mono}, {stream, stream}, {base, base},
		{cowd, filepath.Join(dir, "c.vmdk")}, {se, filepath.Join(dir, "s.vmdk")},
		{filepath.Join(dir, "c.vmdk"), filepath.Join(dir, "c.vmdk")},
	} {
		orig := readFile(t, c.file)
		for i, v := range corruptVariants(orig, int64(len(orig)), 40) {
			writeFile(t, c.file, v)
			d, err := Open(c.open, Options{ReadOnly: true})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrUnknownFormat) && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s variant %d: error %v wraps no sentinel", filepath.Base(c.file), i, err)
				}
				continue
			}
			buf := make([]byte, 64<<10)
			for off := int64(0); off < min(d.Size(), 4<<20); off += int64(len(buf)) {
				d.ReadAt(buf, off)
			}
			d.Info()
			d.Close()
		}
		writeFile(t, c.file, orig)
	}
}

func FuzzVMDK(f *testing.F) {
	dir := f.TempDir()
	mono, _ := vmdkFixture(f, dir, "mono", "monolithicSparse", 128<<10, 81, "zeroed_grain=on")
	stream, _ := vmdkFixture(f, dir, "stream", "streamOptimized", 128<<10, 82)
	for _, p := range []string{mono, stream, filepath.Join(samplesDir, "go-vmdk-parser", "vmdk-streamoptimized.img")} {
		b := readFile(f, p)
		f.Add(b)
	}
	f.Add([]byte("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"custom\"\nRW 16 ZERO\nRW 8 FLAT \"fuzz.vmdk\" 1 uuid\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		commonFuzzDisk(t, "fuzz.vmdk", data)
	})
}

func vmdkBench(b *testing.B, random bool) {
	dir := b.TempDir()
	p, _ := vmdkFixture(b, dir, "bench", "monolithicSparse", 64<<20, 91)
	d := mustOpen(b, p, Options{ReadOnly: true})
	benchReads(b, d, random)
}

func BenchmarkVMDKSeqRead(b *testing.B)  { vmdkBench(b, false) }
func BenchmarkVMDKRandRead(b *testing.B) { vmdkBench(b, true) }

func BenchmarkVMDKOpen2TiB(b *testing.B) {
	var cases []benchOpenCase
	for _, size := range []string{"2M", "2T"} {
		p := filepath.Join(b.TempDir(), size+".vmdk")
		qemuImg(b, "create", "-q", "-f", "vmdk", p, size)
		cases = append(cases, benchOpenCase{size, p})
	}
	benchOpens(b, false, cases...)
}

// TestVMDKSplitBoundaries reads and writes across the 2 GiB extent
// boundaries of split images (sparse files on disk, compared by range).
func TestVMDKSplitBoundaries(t *testing.T) {
	for _, sf := range []string{"twoGbMaxExtentSparse", "twoGbMaxExtentFlat"} {
		t.Run(sf, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "split.vmdk")
			qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat="+sf, p, "4100M")
			vmdkQemuIO(t, p, "write -P 0x31 2047M 2M", "write -P 0x32 4095M 4M")
			ranges := [][2]int64{{0, 1 << 20}, {2047 << 20, 2 << 20}, {4095 << 20, 5 << 20}}
			compare := func(d Disk) {
				t.Helper()
				raw := filepath.Join(t.TempDir(), "oracle.raw")
				qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
				rf, err := os.Open(raw)
				if err != nil {
					t.Fatal(err)
				}
				defer rf.Close()
				for _, r := range ranges {
					got, want := make([]byte, r[1]), make([]byte, r[1])
					if _, err := d.ReadAt(got, r[0]); err != nil {
						t.Fatal(err)
					}
					if _, err := rf.ReadAt(want, r[0]); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("range %d+%d differs from qemu's", r[0], r[1])
					}
				}
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Size() != 4100<<20 || len(d.Info().Files) != 4 {
				t.Fatalf("size %d files %v", d.Size(), d.Info().Files)
			}
			compare(d)
			d.Close()
			w, err := Open(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Repeat([]byte("boundary"), 64<<10) // 512 KiB
			for _, off := range []int64{2048<<20 - 100*512, 4096<<20 - 64<<10 + 512, 4100<<20 - 512} {
				if _, err := w.WriteAt(buf, off); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, "vmdk", p)
			d = mustOpen(t, p, Options{ReadOnly: true})
			compare(d)
			got := make([]byte, 512)
			d.ReadAt(got, 2048<<20)
			if !bytes.Equal(got, buf[100*512:101*512]) {
				t.Fatal("write across the extent boundary lost")
			}
		})
	}
}

// qemu rewrites a descriptor file's CID in place on the first write of a
// session: the new text ends with a NUL, and when the new CID has fewer
// hex digits (qemu prints it without padding) the old text's last bytes
// stay after that NUL. About one qemu-img convert in 256 leaves such a
// file; this test rewrites qemu's own descriptor the same way and checks
// that vdflat reads it as qemu does.
func TestVMDKDescriptorBytesAfterNUL(t *testing.T) {
	dir := t.TempDir()
	p, _ := vmdkFixture(t, dir, "disk", "monolithicFlat", 1<<20+7*512, 5, "adapter_type=lsilogic")
	old := readFile(t, p)
	text := old
	if i := bytes.IndexByte(old, 0); i >= 0 {
		text = old[:i]
	}
	cid := regexp.MustCompile(`(?m)^CID=[0-9a-f]+\n`).FindIndex(text)
	if cid == nil {
		t.Fatalf("no CID line in qemu's descriptor:\n%s", text)
	}
	rewritten := slices.Concat(text[:cid[0]], []byte("CID=1\n"), text[cid[1]:])
	file := make([]byte, max(len(old), SectorSize))
	copy(file, old)
	copy(file, rewritten)
	file[len(rewritten)] = 0
	if isZero(file[len(rewritten):]) {
		t.Fatalf("no old bytes left after the NUL (qemu's CID was 1 digit?)\n%q", file)
	}
	writeFile(t, p, file)
	want := qemuRaw(t, "vmdk", p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	if info := d.Info(); info.Format != "vmdk" || info.Metadata["CID"] != "1" {
		t.Fatalf("opened as %s, CID %q", info.Format, info.Metadata["CID"])
	}
	vmdkCompare(t, d, want)
}
