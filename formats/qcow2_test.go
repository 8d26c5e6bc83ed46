package formats

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// qcow2Convert makes a qcow2 image from raw data with qemu-img convert.
func qcow2Convert(t testing.TB, data []byte, opts string, compress bool) string {
	t.Helper()
	var args []string
	if opts != "" {
		args = append(args, "-o", opts)
	}
	if compress {
		args = append(args, "-c")
	}
	return qemuConvert(t, t.TempDir(), data, "qcow2", "img.qcow2", args...)
}

var qcow2ReadVariants = []struct {
	name     string
	opts     string
	compress bool
	variant  string
	conc     bool // also run checkConcurrentReads (slow under -race)
}{
	{"v2-64k", "compat=0.10", false, "v2", false},
	{"v2-512", "compat=0.10,cluster_size=512", false, "v2", false},
	{"v3-2M", "cluster_size=2M", false, "v3", false},
	{"v3-64k-refcount1", "refcount_bits=1", false, "v3", false},
	{"v3-refcount64", "refcount_bits=64,cluster_size=8192", false, "v3", false},
	{"extl2-64k", "extended_l2=on", false, "v3 extended_l2", false},
	{"extl2-16k", "extended_l2=on,cluster_size=16384", false, "v3 extended_l2", true},
	{"zlib", "compat=1.1", true, "v3", false},
	{"zlib-v2-4k", "compat=0.10,cluster_size=4096", true, "v2", false},
	{"prealloc-metadata", "preallocation=metadata,cluster_size=4096", false, "v3", false},
	{"zstd-2M", "compression_type=zstd,cluster_size=2M", true, "v3", false},
	{"zstd-extl2", "compression_type=zstd,extended_l2=on,cluster_size=32768", true, "v3 extended_l2", false},
}

func TestQCOW2Read(t *testing.T) {
	size := int64(1<<20 + 7*512)
	want := patternDisk(size, 7)
	for _, v := range qcow2ReadVariants {
		t.Run(v.name, func(t *testing.T) {
			p := qcow2Convert(t, want, v.opts, v.compress)
			if got := qemuRaw(t, "qcow2", p); !bytes.Equal(got, want) {
				t.Fatal("qemu-img disagrees with the source data")
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			info := d.Info()
			if info.Format != "qcow2" || info.Variant != v.variant {
				t.Fatalf("format %q variant %q, want qcow2 %q", info.Format, info.Variant, v.variant)
			}
			checkDiskReads(t, 300, d, want)
			if v.conc {
				checkConcurrentReads(t, d, want)
			}
			if got, exp := info.Allocated, qcow2MapAllocated(t, p); got != exp {
				t.Fatalf("Allocated %d, qemu-img map says %d", got, exp)
			}
			if strings.Contains(v.opts, "zstd") != slices.Contains(info.Features, "compression zstd") {
				t.Fatalf("features %v", info.Features)
			}
		})
	}
}

// TestQCOW2ZeroAndSubclusters writes zero clusters, preallocated zero
// clusters and single subclusters with qemu-io, over a backing file so
// "zero" and "unallocated" differ.
func TestQCOW2ZeroAndSubclusters(t *testing.T) {
	for _, opts := range []string{"", "extended_l2=on", "compat=0.10"} {
		t.Run(opts, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base.raw")
			writeFile(t, base, patternDisk(2<<20, 3))
			top := filepath.Join(dir, "top.qcow2")
			o := "backing_file=base.raw,backing_fmt=raw"
			if opts != "" {
				o += "," + opts
			}
			qemuImg(t, "create", "-f", "qcow2", "-o", o, top, "3M")
			qemuIO(t, "qcow2", top,
				"write -P 0x11 0 128k",
				"write -z 64k 64k",
				"write -z 512k 192k",
				"write -P 0x22 520k 2k",
				"write -P 0x33 1m 4k",
				"write -P 0x44 1028k 512",
				"write -z 1536k 4k",
				"write -P 0x55 3070k 2k")
			want := qemuRaw(t, "qcow2", top)
			d := mustOpen(t, top, Options{ReadOnly: true})
			checkDiskReads(t, 300, d, want)
			checkMap(t, d, want, nil)
			if got, exp := d.Info().Allocated, qcow2MapAllocated(t, top); got != exp {
				t.Fatalf("Allocated %d, qemu-img map says %d", got, exp)
			}
		})
	}
}

// qcow2MapAllocated sums the bytes qemu-img map reports as data stored
// in the top image itself.
func qcow2MapAllocated(t *testing.T, path string) int64 {
	t.Helper()
	var m []struct {
		Length int64 `json:"length"`
		Depth  int   `json:"depth"`
		Data   bool  `json:"data"`
	}
	if err := json.Unmarshal(qemuImg(t, "map", "--output=json", "-f", "qcow2", path), &m); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range m {
		if e.Depth == 0 && e.Data {
			n += e.Length
		}
	}
	return n
}

// qcow2Chain builds base.raw <- mid.qcow2 <- top.qcow2 with data at each
// level and returns the paths (top last).
func qcow2Chain(t testing.TB, dir, topOpts string) (base, mid, top string) {
	t.Helper()
	base = filepath.Join(dir, "base.raw")
	writeFile(t, base, patternDisk(1<<20+512, 11))
	mid = filepath.Join(dir, "mid.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", "-b", "base.raw", "-F", "raw", mid, "2M")
	qemuIO(t, "qcow2", mid, "write -P 0x5a 4k 12k", "write -P 0x6b 1000k 100k", "write -P 0x7c 1500k 8k")
	top = filepath.Join(dir, "top.qcow2")
	o := "backing_file=mid.qcow2,backing_fmt=qcow2"
	if topOpts != "" {
		o += "," + topOpts
	}
	qemuImg(t, "create", "-f", "qcow2", "-o", o, top, "3M")
	qemuIO(t, "qcow2", top, "write -P 0x01 8k 64k", "write -z 1010k 20k", "write -P 0x02 2900k 60k")
	return base, mid, top
}

func TestQCOW2Chain(t *testing.T) {
	dir := t.TempDir()
	_, _, top := qcow2Chain(t, dir, "")
	want := qemuRaw(t, "qcow2", top)
	d := mustOpen(t, top, Options{ReadOnly: true})
	checkDisk(t, d, want)
	checkConcurrentReads(t, d, want)
	info := d.Info()
	if info.Parent == nil || info.Parent.Format != "qcow2" || info.Parent.Parent == nil || info.Parent.Parent.Format != "raw" {
		t.Fatalf("chain info: %+v", info)
	}
	if info.Metadata["backing_file"] != "mid.qcow2" {
		t.Fatalf("metadata %v", info.Metadata)
	}
	checkMap(t, d, want, nil)
}

func TestQCOW2BackingErrors(t *testing.T) {
	dir := t.TempDir()
	qemuImg(t, "create", "-f", "qcow2", filepath.Join(dir, "base.qcow2"), "1M")
	// Backing format says raw, the file is qcow2.
	bad := filepath.Join(dir, "bad.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "raw", bad, "1M")
	if _, err := Open(bad, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "backing format") {
		t.Fatalf("backing format mismatch: %v", err)
	}
	// Missing backing file.
	miss := filepath.Join(dir, "miss.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-u", "-b", "nothere.qcow2", "-F", "qcow2", miss, "1M")
	_, err := Open(miss, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nothere.qcow2") {
		t.Fatalf("missing backing file: %v", err)
	}
	// A loop: the image backs itself.
	loop := filepath.Join(dir, "loop.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-u", "-b", "loop.qcow2", "-F", "qcow2", loop, "1M")
	if _, err := Open(loop, Options{ReadOnly: true}); err == nil {
		t.Fatal("self-backed image opened")
	}
}

func TestQCOW2Snapshots(t *testing.T) {
	p := qcow2Convert(t, patternDisk(2<<20, 21), "cluster_size=4096", false)
	qemuImg(t, "snapshot", "-c", "first", p)
	qemuIO(t, "qcow2", p, "write -P 0x99 0 100k", "write -z 1m 64k")
	qemuImg(t, "snapshot", "-c", "second snap", p)
	qemuIO(t, "qcow2", p, "write -P 0x98 50k 8k")
	want := qemuRaw(t, "qcow2", p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	checkDiskReads(t, 300, d, want)
	info := d.Info()
	if !slices.Contains(info.Features, "snapshots 2") {
		t.Fatalf("features %v", info.Features)
	}
	if !strings.Contains(info.Metadata["snapshot.1"], "name=first") || !strings.Contains(info.Metadata["snapshot.2"], "name=second snap") {
		t.Fatalf("metadata %v", info.Metadata)
	}
	d.Close()

	// Writes to the active state must not change the snapshots.
	snap := filepath.Join(t.TempDir(), "snap1.raw")
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name=first", p, snap)
	before := fileMD5(t, snap)
	w := mustOpen(t, p, Options{})
	randomWrites(t, w, want, 60, 5)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := qemuRaw(t, "qcow2", p); !bytes.Equal(got, want) {
		t.Fatal("after writes: qemu-img reads something else than written")
	}
	qemuCheck(t, "qcow2", p)
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name=first", p, snap)
	if fileMD5(t, snap) != before {
		t.Fatal("writes changed snapshot 'first'")
	}
}

func TestQCOW2DataFile(t *testing.T) {
	for _, raw := range []bool{false, true} {
		dir := t.TempDir()
		p := filepath.Join(dir, "img.qcow2")
		o := "data_file=img.data"
		if raw {
			o += ",data_file_raw=on"
		}
		// Run in dir: qemu resolves a relative data file name against its cwd.
		qcow2RunIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-o", o, "img.qcow2", "2M")
		qcow2RunIn(t, dir, "qemu-io", "-f", "qcow2", "-c", "write -P 0x31 0 70k", "-c", "write -P 0x32 1m 4k", "-c", "write -z 8k 4k", "img.qcow2")
		want := qcow2RawIn(t, dir)
		d := mustOpen(t, p, Options{ReadOnly: true})
		checkDiskReads(t, 300, d, want)
		info := d.Info()
		if !slices.Contains(info.Features, "external data file") || len(info.Files) != 2 || raw != slices.Contains(info.Features, "data_file_raw") {
			t.Fatalf("info %+v", info)
		}
		d.Close()
		w := mustOpen(t, p, Options{})
		randomWrites(t, w, want, 40, 9)
		concurrentWrites(t, w, want, 24<<10)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := qcow2RawIn(t, dir); !bytes.Equal(got, want) {
			t.Fatalf("data_file_raw=%v: qemu-img reads something else than written", raw)
		}
		cmd := exec.Command("qemu-img", "check", "-f", "qcow2", "img.qcow2")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors") {
			t.Fatalf("qemu-img check: %v\n%s", err, out)
		}
	}
}

// qcow2SetBits sets bits in the 64-bit header field at off.
func qcow2SetBits(t *testing.T, path string, off int64, bits uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint64(b[:], binary.BigEndian.Uint64(b[:])|bits)
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func TestQCOW2DirtyCorruptBits(t *testing.T) {
	want := patternDisk(1<<20, 4)
	// Dirty through a real crash: lazy refcounts, then abort.
	clear(want)
	p := filepath.Join(t.TempDir(), "lazy.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "lazy_refcounts=on", p, "1M")
	qemuIO(t, "qcow2", p, "write -P 0x77 0 64k")
	cmd := []string{"-f", "qcow2", "-c", "write -P 0x78 256k 64k", "-c", "abort", p}
	_ = runMayFail("qemu-io", cmd...)
	hdr := peekFile(t, p, 0, 80)
	if binary.BigEndian.Uint64(hdr[72:])&qcow2IncDirty == 0 {
		t.Fatal("qemu-io abort left no dirty bit")
	}
	sum := fileMD5(t, p)
	d := mustOpen(t, p, Options{ReadOnly: true})
	want = qemuRaw(t, "qcow2", p)
	if !bytes.Equal(want[:64<<10], bytes.Repeat([]byte{0x77}, 64<<10)) {
		t.Fatal("qemu-img does not read the first write back")
	}
	checkDiskReads(t, 300, d, want)
	if !slices.Contains(d.Info().Features, "dirty") {
		t.Fatalf("features %v", d.Info().Features)
	}
	d.Close()
	if fileMD5(t, p) != sum {
		t.Fatal("read-only open changed the file")
	}
	_, err := Open(p, Options{})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "qemu-img check -r all") {
		t.Fatalf("read-write open of a dirty image: %v", err)
	}

	// Corrupt bit set by hand: read-only whatever was asked.
	want = patternDisk(1<<20, 4)
	c := qcow2Convert(t, want, "", false)
	qcow2SetBits(t, c, 72, qcow2IncCorrupt)
	d, err = Open(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	info := d.Info()
	if !info.ReadOnly || !strings.Contains(info.ReadOnlyReason, "corrupt") {
		t.Fatalf("corrupt image info %+v", info)
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to corrupt image: %v", err)
	}
	checkDiskReads(t, 300, d, want)
}

// qcow2RawIn converts dir/img.qcow2 to raw from within dir: qemu 7.2
// looks for a relative data file name in its working directory.
func qcow2RawIn(t testing.TB, dir string) []byte {
	t.Helper()
	// Convert afresh each time; the first call finds no earlier output.
	if err := os.Remove(filepath.Join(dir, "out.raw")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	qcow2RunIn(t, dir, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", "img.qcow2", "out.raw")
	b := readFile(t, filepath.Join(dir, "out.raw"))
	return b
}

// qcow2RunIn runs a tool in dir; any failure is fatal.
func qcow2RunIn(t testing.TB, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func runMayFail(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

func TestQCOW2Unsupported(t *testing.T) {
	dir := t.TempDir()
	// Legacy AES encryption made by qemu-img, and a LUKS crypt_method set
	// by hand (qemu-img takes seconds to stretch a LUKS key).
	enc := filepath.Join(dir, "enc.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "--object", "secret,id=sec0,data=x",
		"-o", "encrypt.format=aes,encrypt.key-secret=sec0", enc, "1M")
	luks := qcow2Convert(t, patternDisk(64<<10, 1), "", false)
	qcow2SetBits(t, luks, 32, 2<<32) // crypt_method is the high half of the 8 bytes at 32
	for _, p := range []string{enc, luks} {
		if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "encrypt") {
			t.Fatalf("encrypted image: %v", err)
		}
	}
	u := qcow2Convert(t, patternDisk(1<<20, 1), "", false)
	qcow2SetBits(t, u, 72, 1<<9)
	if _, err := Open(u, Options{ReadOnly: true}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "bit 9") {
		t.Fatalf("unknown incompatible bit: %v", err)
	}
}

// TestQCOW2Autoclear: unknown autoclear bits go at the first write.
func TestQCOW2Autoclear(t *testing.T) {
	want := patternDisk(1<<20, 2)
	p := qcow2Convert(t, want, "", false)
	qcow2SetBits(t, p, 88, 1<<7)
	d := mustOpen(t, p, Options{})
	randomWrites(t, d, want, 5, 1)
	d.Close()
	b := readFile(t, p)
	if ac := binary.BigEndian.Uint64(b[88:]); ac != 0 {
		t.Fatalf("autoclear %#x after a write, want 0", ac)
	}
	if got := qemuRaw(t, "qcow2", p); !bytes.Equal(got, want) {
		t.Fatal("qemu-img reads something else than written")
	}
}

var qcow2WriteVariants = []struct {
	name     string
	opts     string
	compress bool
	backing  bool
	conc     bool // concurrent reads and a reopen too (slow under -race)
}{
	{"plain", "", false, false, false},
	{"v2", "compat=0.10,cluster_size=4096", false, false, false},
	{"compressed", "cluster_size=8192", true, false, false},
	{"zstd", "compression_type=zstd,cluster_size=16384", true, false, false},
	{"backing", "cluster_size=16384", false, true, false},
	{"extl2-backing", "extended_l2=on,cluster_size=32768", false, true, true},
	{"extl2-compressed", "extended_l2=on,cluster_size=16384", true, false, false},
	{"refcount1", "refcount_bits=1,cluster_size=4096", false, false, false},
	{"refcount64", "refcount_bits=64,cluster_size=4096", false, false, false},
}

func TestQCOW2Write(t *testing.T) {
	size := int64(1<<20 + 3*512)
	for _, v := range qcow2WriteVariants {
		t.Run(v.name, func(t *testing.T) {
			var p, parentPath, parentSum string
			var model []byte
			if v.backing {
				dir := t.TempDir()
				base, _, top := qcow2Chain(t, dir, v.opts)
				p, parentPath = top, filepath.Join(dir, "mid.qcow2")
				parentSum = fileMD5(t, parentPath) + fileMD5(t, base)
				model = qemuRaw(t, "qcow2", top)
			} else {
				model = patternDisk(size, 13)
				p = qcow2Convert(t, model, v.opts, v.compress)
			}
			d := mustOpen(t, p, Options{})
			randomWrites(t, d, model, 80, 3)
			concurrentWrites(t, d, model, 12<<10)
			concurrentWrites(t, d, model, 512) // writers share clusters and subclusters
			if v.conc {
				checkConcurrentReads(t, d, model)
			}
			randomWrites(t, d, model, 20, 4)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if got := qemuRaw(t, "qcow2", p); !bytes.Equal(got, model) {
				t.Fatal("qemu-img reads something else than written")
			}
			qemuCheck(t, "qcow2", p)
			if v.backing {
				base := filepath.Join(filepath.Dir(p), "base.raw")
				if fileMD5(t, parentPath)+fileMD5(t, base) != parentSum {
					t.Fatal("a write changed a backing file")
				}
			}
			checkDiskReads(t, 300, mustOpen(t, p, Options{ReadOnly: true}), model)
		})
	}
}

// TestQCOW2RefcountGrowth writes enough into a 512-byte-cluster image to
// outgrow its one-cluster refcount table.
func TestQCOW2RefcountGrowth(t *testing.T) {
	p := filepath.Join(t.TempDir(), "small.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=512", p, "10M")
	b := readFile(t, p)
	rtBefore := binary.BigEndian.Uint64(b[48:])
	model := make([]byte, 10<<20)
	d := mustOpen(t, p, Options{})
	buf := patternDisk(10<<20, 8)
	for off := 0; off < len(buf); off += 1 << 20 {
		if _, err := d.WriteAt(buf[off:off+1<<20], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	copy(model, buf)
	randomWrites(t, d, model, 30, 6)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	b = readFile(t, p)
	if binary.BigEndian.Uint64(b[48:]) == rtBefore {
		t.Fatal("refcount table did not move")
	}
	if got := qemuRaw(t, "qcow2", p); !bytes.Equal(got, model) {
		t.Fatal("qemu-img reads something else than written")
	}
	qemuCheck(t, "qcow2", p)
}

func TestQCOW2Samples(t *testing.T) {
	for _, s := range samples(t, "qcow2") {
		t.Run(filepath.Base(s.Path), func(t *testing.T) {
			p := sampleFile(t, s.Path)
			if s.ExpectError() {
				if _, err := Open(p, Options{ReadOnly: true}); err == nil {
					t.Fatal("negative sample opened")
				}
				return
			}
			openSample(t, p, s, true)
		})
	}
}

func TestQCOW2Crafted(t *testing.T) {
	for _, v := range []struct {
		opts     string
		compress bool
	}{{"cluster_size=4096", false}, {"cluster_size=4096,extended_l2=off", true}, {"extended_l2=on,cluster_size=16384", false}} {
		img := readFile(t, qcow2Convert(t, patternDisk(256<<10, 5), v.opts, v.compress))
		for i, c := range corruptVariants(img, int64(i0(v.compress)), 60) {
			_ = i
			qcow2OpenCrafted(t, c)
		}
	}
}

func i0(b bool) int {
	if b {
		return 1
	}
	return 0
}

// qcow2OpenCrafted opens a crafted image read-write too: writes must fail
// cleanly or work, never panic.
func qcow2OpenCrafted(t *testing.T, data []byte) {
	tryCrafted(t, "c.qcow2", data, readSome)
	p := filepath.Join(t.TempDir(), "w.qcow2")
	writeFile(t, p, data)
	d, err := Open(p, Options{})
	if err != nil {
		return
	}
	defer d.Close()
	buf := bytes.Repeat([]byte{0xab}, 8192)
	for _, off := range []int64{0, d.Size() / 2, d.Size() - 4096} {
		off = max(0, off) / SectorSize * SectorSize
		d.WriteAt(buf[:4096], off)
		d.ReadAt(buf, off)
	}
}

func FuzzQCOW2(f *testing.F) {
	// Small seeds: the fuzzer slows down a lot with inputs of 100 KiB.
	for _, opts := range []string{"cluster_size=512", "cluster_size=512,compat=0.10", "extended_l2=on,cluster_size=16384,compression_type=zstd"} {
		data := patternDisk(8<<10, 5)
		p := qcow2Convert(f, data, opts, strings.Contains(opts, "zstd"))
		b := readFile(f, p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "f.qcow2", data, readSome)
	})
}

func qcow2BenchImage(b *testing.B, compress bool) Disk {
	data := patternDisk(64<<20, 1)
	p := qcow2Convert(b, data, "", compress)
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

func BenchmarkQCOW2SeqRead(b *testing.B)        { benchReads(b, qcow2BenchImage(b, false), false) }
func BenchmarkQCOW2RandRead(b *testing.B)       { benchReads(b, qcow2BenchImage(b, false), true) }
func BenchmarkQCOW2CompressedRead(b *testing.B) { benchReads(b, qcow2BenchImage(b, true), false) }

func BenchmarkQCOW2Open2TiB(b *testing.B) {
	var cases []benchOpenCase
	for _, size := range []string{"2M", "2T"} {
		p := filepath.Join(b.TempDir(), "big.qcow2")
		qemuImg(b, "create", "-f", "qcow2", p, size)
		qemuIO(b, "qcow2", p, "write -P 1 0 64k", "write -P 2 1M 64k")
		cases = append(cases, benchOpenCase{size, p})
	}
	benchOpens(b, false, cases...)
}
