package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// vhdxQemuFixture converts patternDisk data of the given size to VHDX with
// qemu-img and returns the image path and the oracle's raw bytes.
func vhdxQemuFixture(t testing.TB, size int64, seed int64, opts string) (string, []byte) {
	t.Helper()
	img := qemuConvert(t, t.TempDir(), patternDisk(size, seed), "vhdx", "disk.vhdx", "-o", opts)
	return img, qemuRaw(t, "vhdx", img)
}

func TestVHDXQemu(t *testing.T) {
	cases := []struct {
		name string
		size int64
		opts string
		want string
	}{
		{"dynamic-1M", 5<<20 + 3*512, "subformat=dynamic,block_size=1M", "dynamic"},
		{"dynamic-8M", 9<<20 + 512, "subformat=dynamic,block_size=8M", "dynamic"},
		{"dynamic-32M-log2M", 3<<20 + 7*512, "subformat=dynamic,block_size=32M,log_size=2M", "dynamic"},
		{"fixed-1M", 4<<20 + 5*512, "subformat=fixed,block_size=1M", "fixed"},
		{"fixed-2M", 3<<20 + 512, "subformat=fixed,block_size=2M", "fixed"},
		{"dynamic-256M", 2<<20 + 512, "subformat=dynamic,block_size=256M", "dynamic"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, want := vhdxQemuFixture(t, c.size, int64(i+1), c.opts)
			d := mustOpen(t, img, Options{ReadOnly: true})
			checkDisk(t, d, want)
			checkConcurrentReads(t, d, want)
			info := d.Info()
			if info.Format != "vhdx" || info.Variant != c.want || !info.ReadOnly || info.ReadOnlyReason != "opened read-only" {
				t.Errorf("Info = %+v", info)
			}
			if info.Metadata["logical_sector_size"] != "512" || info.Metadata["creator"] == "" || info.Metadata["data_write_guid"] == "" {
				t.Errorf("Metadata = %v", info.Metadata)
			}
			if info.Allocated < 0 || info.Allocated > d.Size() {
				t.Errorf("Allocated = %d", info.Allocated)
			}
			checkMap(t, d, want, nil)
		})
	}
}

func TestVHDXReadOnly(t *testing.T) {
	img, _ := vhdxQemuFixture(t, 2<<20, 7, "subformat=dynamic")
	before := readFile(t, img)
	d := mustOpen(t, img, Options{ReadOnly: true})
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt = %v, want ErrReadOnly", err)
	}
	if info := d.Info(); !info.ReadOnly || info.ReadOnlyReason != "opened read-only" {
		t.Fatalf("Info = %+v", info)
	}
	if _, err := d.ReadAt(make([]byte, 1000), 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unaligned ReadAt = %v", err)
	}
	d.Close()
	after := readFile(t, img)
	if !bytes.Equal(before, after) {
		t.Fatal("opening changed the file")
	}
}

func TestVHDXSamples(t *testing.T) {
	for _, row := range samples(t, "vhdx") {
		t.Run(filepath.Base(row.Path), func(t *testing.T) {
			p := sampleFile(t, row.Path)
			// The differencing sample's note has "EXPECT ERROR" after a
			// description, so ExpectError (a prefix test) misses it.
			if row.ExpectError() || row.MD5 == "-" {
				_, err := Open(p, Options{ReadOnly: true})
				if err == nil {
					t.Fatal("Open succeeded, want an error")
				}
				t.Logf("error: %v", err)
				if strings.Contains(row.Path, "differencing") {
					if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx`) {
						t.Fatalf("want a missing-parent error naming the parent, got %v", err)
					}
				}
				return
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Size() != row.VSize {
				t.Fatalf("Size = %d, want %d", d.Size(), row.VSize)
			}
			if strings.Contains(row.Path, "dirtylog") {
				vhdxCheckDirtyLogSample(t, d)
				return
			}
			if got := diskMD5(t, d); got != row.MD5 {
				t.Fatalf("md5 = %s, want %s", got, row.MD5)
			}
		})
	}
}

// vhdxCheckDirtyLogSample checks the 10 GiB dirty-log sample without
// hashing all of it: 18 MiB of 0xa5 (the 18th MiB only after replay),
// then nothing but holes (Map) and zeros (sampled reads).
func vhdxCheckDirtyLogSample(t *testing.T, d Disk) {
	info := d.Info()
	if !strings.Contains(strings.Join(info.Features, ","), "log replayed in memory") {
		t.Errorf("Features = %v", info.Features)
	}
	buf := make([]byte, 18<<20)
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for i, c := range buf {
		if c != 0xa5 {
			t.Fatalf("byte %d = %#x, want 0xa5", i, c)
		}
	}
	m := d.(Mapper)
	for off := int64(18 << 20); off < d.Size(); {
		alloc, n, err := m.Map(off, d.Size()-off)
		if err != nil || alloc {
			t.Fatalf("Map(%d) = %v, %d, %v: want a hole", off, alloc, n, err)
		}
		off += n
	}
	r := rand.New(rand.NewSource(3))
	p := make([]byte, 64<<10)
	for i := 0; i < 50; i++ {
		off := 18<<20 + r.Int63n((d.Size()-18<<20)/SectorSize-128)*SectorSize
		if _, err := d.ReadAt(p, off); err != nil || !isZero(p) {
			t.Fatalf("read at %d: %v, zero=%v", off, err, isZero(p))
		}
	}
}

// ---------------------------------------------------------------------
// A small test-only VHDX writer, following MS-VHDX, for what qemu-img
// cannot make: differencing disks (with partially present blocks and
// their sector bitmaps), 4096-byte logical sectors, and dirty logs.
//
// Layout written: file identifier at 0; headers at 64 and 128 KiB (the
// first with the higher sequence number, the second stale); region tables
// at 192 and 256 KiB; log at 1 MiB (1 MiB); metadata region at 2 MiB
// (table, then items at 64 KiB); BAT at 3 MiB; then payload blocks, then
// one 1 MiB sector bitmap block per chunk holding partially present
// blocks. BAT entries: state in bits 0-2, file offset in MiB in bits
// 20-63; payload block b at index b + b/chunkRatio; the sector bitmap of
// chunk c at c*(chunkRatio+1) + chunkRatio, with chunkRatio =
// 2^23 * logical sector size / block size. Sector bitmap: one bit per
// logical sector of the chunk, least significant bit first. GUIDs are
// stored with their first three fields little-endian; strings UTF-16LE;
// checksums CRC-32C with the checksum field zero.
// ---------------------------------------------------------------------

type vhdxTestBlock struct {
	state   int    // 6 fully present, 7 partially present, or 0..3
	data    []byte // block-size bytes stored in the file (states 6 and 7)
	present []bool // per logical sector, for state 7
}

type vhdxTestImage struct {
	size, blockSize, sector int64
	fixed                   bool
	parent                  map[string]string // parent locator; nil: no parent
	blocks                  map[int64]vhdxTestBlock
	dataWrite               vhdxGUID
}

const (
	vhdxTestLogOff  = 1 << 20
	vhdxTestMetaOff = 2 << 20
	vhdxTestBATOff  = 3 << 20
)

func (im *vhdxTestImage) chunkRatio() int64 { return (1 << 23) * im.sector / im.blockSize }

func (im *vhdxTestImage) batEntries() int64 {
	cr := im.chunkRatio()
	pb := (im.size + im.blockSize - 1) / im.blockSize
	if im.parent != nil {
		return (pb + cr - 1) / cr * (cr + 1)
	}
	return pb + (pb-1)/cr
}

func vhdxTestUTF16(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func vhdxTestGUID(r *rand.Rand) vhdxGUID {
	var g vhdxGUID
	r.Read(g[:])
	return g
}

// build returns the image bytes.
func (im *vhdxTestImage) build() []byte {
	cr := im.chunkRatio()
	entries := im.batEntries()
	batLen := roundUp(entries*8, 1<<20)
	next := int64(vhdxTestBATOff) + batLen
	bat := make([]uint64, entries)
	var order []int64
	for b := range im.blocks {
		order = append(order, b)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	type placed struct{ b, off int64 }
	var data []placed
	chunks := map[int64]int64{} // chunk -> sector bitmap file offset
	for _, b := range order {
		blk := im.blocks[b]
		e := uint64(blk.state)
		if blk.state == 6 || blk.state == 7 {
			e |= uint64(next)
			data = append(data, placed{b, next})
			next += im.blockSize
		}
		bat[b+b/cr] = e
	}
	for _, b := range order {
		if im.blocks[b].state == 7 {
			if _, ok := chunks[b/cr]; !ok {
				chunks[b/cr] = next
				next += 1 << 20
			}
		}
	}
	for c, off := range chunks {
		bat[c*(cr+1)+cr] = uint64(off) | 6
	}
	img := make([]byte, next)
	copy(img, "vhdxfile")
	copy(img[8:], vhdxTestUTF16("vdflat test writer"))

	// Headers: header 1 current (seq 9), header 2 stale (seq 8).
	for i, off := range []int{64 << 10, 128 << 10} {
		h := img[off : off+4096]
		copy(h, "head")
		binary.LittleEndian.PutUint64(h[8:], uint64(9-i))
		fw := vhdxMustGUID("11111111-2222-3333-4444-555555555555")
		copy(h[16:], fw[:])
		dw := im.dataWrite
		if i == 1 {
			dw = vhdxMustGUID("99999999-2222-3333-4444-555555555555")
		}
		copy(h[32:], dw[:])
		binary.LittleEndian.PutUint16(h[66:], 1)
		binary.LittleEndian.PutUint32(h[68:], 1<<20)
		binary.LittleEndian.PutUint64(h[72:], vhdxTestLogOff)
		binary.LittleEndian.PutUint32(h[4:], vhdxChecksum(h, 4))
	}
	// Region tables.
	for _, off := range []int{192 << 10, 256 << 10} {
		r := img[off : off+64<<10]
		copy(r, "regi")
		binary.LittleEndian.PutUint32(r[8:], 2)
		for i, reg := range []struct {
			id       vhdxGUID
			off, len int64
		}{{vhdxRegionBAT, vhdxTestBATOff, batLen}, {vhdxRegionMetadata, vhdxTestMetaOff, 1 << 20}} {
			e := r[16+32*i:]
			copy(e, reg.id[:])
			binary.LittleEndian.PutUint64(e[16:], uint64(reg.off))
			binary.LittleEndian.PutUint32(e[24:], uint32(reg.len))
			binary.LittleEndian.PutUint32(e[28:], 1)
		}
		binary.LittleEndian.PutUint32(r[4:], vhdxChecksum(r, 4))
	}
	// Metadata.
	meta := img[vhdxTestMetaOff : vhdxTestMetaOff+1<<20]
	copy(meta, "metadata")
	var flags uint32
	if im.fixed {
		flags |= 1
	}
	if im.parent != nil {
		flags |= 2
	}
	page83 := vhdxMustGUID("abcdef01-2345-6789-abcd-ef0123456789")
	type item struct {
		id    vhdxGUID
		flags uint32
		data  []byte
	}
	items := []item{
		{vhdxMetaFileParams, 4, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(im.blockSize)), flags)},
		{vhdxMetaDiskSize, 6, binary.LittleEndian.AppendUint64(nil, uint64(im.size))},
		{vhdxMetaPage83, 6, page83[:]},
		{vhdxMetaLogicalSector, 6, binary.LittleEndian.AppendUint32(nil, uint32(im.sector))},
		{vhdxMetaPhysSector, 6, binary.LittleEndian.AppendUint32(nil, 4096)},
	}
	if im.parent != nil {
		var keys []string
		for k := range im.parent {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		hdr := make([]byte, 20+12*len(keys))
		copy(hdr, vhdxLocatorTypeVHDX[:])
		binary.LittleEndian.PutUint16(hdr[18:], uint16(len(keys)))
		var strs []byte
		for i, k := range keys {
			kb, vb := vhdxTestUTF16(k), vhdxTestUTF16(im.parent[k])
			e := hdr[20+12*i:]
			binary.LittleEndian.PutUint32(e, uint32(len(hdr)+len(strs)))
			binary.LittleEndian.PutUint16(e[8:], uint16(len(kb)))
			strs = append(strs, kb...)
			binary.LittleEndian.PutUint32(e[4:], uint32(len(hdr)+len(strs)))
			binary.LittleEndian.PutUint16(e[10:], uint16(len(vb)))
			strs = append(strs, vb...)
		}
		loc := append(hdr, strs...)
		items = append(items, item{vhdxMetaParentLocator, 4, loc})
	}
	binary.LittleEndian.PutUint16(meta[10:], uint16(len(items)))
	itemOff := 64 << 10
	for i, it := range items {
		e := meta[32+32*i:]
		copy(e, it.id[:])
		binary.LittleEndian.PutUint32(e[16:], uint32(itemOff))
		binary.LittleEndian.PutUint32(e[20:], uint32(len(it.data)))
		binary.LittleEndian.PutUint32(e[24:], it.flags)
		copy(meta[itemOff:], it.data)
		itemOff += int(roundUp(int64(len(it.data)), 8))
	}
	// BAT.
	for i, e := range bat {
		binary.LittleEndian.PutUint64(img[vhdxTestBATOff+8*i:], e)
	}
	// Payload blocks and sector bitmaps.
	spb := im.blockSize / im.sector
	for _, p := range data {
		blk := im.blocks[p.b]
		copy(img[p.off:p.off+im.blockSize], blk.data)
		if blk.state == 7 {
			bm := img[chunks[p.b/cr]:]
			for s, ok := range blk.present {
				if ok {
					bit := (p.b%cr)*spb + int64(s)
					bm[bit/8] |= 1 << (bit % 8)
				}
			}
		}
	}
	return img
}

// model returns what the image reads as, given the parent's bytes.
func (im *vhdxTestImage) model(parent []byte) []byte {
	out := make([]byte, im.size)
	copy(out, parent)
	for b := int64(0); b*im.blockSize < im.size; b++ {
		blk, ok := im.blocks[b]
		base := b * im.blockSize
		n := min(im.blockSize, im.size-base)
		switch {
		case !ok || blk.state == 0:
			if im.parent == nil {
				clear(out[base : base+n])
			}
		case blk.state == 6:
			copy(out[base:base+n], blk.data)
		case blk.state == 7:
			for s, p := range blk.present {
				lo := int64(s) * im.sector
				if p && lo < n {
					copy(out[base+lo:base+min(lo+im.sector, n)], blk.data[lo:])
				}
			}
		default:
			clear(out[base : base+n])
		}
	}
	return out
}

// vhdxTestBlocks makes blocks for payload blocks 0..n-1: fully present,
// absent, partially present (runs of present sectors), zero, in turn.
func vhdxTestBlocks(r *rand.Rand, n, blockSize, sector int64, diff bool) map[int64]vhdxTestBlock {
	m := map[int64]vhdxTestBlock{}
	for b := int64(0); b < n; b++ {
		data := make([]byte, blockSize)
		r.Read(data)
		kind := b % 4
		if !diff && kind == 2 {
			kind = 0
		}
		switch kind {
		case 0:
			m[b] = vhdxTestBlock{state: 6, data: data}
		case 1: // absent: not present
		case 2:
			present := make([]bool, blockSize/sector)
			for s := 0; s < len(present); {
				run := 1 + r.Intn(40)
				v := r.Intn(2) == 0
				for ; run > 0 && s < len(present); run, s = run-1, s+1 {
					present[s] = v
				}
			}
			present[0], present[len(present)-1] = true, false
			m[b] = vhdxTestBlock{state: 7, data: data, present: present}
		case 3:
			m[b] = vhdxTestBlock{state: 2 + int(r.Intn(2))} // zero or unmapped
		}
	}
	return m
}

// vhdxDataWriteGUID reads the data write GUID of the current header of
// an image made by another tool (the higher sequence number wins).
func vhdxDataWriteGUID(t *testing.T, path string) vhdxGUID {
	b := readFile(t, path)
	h1, h2 := b[64<<10:], b[128<<10:]
	h := h1
	if binary.LittleEndian.Uint64(h2[8:]) > binary.LittleEndian.Uint64(h1[8:]) {
		h = h2
	}
	var g vhdxGUID
	copy(g[:], h[32:48])
	return g
}

// vhdxDiffParent is a qemu-made dynamic VHDX used as a parent.
type vhdxDiffParent struct {
	path string
	raw  []byte
	link vhdxGUID
}

const vhdxDiffSize = 6<<20 + 3*4096

func vhdxMakeParent(t *testing.T) *vhdxDiffParent {
	path, raw := vhdxQemuFixture(t, vhdxDiffSize, 11, "subformat=dynamic,block_size=1M")
	return &vhdxDiffParent{path, raw, vhdxDataWriteGUID(t, path)}
}

// vhdxDiffChild writes a differencing child named name beside the parent
// and returns its path and the model of its content.
func vhdxDiffChild(t *testing.T, p *vhdxDiffParent, name string, seed, sector int64, locator func(dir string, link vhdxGUID) map[string]string) (string, []byte) {
	dir := filepath.Dir(p.path)
	r := rand.New(rand.NewSource(seed))
	im := &vhdxTestImage{size: vhdxDiffSize, blockSize: 1 << 20, sector: sector, dataWrite: vhdxTestGUID(r)}
	im.blocks = vhdxTestBlocks(r, (im.size+im.blockSize-1)/im.blockSize, im.blockSize, sector, true)
	im.parent = locator(dir, p.link)
	child := filepath.Join(dir, name)
	writeFile(t, child, im.build())
	return child, im.model(p.raw)
}

// vhdxDiffFixture makes a parent and a differencing child in one directory.
func vhdxDiffFixture(t *testing.T, sector int64, locator func(dir string, link vhdxGUID) map[string]string) (string, []byte) {
	return vhdxDiffChild(t, vhdxMakeParent(t), "child.avhdx", 5, sector, locator)
}

func vhdxStdLocator(dir string, link vhdxGUID) map[string]string {
	return map[string]string{
		"parent_linkage":      "{" + strings.ToUpper(link.String()) + "}",
		"relative_path":       `.\disk.vhdx`,
		"absolute_win32_path": `C:\Hyper-V\nowhere\disk.vhdx`,
	}
}

func TestVHDXDifferencing(t *testing.T) {
	for _, sector := range []int64{512, 4096} {
		t.Run(strconv.FormatInt(sector, 10), func(t *testing.T) {
			child, want := vhdxDiffFixture(t, sector, vhdxStdLocator)
			parentBefore := readFile(t, filepath.Join(filepath.Dir(child), "disk.vhdx"))
			d := mustOpen(t, child, Options{ReadOnly: true})
			checkDisk(t, d, want)
			checkConcurrentReads(t, d, want)
			checkMap(t, d, want, nil)
			info := d.Info()
			if info.Variant != "differencing" || info.Parent == nil || info.Parent.Format != "vhdx" || len(info.Files) != 2 {
				t.Errorf("Info = %+v", info)
			}
			if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
				t.Errorf("WriteAt = %v", err)
			}
			d.Close()
			after := readFile(t, filepath.Join(filepath.Dir(child), "disk.vhdx"))
			if !bytes.Equal(parentBefore, after) {
				t.Error("parent changed")
			}
		})
	}
}

func TestVHDXParentLookup(t *testing.T) {
	parent := vhdxMakeParent(t)
	// Relative path wrong, absolute path wrong: the base name in the
	// child's directory is found.
	child, want := vhdxDiffChild(t, parent, "child1.avhdx", 5, 512, func(dir string, link vhdxGUID) map[string]string {
		return map[string]string{
			"parent_linkage":      link.String(),
			"relative_path":       `..\elsewhere\disk.vhdx`,
			"absolute_win32_path": `D:\vms\disk.vhdx`,
		}
	})
	checkDisk(t, mustOpen(t, child, Options{ReadOnly: true}), want)

	// Absolute path (drive letter dropped) when the relative one is wrong.
	child, want = vhdxDiffChild(t, parent, "child2.avhdx", 5, 512, func(dir string, link vhdxGUID) map[string]string {
		return map[string]string{
			"parent_linkage":      link.String(),
			"relative_path":       `..\elsewhere\other.vhdx`,
			"absolute_win32_path": `C:` + strings.ReplaceAll(filepath.Join(dir, "disk.vhdx"), "/", `\`),
		}
	})
	checkDisk(t, mustOpen(t, child, Options{ReadOnly: true}), want)

	// parent_linkage2 matches, parent_linkage does not.
	child, want = vhdxDiffChild(t, parent, "child3.avhdx", 5, 512, func(dir string, link vhdxGUID) map[string]string {
		return map[string]string{
			"parent_linkage":  "{00000000-1111-2222-3333-444444444444}",
			"parent_linkage2": link.String(),
			"relative_path":   `disk.vhdx`,
		}
	})
	checkDisk(t, mustOpen(t, child, Options{ReadOnly: true}), want)

	// Mismatched linkage: corrupt, naming what mismatched.
	child, _ = vhdxDiffChild(t, parent, "child4.avhdx", 5, 512, func(dir string, link vhdxGUID) map[string]string {
		return map[string]string{"parent_linkage": "{00000000-1111-2222-3333-444444444444}", "relative_path": `.\disk.vhdx`}
	})
	if _, err := Open(child, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "data write GUID") {
		t.Errorf("mismatched linkage: %v", err)
	}

	// Opened by a path relative to the working directory.
	dir := filepath.Dir(parent.path)
	t.Chdir(filepath.Dir(dir))
	rel := filepath.Join(filepath.Base(dir), "child1.avhdx")
	checkDisk(t, mustOpen(t, rel, Options{ReadOnly: true}), want)

	// Missing parent.
	child, _ = vhdxDiffChild(t, parent, "child5.avhdx", 5, 512, func(dir string, link vhdxGUID) map[string]string {
		return map[string]string{"parent_linkage": link.String(), "relative_path": `.\gone.vhdx`, "absolute_win32_path": `C:\vms\gone.vhdx`}
	})
	if _, err := Open(child, Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `C:\vms\gone.vhdx`) {
		t.Errorf("missing parent: %v", err)
	}
}

// TestVHDXChain reads a differencing disk whose parent is itself a
// differencing disk (4096-byte sectors) over a qemu-made base.
func TestVHDXChain(t *testing.T) {
	base := vhdxMakeParent(t)
	mid, midModel := vhdxDiffChild(t, base, "mid.avhdx", 6, 4096, vhdxStdLocator)
	top, topModel := vhdxDiffChild(t, &vhdxDiffParent{mid, midModel, vhdxDataWriteGUID(t, mid)}, "top.avhdx", 7, 512,
		func(dir string, link vhdxGUID) map[string]string {
			return map[string]string{"parent_linkage": link.String(), "relative_path": `.\mid.avhdx`}
		})
	d := mustOpen(t, top, Options{ReadOnly: true})
	checkDisk(t, d, topModel)
	checkMap(t, d, topModel, nil)
	info := d.Info()
	if info.Parent == nil || info.Parent.Parent == nil || info.Parent.Parent.Path != base.path || len(info.Files) != 3 {
		t.Errorf("Info = %+v", info)
	}
}

// TestVHDX4K checks 4096-byte logical sectors on fixed and dynamic images
// made by the test writer. qemu-img reads only 512-byte sectors, so it
// checks the writer's 512-byte twin of each image (same blocks), whose
// content must equal the model; the 4096-byte image must read the same.
func TestVHDX4K(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		r := rand.New(rand.NewSource(9))
		im := &vhdxTestImage{size: 5<<20 + 4096, blockSize: 2 << 20, sector: 512, fixed: fixed, dataWrite: vhdxTestGUID(r)}
		n := (im.size + im.blockSize - 1) / im.blockSize
		if fixed {
			im.blocks = map[int64]vhdxTestBlock{}
			for b := int64(0); b < n; b++ {
				data := make([]byte, im.blockSize)
				r.Read(data)
				im.blocks[b] = vhdxTestBlock{state: 6, data: data}
			}
		} else {
			im.blocks = vhdxTestBlocks(r, n, im.blockSize, 4096, false)
		}
		want := im.model(nil)
		twin := writeTemp(t, "512.vhdx", im.build())
		if !bytes.Equal(qemuRaw(t, "vhdx", twin), want) {
			t.Fatal("qemu-img disagrees with the test writer's model")
		}
		im.sector = 4096
		p := writeTemp(t, "4k.vhdx", im.build())
		d := mustOpen(t, p, Options{ReadOnly: true})
		checkDisk(t, d, want)
		if info := d.Info(); info.Metadata["logical_sector_size"] != "4096" || info.Variant != map[bool]string{false: "dynamic", true: "fixed"}[fixed] {
			t.Errorf("Info = %+v", info)
		}
	}
}

// vhdxLogWrite is one descriptor of a test log entry: a 4 KiB data page
// (data != nil) or a zeroed range.
type vhdxLogWrite struct {
	off, zeroLen int64
	data         []byte
}

// vhdxTestLogEntry encodes a log entry (MS-VHDX: a 64-byte header
// "loge", 32-byte descriptors "desc"/"zero" in 4 KiB sectors, then one
// "data" sector per data descriptor holding bytes 8..4091 of the page,
// the first 8 and last 4 bytes living in the descriptor).
func vhdxTestLogEntry(seq uint64, tail uint32, guid vhdxGUID, flushed, last int64, ws []vhdxLogWrite) []byte {
	descSectors := (64 + 32*len(ws) + 4095) / 4096
	nData := 0
	for _, w := range ws {
		if w.data != nil {
			nData++
		}
	}
	b := make([]byte, (descSectors+nData)*4096)
	copy(b, "loge")
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[12:], tail)
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(ws)))
	copy(b[32:], guid[:])
	binary.LittleEndian.PutUint64(b[48:], uint64(flushed))
	binary.LittleEndian.PutUint64(b[56:], uint64(last))
	data := descSectors * 4096
	for i, w := range ws {
		d := b[64+32*i:]
		binary.LittleEndian.PutUint64(d[16:], uint64(w.off))
		binary.LittleEndian.PutUint64(d[24:], seq)
		if w.data == nil {
			copy(d, "zero")
			binary.LittleEndian.PutUint64(d[8:], uint64(w.zeroLen))
			continue
		}
		copy(d, "desc")
		copy(d[4:8], w.data[4092:])
		copy(d[8:16], w.data[:8])
		s := b[data:]
		copy(s, "data")
		binary.LittleEndian.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:4092], w.data[8:4092])
		binary.LittleEndian.PutUint32(s[4092:], uint32(seq))
		data += 4096
	}
	binary.LittleEndian.PutUint32(b[4:], vhdxChecksum(b, 4))
	return b
}

// TestVHDXDirtyLog builds a clean image, then a dirty copy whose BAT page
// and some data pages hold older contents, with the newer ones in a log
// sequence of two entries (plus an older stale entry and a newer entry
// of another log). Variants: "grow" cuts the file short before the last
// block, which the log writes again, up to its last page ("wrap-grow":
// not the last page; the log's LastFileOffset alone restores the size);
// "wrap" puts the first entry across the end of the circular log.
// qemu-img check -r all replaying the log on a copy is the oracle, except
// for "wrap": qemu 7.2 ignores the head's Tail and takes the lone second
// entry (found first in buffer order, higher sequence number in its
// saved header) as the active sequence, dropping the BAT update. There
// the model, checked against qemu in the other variants, is the oracle.
func TestVHDXDirtyLog(t *testing.T) {
	for _, c := range []struct {
		name       string
		grow, wrap bool
	}{{"plain", false, false}, {"grow", true, false}, {"wrap-grow", true, true}} {
		t.Run(c.name, func(t *testing.T) { vhdxDirtyLogCase(t, c.grow, c.wrap) })
	}
}

func vhdxDirtyLogCase(t *testing.T, grow, wrap bool) {
	r := rand.New(rand.NewSource(21))
	im := &vhdxTestImage{size: 6 << 20, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r)}
	im.blocks = vhdxTestBlocks(r, 6, im.blockSize, 512, false)
	// Block 4 (the last one stored) is fully present, with zeros in a
	// part the log zeroes; when the file grows, zeros but for one page.
	data := make([]byte, im.blockSize)
	if !grow {
		r.Read(data)
	}
	clear(data[64<<10 : 128<<10])
	r.Read(data[8192:12288])
	lastPage := grow && !wrap
	if lastPage {
		r.Read(data[len(data)-4096:])
	}
	im.blocks[4] = vhdxTestBlock{state: 6, data: data}
	clean := im.build()
	want := im.model(nil)

	dirty := append([]byte(nil), clean...)
	batPage := append([]byte(nil), clean[vhdxTestBATOff:vhdxTestBATOff+4096]...)
	clear(dirty[vhdxTestBATOff : vhdxTestBATOff+4096]) // old BAT: nothing allocated
	blk4 := int64(binary.LittleEndian.Uint64(batPage[8*4:]) >> 20 << 20)
	if blk4+im.blockSize != int64(len(clean)) {
		t.Fatal("block 4 is not the last block of the file")
	}
	// Spoil the zeroed range and one page; or cut the block off.
	page := append([]byte(nil), clean[blk4+8192:blk4+12288]...)
	flushed := int64(len(clean))
	if grow {
		dirty = dirty[:blk4]
		flushed = blk4
	} else {
		r.Read(dirty[blk4+64<<10 : blk4+128<<10])
		r.Read(dirty[blk4+8192 : blk4+12288])
	}

	logGUID := vhdxMustGUID("0badf00d-1234-5678-9abc-def012345678")
	last := int64(len(clean))
	e1Off := 0
	if wrap {
		e1Off = 1<<20 - 4096 // its data sector is at the log's start
	}
	e2Off := (e1Off + 8192) % (1 << 20)
	e1 := vhdxTestLogEntry(10, uint32(e1Off), logGUID, flushed, last, []vhdxLogWrite{{off: vhdxTestBATOff, data: batPage}})
	ws := []vhdxLogWrite{{off: blk4 + 64<<10, zeroLen: 64 << 10}, {off: blk4 + 8192, data: page}}
	if lastPage {
		ws = append(ws, vhdxLogWrite{off: last - 4096, data: clean[last-4096:]})
	}
	e2 := vhdxTestLogEntry(11, uint32(e1Off), logGUID, flushed, last, ws)
	stale := vhdxTestLogEntry(3, 64<<10, logGUID, flushed, last, []vhdxLogWrite{{off: blk4, zeroLen: 1 << 20}})
	foreign := vhdxTestLogEntry(50, 128<<10, vhdxMustGUID("0badf00d-0000-5678-9abc-def012345678"), flushed, last, []vhdxLogWrite{{off: blk4, zeroLen: 1 << 20}})
	log := dirty[vhdxTestLogOff : vhdxTestLogOff+1<<20]
	n := copy(log[e1Off:], e1)
	copy(log, e1[n:])
	copy(log[e2Off:], e2)
	copy(log[64<<10:], stale)
	copy(log[128<<10:], foreign)
	for _, off := range []int{64 << 10, 128 << 10} {
		h := dirty[off : off+4096]
		copy(h[48:64], logGUID[:])
		binary.LittleEndian.PutUint32(h[4:], vhdxChecksum(h, 4))
	}
	p := writeTemp(t, "dirty.vhdx", dirty)

	// Oracle: qemu replays the log of a copy.
	if !wrap {
		cp := filepath.Join(t.TempDir(), "copy.vhdx")
		writeFile(t, cp, dirty)
		qemuImg(t, "check", "-r", "all", "-f", "vhdx", cp)
		if !bytes.Equal(qemuRaw(t, "vhdx", cp), want) {
			t.Fatal("qemu-img's replay disagrees with the model")
		}
	}

	d := mustOpen(t, p, Options{ReadOnly: true})
	checkDisk(t, d, want)
	info := d.Info()
	if !strings.Contains(strings.Join(info.Features, ","), "log replayed in memory") || info.Metadata["log_entries_replayed"] != "2" {
		t.Errorf("Info = %+v", info)
	}
	d.Close()
	if after, _ := os.ReadFile(p); !bytes.Equal(after, dirty) {
		t.Fatal("replay wrote to the file")
	}
}

func TestVHDXCrafted(t *testing.T) {
	img, _ := vhdxQemuFixture(t, 3<<20+512, 4, "subformat=dynamic,block_size=1M")
	data := readFile(t, img)
	child, _ := vhdxDiffFixture(t, 512, vhdxStdLocator)
	cdata := readFile(t, child)
	for i, v := range append(corruptVariants(data, 1, 25), corruptVariants(cdata, 2, 25)...) {
		p := filepath.Join(filepath.Dir(child), "crafted.vhdx")
		writeFile(t, p, v)
		d, err := Open(p, Options{ReadOnly: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrUnknownFormat) {
				t.Errorf("variant %d: unexpected error class: %v", i, err)
			}
			continue
		}
		buf := make([]byte, 1<<20)
		for off := int64(0); off < d.Size(); off += int64(len(buf)) {
			d.ReadAt(buf, off)
		}
		d.Info()
		d.Close()
	}

	// Specific damage.
	mod := func(f func(b []byte)) []byte {
		c := append([]byte(nil), data...)
		f(c)
		return c
	}
	rehead := func(b []byte) {
		for _, off := range []int{64 << 10, 128 << 10} {
			binary.LittleEndian.PutUint32(b[off+4:], vhdxChecksum(b[off:off+4096], 4))
		}
	}
	reregion := func(b []byte) {
		for _, off := range []int{192 << 10, 256 << 10} {
			binary.LittleEndian.PutUint32(b[off+4:], vhdxChecksum(b[off:off+64<<10], 4))
		}
	}
	cases := []struct {
		name string
		img  []byte
		want error
	}{
		{"both headers bad", mod(func(b []byte) { b[64<<10+20]++; b[128<<10+20]++ }), ErrCorrupt},
		{"header version 2", mod(func(b []byte) {
			b[64<<10+66], b[128<<10+66] = 2, 2
			rehead(b)
		}), ErrUnsupported},
		{"unknown required region", mod(func(b []byte) {
			for _, off := range []int{192 << 10, 256 << 10} {
				n := binary.LittleEndian.Uint32(b[off+8:])
				e := b[off+16+32*int(n):]
				id := vhdxMustGUID("01234567-89ab-cdef-0123-456789abcdef")
				copy(e, id[:])
				binary.LittleEndian.PutUint64(e[16:], 1<<20)
				binary.LittleEndian.PutUint32(e[24:], 1<<20)
				binary.LittleEndian.PutUint32(e[28:], 1)
				binary.LittleEndian.PutUint32(b[off+8:], n+1)
			}
			reregion(b)
		}), ErrUnsupported},
		{"region tables bad", mod(func(b []byte) { b[192<<10+40]++; b[256<<10+40]++ }), ErrCorrupt},
	}
	for _, c := range cases {
		p := writeTemp(t, "bad.vhdx", c.img)
		if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, c.want) {
			t.Errorf("%s: Open = %v, want %v", c.name, err, c.want)
		}
	}

	// BAT states that open but must not be read as data.
	r := rand.New(rand.NewSource(2))
	im := &vhdxTestImage{size: 2 << 20, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}}}
	good := im.build()
	for _, c := range []struct {
		name  string
		entry uint64
	}{
		{"reserved state 4", 4},
		{"reserved state 5", 5},
		{"partially present without parent", 7 | 4<<20},
		{"block past the end of the file", 6 | uint64(len(good))},
		{"block in the header area", 6},
	} {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint64(b[vhdxTestBATOff:], c.entry)
		d := mustOpen(t, writeTemp(t, "state.vhdx", b), Options{ReadOnly: true})
		if _, err := d.ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ReadAt = %v, want ErrCorrupt", c.name, err)
		}
		if _, err := d.ReadAt(make([]byte, 4096), 1<<20); err != nil {
			t.Errorf("%s: ReadAt of the next block = %v", c.name, err)
		}
	}

	// An unknown metadata item marked required is refused.
	b := append([]byte(nil), good...)
	meta := b[vhdxTestMetaOff:]
	n := binary.LittleEndian.Uint16(meta[10:])
	id := vhdxMustGUID("01234567-89ab-cdef-0123-456789abcdef")
	e := meta[32+32*int(n):]
	copy(e, id[:])
	binary.LittleEndian.PutUint32(e[16:], 96<<10)
	binary.LittleEndian.PutUint32(e[20:], 8)
	binary.LittleEndian.PutUint32(e[24:], 4)
	binary.LittleEndian.PutUint16(meta[10:], n+1)
	if _, err := Open(writeTemp(t, "meta.vhdx", b), Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown required metadata item: %v", err)
	}
}

// vhdxFuzzDecode turns a fuzz input into an image: records of a 4-byte
// offset in 4 KiB units (below 8 MiB), a 2-byte length and the bytes to
// place there. Seeds hold only the non-zero pages of real images, so they
// stay small although a VHDX has at least a 1 MiB header area.
func vhdxFuzzDecode(data []byte) []byte {
	var img []byte
	for len(data) >= 6 {
		off := int64(binary.LittleEndian.Uint32(data)%2048) * 4096
		n := int(binary.LittleEndian.Uint16(data[4:]))
		data = data[6:]
		n = min(n, len(data))
		if need := off + int64(n); need > int64(len(img)) {
			img = append(img, make([]byte, need-int64(len(img)))...)
		}
		copy(img[off:], data[:n])
		data = data[n:]
	}
	if pad := roundUp(int64(len(img)), 4096) - int64(len(img)); pad > 0 {
		img = append(img, make([]byte, pad)...)
	}
	return img
}

// vhdxFuzzEncode keeps the non-zero 4 KiB pages of img, each without its
// trailing zeros (the decoder pads the image to whole pages), and always
// the last page so the file keeps its size.
func vhdxFuzzEncode(img []byte) []byte {
	var out []byte
	for off := 0; off < len(img); off += 4096 {
		page := bytes.TrimRight(img[off:min(off+4096, len(img))], "\x00")
		if len(page) == 0 {
			if off+4096 < len(img) {
				continue
			}
			page = []byte{0}
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(off/4096))
		out = binary.LittleEndian.AppendUint16(out, uint16(len(page)))
		out = append(out, page...)
	}
	return out
}

func FuzzVHDX(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	small := &vhdxTestImage{size: 3<<20 + 512, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}, 2: {state: 2}}}
	copy(small.blocks[0].data, "some data at the start of the disk")
	f.Add(vhdxFuzzEncode(small.build()))
	diff := &vhdxTestImage{size: 2 << 20, blockSize: 1 << 20, sector: 4096, dataWrite: vhdxTestGUID(r),
		parent: map[string]string{"parent_linkage": "{01234567-89ab-cdef-0123-456789abcdef}", "relative_path": `.\p.vhdx`},
		blocks: map[int64]vhdxTestBlock{0: {state: 7, data: make([]byte, 1<<20), present: make([]bool, 256)}}}
	diff.blocks[0].present[3] = true
	f.Add(vhdxFuzzEncode(diff.build()))
	// The dirty-log sample, without its 0xa5 data pages.
	if b, err := os.ReadFile(sampleFile(f, "qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2")); err == nil {
		enc := vhdxFuzzEncode(b[:min(len(b), 8<<20)])
		var keep []byte
		for len(enc) >= 6 {
			n := int(binary.LittleEndian.Uint16(enc[4:]))
			rec := enc[:6+n]
			if n < 4096 || !bytes.Equal(rec[6:], bytes.Repeat([]byte{0xa5}, n)) {
				keep = append(keep, rec...)
			}
			enc = enc[6+n:]
		}
		f.Add(keep)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		commonFuzzDisk(t, "fuzz.vhdx", vhdxFuzzDecode(data))
	})
}

func BenchmarkVHDXSeqRead(b *testing.B) {
	img, _ := vhdxQemuFixture(b, 64<<20, 3, "subformat=dynamic,block_size=8M")
	d := mustOpen(b, img, Options{ReadOnly: true})
	benchReads(b, d, false)
}

func BenchmarkVHDXRandRead(b *testing.B) {
	img, _ := vhdxQemuFixture(b, 64<<20, 3, "subformat=dynamic,block_size=8M")
	d := mustOpen(b, img, Options{ReadOnly: true})
	benchReads(b, d, true)
}

func benchmarkVHDXOpen(b *testing.B, size string) {
	p := filepath.Join(b.TempDir(), "big.vhdx")
	qemuImg(b, "create", "-f", "vhdx", "-o", "block_size=1M", p, size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Open(p, Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		if _, err := d.ReadAt(buf, d.Size()/2/4096*4096); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}

func BenchmarkVHDXOpen2TiB(b *testing.B) { benchmarkVHDXOpen(b, "2T") }
func BenchmarkVHDXOpen2MiB(b *testing.B) { benchmarkVHDXOpen(b, "2M") }

func TestVHDXFuzzSeedsSmall(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	im := &vhdxTestImage{size: 3<<20 + 512, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}}}
	copy(im.blocks[0].data, "x")
	img := im.build()
	enc := vhdxFuzzEncode(img)
	if len(enc) > 8<<10 || !bytes.Equal(vhdxFuzzDecode(enc), img) {
		t.Fatalf("seed encoding: %d bytes, round trip ok=%v", len(enc), bytes.Equal(vhdxFuzzDecode(enc), img))
	}
}
