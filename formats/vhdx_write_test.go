package formats

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vhdimountRead mounts path with libvhdi's vhdimount (which finds a
// differencing image's parent itself) and returns n bytes at off of the
// disk it shows (n < 0: all of it).
func vhdimountRead(t testing.TB, path string, off, n int64) []byte {
	t.Helper()
	return vhdimountReadRanges(t, path, [][2]int64{{off, n}})[0]
}

// vhdimountReadRanges reads several {offset, length} ranges in one mount.
func vhdimountReadRanges(t testing.TB, path string, ranges [][2]int64) [][]byte {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "vhdi")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "vhdimount", path, mnt)
	defer func() {
		for i := 0; i < 50; i++ {
			if exec.Command("fusermount3", "-u", mnt).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("fusermount3 -u %s failed", mnt)
	}()
	// One file per level of the chain, the top image last.
	names, err := filepath.Glob(filepath.Join(mnt, "vhdi*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("vhdimount shows no disk: %v", err)
	}
	sort.Slice(names, func(i, j int) bool {
		return len(names[i]) < len(names[j]) || len(names[i]) == len(names[j]) && names[i] < names[j]
	})
	f, err := os.Open(names[len(names)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	for _, r := range ranges {
		off, n := r[0], r[1]
		if n < 0 {
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			n = st.Size() - off
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatalf("reading %s through vhdimount: %v", path, err)
		}
		out = append(out, b)
	}
	return out
}

// vhdxHeaderField reads 16 bytes at field of the current header.
func vhdxHeaderField(t testing.TB, path string, field int) (g vhdxGUID, seq uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 132<<10)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{64 << 10, 128 << 10} {
		h := b[off : off+4096]
		if string(h[:4]) != "head" || binary.LittleEndian.Uint32(h[4:]) != vhdxChecksum(h, 4) {
			continue
		}
		if s := binary.LittleEndian.Uint64(h[8:]); s > seq {
			seq = s
			copy(g[:], h[field:field+16])
		}
	}
	if seq == 0 {
		t.Fatalf("%s: no valid header", path)
	}
	return g, seq
}

// vhdxUnalignedWrites writes n random runs of random bytes (and zeros)
// through d, of any sector-multiple length at any sector, many of them
// across block boundaries, and applies them to model.
func vhdxUnalignedWrites(t testing.TB, d Disk, model []byte, n int, seed, blockSize int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	size := int64(len(model))
	for i := 0; i < n; i++ {
		var off int64
		switch i % 3 {
		case 0: // around a block boundary
			b := r.Int63n(size/blockSize + 1)
			off = max(0, b*blockSize-int64(r.Intn(16))*SectorSize)
		default:
			off = r.Int63n(size/SectorSize) * SectorSize
		}
		cnt := int64(1+r.Intn(600)) * SectorSize
		if i%7 == 0 {
			cnt = int64(1+r.Intn(3)) * SectorSize
		}
		p := make([]byte, cnt)
		if i%5 != 4 {
			r.Read(p)
		}
		if nw, err := d.WriteAt(p, off); err != nil || nw != len(p) {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, nw, err)
		}
		if off < size {
			copy(model[off:], p[:min(cnt, size-off)])
		}
		if i%10 == 9 {
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// vhdxVerifyWritten checks a closed image against model with every
// oracle: qemu-img check and convert (unless noQemu), vhdimount, and
// vdflat's own reader; the log must be empty.
func vhdxVerifyWritten(t *testing.T, path string, model []byte, noQemu bool) {
	t.Helper()
	if g, _ := vhdxHeaderField(t, path, 48); !g.isZero() {
		t.Errorf("log GUID %s after a clean close", g)
	}
	// Both header copies valid, one sequence number apart, alike but
	// for it: each update rewrites both.
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := img[64<<10:68<<10], img[128<<10:132<<10]
	for _, h := range [][]byte{h1, h2} {
		if string(h[:4]) != "head" || binary.LittleEndian.Uint32(h[4:]) != vhdxChecksum(h, 4) {
			t.Fatal("a header copy is invalid")
		}
	}
	s1, s2 := binary.LittleEndian.Uint64(h1[8:]), binary.LittleEndian.Uint64(h2[8:])
	if s1-s2 != 1 && s2-s1 != 1 || !bytes.Equal(h1[16:80], h2[16:80]) {
		t.Errorf("header copies: sequence %d and %d, GUIDs and log fields equal: %v", s1, s2, bytes.Equal(h1[16:80], h2[16:80]))
	}
	if !noQemu {
		qemuCheck(t, "vhdx", path)
		if got := qemuRaw(t, "vhdx", path); !bytes.Equal(got, model) {
			t.Fatalf("qemu-img reads other bytes than written (first difference at %d)", vhdxFirstDiff(got, model))
		}
	}
	if got := vhdimountRead(t, path, 0, -1); !bytes.Equal(got, model) {
		t.Fatalf("vhdimount reads other bytes than written (first difference at %d)", vhdxFirstDiff(got, model))
	}
	d := mustOpen(t, path, Options{ReadOnly: true})
	checkDisk(t, d, model)
	checkMap(t, d, model, nil)
	d.Close()
}

func vhdxFirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestVHDXWriteQemu(t *testing.T) {
	cases := []struct {
		name   string
		size   int64
		opts   string
		block  int64
		create bool // qemu-img create (empty) rather than convert
	}{
		{"dynamic-1M", 5<<20 + 3*512, "subformat=dynamic,block_size=1M", 1 << 20, false},
		{"dynamic-1M-empty", 6 << 20, "subformat=dynamic,block_size=1M", 1 << 20, true},
		{"dynamic-8M-log2M", 17<<20 + 512, "subformat=dynamic,block_size=8M,log_size=2M", 8 << 20, false},
		{"dynamic-32M-empty", 40 << 20, "subformat=dynamic,block_size=32M", 32 << 20, true},
		{"fixed-1M", 4<<20 + 5*512, "subformat=fixed,block_size=1M", 1 << 20, false},
		{"fixed-2M-empty", 5 << 20, "subformat=fixed,block_size=2M", 2 << 20, true},
		{"dynamic-256M-empty", 3 << 20, "subformat=dynamic,block_size=256M", 256 << 20, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var img string
			var model []byte
			if c.create {
				img = filepath.Join(t.TempDir(), "disk.vhdx")
				qemuImg(t, "create", "-f", "vhdx", "-o", c.opts, img, strconv.FormatInt(c.size, 10))
				model = make([]byte, c.size)
			} else {
				img, model = vhdxQemuFixture(t, c.size, int64(i+1), c.opts)
			}
			dataGUID, seq0 := vhdxHeaderField(t, img, 32)
			// Two sessions: the second finds the first's blocks.
			for s := int64(0); s < 2; s++ {
				d := mustOpen(t, img, Options{})
				if info := d.Info(); info.ReadOnly || !CanWrite(d) {
					t.Fatalf("Info = %+v", info)
				}
				vhdxUnalignedWrites(t, d, model, 40, int64(i)*10+s, c.block)
				checkDisk(t, d, model)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				vhdxVerifyWritten(t, img, model, false)
			}
			g, seq := vhdxHeaderField(t, img, 32)
			if g == dataGUID || seq <= seq0 {
				t.Errorf("data write GUID %s (was %s), sequence %d (was %d): not renewed", g, dataGUID, seq, seq0)
			}
		})
	}
}

// TestVHDXWriteStates writes to blocks in every BAT state a dynamic or
// differencing image may hold, with 512 and 4096-byte logical sectors,
// on images from the test writer; vhdimount (and qemu-img, for images
// without a parent) read them back.
func TestVHDXWriteStates(t *testing.T) {
	for _, sector := range []int64{512, 4096} {
		t.Run("dynamic-"+strconv.FormatInt(sector, 10), func(t *testing.T) {
			r := rand.New(rand.NewSource(sector))
			im := &vhdxTestImage{size: 9 << 20, blockSize: 1 << 20, sector: sector, dataWrite: vhdxTestGUID(r)}
			im.blocks = vhdxTestBlocks(r, 9, im.blockSize, sector, false)
			im.blocks[5] = vhdxTestBlock{state: 1} // undefined
			p := writeTemp(t, "disk.vhdx", im.build())
			model := im.model(nil)
			d := mustOpen(t, p, Options{})
			vhdxUnalignedWrites(t, d, model, 60, sector, im.blockSize)
			// Every block once more, the first and last sector.
			for b := int64(0); b < 9; b++ {
				for _, off := range []int64{b << 20, b<<20 + 1<<20 - 512} {
					buf := bytes.Repeat([]byte{byte(b + 1)}, 512)
					if _, err := d.WriteAt(buf, off); err != nil {
						t.Fatal(err)
					}
					copy(model[off:], buf)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			vhdxVerifyWritten(t, p, model, sector != 512) // qemu 7.2 opens only 512-byte sectors
		})
		t.Run("differencing-"+strconv.FormatInt(sector, 10), func(t *testing.T) {
			child, model := vhdxDiffFixture(t, sector, vhdxLowerLocator)
			parent := filepath.Join(filepath.Dir(child), "disk.vhdx")
			before := vhdxFileMD5(t, parent)
			d := mustOpen(t, child, Options{})
			vhdxUnalignedWrites(t, d, model, 80, sector+1, 1<<20)
			checkDisk(t, d, model)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			vhdxVerifyWritten(t, child, model, true)
			if vhdxFileMD5(t, parent) != before {
				t.Fatal("the parent changed")
			}
		})
	}
}

// TestVHDXWriteDiffBitmap checks the sector bitmap a write leaves: in a
// differencing image whose blocks are all absent, a write of one 512-byte
// sector marks exactly its logical sector, filled from the parent.
func TestVHDXWriteDiffBitmap(t *testing.T) {
	for _, sector := range []int64{512, 4096} {
		t.Run(strconv.FormatInt(sector, 10), func(t *testing.T) {
			p := vhdxMakeParent(t)
			dir := filepath.Dir(p.path)
			r := rand.New(rand.NewSource(3))
			im := &vhdxTestImage{size: vhdxDiffSize, blockSize: 1 << 20, sector: sector, dataWrite: vhdxTestGUID(r),
				blocks: map[int64]vhdxTestBlock{}, parent: vhdxLowerLocator(dir, p.link)}
			child := filepath.Join(dir, "child.avhdx")
			if err := os.WriteFile(child, im.build(), 0o644); err != nil {
				t.Fatal(err)
			}
			model := append([]byte(nil), p.raw...)
			d := mustOpen(t, child, Options{})
			off := int64(2<<20 + 4096 + 1024) // block 2, inside logical sector 1 (4K) or sector 10 (512)
			buf := bytes.Repeat([]byte{0xee}, 512)
			if _, err := d.WriteAt(buf, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], buf)
			// A whole block: fully present without a bitmap.
			whole := bytes.Repeat([]byte{0x5a}, 1<<20)
			if _, err := d.WriteAt(whole, 4<<20); err != nil {
				t.Fatal(err)
			}
			copy(model[4<<20:], whole)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			vhdxVerifyWritten(t, child, model, true)
			// The BAT and the bitmap as the file holds them.
			img, err := os.ReadFile(child)
			if err != nil {
				t.Fatal(err)
			}
			cr := im.chunkRatio()
			bat := func(i int64) uint64 { return binary.LittleEndian.Uint64(img[vhdxTestBATOff+8*i:]) }
			if s := bat(2) & 7; s != 7 {
				t.Fatalf("block 2 state %d, want 7 (partially present)", s)
			}
			if s := bat(4) & 7; s != 6 {
				t.Fatalf("block 4 state %d, want 6 (fully present)", s)
			}
			sb := bat(cr)
			if sb&7 != 6 {
				t.Fatalf("sector bitmap entry %#x, want present", sb)
			}
			perBlock := im.blockSize / sector / 8
			bm := img[int64(sb>>20<<20)+2*perBlock : int64(sb>>20<<20)+3*perBlock]
			want := make([]byte, perBlock)
			s := (off - 2<<20) / sector
			want[s/8] = 1 << (s % 8)
			if !bytes.Equal(bm, want) {
				t.Fatalf("block 2 bitmap %x, want %x", bm, want)
			}
		})
	}
}

// vhdxLowerLocator is vhdxStdLocator with the linkage GUID in lower
// case: libvhdi 20210425 refuses upper-case hex digits there.
func vhdxLowerLocator(dir string, link vhdxGUID) map[string]string {
	m := vhdxStdLocator(dir, link)
	m["parent_linkage"] = strings.ToLower(m["parent_linkage"])
	return m
}

func vhdxFileMD5(t testing.TB, path string) [16]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return md5.Sum(b)
}

// TestVHDXWriteReadOnly: a read-only open never writes; an image with an
// unknown (optional) region or metadata item stays read-only, saying why.
func TestVHDXWriteReadOnly(t *testing.T) {
	img, _ := vhdxQemuFixture(t, 2<<20, 7, "subformat=dynamic")
	d := mustOpen(t, img, Options{ReadOnly: true})
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt = %v, want ErrReadOnly", err)
	}
	if !CanWrite(d) {
		t.Error("CanWrite = false for a plain image")
	}
	d.Close()

	r := rand.New(rand.NewSource(1))
	im := &vhdxTestImage{size: 2 << 20, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r), blocks: map[int64]vhdxTestBlock{}}
	for _, c := range []struct{ name, want string }{{"region", "unknown region"}, {"metadata", "unknown metadata item"}} {
		b := im.build()
		if c.name == "region" { // a third, optional region entry
			for _, off := range []int{192 << 10, 256 << 10} {
				rt := b[off : off+64<<10]
				binary.LittleEndian.PutUint32(rt[8:], 3)
				e := rt[16+64:]
				copy(e, "unknown-region!!")
				binary.LittleEndian.PutUint64(e[16:], 4<<20)
				binary.LittleEndian.PutUint32(e[24:], 1<<20)
				binary.LittleEndian.PutUint32(rt[4:], vhdxChecksum(rt, 4))
			}
			b = append(b, make([]byte, 4<<20)...)
		} else { // an optional metadata item nobody knows
			meta := b[vhdxTestMetaOff:]
			n := binary.LittleEndian.Uint16(meta[10:])
			e := meta[32+32*int(n):]
			copy(e, "unknown-metadata")
			binary.LittleEndian.PutUint32(e[16:], 128<<10)
			binary.LittleEndian.PutUint32(e[20:], 8)
			binary.LittleEndian.PutUint16(meta[10:], n+1)
		}
		p := writeTemp(t, c.name+".vhdx", b)
		d := mustOpen(t, p, Options{})
		info := d.Info()
		if !info.ReadOnly || !strings.Contains(info.ReadOnlyReason, c.want) || CanWrite(d) {
			t.Errorf("%s: Info = %+v", c.name, info)
		}
		if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: WriteAt = %v", c.name, err)
		}
		d.Close()
		if after, _ := os.ReadFile(p); !bytes.Equal(after, b) {
			t.Errorf("%s: the file changed", c.name)
		}
	}
}

// TestVHDXWriteOverlap: a BAT entry placing a block over the metadata
// region makes the write fail (EIO) and the image read-only for the rest
// of the attach; nothing of the metadata changes.
func TestVHDXWriteOverlap(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	im := &vhdxTestImage{size: 4 << 20, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r), blocks: map[int64]vhdxTestBlock{}}
	for _, target := range []int64{vhdxTestMetaOff, vhdxTestBATOff, vhdxTestLogOff} {
		b := im.build()
		binary.LittleEndian.PutUint64(b[vhdxTestBATOff+8:], uint64(target)|6) // block 1
		p := writeTemp(t, "bad.vhdx", b)
		d := mustOpen(t, p, Options{})
		buf := bytes.Repeat([]byte{1}, 4096)
		if _, err := d.WriteAt(buf, 1<<20); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("WriteAt over %#x = %v, want ErrCorrupt", target, err)
		}
		if _, err := d.WriteAt(buf, 0); err == nil {
			t.Fatal("a write after the failure succeeded")
		}
		d.Close()
		after, _ := os.ReadFile(p)
		if !bytes.Equal(after[target:target+1<<20], b[target:target+1<<20]) {
			t.Fatalf("the region at %#x changed", target)
		}
	}
}

// TestVHDXWriteDirtyLog: a write-open replays a dirty log into the file
// (qemu-img then reads it without a replay of its own); a read-only open
// does not touch it.
func TestVHDXWriteDirtyLog(t *testing.T) {
	src := sampleFile(t, "qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2")
	before := vhdxFileMD5(t, src)
	d := mustOpen(t, src, Options{ReadOnly: true})
	d.Close()
	if vhdxFileMD5(t, src) != before {
		t.Fatal("a read-only open changed the file")
	}
	d = mustOpen(t, src, Options{})
	info := d.Info()
	if !strings.Contains(strings.Join(info.Features, ","), "log replayed into the file") {
		t.Errorf("Features = %v", info.Features)
	}
	buf := bytes.Repeat([]byte{0x3c}, 8192)
	if _, err := d.WriteAt(buf, 18<<20-4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if g, _ := vhdxHeaderField(t, src, 48); !g.isZero() {
		t.Fatal("log not empty after close")
	}
	qemuCheck(t, "vhdx", src)
	// 18 MiB of 0xa5 (the log's last block included), then zeros, with
	// our write over the end of the 0xa5 run.
	want := make([]byte, 18<<20+4096)
	for i := range want[:18<<20] {
		want[i] = 0xa5
	}
	copy(want[18<<20-4096:], buf)
	ref := filepath.Join(t.TempDir(), "want.raw")
	if err := os.WriteFile(ref, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(ref, 10<<30); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, "compare", "-f", "vhdx", "-F", "raw", src, ref)
}

// vhdxFileOp is one change the disk made to its file.
type vhdxFileOp struct {
	op   byte // 'w' write, 't' truncate, 's' sync
	off  int64
	data []byte
}

// vhdxGuestOp is one guest write, or a flush (data nil), and how many
// file operations had been made when it returned.
type vhdxGuestOp struct {
	off  int64
	data []byte
	done int
}

// vhdxRecordSession opens path read-write, records every change the disk
// makes to its file while it runs random writes with a flush every few,
// and closes it.
func vhdxRecordSession(t *testing.T, path string, size, blockSize int64, n int, seed int64) ([]vhdxFileOp, []vhdxGuestOp) {
	t.Helper()
	var ops []vhdxFileOp
	var guest []vhdxGuestOp
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.(*vhdxDisk).w.trace = func(op byte, off int64, b []byte) {
		ops = append(ops, vhdxFileOp{op, off, append([]byte(nil), b...)})
	}
	r := rand.New(rand.NewSource(seed))
	for i := 0; i < n; i++ {
		if i%4 == 3 {
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			guest = append(guest, vhdxGuestOp{done: len(ops)})
			continue
		}
		off := r.Int63n(size/SectorSize) * SectorSize
		if i%3 == 0 {
			off = max(0, r.Int63n(size/blockSize+1)*blockSize-int64(r.Intn(4))*SectorSize)
		}
		p := make([]byte, int64(1+r.Intn(40))*SectorSize)
		r.Read(p)
		if _, err := d.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		guest = append(guest, vhdxGuestOp{off: off, data: p, done: len(ops)})
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	guest = append(guest, vhdxGuestOp{done: len(ops)}) // Close flushes
	return ops, guest
}

// vhdxCrashImage rebuilds the file as a power cut after the first cut
// operations would leave it: everything up to the last sync before the
// cut, then each later operation or not, writes torn per 512-byte sector.
// It returns the image and how many operations are surely durable.
func vhdxCrashImage(base []byte, ops []vhdxFileOp, cut int, r *rand.Rand) ([]byte, int) {
	durable := 0
	for i := 0; i < cut; i++ {
		if ops[i].op == 's' {
			durable = i + 1
		}
	}
	img := append([]byte(nil), base...)
	write := func(off int64, b []byte) {
		if end := off + int64(len(b)); end > int64(len(img)) {
			img = append(img, make([]byte, end-int64(len(img)))...)
		}
		copy(img[off:], b)
	}
	for i, o := range ops[:cut] {
		keep := i < durable || r.Intn(2) == 0
		switch {
		case !keep:
		case o.op == 't':
			if o.off > int64(len(img)) {
				img = append(img, make([]byte, o.off-int64(len(img)))...)
			} else {
				img = img[:o.off]
			}
		case o.op == 'w' && i < durable:
			write(o.off, o.data)
		case o.op == 'w':
			for s := 0; s < len(o.data); s += SectorSize {
				if r.Intn(3) != 0 {
					write(o.off+int64(s), o.data[s:min(s+SectorSize, len(o.data))])
				}
			}
		}
	}
	return img, durable
}

// vhdxCheckCrash checks what a crashed image reads: every sector holds
// its value at the last flush that reached the disk, or a value a later
// write gave it.
func vhdxCheckCrash(t *testing.T, got, model0 []byte, guest []vhdxGuestOp, durable int) {
	t.Helper()
	model := append([]byte(nil), model0...)
	last := -1 // last guest flush surely durable
	for i, g := range guest {
		if g.data == nil && g.done <= durable {
			last = i
		}
	}
	for _, g := range guest[:last+1] {
		if g.data != nil {
			copy(model[g.off:], g.data[:min(int64(len(g.data)), int64(len(model))-g.off)])
		}
	}
	for s := int64(0); s < int64(len(model)); s += SectorSize {
		e := min(s+SectorSize, int64(len(model)))
		if bytes.Equal(got[s:e], model[s:e]) {
			continue
		}
		ok := false
		for _, g := range guest[last+1:] {
			if g.data != nil && g.off <= s && s < g.off+int64(len(g.data)) && bytes.Equal(got[s:e], g.data[s-g.off:e-g.off]) {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("sector at %d holds neither its flushed value nor a later write's", s)
		}
	}
}

// TestVHDXWriteCrash cuts a recorded session at random points, tearing
// the writes not yet flushed, and checks that the image opens, replays
// its log (in memory read-only, into the file read-write), is consistent
// for qemu-img check and the image's own check, and holds every write
// flushed before the cut.
func TestVHDXWriteCrash(t *testing.T) {
	for _, c := range []struct {
		name         string
		diff         bool
		noQemuReplay bool
	}{{"dynamic", false, false}, {"differencing", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			var path string
			var model0 []byte
			if c.diff {
				path, model0 = vhdxDiffFixture(t, 4096, vhdxLowerLocator)
			} else {
				path = filepath.Join(t.TempDir(), "disk.vhdx")
				qemuImg(t, "create", "-f", "vhdx", "-o", "block_size=1M", path, "7M")
				model0 = make([]byte, 7<<20)
			}
			base, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ops, guest := vhdxRecordSession(t, path, int64(len(model0)), 1<<20, 36, 8)
			crash := filepath.Join(filepath.Dir(path), "crash.vhdx")
			// Half the cuts fall right after a log entry's write (before
			// the flush that follows it) or right after its pages' writes.
			hdr := base[64<<10:]
			if binary.LittleEndian.Uint64(base[128<<10+8:]) > binary.LittleEndian.Uint64(hdr[8:]) {
				hdr = base[128<<10:]
			}
			logOff := int64(binary.LittleEndian.Uint64(hdr[72:]))
			logEnd := logOff + int64(binary.LittleEndian.Uint32(hdr[68:]))
			var inLog []int
			for i, o := range ops {
				if o.op == 'w' && o.off >= logOff && o.off < logEnd && i+2 < len(ops) {
					inLog = append(inLog, i+1, i+2)
				}
			}
			if len(inLog) == 0 {
				t.Fatal("the session wrote no log entry")
			}
			r := rand.New(rand.NewSource(77))
			replays := 0
			defer func() {
				if replays == 0 && !t.Failed() {
					t.Error("no cut left a log entry to replay")
				}
			}()
			for k := 0; k < 12; k++ {
				cut := r.Intn(len(ops) + 1)
				switch {
				case k == 0:
					cut = len(ops)
				case k%2 == 1:
					cut = inLog[r.Intn(len(inLog))]
				}
				img, durable := vhdxCrashImage(base, ops, cut, r)
				if err := os.WriteFile(crash, img, 0o644); err != nil {
					t.Fatal(err)
				}
				ro := mustOpen(t, crash, Options{ReadOnly: true})
				if strings.Contains(strings.Join(ro.Info().Features, ","), "log replayed") {
					replays++
				}
				got := make([]byte, roundUp(ro.Size(), SectorSize))
				if _, err := ro.ReadAt(got, 0); err != nil {
					t.Fatalf("cut %d: read-only read: %v", cut, err)
				}
				ro.Close()
				vhdxCheckCrash(t, got[:len(model0)], model0, guest, durable)
				if !c.diff && !c.noQemuReplay {
					// qemu replays the log of a copy itself.
					cp := filepath.Join(filepath.Dir(path), "qemu.vhdx")
					if err := os.WriteFile(cp, img, 0o644); err != nil {
						t.Fatal(err)
					}
					qemuImg(t, "check", "-q", "-r", "all", "-f", "vhdx", cp)
					if q := qemuRaw(t, "vhdx", cp); !bytes.Equal(q, got[:len(model0)]) {
						t.Fatalf("cut %d: after its own replay qemu-img reads other bytes than vdflat (at %d)", cut, vhdxFirstDiff(q, got))
					}
				}
				d := mustOpen(t, crash, Options{}) // replays into the file
				checkDisk(t, d, got[:len(model0)])
				if f, err := d.(Checker).Check(); err != nil || len(f) > 0 {
					t.Fatalf("cut %d: Check = %v, %v", cut, f, err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				if g, _ := vhdxHeaderField(t, crash, 48); !g.isZero() {
					t.Fatalf("cut %d: log not empty after replay and close", cut)
				}
				if !c.diff {
					qemuCheck(t, "vhdx", crash)
					if q := qemuRaw(t, "vhdx", crash); !bytes.Equal(q, got[:len(model0)]) {
						t.Fatalf("cut %d: qemu-img reads other bytes than vdflat (at %d)", cut, vhdxFirstDiff(q, got))
					}
				} else if k%6 == 0 {
					if v := vhdimountRead(t, crash, 0, -1); !bytes.Equal(v, got[:len(model0)]) {
						t.Fatalf("cut %d: vhdimount reads other bytes than vdflat (at %d)", cut, vhdxFirstDiff(v, got))
					}
				}
			}
		})
	}
}

// TestVHDXWriteHyperV writes to a differencing disk made by Hyper-V (32
// partially present blocks of 2 MiB, 512-byte sectors), over a parent
// made here by qemu-img with some data where the child's blocks are and
// the data write GUID the child links to. vhdimount reads the chain
// before and after; the parent never changes.
func TestVHDXWriteHyperV(t *testing.T) {
	child := sampleFile(t, "bad/dissect/differencing.avhdx.gz")
	dir := filepath.Dir(child)
	parent := filepath.Join(dir, "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx")
	qemuImg(t, "create", "-q", "-f", "vhdx", "-o", "block_size=2M", parent, "8G")
	run(t, "qemu-io", "-f", "vhdx", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 511M 5M", parent)
	img, err := os.ReadFile(parent)
	if err != nil {
		t.Fatal(err)
	}
	link := vhdxMustGUID("ff34003b-11ed-4cf8-a166-b2be05e20b80")
	for _, off := range []int{64 << 10, 128 << 10} {
		h := img[off : off+4096]
		copy(h[32:48], link[:])
		binary.LittleEndian.PutUint32(h[4:], vhdxChecksum(h, 4))
	}
	if err := os.WriteFile(parent, img, 0o644); err != nil {
		t.Fatal(err)
	}
	before := vhdxFileMD5(t, parent)

	// Blocks 0 and 256 are partially present in the child; the others
	// of these ranges are absent.
	ranges := [][2]int64{{0, 8 << 20}, {510 << 20, 8 << 20}, {3 << 30, 4 << 20}, {8<<30 - 4<<20, 4 << 20}}
	want := vhdimountReadRanges(t, child, ranges)
	d := mustOpen(t, child, Options{})
	vhdxCompareRanges(t, d, ranges, want)
	r := rand.New(rand.NewSource(4))
	for i := 0; i < 40; i++ {
		k := r.Intn(len(ranges))
		rg := ranges[k]
		off := rg[0] + r.Int63n(rg[1]/SectorSize)*SectorSize
		n := min(int64(1+r.Intn(300))*SectorSize, rg[0]+rg[1]-off)
		p := make([]byte, n)
		r.Read(p)
		if _, err := d.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[k][off-rg[0]:], p)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got := vhdimountReadRanges(t, child, ranges)
	for i := range ranges {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("vhdimount reads other bytes in range %d (at +%d)", i, vhdxFirstDiff(got[i], want[i]))
		}
	}
	d = mustOpen(t, child, Options{ReadOnly: true})
	vhdxCompareRanges(t, d, ranges, want)
	if f, err := d.(Checker).Check(); err != nil || len(f) > 0 {
		t.Fatalf("Check = %v, %v", f, err)
	}
	d.Close()
	if vhdxFileMD5(t, parent) != before {
		t.Fatal("the parent changed")
	}
}

// vhdxCompareRanges reads each range through d and compares it.
func vhdxCompareRanges(t *testing.T, d Disk, ranges [][2]int64, want [][]byte) {
	t.Helper()
	for i, rg := range ranges {
		p := make([]byte, rg[1])
		if _, err := d.ReadAt(p, rg[0]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, want[i]) {
			t.Fatalf("range %d: vdflat reads other bytes than vhdimount (at +%d)", i, vhdxFirstDiff(p, want[i]))
		}
	}
}

// TestVHDXWriteConcurrent writes from 8 goroutines to interleaved
// stripes that share blocks (and, with 4 KiB sectors, logical sectors)
// while another goroutine reads (run with -race).
func TestVHDXWriteConcurrent(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "differencing-4096"}[diff], func(t *testing.T) {
			var path string
			var model []byte
			if diff {
				path, model = vhdxDiffFixture(t, 4096, vhdxLowerLocator)
			} else {
				path = filepath.Join(t.TempDir(), "disk.vhdx")
				qemuImg(t, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "12M")
				model = make([]byte, 12<<20)
			}
			d := mustOpen(t, path, Options{})
			stop := make(chan struct{})
			readErr := make(chan error, 1)
			go func() {
				p := make([]byte, 256<<10)
				for off := int64(0); ; off = (off + int64(len(p))) % int64(len(model)-len(p)) {
					select {
					case <-stop:
						readErr <- nil
						return
					default:
					}
					if _, err := d.ReadAt(p, off/SectorSize*SectorSize); err != nil {
						readErr <- err
						return
					}
				}
			}()
			concurrentWrites(t, d, model, 300*SectorSize)
			close(stop)
			if err := <-readErr; err != nil {
				t.Fatal(err)
			}
			checkDisk(t, d, model)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			vhdxVerifyWritten(t, path, model, diff)
		})
	}
}

// FuzzVHDXWrite opens a crafted image read-write and writes to it: no
// panic, no hang, and whatever a write accepts reads back, also after the
// image is closed and opened again.
func FuzzVHDXWrite(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	dyn := &vhdxTestImage{size: 3<<20 + 4096, blockSize: 1 << 20, sector: 4096, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}, 1: {state: 3}, 2: {state: 2}}}
	f.Add(vhdxFuzzEncode(dyn.build()), int64(1))
	fixed := &vhdxTestImage{size: 2 << 20, blockSize: 1 << 20, sector: 512, fixed: true, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}, 1: {state: 6, data: make([]byte, 1<<20)}}}
	f.Add(vhdxFuzzEncode(fixed.build()), int64(2))
	// A dirty log that a write-open replays into the file.
	b, err := os.ReadFile(sampleFile(f, "qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(vhdxFuzzEncode(b[:min(len(b), 4<<20)]), int64(3))
	f.Fuzz(func(t *testing.T, data []byte, seed int64) {
		p := writeTemp(t, "fuzz.vhdx", vhdxFuzzDecode(data))
		d, err := Open(p, Options{})
		if err != nil {
			return
		}
		size := d.Size()
		r := rand.New(rand.NewSource(seed))
		type write struct {
			off int64
			p   []byte
		}
		var done []write
		for i := 0; i < 6 && size >= SectorSize; i++ {
			off := r.Int63n(size/SectorSize) * SectorSize
			w := write{off, make([]byte, int64(1+r.Intn(64))*SectorSize)}
			r.Read(w.p)
			if _, err := d.WriteAt(w.p, off); err != nil {
				break
			}
			done = append(done, w)
		}
		check := func(d Disk, when string) {
			model := map[int64][]byte{} // sector -> last bytes written there
			for _, w := range done {
				for s := int64(0); s < int64(len(w.p)) && w.off+s < size; s += SectorSize {
					model[w.off+s] = w.p[s : s+SectorSize]
				}
			}
			got := make([]byte, SectorSize)
			for off, want := range model {
				if _, err := d.ReadAt(got, off); err != nil {
					t.Fatalf("%s: reading back at %d: %v", when, off, err)
				}
				n := min(int64(SectorSize), size-off)
				if !bytes.Equal(got[:n], want[:n]) {
					t.Fatalf("%s: sector at %d does not hold what was written", when, off)
				}
			}
		}
		check(d, "open")
		if err := d.Close(); err != nil || len(done) == 0 {
			return
		}
		d, err = Open(p, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("reopening after writes that succeeded: %v", err)
		}
		defer d.Close()
		check(d, "reopened")
	})
}
