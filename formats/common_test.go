package formats

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// commonCraftLimit bounds what opening and reading a crafted image may
// allocate in total.
const commonCraftLimit = 64 << 20

// commonPatch sets one header field of a valid fixture to an absurd value.
type commonPatch struct {
	name     string
	apply    func(t *testing.T, b []byte) []byte
	mustFail bool // the value can only be reported as an error
}

func commonPut(order binary.ByteOrder, off, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		switch width {
		case 1:
			b[off] = byte(v)
		case 2:
			order.PutUint16(b[off:], uint16(v))
		case 4:
			order.PutUint32(b[off:], uint32(v))
		case 8:
			order.PutUint64(b[off:], v)
		}
		return b
	}
}

// commonThen applies patches in order (e.g. a field, then a checksum).
func commonThen(fs ...func(t *testing.T, b []byte) []byte) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		for _, f := range fs {
			b = f(t, b)
		}
		return b
	}
}

// commonFixture converts a small pattern disk to fmtName with qemu-img.
func commonFixture(t *testing.T, fmtName string, size int64, opts ...string) []byte {
	return readFile(t, qemuConvert(t, t.TempDir(), patternDisk(size, 7), fmtName, "fixture."+fmtName, opts...))
}

// VHD: both footer copies, then their checksums.
func commonVHDFooter(off, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		for _, base := range []int{0, len(b) - 512} {
			commonPut(binary.BigEndian, base+off, width, v)(t, b)
			binary.BigEndian.PutUint32(b[base+64:], vhdChecksum(b[base:base+512], 64))
		}
		return b
	}
}

func commonVHDDyn(off, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		dyn := int(binary.BigEndian.Uint64(b[16:]))
		commonPut(binary.BigEndian, dyn+off, width, v)(t, b)
		binary.BigEndian.PutUint32(b[dyn+36:], vhdChecksum(b[dyn:dyn+1024], 36))
		return b
	}
}

// VHDX: a metadata item's value (found through both region tables'
// first metadata entry), or a region table entry field with its CRC.
func commonVHDXMeta(id vhdxGUID, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		rt := b[vhdxRegion1Off:]
		for i := 0; i < int(binary.LittleEndian.Uint32(rt[8:])); i++ {
			e := rt[16+32*i:]
			if !bytes.Equal(e[:16], vhdxRegionMetadata[:]) {
				continue
			}
			meta := int(binary.LittleEndian.Uint64(e[16:]))
			n := int(binary.LittleEndian.Uint16(b[meta+10:]))
			for j := 0; j < n; j++ {
				me := b[meta+32+32*j:]
				if bytes.Equal(me[:16], id[:]) {
					commonPut(binary.LittleEndian, meta+int(binary.LittleEndian.Uint32(me[16:])), width, v)(t, b)
					return b
				}
			}
		}
		t.Fatalf("vhdx metadata item %s not found", id)
		return b
	}
}

func commonVHDXRegion(id vhdxGUID, off, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		for _, base := range []int{vhdxRegion1Off, vhdxRegion2Off} {
			rt := b[base : base+vhdxRegionLen]
			for i := 0; i < int(binary.LittleEndian.Uint32(rt[8:])); i++ {
				if e := rt[16+32*i:]; bytes.Equal(e[:16], id[:]) {
					commonPut(binary.LittleEndian, base+16+32*i+off, width, v)(t, b)
				}
			}
			binary.LittleEndian.PutUint32(rt[4:], vhdxChecksum(rt, 4))
		}
		return b
	}
}

// VMDK: rewrite the extent line of the embedded descriptor.
func commonVMDKExtent(size string) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		off := int(binary.LittleEndian.Uint64(b[28:])) * 512
		n := int(binary.LittleEndian.Uint64(b[36:])) * 512
		area := b[off : off+n]
		text := string(bytes.TrimRight(area, "\x00"))
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "RW" && f[2] == "SPARSE" {
				f[1] = size
				lines[i] = strings.Join(f, " ")
			}
		}
		text = strings.Join(lines, "\n")
		if len(text) > n {
			t.Fatalf("descriptor of %d bytes does not fit in %d", len(text), n)
		}
		clear(area)
		copy(area, text)
		return b
	}
}

// GPT: a header field, then the header CRC.
func commonGPT(off, width int, v uint64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		h := b[512:1024]
		commonPut(binary.LittleEndian, 512+off, width, v)(t, b)
		hs := binary.LittleEndian.Uint32(h[12:])
		clear(h[16:20])
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
		return b
	}
}

// TestCraftedHugeAllocations patches size, count and offset fields of
// valid fixtures to absurd values: open, Info, reads, Map and Partitions
// must fail cleanly or return data, never panic, hang or allocate more
// than commonCraftLimit.
func TestCraftedHugeAllocations(t *testing.T) {
	const huge, big32 = 1 << 62, 1 << 31
	le, be := binary.LittleEndian, binary.BigEndian
	type tc struct {
		name    string
		fixture func(t *testing.T) []byte
		patches []commonPatch
	}
	cases := []tc{
		{"vdi", func(t *testing.T) []byte { return commonFixture(t, "vdi", 3<<20+512) }, []commonPatch{
			{name: "disk-size", apply: commonPut(le, 0x170, 8, huge)},
			{name: "block-count", apply: commonPut(le, 0x180, 4, big32)},
			{name: "block-count-max", apply: commonPut(le, 0x180, 4, 1<<32-1)},
			{name: "block-size", apply: commonPut(le, 0x178, 4, big32)},
			{name: "block-extra", apply: commonPut(le, 0x17C, 4, big32)},
			{name: "map-offset", apply: commonPut(le, 0x154, 4, 1<<32-16)},
			{name: "data-offset", apply: commonPut(le, 0x158, 4, 1<<32-16)},
			{name: "allocated", apply: commonPut(le, 0x184, 4, 1<<32-1)},
			{name: "size-and-count", apply: commonThen(commonPut(le, 0x170, 8, huge), commonPut(le, 0x180, 4, big32), commonPut(le, 0x178, 4, big32))},
		}},
		{"vmdk", func(t *testing.T) []byte { return commonFixture(t, "vmdk", 3<<20+512) }, []commonPatch{
			{name: "capacity", apply: commonPut(le, 12, 8, huge)},
			{name: "capacity-and-extent", apply: commonThen(commonPut(le, 12, 8, 1<<41), commonVMDKExtent("2199023255552"))},
			{name: "extent-size", apply: commonVMDKExtent("4611686018427387904")},
			{name: "grain-size", apply: commonPut(le, 20, 8, 1<<40)},
			{name: "gt-entries", apply: commonPut(le, 44, 4, big32)},
			{name: "gd-offset", apply: commonPut(le, 56, 8, huge)},
			{name: "rgd-offset", apply: commonPut(le, 48, 8, huge)},
			{name: "desc-size", apply: commonPut(le, 36, 8, 1<<40)},
			{name: "desc-offset", apply: commonPut(le, 28, 8, huge)},
			{name: "overhead", apply: commonPut(le, 64, 8, huge)},
		}},
		{"vmdk-stream", func(t *testing.T) []byte {
			return commonFixture(t, "vmdk", 3<<20+512, "-o", "subformat=streamOptimized")
		}, []commonPatch{
			{name: "grain-size", apply: commonPut(le, 20, 8, 1<<40)},
			{name: "grain-size-max", apply: commonPut(le, 20, 8, 1<<15)},
			{name: "gt-entries", apply: commonPut(le, 44, 4, big32)},
			{name: "capacity", apply: commonPut(le, 12, 8, huge)},
		}},
		{"vhd", func(t *testing.T) []byte { return commonFixture(t, "vpc", 3<<20+512) }, []commonPatch{
			{name: "current-size", apply: commonVHDFooter(48, 8, huge)},
			{name: "current-size-2TiB", apply: commonVHDFooter(48, 8, 2040<<30)},
			{name: "max-entries", apply: commonVHDDyn(28, 4, big32)},
			{name: "block-size", apply: commonVHDDyn(32, 4, big32)},
			{name: "table-offset", apply: commonVHDDyn(16, 8, huge)},
			{name: "data-offset", apply: commonVHDFooter(16, 8, huge)},
		}},
		{"vhd-fixed", func(t *testing.T) []byte {
			return commonFixture(t, "vpc", 3<<20+512, "-o", "subformat=fixed")
		}, []commonPatch{
			{name: "current-size", apply: func(t *testing.T, b []byte) []byte {
				ft := b[len(b)-512:]
				be.PutUint64(ft[48:], huge)
				be.PutUint32(ft[64:], vhdChecksum(ft, 64))
				return b
			}},
		}},
		{"vhdx", func(t *testing.T) []byte { return commonFixture(t, "vhdx", 3<<20+512) }, []commonPatch{
			{name: "disk-size", apply: commonVHDXMeta(vhdxMetaDiskSize, 8, huge)},
			{name: "disk-size-64TiB", apply: commonVHDXMeta(vhdxMetaDiskSize, 8, 64<<40)},
			{name: "block-size", apply: commonVHDXMeta(vhdxMetaFileParams, 4, big32)},
			{name: "block-size-256MiB", apply: commonVHDXMeta(vhdxMetaFileParams, 4, 256<<20)},
			{name: "bat-length", apply: commonVHDXRegion(vhdxRegionBAT, 24, 4, 1<<32-1)},
			{name: "bat-offset", apply: commonVHDXRegion(vhdxRegionBAT, 16, 8, huge)},
			{name: "meta-length", apply: commonVHDXRegion(vhdxRegionMetadata, 24, 4, 1<<32-1)},
		}},
		{"qcow", func(t *testing.T) []byte { return commonFixture(t, "qcow", 3<<20+512) }, []commonPatch{
			{name: "size", apply: commonPut(be, 24, 8, huge)},
			{name: "cluster-bits", apply: commonPut(be, 32, 1, 40)},
			{name: "l2-bits", apply: commonPut(be, 33, 1, 31)},
			{name: "l1-offset", apply: commonPut(be, 40, 8, huge)},
			{name: "backing", apply: commonThen(commonPut(be, 8, 8, huge), commonPut(be, 16, 4, big32))},
		}},
		{"qed", func(t *testing.T) []byte { return commonFixture(t, "qed", 3<<20+512) }, []commonPatch{
			{name: "cluster-size", apply: commonPut(le, 4, 4, big32)},
			{name: "table-size", apply: commonPut(le, 8, 4, big32)},
			{name: "header-size", apply: commonPut(le, 12, 4, big32)},
			{name: "l1-offset", apply: commonPut(le, 40, 8, huge)},
			{name: "image-size", apply: commonPut(le, 48, 8, huge)},
			{name: "image-size-max", apply: commonThen(commonPut(le, 4, 4, 64<<20), commonPut(le, 8, 4, 16), commonPut(le, 48, 8, 1<<50))},
			{name: "backing", apply: commonThen(commonPut(le, 16, 8, 1), commonPut(le, 56, 4, 1<<32-1), commonPut(le, 60, 4, big32))},
		}},
		{"parallels", func(t *testing.T) []byte { return commonFixture(t, "parallels", 3<<20+512) }, []commonPatch{
			{name: "cluster-sectors", apply: commonPut(le, 28, 4, big32)},
			{name: "bat-entries", apply: commonPut(le, 32, 4, big32)},
			{name: "sectors", apply: commonPut(le, 36, 8, huge)},
			{name: "sectors-max", apply: commonPut(le, 36, 8, 1<<53)},
			{name: "data-offset", apply: commonPut(le, 48, 4, 1<<32-1)},
		}},
		{"partitions", func(t *testing.T) []byte {
			p := writeTemp(t, "disk.img", make([]byte, 4<<20))
			sfdiskTable(t, p, "label: gpt\nstart=2048,size=2048,type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
			b := readFile(t, p)
			return b
		}, []commonPatch{
			{name: "entry-count", apply: commonGPT(80, 4, big32)},
			{name: "entry-size", apply: commonGPT(84, 4, big32)},
			{name: "entry-lba", apply: commonGPT(72, 8, huge), mustFail: true},
			{name: "entry-lba-wrap", apply: commonGPT(72, 8, 1<<55+2), mustFail: true},
			{name: "mbr-extended", apply: func(t *testing.T, b []byte) []byte {
				// Replace the protective entry by an extended partition
				// whose chain points far away.
				e := b[446:]
				e[4] = 0x05
				le.PutUint32(e[8:], 1<<32-1)
				le.PutUint32(e[12:], 1<<32-1)
				return b
			}},
		}},
	}
	buf := make([]byte, 64<<10)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := c.fixture(t)
			for _, pt := range c.patches {
				t.Run(pt.name, func(t *testing.T) {
					data := pt.apply(t, append([]byte(nil), orig...))
					p := writeTemp(t, "crafted."+c.name, data)
					alloc, took, err := commonMeasure(p, buf)
					t.Logf("%s: %.1f MiB allocated, %v: %v", pt.name, float64(alloc)/(1<<20), took.Round(time.Millisecond), err)
					if alloc > commonCraftLimit {
						t.Errorf("allocated %d MiB (limit %d MiB)", alloc>>20, commonCraftLimit>>20)
					}
					if took > 10*time.Second {
						t.Errorf("took %v", took)
					}
					if err == nil && pt.mustFail {
						t.Errorf("no error")
					}
					if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("error wraps neither ErrCorrupt nor ErrUnsupported: %v", err)
					}
				})
			}
		})
	}
}

// commonMeasure opens p, reads at its start, middle and end, maps it and
// lists its partitions, returning the bytes allocated meanwhile and the
// first error (a panic fails as an error).
func commonMeasure(p string, buf []byte) (alloc uint64, took time.Duration, err error) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		d, oerr := Open(p, Options{ReadOnly: true})
		if oerr != nil {
			err = oerr
			return
		}
		defer d.Close()
		_ = d.Info()
		size := d.Size()
		for _, off := range []int64{0, size / 2, size - int64(len(buf))} {
			off = max(0, off) / SectorSize * SectorSize
			if _, rerr := d.ReadAt(buf, off); rerr != nil && err == nil {
				err = rerr
			}
		}
		if m, ok := d.(Mapper); ok && size >= SectorSize {
			for _, off := range []int64{0, size / 2 / SectorSize * SectorSize} {
				if _, _, merr := m.Map(off, size-off); merr != nil && err == nil {
					err = merr
				}
			}
		}
		if _, perr := Partitions(d); perr != nil && err == nil {
			err = perr
		}
	}()
	took = time.Since(start)
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc, took, err
}

// TestMapRunsAgainstQemu walks Map over whole qcow, QED and Parallels
// disks with holes (pattern data has zero runs that qemu-img convert
// leaves unallocated) and compares it with `qemu-img map`.
func TestMapRunsAgainstQemu(t *testing.T) {
	for _, name := range []string{"qcow", "qed", "parallels", "qed-over-qcow"} {
		t.Run(name, func(t *testing.T) {
			const size = 5<<20 + 3*512
			fmtName, base, _ := strings.Cut(name, "-over-")
			p := filepath.Join(t.TempDir(), "disk."+fmtName)
			var opts []string
			if fmtName == "parallels" {
				opts = []string{"-o", "cluster_size=64k"} // the 1 MiB default leaves no hole
			}
			if base == "" {
				writeFile(t, p, commonFixture(t, fmtName, size, opts...))
			} else {
				// A child holding a little data over a parent with holes.
				bp := p + ".base"
				writeFile(t, bp, commonFixture(t, base, size))
				qemuImg(t, "create", "-q", "-f", fmtName, "-b", bp, "-F", base, p)
				run(t, "qemu-io", "-f", fmtName, "-c", "write -P 7 3M 64k", p)
			}
			var runs []struct {
				Start, Length int64
				Data          bool
			}
			if err := json.Unmarshal(qemuImg(t, "map", "--output=json", "-f", fmtName, p), &runs); err != nil {
				t.Fatal(err)
			}
			want := make([]bool, size/SectorSize)
			for _, r := range runs {
				for s := r.Start / SectorSize; s < (r.Start+r.Length)/SectorSize && s < int64(len(want)); s++ {
					want[s] = r.Data
				}
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			m := d.(Mapper)
			var holes, data int
			for off := int64(0); off < d.Size(); {
				alloc, n, err := m.Map(off, d.Size()-off)
				if err != nil || n < SectorSize || n%SectorSize != 0 {
					t.Fatalf("Map(%d) = %v, %d, %v", off, alloc, n, err)
				}
				for s := off / SectorSize; s < (off+n)/SectorSize; s++ {
					if want[s] != alloc {
						t.Fatalf("sector %d: Map says allocated=%v, qemu-img map says %v", s, alloc, want[s])
					}
				}
				if alloc {
					data++
				} else {
					holes++
				}
				off += n
			}
			if holes == 0 || data == 0 {
				t.Fatalf("fixture has %d data runs and %d holes; want both", data, holes)
			}
		})
	}
}

// commonFuzzDisk is tryCrafted plus what else a crafted image can reach:
// a walk of Map (checking its contract), Check, and Partitions.
func commonFuzzDisk(t *testing.T, name string, data []byte) {
	tryCrafted(t, name, data, readSome)
	p := writeTemp(t, name, data)
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		return
	}
	defer d.Close()
	end := roundUp(d.Size(), SectorSize)
	if m, ok := d.(Mapper); ok {
		for off, i := int64(0), 0; off < end && i < 64; i++ {
			length := end - off
			_, n, err := m.Map(off, length)
			if err != nil {
				break
			}
			if n < SectorSize || n > length || n%SectorSize != 0 {
				t.Fatalf("Map(%d, %d) returned %d bytes", off, length, n)
			}
			off += n
		}
	}
	if c, ok := d.(Checker); ok {
		c.Check()
	}
	Partitions(d)
}

// Allocated, where a format counts it by scanning its block table, is
// what qemu stored; QuickInfo leaves it out, says so, and matches Info in
// everything else.
func TestAllocatedAgainstQemu(t *testing.T) {
	const size = 9<<20 + 3*512 // the last block is partly past the end
	cases := []struct {
		name string
		make func(t *testing.T, p string) (allocated int64)
	}{
		{"vhd", func(t *testing.T, p string) int64 {
			data := patternDisk(size, 7)
			clear(data[2<<20 : 6<<20]) // two whole 2 MiB blocks of zeros: holes
			qemuImg(t, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", writeTemp(t, "src.raw", data), p)
			var runs []struct {
				Length int64
				Data   bool
			}
			if err := json.Unmarshal(qemuImg(t, "map", "--output=json", "-f", "vpc", p), &runs); err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, r := range runs {
				if r.Data {
					n += r.Length
				}
			}
			return n
		}},
		// qemu's vhdx driver maps everything as data: the oracle is what
		// qemu-io wrote, a whole 1 MiB block for each write.
		{"vhdx", func(t *testing.T, p string) int64 {
			qemuImg(t, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", p, strconv.Itoa(size))
			run(t, "qemu-io", "-f", "vhdx", "-c", "write -P 1 1M 4k", "-c", "write -P 2 5M 1M", "-c", "write -P 3 9M 512", p)
			return 2<<20 + 3*512
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "disk."+c.name)
			want := c.make(t, p)
			if want <= 0 || want >= size {
				t.Fatalf("fixture stores %d of %d bytes; want some holes and some data", want, size)
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			quick, complete := QuickInfo(d)
			if complete || quick.Allocated != -1 {
				t.Fatalf("QuickInfo: Allocated %d, complete %v; want -1, false", quick.Allocated, complete)
			}
			full := d.Info()
			if full.Allocated != want {
				t.Errorf("Info: Allocated %d, qemu stored %d bytes", full.Allocated, want)
			}
			quick.Allocated = full.Allocated
			if !reflect.DeepEqual(quick, full) {
				t.Errorf("QuickInfo %+v\nInfo      %+v", quick, full)
			}
		})
	}
}
