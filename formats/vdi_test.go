package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Fixtures: base images (dynamic, static) come from qemu-img and are
// checked against `qemu-img convert -O raw`. qemu cannot make VDI
// differencing images, 0.x headers or blocks with extra data, so those
// are built by vdiTestBuild below straight from the VDICore.h layout, with
// their content taken from qemu-made images (the oracle): a child's
// expected content is the parent's qemu raw output overlaid with the
// child's stored blocks (zero blocks as zeros, free blocks from the
// parent).

const vdiTestMiB = 1 << 20

// vdiTestQemu converts raw to a VDI with qemu-img and returns its path.
func vdiTestQemu(t testing.TB, dir, name string, raw []byte, static bool) string {
	t.Helper()
	var args []string
	if static {
		args = []string{"-o", "static=on"}
	}
	return qemuConvert(t, dir, raw, "vdi", name, args...)
}

// vdiTestParsed is what a test needs of a qemu-made (v1.1) VDI file.
type vdiTestParsed struct {
	diskSize   uint64
	blockSize  uint32
	entries    []uint32
	blocks     [][]byte // stored blocks in file order
	uuid, mod  vdiUUID
	offBlocks  int64
	offData    int64
	allocCount uint32
}

func vdiTestParse(t testing.TB, b []byte) *vdiTestParsed {
	t.Helper()
	le := binary.LittleEndian
	p := &vdiTestParsed{
		diskSize:   le.Uint64(b[0x170:]),
		blockSize:  le.Uint32(b[0x178:]),
		offBlocks:  int64(le.Uint32(b[0x154:])),
		offData:    int64(le.Uint32(b[0x158:])),
		allocCount: le.Uint32(b[0x184:]),
	}
	copy(p.uuid[:], b[0x188:])
	copy(p.mod[:], b[0x198:])
	n := le.Uint32(b[0x180:])
	for i := uint32(0); i < n; i++ {
		p.entries = append(p.entries, le.Uint32(b[p.offBlocks+4*int64(i):]))
	}
	for i := uint32(0); i < p.allocCount; i++ {
		off := p.offData + int64(i)*int64(p.blockSize)
		p.blocks = append(p.blocks, b[off:off+int64(p.blockSize)])
	}
	return p
}

// vdiTestSpec describes an image for vdiTestBuild.
type vdiTestSpec struct {
	v0                          bool // header version 0.2 instead of 1.1
	imageType                   uint32
	diskSize                    uint64
	blockSize                   uint32
	extra                       uint32   // per-block extra bytes (filled with 0xA5)
	entries                     []uint32 // block map: vdiBlockFree, vdiBlockZero or an index into blocks
	blocks                      [][]byte
	uuid, mod, parent, parentMd vdiUUID
}

// vdiTestBuild lays out an image as VDICore.h describes it: pre-header
// (text, signature, version), VDIHEADER1PLUS (or VDIHEADER0), block map
// at 0x200 (v0: right after the header, 0x1A4), data blocks after it.
func vdiTestBuild(s vdiTestSpec) []byte {
	le := binary.LittleEndian
	n := int64(len(s.entries))
	var hdr []byte
	var offBlocks, offData int64
	if s.v0 {
		offBlocks = vdiV0End
		offData = offBlocks + 4*n
		hdr = make([]byte, offData)
		le.PutUint32(hdr[0x44:], vdiVersion02)
		le.PutUint32(hdr[0x48:], s.imageType)
		copy(hdr[0x50:], "vdflat test v0 image")
		le.PutUint32(hdr[0x15C:], SectorSize) // legacy geometry cbSector
		le.PutUint64(hdr[0x160:], s.diskSize)
		le.PutUint32(hdr[0x168:], s.blockSize)
		le.PutUint32(hdr[0x16C:], uint32(n))
		le.PutUint32(hdr[0x170:], uint32(len(s.blocks)))
		copy(hdr[0x174:], s.uuid[:])
		copy(hdr[0x184:], s.mod[:])
		copy(hdr[0x194:], s.parent[:])
	} else {
		offBlocks = 0x200
		offData = (offBlocks + 4*n + 511) &^ 511
		hdr = make([]byte, offData)
		le.PutUint32(hdr[0x44:], vdiVersion11)
		le.PutUint32(hdr[0x48:], vdiV1PlusHeader)
		le.PutUint32(hdr[0x4C:], s.imageType)
		copy(hdr[0x54:], "vdflat test image")
		le.PutUint32(hdr[0x154:], uint32(offBlocks))
		le.PutUint32(hdr[0x158:], uint32(offData))
		le.PutUint32(hdr[0x168:], SectorSize)
		le.PutUint64(hdr[0x170:], s.diskSize)
		le.PutUint32(hdr[0x178:], s.blockSize)
		le.PutUint32(hdr[0x17C:], s.extra)
		le.PutUint32(hdr[0x180:], uint32(n))
		le.PutUint32(hdr[0x184:], uint32(len(s.blocks)))
		copy(hdr[0x188:], s.uuid[:])
		copy(hdr[0x198:], s.mod[:])
		copy(hdr[0x1A8:], s.parent[:])
		copy(hdr[0x1B8:], s.parentMd[:])
		le.PutUint32(hdr[0x1D4:], SectorSize) // LCHS cbSector
	}
	copy(hdr, "<<< vdflat test Disk Image >>>\n")
	le.PutUint32(hdr[0x40:], vdiSignature)
	for i, e := range s.entries {
		le.PutUint32(hdr[offBlocks+4*int64(i):], e)
	}
	out := bytes.NewBuffer(hdr)
	extra := bytes.Repeat([]byte{0xA5}, int(s.extra))
	for _, b := range s.blocks {
		out.Write(extra)
		out.Write(b)
	}
	return out.Bytes()
}

func vdiTestUUID(r *rand.Rand) vdiUUID {
	var u vdiUUID
	r.Read(u[:])
	return u
}

// vdiTestChild builds a differencing child of a qemu-made parent: per
// block, kinds[i] is 'f' (free: parent data), 'z' (zero block) or 'd'
// (stored random data). It returns the image and the expected disk.
func vdiTestChild(r *rand.Rand, parentRaw []byte, pp *vdiTestParsed, kinds string, uuid vdiUUID) ([]byte, []byte) {
	bs := int(pp.blockSize)
	want := append([]byte(nil), parentRaw...)
	s := vdiTestSpec{imageType: vdiTypeDiff, diskSize: pp.diskSize, blockSize: pp.blockSize,
		uuid: uuid, mod: vdiTestUUID(r), parent: pp.uuid, parentMd: pp.mod}
	for i, k := range kinds {
		lo, hi := i*bs, min((i+1)*bs, len(want))
		switch k {
		case 'f':
			s.entries = append(s.entries, vdiBlockFree)
		case 'z':
			s.entries = append(s.entries, vdiBlockZero)
			clear(want[lo:hi])
		case 'd':
			b := make([]byte, bs)
			r.Read(b)
			s.entries = append(s.entries, uint32(len(s.blocks)))
			s.blocks = append(s.blocks, b)
			copy(want[lo:hi], b)
		}
	}
	return vdiTestBuild(s), want
}

func vdiTestOpen(t testing.TB, p string, opt Options) *vdiDisk {
	t.Helper()
	d := mustOpen(t, p, opt)
	vd, ok := d.(*vdiDisk)
	if !ok {
		t.Fatalf("%s opened as %T (%s), want vdi", p, d, d.Info().Format)
	}
	return vd
}

func TestVDIBase(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		size   int64
		static bool
	}{{3*vdiTestMiB + 7*SectorSize, false}, {3*vdiTestMiB + 7*SectorSize, true}, {512 * 1024, false}} {
		size, static := tc.size, tc.static
		{
			t.Run(fmt.Sprintf("size=%d,static=%v", size, static), func(t *testing.T) {
				dir := t.TempDir()
				p := vdiTestQemu(t, dir, "disk.vdi", patternDisk(size, size), static)
				want := qemuRaw(t, "vdi", p)
				before := fileMD5(t, p)
				d := vdiTestOpen(t, p, Options{ReadOnly: true})
				info := d.Info()
				wantVariant := map[bool]string{false: "dynamic", true: "fixed"}[static]
				if info.Format != "vdi" || info.Variant != wantVariant || info.ClusterSize != vdiTestMiB || info.Size != size {
					t.Fatalf("Info = %+v", info)
				}
				pp := vdiTestParse(t, readFile(t, p))
				if info.Allocated != int64(pp.allocCount)*vdiTestMiB {
					t.Fatalf("Allocated = %d, want %d", info.Allocated, int64(pp.allocCount)*vdiTestMiB)
				}
				if info.Metadata["uuid"] == "" || info.Metadata["header_version"] != "1.1" || len(info.Warnings) != 0 {
					t.Fatalf("Metadata %v, Warnings %v", info.Metadata, info.Warnings)
				}
				checkDisk(t, d, want)
				if i == 0 {
					checkConcurrentReads(t, d, want)
				}
				checkMap(t, d, want, nil)
				if _, err := d.WriteAt(make([]byte, SectorSize), 0); !errors.Is(err, ErrReadOnly) {
					t.Fatalf("WriteAt read-only: %v", err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				if fileMD5(t, p) != before {
					t.Fatal("read-only open changed the file")
				}
			})
		}
	}
}

func TestVDIUUIDString(t *testing.T) {
	// IPRT stores the first three fields little-endian.
	u := vdiUUID{0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8}
	if got, want := u.String(), "12345678-9abc-def0-0102-030405060708"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestVDIZeroAndOddSize patches qemu images: a zero (0xFFFFFFFE) entry
// over a stored block, and a disk size that is not a sector multiple.
func TestVDIZeroAndOddSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := int64(4 * vdiTestMiB)
	raw := patternDisk(size, 7)
	copy(raw[vdiTestMiB:], bytes.Repeat([]byte{0x55}, vdiTestMiB)) // block 1 surely stored
	p := vdiTestQemu(t, dir, "z.vdi", raw, false)
	b := readFile(t, p)
	pp := vdiTestParse(t, b)
	if !vdiAllocated(pp.entries[1]) {
		t.Fatalf("block 1 not stored by qemu: %#x", pp.entries[1])
	}
	binary.LittleEndian.PutUint32(b[pp.offBlocks+4:], vdiBlockZero)
	writeFile(t, p, b)
	want := qemuRaw(t, "vdi", p) // qemu: discarded blocks read as zeros
	if !isZero(want[vdiTestMiB : 2*vdiTestMiB]) {
		t.Fatal("qemu reads the zero block as data")
	}
	d := vdiTestOpen(t, p, Options{ReadOnly: true})
	checkDisk(t, d, want)
	if a, n, _ := d.Map(vdiTestMiB, vdiTestMiB); a || n != vdiTestMiB {
		t.Fatalf("Map(zero block) = %v, %d", a, n)
	}
	d.Close()

	odd := size - 100
	binary.LittleEndian.PutUint64(b[0x170:], uint64(odd))
	p2 := writeTemp(t, "odd.vdi", b)
	d = vdiTestOpen(t, p2, Options{})
	if len(d.Info().Warnings) == 0 {
		t.Fatal("no warning for an odd disk size")
	}
	model := append([]byte(nil), want[:odd]...)
	checkDisk(t, d, model)
	// A write over the end keeps only the bytes before Size.
	last := make([]byte, 2*SectorSize)
	rand.New(rand.NewSource(3)).Read(last)
	if n, err := d.WriteAt(last, odd/SectorSize*SectorSize-SectorSize); err != nil || n != len(last) {
		t.Fatalf("WriteAt over the end = %d, %v", n, err)
	}
	copy(model[odd/SectorSize*SectorSize-SectorSize:], last)
	checkDisk(t, d, model)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = vdiTestOpen(t, p2, Options{ReadOnly: true})
	checkDisk(t, d, model)
}

// vdiTestRelayout re-lays a qemu image (pp) out with blocks of bs bytes
// (a divisor of qemu's 1 MiB) stored in shuffled order, all-zero blocks
// as zero entries when zeroBlocks is set.
func vdiTestRelayout(pp *vdiTestParsed, bs uint32, zeroBlocks bool, r *rand.Rand) vdiTestSpec {
	per := pp.blockSize / bs
	s := vdiTestSpec{imageType: vdiTypeNormal, diskSize: pp.diskSize, blockSize: bs, uuid: vdiTestUUID(r), mod: vdiTestUUID(r)}
	var data [][]byte
	for _, e := range pp.entries {
		for j := uint32(0); j < per; j++ {
			switch {
			case !vdiAllocated(e):
				s.entries = append(s.entries, vdiBlockFree)
			case zeroBlocks && isZero(pp.blocks[e][j*bs:(j+1)*bs]):
				s.entries = append(s.entries, vdiBlockZero)
			default:
				s.entries = append(s.entries, uint32(len(data)))
				data = append(data, pp.blocks[e][j*bs:(j+1)*bs])
			}
		}
	}
	// Store runs of up to three neighbours in shuffled order, so reads
	// meet both contiguous and scattered blocks.
	var runs [][2]int
	for i := 0; i < len(data); i += 3 {
		runs = append(runs, [2]int{i, min(i+3, len(data))})
	}
	r.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
	order := make([]int, 0, len(data))
	for _, run := range runs {
		for i := run[0]; i < run[1]; i++ {
			order = append(order, i)
		}
	}
	where := make([]uint32, len(data)) // data index -> stored index
	for pos, i := range order {
		where[i] = uint32(pos)
		s.blocks = append(s.blocks, data[i])
	}
	for i, e := range s.entries {
		if vdiAllocated(e) {
			s.entries[i] = where[e]
		}
	}
	return s
}

// TestVDILayouts re-lays a qemu image out as VirtualBox may have it: a
// version 0.2 header, per-block extra data, other block sizes, blocks out
// of order, zero entries. Each must read as qemu reads the original, and
// take writes.
func TestVDILayouts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := int64(3*vdiTestMiB + 5*SectorSize)
	p := vdiTestQemu(t, dir, "src.vdi", patternDisk(size, 11), false)
	want := qemuRaw(t, "vdi", p)
	pp := vdiTestParse(t, readFile(t, p))
	r := rand.New(rand.NewSource(1))
	for _, tc := range []struct {
		name  string
		v0    bool
		extra uint32
		bs    uint32
		zero  bool
	}{
		{"v0", true, 0, vdiTestMiB, false},
		{"extra", false, 4096, vdiTestMiB, false},
		{"64KiB-shuffled-zero", false, 0, 64 << 10, true},
		{"v0-4KiB-zero", true, 0, 4 << 10, true},
		{"512B-extra", false, 512, 512, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vdiTestRelayout(pp, tc.bs, tc.zero, r)
			s.v0, s.extra = tc.v0, tc.extra
			if tc.v0 {
				s.extra = 0
			}
			img := writeTemp(t, tc.name+".vdi", vdiTestBuild(s))
			d := vdiTestOpen(t, img, Options{})
			if tc.v0 && d.Info().Metadata["header_version"] != "0.2" {
				t.Fatalf("Metadata %v", d.Info().Metadata)
			}
			if d.Info().ClusterSize != int64(tc.bs) {
				t.Fatalf("ClusterSize %d", d.Info().ClusterSize)
			}
			checkDisk(t, d, want)
			model := append([]byte(nil), want...)
			randomWrites(t, d, model, 30, 5)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d = vdiTestOpen(t, img, Options{ReadOnly: true})
			checkDisk(t, d, model)
		})
	}
}

func TestVDIWrite(t *testing.T) {
	t.Parallel()
	for _, static := range []bool{false, true} {
		t.Run(fmt.Sprintf("static=%v", static), func(t *testing.T) {
			dir := t.TempDir()
			size := int64(6*vdiTestMiB + 3*SectorSize)
			raw := patternDisk(size, 21)
			clear(raw[2*vdiTestMiB : 4*vdiTestMiB]) // unallocated blocks to fill
			p := vdiTestQemu(t, dir, "w.vdi", raw, static)
			model := qemuRaw(t, "vdi", p)
			oldMod := vdiTestParse(t, readFile(t, p)).mod
			d := vdiTestOpen(t, p, Options{})
			randomWrites(t, d, model, 60, 1)
			// Concurrent writers on interleaved stripes, with readers.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := 0; g < 3; g++ {
				wg.Add(1)
				go func(seed int64) {
					defer wg.Done()
					r := rand.New(rand.NewSource(seed))
					buf := make([]byte, 64*1024)
					for {
						select {
						case <-stop:
							return
						default:
						}
						off := r.Int63n(size/SectorSize) * SectorSize
						if _, err := d.ReadAt(buf, off); err != nil {
							t.Error(err)
							return
						}
					}
				}(int64(g))
			}
			concurrentWrites(t, d, model, 192*1024)
			close(stop)
			wg.Wait()
			// A whole block of zeros, and a partial zero write to a free block.
			zb := make([]byte, vdiTestMiB)
			for _, w := range []struct{ off, n int64 }{{5 * vdiTestMiB, vdiTestMiB}, {3*vdiTestMiB + 4096, 8192}} {
				if _, err := d.WriteAt(zb[:w.n], w.off); err != nil {
					t.Fatal(err)
				}
				clear(model[w.off : w.off+w.n])
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, "vdi", p)
			if got := qemuRaw(t, "vdi", p); !bytes.Equal(got, model) {
				t.Fatal("qemu-img reads something else than was written")
			}
			if vdiTestParse(t, readFile(t, p)).mod == oldMod {
				t.Fatal("modification UUID unchanged after writes")
			}
			d = vdiTestOpen(t, p, Options{ReadOnly: true})
			checkDisk(t, d, model)
		})
	}
}

// vdiTestParent makes parent.vdi (qemu) in dir and returns its raw content
// and parsed header.
func vdiTestParent(t testing.TB, dir string, size int64, seed int64) (string, []byte, *vdiTestParsed) {
	t.Helper()
	p := vdiTestQemu(t, dir, "parent.vdi", patternDisk(size, seed), false)
	return p, qemuRaw(t, "vdi", p), vdiTestParse(t, readFile(t, p))
}

func TestVDIDiff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := int64(5*vdiTestMiB - 3*SectorSize)
	pPath, praw, pp := vdiTestParent(t, dir, size, 31)
	r := rand.New(rand.NewSource(31))
	img, want := vdiTestChild(r, praw, pp, "fdzdz", vdiTestUUID(r))
	if isZero(praw[2*vdiTestMiB : 3*vdiTestMiB]) {
		t.Fatal("fixture: parent block 2 is empty, the zero block proves nothing")
	}
	cPath := filepath.Join(dir, "child.vdi")
	writeFile(t, cPath, img)
	parentSum, childSum := fileMD5(t, pPath), fileMD5(t, cPath)
	d := vdiTestOpen(t, cPath, Options{ReadOnly: true})
	info := d.Info()
	if info.Variant != "differencing" || info.Parent == nil || info.Parent.Format != "vdi" ||
		info.Metadata["parent_uuid"] != pp.uuid.String() || info.Parent.Metadata["uuid"] != pp.uuid.String() ||
		len(info.Warnings) != 0 || info.Allocated != 2*vdiTestMiB {
		t.Fatalf("Info = %+v", info)
	}
	if filepath.Clean(info.Parent.Path) != filepath.Clean(pPath) {
		t.Fatalf("parent path %s, want %s", info.Parent.Path, pPath)
	}
	checkDisk(t, d, want)
	checkConcurrentReads(t, d, want)
	checkMap(t, d, want, nil)
	if a, _, _ := d.Map(2*vdiTestMiB, vdiTestMiB); a {
		t.Fatal("Map says the zero block is stored")
	}
	d.Close()
	if fileMD5(t, pPath) != parentSum || fileMD5(t, cPath) != childSum {
		t.Fatal("a read-only open changed the chain")
	}
}

// TestVDIDiffSnapshots lays a chain out as VirtualBox does: the base in
// the VM folder, two differencing levels in Snapshots/, named by UUID,
// among decoys.
func TestVDIDiffSnapshots(t *testing.T) {
	t.Parallel()
	vm := t.TempDir()
	snaps := filepath.Join(vm, "Snapshots")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	size := int64(4 * vdiTestMiB)
	_, praw, pp := vdiTestParent(t, vm, size, 41)
	r := rand.New(rand.NewSource(41))
	u1, u2 := vdiTestUUID(r), vdiTestUUID(r)
	img1, want1 := vdiTestChild(r, praw, pp, "dfzf", u1)
	p1 := filepath.Join(snaps, "{"+u1.String()+"}.vdi")
	writeFile(t, p1, img1)
	// Level 2 is a child of level 1.
	pp1 := vdiTestParse(t, img1)
	img2, want2 := vdiTestChild(r, want1, pp1, "ffdz", u2)
	p2 := filepath.Join(snaps, "{"+u2.String()+"}.vdi")
	writeFile(t, p2, img2)
	// Decoys: text, a short file, a VDI with another UUID, a directory.
	writeFile(t, filepath.Join(snaps, "notes.txt"), []byte("not a disk"))
	os.WriteFile(filepath.Join(vm, "tiny"), []byte{0x7f}, 0o644)
	decoy, _ := vdiTestChild(r, praw, pp, "dddd", vdiTestUUID(r))
	writeFile(t, filepath.Join(snaps, "aaa.vdi"), decoy)
	if err := os.Mkdir(filepath.Join(snaps, "dir.vdi"), 0o755); err != nil {
		t.Fatal(err)
	}

	d := vdiTestOpen(t, p2, Options{ReadOnly: true})
	checkDisk(t, d, want2)
	info := d.Info()
	if info.Parent == nil || info.Parent.Parent == nil || info.Parent.Parent.Metadata["uuid"] != pp.uuid.String() {
		t.Fatalf("chain %+v", info)
	}
	checkConcurrentReads(t, d, want2)
}

func TestVDIDiffSearchPath(t *testing.T) {
	t.Parallel()
	pdir := t.TempDir()
	size := int64(2 * vdiTestMiB)
	_, praw, pp := vdiTestParent(t, pdir, size, 51)
	r := rand.New(rand.NewSource(51))
	img, want := vdiTestChild(r, praw, pp, "fd", vdiTestUUID(r))
	cdir := filepath.Join(t.TempDir(), "a", "b")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	cPath := filepath.Join(cdir, "child.vdi")
	writeFile(t, cPath, img)

	_, err := Open(cPath, Options{ReadOnly: true})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), pp.uuid.String()) || !strings.Contains(err.Error(), cdir) {
		t.Fatalf("missing parent: %v", err)
	}
	d := mustOpen(t, cPath, Options{ReadOnly: true, SearchPath: []string{t.TempDir(), pdir}})
	checkDisk(t, d, want)
}

func TestVDIDiffWrongParent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := int64(2 * vdiTestMiB)
	_, praw, pp := vdiTestParent(t, dir, size, 61)
	r := rand.New(rand.NewSource(61))

	// A parent UUID that no file has.
	wrong := *pp
	wrong.uuid = vdiTestUUID(r)
	img, _ := vdiTestChild(r, praw, &wrong, "fd", vdiTestUUID(r))
	p := filepath.Join(dir, "wrong-uuid.vdi")
	writeFile(t, p, img)
	if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), wrong.uuid.String()) {
		t.Fatalf("wrong parent UUID: %v", err)
	}

	// The right parent, but modified since the child was made.
	stale := *pp
	stale.mod = vdiTestUUID(r)
	img, want := vdiTestChild(r, praw, &stale, "fd", vdiTestUUID(r))
	p = filepath.Join(dir, "stale.vdi")
	writeFile(t, p, img)
	d := mustOpen(t, p, Options{ReadOnly: true})
	if w := d.Info().Warnings; len(w) != 1 || !strings.Contains(w[0], "modification UUID") {
		t.Fatalf("Warnings = %q", w)
	}
	checkDisk(t, d, want)
	if _, err := Open(p, Options{ReadOnly: true, Strict: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("strict, stale parent: %v", err)
	}

	// A differencing image whose parent is itself fails cleanly.
	self := vdiTestSpec{imageType: vdiTypeDiff, diskSize: 1 << 20, blockSize: 1 << 20, entries: []uint32{vdiBlockFree}}
	self.uuid = vdiTestUUID(r)
	self.mod, self.parent = vdiTestUUID(r), self.uuid
	p = writeTemp(t, "self.vdi", vdiTestBuild(self))
	if _, err := Open(p, Options{ReadOnly: true}); err == nil {
		t.Fatal("self-parented image opened")
	}
}

// TestVDIDiffWrite writes through a differencing child: blocks are copied
// up from the parent, which never changes. qemu cannot open a child, so a
// copy with the parent link removed is checked with qemu-img check and
// read with qemu-img convert: each block reads as the model (stored in
// the child) or as zeros where the child stores nothing (model = parent,
// or zero block).
func TestVDIDiffWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := int64(6*vdiTestMiB + 2*SectorSize)
	pPath, praw, pp := vdiTestParent(t, dir, size, 71)
	r := rand.New(rand.NewSource(71))
	img, model := vdiTestChild(r, praw, pp, "fdzffdf", vdiTestUUID(r))
	cPath := filepath.Join(dir, "child.vdi")
	writeFile(t, cPath, img)
	parentSum := fileMD5(t, pPath)

	d := vdiTestOpen(t, cPath, Options{})
	// Small writes into free blocks copy the rest of the block from the parent.
	for _, off := range []int64{4096, 3*vdiTestMiB + 512, 6 * vdiTestMiB} {
		b := bytes.Repeat([]byte{0xEE}, SectorSize)
		if _, err := d.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:min(off+SectorSize, size)], b)
	}
	// A whole block of zeros over a free block hides the parent's data.
	if _, err := d.WriteAt(make([]byte, vdiTestMiB), 4*vdiTestMiB); err != nil {
		t.Fatal(err)
	}
	clear(model[4*vdiTestMiB : 5*vdiTestMiB])
	randomWrites(t, d, model, 40, 2)
	concurrentWrites(t, d, model, 256*1024)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if fileMD5(t, pPath) != parentSum {
		t.Fatal("a write through the child changed the parent")
	}
	d = vdiTestOpen(t, cPath, Options{ReadOnly: true})
	checkDisk(t, d, model)
	d.Close()

	b := readFile(t, cPath)
	binary.LittleEndian.PutUint32(b[0x4C:], vdiTypeNormal)
	clear(b[0x1A8:0x1C8])
	unlinked := writeTemp(t, "unlinked.vdi", b)
	qemuCheck(t, "vdi", unlinked)
	got := qemuRaw(t, "vdi", unlinked)
	entries := vdiTestParse(t, b).entries
	for i := int64(0); i*vdiTestMiB < size; i++ {
		lo, hi := i*vdiTestMiB, min((i+1)*vdiTestMiB, size)
		switch e := entries[i]; {
		case vdiAllocated(e):
			if !bytes.Equal(got[lo:hi], model[lo:hi]) {
				t.Fatalf("block %d: stored data differs from the model", i)
			}
		case e == vdiBlockZero:
			if !isZero(model[lo:hi]) {
				t.Fatalf("block %d: zero block, model has data", i)
			}
		default:
			if !bytes.Equal(model[lo:hi], praw[lo:hi]) {
				t.Fatalf("block %d: free, but the model differs from the parent", i)
			}
		}
	}
}

func TestVDICrafted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := vdiTestQemu(t, dir, "c.vdi", patternDisk(2*vdiTestMiB, 81), false)
	base := readFile(t, p)
	le := binary.LittleEndian
	for _, tc := range []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"version 2.0", func(b []byte) { le.PutUint32(b[0x44:], 0x00020000) }, ErrUnsupported},
		{"undo type", func(b []byte) { le.PutUint32(b[0x4C:], vdiTypeUndo) }, ErrUnsupported},
		{"bad type", func(b []byte) { le.PutUint32(b[0x4C:], 9) }, ErrCorrupt},
		{"unknown flags", func(b []byte) { le.PutUint32(b[0x50:], 0x8000) }, ErrUnsupported},
		{"small header", func(b []byte) { le.PutUint32(b[0x48:], 0x100) }, ErrCorrupt},
		{"block size 0", func(b []byte) { le.PutUint32(b[0x178:], 0) }, ErrCorrupt},
		{"block size 3000", func(b []byte) { le.PutUint32(b[0x178:], 3000) }, ErrCorrupt},
		{"block size 1 GiB", func(b []byte) { le.PutUint32(b[0x178:], 1<<30) }, ErrUnsupported},
		{"huge map", func(b []byte) { le.PutUint32(b[0x180:], 0xFFFFFFF0); le.PutUint32(b[0x158:], 0xFFFFFE00) }, ErrCorrupt},
		{"data in map", func(b []byte) { le.PutUint32(b[0x158:], 0x200) }, ErrCorrupt},
		{"map in header", func(b []byte) { le.PutUint32(b[0x154:], 0x100) }, ErrCorrupt},
		{"too many allocated", func(b []byte) { le.PutUint32(b[0x184:], 3) }, ErrCorrupt},
		{"disk too big", func(b []byte) { le.PutUint64(b[0x170:], 3<<20) }, ErrCorrupt},
		{"zero size", func(b []byte) { le.PutUint64(b[0x170:], 0) }, ErrCorrupt},
		{"diff without parent", func(b []byte) { le.PutUint32(b[0x4C:], vdiTypeDiff) }, ErrCorrupt},
		{"short", func(b []byte) {}, ErrCorrupt},
	} {
		b := append([]byte(nil), base...)
		tc.edit(b)
		if tc.name == "short" {
			b = b[:0x100]
		}
		_, err := Open(writeTemp(t, "x.vdi", b), Options{ReadOnly: true})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// A block pointing past the file: reads fail cleanly; and a block
	// pointing past cBlocksAllocated: writes refuse to allocate.
	b := append([]byte(nil), base...)
	pp := vdiTestParse(t, b)
	le.PutUint32(b[pp.offBlocks:], 1000)
	d := mustOpen(t, writeTemp(t, "past.vdi", b), Options{})
	if _, err := d.ReadAt(make([]byte, SectorSize), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read past the file: %v", err)
	}
	if _, err := d.WriteAt(bytes.Repeat([]byte{1}, SectorSize), vdiTestMiB); err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("write: %v", err)
	}

	// Truncated and bit-flipped copies, base and child: no panic.
	size := int64(2 * vdiTestMiB)
	_, praw, ppar := vdiTestParent(t, dir, size, 82)
	child, _ := vdiTestChild(rand.New(rand.NewSource(82)), praw, ppar, "zd", vdiTestUUID(rand.New(rand.NewSource(83))))
	for _, src := range [][]byte{base, child} {
		for _, v := range corruptVariants(src, 5, 40) {
			vp := filepath.Join(dir, "variant.vdi")
			writeFile(t, vp, v)
			d, err := Open(vp, Options{ReadOnly: true})
			if err != nil {
				continue
			}
			_ = d.Info()
			buf := make([]byte, 128*1024)
			for _, off := range []int64{0, d.Size() / 2, d.Size() - 4096} {
				d.ReadAt(buf, max(0, off)/SectorSize*SectorSize)
			}
			if m, ok := d.(Mapper); ok && d.Size() > 0 {
				m.Map(0, d.Size())
			}
			d.Close()
		}
	}
}

// TestVDI2TiB opens a 2 TiB qemu image, reads and writes at its far end;
// qemu-io reads the written sector back.
func TestVDI2TiB(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "big.vdi")
	qemuImg(t, "create", "-f", "vdi", p, "2T")
	d := vdiTestOpen(t, p, Options{})
	size := d.Size()
	if size != 2<<40 || d.Info().Allocated != 0 {
		t.Fatalf("Size %d, Allocated %d", size, d.Info().Allocated)
	}
	buf := make([]byte, 4096)
	if _, err := d.ReadAt(buf, size-4096); err != nil || !isZero(buf) {
		t.Fatalf("read at the end: %v", err)
	}
	if a, n, err := d.Map(0, size); a || n != size || err != nil {
		t.Fatalf("Map(all) = %v, %d, %v", a, n, err)
	}
	for i := range buf {
		buf[i] = 0x5a
	}
	if _, err := d.WriteAt(buf, size-4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, "vdi", p)
	run(t, "qemu-io", "-f", "vdi", "-r", "-c", fmt.Sprintf("read -P 0x5a %d 4096", size-4096),
		"-c", fmt.Sprintf("read -P 0 %d %d", size-vdiTestMiB, vdiTestMiB-4096), p)
}

func FuzzVDI(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "empty.vdi")
	qemuImg(f, "create", "-f", "vdi", p, "4M")
	f.Add(readFile(f, p))
	r := rand.New(rand.NewSource(1))
	blocks := [][]byte{bytes.Repeat([]byte{1}, 4096), bytes.Repeat([]byte{2}, 4096)}
	for _, s := range []vdiTestSpec{
		{imageType: vdiTypeNormal, diskSize: 5 * 4096, blockSize: 4096, extra: 512,
			entries: []uint32{1, vdiBlockFree, vdiBlockZero, 0, vdiBlockFree}, blocks: blocks},
		{v0: true, imageType: vdiTypeFixed, diskSize: 2*4096 - 100, blockSize: 4096, entries: []uint32{0, 1}, blocks: blocks},
		{imageType: vdiTypeDiff, diskSize: 3 * 4096, blockSize: 4096, entries: []uint32{vdiBlockFree, 0, vdiBlockZero}, blocks: blocks[:1]},
	} {
		s.uuid, s.mod, s.parent = vdiTestUUID(r), vdiTestUUID(r), vdiTestUUID(r)
		f.Add(vdiTestBuild(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		commonFuzzDisk(t, "fuzz.vdi", data)
	})
}

func vdiBenchDisk(b *testing.B) Disk {
	dir := b.TempDir()
	raw := make([]byte, 32*vdiTestMiB)
	rand.New(rand.NewSource(1)).Read(raw)
	p := vdiTestQemu(b, dir, "bench.vdi", raw, false)
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

func BenchmarkVDISeqRead(b *testing.B)  { benchReads(b, vdiBenchDisk(b), false) }
func BenchmarkVDIRandRead(b *testing.B) { benchReads(b, vdiBenchDisk(b), true) }

// BenchmarkVDIOpen2TiB compares attaching a 2 TiB image with a 2 MiB one.
func BenchmarkVDIOpen2TiB(b *testing.B) { benchOpen(b, "vdi", "vdi") }
