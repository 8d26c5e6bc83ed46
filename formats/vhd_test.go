package formats

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// vhdFixture converts data to a VHD with qemu-img and returns its path.
// opts is qemu's -o string ("subformat=dynamic,force_size=on").
func vhdFixture(t testing.TB, data []byte, opts string) string {
	t.Helper()
	return qemuConvert(t, t.TempDir(), data, "vpc", "disk.vhd", "-o", opts)
}

// TestVHDQemu compares images made by qemu-img, fixed and dynamic, with
// and without force_size (CHS-rounded size, creator "qemu", vs exact
// size, creator "qem2"), with qemu-img's own raw conversion.
func TestVHDQemu(t *testing.T) {
	cases := []struct {
		opts    string
		size    int64
		variant string
	}{
		{"subformat=dynamic,force_size=on", 4<<20 + 7*512, "dynamic"},
		{"subformat=dynamic", 3<<20 + 4096, "dynamic"},
		{"subformat=fixed,force_size=on", 1<<20 + 512, "fixed"},
		{"subformat=fixed", 1<<20 + 1536, "fixed"},
		{"subformat=dynamic,force_size=on", 1000 * 512, "dynamic"},
	}
	for i, c := range cases {
		img := vhdFixture(t, patternDisk(c.size, int64(i)), c.opts)
		want := qemuRaw(t, "vpc", img)
		if name, err := Detect(img); err != nil || name != "vhd" {
			t.Fatalf("%s: Detect = %q, %v", c.opts, name, err)
		}
		d := mustOpen(t, img, Options{ReadOnly: true})
		info := d.Info()
		if info.Variant != c.variant || info.Format != "vhd" {
			t.Fatalf("%s: format %s variant %s, want vhd %s", c.opts, info.Format, info.Variant, c.variant)
		}
		if c.variant == "dynamic" && info.ClusterSize != 2<<20 {
			t.Fatalf("%s: cluster size %d", c.opts, info.ClusterSize)
		}
		if len(info.Warnings) != 0 {
			t.Fatalf("%s: warnings %v", c.opts, info.Warnings)
		}
		checkDisk(t, d, want)
		if i == 0 {
			checkConcurrentReads(t, d, want)
		}
		checkMap(t, d, want, nil)
	}
}

// vhdCompare is a faster checkDisk for big disks under -race: whole
// 1 MiB reads and random reads (some past the end) compared with
// bytes.Equal.
func vhdCompare(t testing.TB, d Disk, want []byte) {
	t.Helper()
	if d.Size() != int64(len(want)) {
		t.Fatalf("Size() = %d, want %d", d.Size(), len(want))
	}
	padded := append(want[:len(want):len(want)], make([]byte, 1<<20)...)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
		n := min(int64(len(buf)), roundUp(int64(len(want))-off, SectorSize))
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("ReadAt(%d at %d): %v", n, off, err)
		}
		if !bytes.Equal(buf[:n], padded[off:off+n]) {
			t.Fatalf("data differs in the %d bytes at %d", n, off)
		}
	}
	r := rand.New(rand.NewSource(2))
	sectors := int64(len(want)) / SectorSize
	for i := 0; i < 300; i++ {
		off := r.Int63n(sectors) * SectorSize
		n := (1 + r.Int63n(600)) * SectorSize
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("ReadAt(%d at %d): %v", n, off, err)
		}
		if !bytes.Equal(buf[:n], padded[off:off+n]) {
			t.Fatalf("data differs in the %d bytes at %d", n, off)
		}
	}
}

// TestVHDProbe checks that a fixed VHD (footer only at the end, also the
// 511-byte footer of old images) is a VHD, not raw.
func TestVHDProbe(t *testing.T) {
	data := patternDisk(1<<20, 7)
	img := vhdFixture(t, data, "subformat=fixed,force_size=on")
	d := mustOpen(t, img, Options{ReadOnly: true})
	checkDisk(t, d, data)

	b := readFile(t, img)
	old := writeTemp(t, "old.vhd", b[:len(b)-1])
	d = mustOpen(t, old, Options{ReadOnly: true})
	if d.Info().Format != "vhd" || d.Info().Variant != "fixed" {
		t.Fatalf("511-byte footer: %+v", d.Info())
	}
	checkDisk(t, d, data)

	// A dynamic image whose footer copy at offset 0 is damaged is read
	// through the footer at the end.
	data = patternDisk(3<<20, 8)
	img = vhdFixture(t, data, "subformat=dynamic,force_size=on")
	want := qemuRaw(t, "vpc", img)
	db := readFile(t, img)
	copy(db, "XXXXXXXX")
	d = mustOpen(t, writeTemp(t, "nohead.vhd", db), Options{ReadOnly: true})
	checkDisk(t, d, want)
	if a := d.Info().Allocated; a <= 0 || a > d.Size() {
		t.Fatalf("allocated %d of %d", a, d.Size())
	}

	// Without the footer it is raw.
	if name, _ := Detect(writeTemp(t, "plain.img", b[:len(b)-512])); name != "raw" {
		t.Fatalf("raw data detected as %q", name)
	}
}

// TestVHDSamples checks every VHD sample of expected.tsv.
func TestVHDSamples(t *testing.T) {
	siblings := map[string][]string{
		"image-differential.vhd.gz": {"image.vhd.gz"},
		"win8-child.vhd":            {"win8.vhd"},
	}
	for _, s := range samples(t, "vhd") {
		t.Run(s.Path, func(t *testing.T) {
			p := sampleFile(t, s.Path, siblings[filepath.Base(s.Path)]...)
			d, err := Open(p, Options{ReadOnly: true})
			// Negative rows have "-" hashes; their notes do not start with
			// EXPECT ERROR, so ExpectError alone misses them.
			if s.ExpectError() || s.MD5 == "-" {
				if err == nil {
					d.Close()
					t.Fatalf("opened, want an error (%s)", s.Notes)
				}
				t.Logf("error as expected: %v", err)
				switch filepath.Base(s.Path) {
				case "fat-differential.vhd.gz":
					if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "fat-parent.vhd") {
						t.Fatalf("want a missing-parent error naming fat-parent.vhd, got %v", err)
					}
				case "afl5.img.bz2":
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("want ErrCorrupt, got %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Size() != s.VSize {
				t.Fatalf("size %d, want %d", d.Size(), s.VSize)
			}
			info := d.Info()
			t.Logf("%s %s: %v warnings %v", info.Format, info.Variant, info.Metadata, info.Warnings)
			if info.Format != "vhd" {
				t.Fatalf("format %s", info.Format)
			}
			if s.VSize >= 1<<30 { // all-zero 1 GiB and 127 GiB disks: sampled reads
				vhdSampledZero(t, d)
				return
			}
			if got := diskMD5(t, d); got != s.MD5 {
				t.Fatalf("md5 %s, want %s", got, s.MD5)
			}
		})
	}
}

func vhdSampledZero(t *testing.T, d Disk) {
	t.Helper()
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	size := d.Size()
	offs := []int64{0, size - int64(len(buf)), size / 2 / SectorSize * SectorSize, size / SectorSize * SectorSize}
	for i := 0; i < 200; i++ {
		offs = append(offs, r.Int63n(size/SectorSize)*SectorSize)
	}
	for _, off := range offs {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
		if !bytes.Equal(buf, zero) {
			t.Fatalf("non-zero data at %d", off)
		}
	}
}

// TestVHDSampleDetails checks what the samples' notes promise beyond
// the md5: size rules, parent lookup, tolerated checksums.
func TestVHDSampleDetails(t *testing.T) {
	// Child without its parent: a missing-parent error naming win8.vhd.
	child := sampleFile(t, "go-vhd/win8-child.vhd")
	_, err := Open(child, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "win8.vhd") {
		t.Fatalf("win8-child.vhd alone: %v, want a missing parent", err)
	}

	// The pair: the parent is found through the relative locator.
	child = sampleFile(t, "go-vhd/win8-child.vhd", "win8.vhd")
	d := mustOpen(t, child, Options{ReadOnly: true})
	info := d.Info()
	if info.Variant != "differencing" || info.Parent == nil || filepath.Base(info.Parent.Path) != "win8.vhd" {
		t.Fatalf("win8-child: %+v", info)
	}
	if info.Metadata["parent_uuid"] != info.Parent.Metadata["uuid"] {
		t.Fatalf("parent uuid %s, parent's %s", info.Metadata["parent_uuid"], info.Parent.Metadata["uuid"])
	}

	// Bad checksums are tolerated with warnings, refused when strict.
	diff := sampleFile(t, "dfvfs/image-differential.vhd.gz", "image.vhd.gz")
	d = mustOpen(t, diff, Options{ReadOnly: true})
	info = d.Info()
	if len(info.Warnings) < 2 || info.Parent == nil || len(info.Parent.Warnings) == 0 {
		t.Fatalf("image-differential: warnings %v, parent %+v", info.Warnings, info.Parent)
	}
	if _, err := Open(diff, Options{ReadOnly: true, Strict: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("strict open of a bad checksum: %v", err)
	}

	// A parent with another UUID is refused.
	other := filepath.Join(filepath.Dir(child), "win8.vhd")
	img := vhdFixture(t, make([]byte, 41943040), "subformat=dynamic,force_size=on")
	vhdCopyFile(t, img, other)
	if _, err := Open(child, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "UUID") {
		t.Fatalf("wrong parent: %v, want a UUID mismatch", err)
	}

	// afl5.img padded so that its header is whole: the 4 GiB block table
	// is refused by its size, without being allocated.
	afl := vhdSampleBytes(t, "bad/qemu-iotests/afl5.img.bz2")
	afl = append(afl, make([]byte, 8192-len(afl))...)
	_, err = Open(writeTemp(t, "afl5.vhd", afl), Options{ReadOnly: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block table") {
		t.Fatalf("padded afl5: %v, want a refused block table", err)
	}

	// Creators and the size rule.
	for _, c := range []struct{ path, rule string }{
		{"go-vhd/vbox.vhd", "current_size"},
		{"go-vhd/qemu.vhd", "chs"},
		{"qemu-iotests/virtualpc-dynamic.vhd.bz2", "chs"},
		{"qemu-iotests/hyperv2012r2-dynamic.vhd.bz2", "current_size"},
	} {
		d := mustOpen(t, sampleFile(t, c.path), Options{ReadOnly: true})
		if got := d.Info().Metadata["size_from"]; got != c.rule {
			t.Fatalf("%s: size from %s, want %s", c.path, got, c.rule)
		}
	}
}

// TestVHDParentCandidates checks how stored parent paths become places
// to look (Windows paths keep only their base name; relative ones are
// resolved against the child's directory).
func TestVHDParentCandidates(t *testing.T) {
	d := &vhdDisk{
		path:       "/img/child.vhd",
		parentName: `C:\VMs\base.vhd`,
		locators: []vhdLocator{
			{"W2ku", `C:\VMs\base.vhd`},
			{"W2ru", `..\VMs\base.vhd`},
			{"MacX", "/Users/me/VMs/base.vhd"},
			{"W2ku", `\\server\share\other.vhd`},
		},
	}
	got := d.parentCandidates([]string{"/search"})
	want := []string{"../VMs/base.vhd", "/Users/me/VMs/base.vhd", "base.vhd", "other.vhd", "/search/base.vhd", "/search/other.vhd"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("candidates %q, want %q", got, want)
	}
}

func vhdCopyFile(t testing.TB, src, dst string) {
	t.Helper()
	b := readFile(t, src)
	writeFile(t, dst, b)
}

// TestVHDReadOnly: opening read-only never writes, and writes fail.
func TestVHDReadOnly(t *testing.T) {
	for _, opts := range []string{"subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
		img := vhdFixture(t, patternDisk(3<<20, 3), opts)
		before := fileMD5(t, img)
		d, err := Open(img, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
		}
		if _, err := d.ReadAt(make([]byte, 100), 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unaligned ReadAt: %v", err)
		}
		diskMD5(t, d)
		_ = d.Info()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if after := fileMD5(t, img); after != before {
			t.Fatalf("%s: read-only open changed the file", opts)
		}
		// Read-write without writes changes nothing either.
		d, err = Open(img, Options{})
		if err != nil {
			t.Fatal(err)
		}
		diskMD5(t, d)
		_ = d.Info()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if after := fileMD5(t, img); after != before {
			t.Fatalf("%s: read-write open without writes changed the file", opts)
		}
	}
}

// TestVHDWrite writes through the Disk (random, then concurrent with
// readers), and checks the result with qemu-img convert and check.
func TestVHDWrite(t *testing.T) {
	for i, opts := range []string{"subformat=dynamic,force_size=on", "subformat=dynamic", "subformat=fixed,force_size=on"} {
		size := int64(5<<20 + 3*512)
		img := vhdFixture(t, patternDisk(size, int64(i+10)), opts)
		model := qemuRaw(t, "vpc", img)

		d, err := Open(img, Options{})
		if err != nil {
			t.Fatal(err)
		}
		randomWrites(t, d, model, 60, int64(i))
		vhdCompare(t, d, model)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := qemuRaw(t, "vpc", img); !bytes.Equal(got, model) {
			t.Fatalf("%s: qemu-img reads something else after random writes", opts)
		}

		d, err = Open(img, Options{})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ { // readers racing the writers
			wg.Add(1)
			go func(seed int64) {
				defer wg.Done()
				r := rand.New(rand.NewSource(seed))
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						return
					default:
					}
					off := r.Int63n(d.Size()/SectorSize) * SectorSize
					if _, err := d.ReadAt(buf, off); err != nil {
						t.Error(err)
						return
					}
				}
			}(int64(g))
		}
		concurrentWrites(t, d, model, 96<<10)
		close(stop)
		wg.Wait()
		vhdCompare(t, d, model)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := qemuRaw(t, "vpc", img); !bytes.Equal(got, model) {
			t.Fatalf("%s: qemu-img reads something else after concurrent writes", opts)
		}
		vhdCheckFooters(t, img)
		d = mustOpen(t, img, Options{ReadOnly: true})
		checkDisk(t, d, model)
	}
}

// TestVHDWriteHuge writes at both ends and the middle of a 2040 GiB
// (the format's maximum) dynamic image and lets qemu-io check the
// patterns: qemu-img convert of 2 TiB would take too long.
func TestVHDWriteHuge(t *testing.T) {
	img := filepath.Join(t.TempDir(), "big.vhd")
	qemuImg(t, "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", img, "2040G")
	d, err := Open(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	size := d.Size()
	if size != 2040<<30 {
		t.Fatalf("size %d", size)
	}
	writes := []struct {
		off int64
		n   int
		b   byte
	}{
		{0, 4096, 0x11},
		{size/2 - 512, 8192, 0x22}, // crosses a block boundary
		{size - 1<<20, 1 << 20, 0x33},
	}
	for _, w := range writes {
		if _, err := d.WriteAt(bytes.Repeat([]byte{w.b}, w.n), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		run(t, "qemu-io", "-f", "vpc", "-r", "-c", fmt.Sprintf("read -P %#x %d %d", w.b, w.off, w.n), img)
	}
	run(t, "qemu-io", "-f", "vpc", "-r", "-c", fmt.Sprintf("read -P 0 %d %d", 4096, 1<<20), img)
	run(t, "qemu-io", "-f", "vpc", "-r", "-c", fmt.Sprintf("read -P 0 %d %d", size-2<<20, 1<<20), img)
	vhdCheckFooters(t, img)
	d = mustOpen(t, img, Options{ReadOnly: true})
	for _, w := range writes {
		p := make([]byte, w.n)
		if _, err := d.ReadAt(p, w.off); err != nil || !bytes.Equal(p, bytes.Repeat([]byte{w.b}, w.n)) {
			t.Fatalf("read back at %d: %v", w.off, err)
		}
	}
}

// vhdCheckFooters checks that a dynamic image's footer copies agree.
func vhdCheckFooters(t *testing.T, img string) {
	t.Helper()
	b := readFile(t, img)
	tail := b[len(b)-512:]
	if !bytes.HasPrefix(tail, []byte("conectix")) {
		t.Fatal("no footer at the end")
	}
	if bytes.HasPrefix(b, []byte("conectix")) && !bytes.Equal(b[:512], tail) {
		t.Fatal("footer copies at 0 and at the end differ")
	}
}

// TestVHDDiffWrite writes into differencing children made by Windows
// and dfvfs: partial blocks must not hide the parent's data, the parent
// file must not change, and a fresh open reads the model back.
func TestVHDDiffWrite(t *testing.T) {
	// win8.vhd (Windows, all zero) gets data first, through this writer,
	// checked by qemu-img; then its Windows-made child is written.
	child := sampleFile(t, "go-vhd/win8-child.vhd", "win8.vhd")
	parent := filepath.Join(filepath.Dir(child), "win8.vhd")
	pd, err := Open(parent, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pmodel := make([]byte, pd.Size())
	pat := patternDisk(9<<20, 5)
	for off := int64(0); off < int64(len(pat)); off += 1 << 20 {
		if _, err := pd.WriteAt(pat[off:off+1<<20], off+3<<20); err != nil {
			t.Fatal(err)
		}
	}
	copy(pmodel[3<<20:], pat)
	if err := pd.Close(); err != nil {
		t.Fatal(err)
	}
	if got := qemuRaw(t, "vpc", parent); !bytes.Equal(got, pmodel) {
		t.Fatal("qemu-img reads the parent differently")
	}
	vhdDiffWriteCheck(t, child, parent, pmodel)

	// The dfvfs pair (bad checksums, parent found by name).
	child = sampleFile(t, "dfvfs/image-differential.vhd.gz", "image.vhd.gz")
	parent = filepath.Join(filepath.Dir(child), "image.vhd")
	d := mustOpen(t, child, Options{ReadOnly: true})
	model := make([]byte, d.Size())
	if _, err := d.ReadAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if s := md5.Sum(model); hex.EncodeToString(s[:]) != "221a58695f266d7ce045f2e54926e6e2" {
		t.Fatal("image-differential.vhd: md5 differs from expected.tsv")
	}
	vhdDiffWriteCheck(t, child, parent, model)
}

func vhdDiffWriteCheck(t *testing.T, child, parent string, model []byte) {
	t.Helper()
	before := fileMD5(t, parent)
	d, err := Open(child, Options{})
	if err != nil {
		t.Fatal(err)
	}
	vhdCompare(t, d, model)
	randomWrites(t, d, model, 40, 3)
	// Single sectors in blocks not yet allocated in the child.
	for _, off := range []int64{4<<20 + 512, 9<<20 - 512, d.Size() - 512} {
		p := bytes.Repeat([]byte{0xA7}, 512)
		if _, err := d.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		if off < int64(len(model)) {
			copy(model[off:], p)
		}
	}
	vhdCompare(t, d, model)
	vhdSparseConcurrentWrites(t, d, model)
	vhdCompare(t, d, model)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if fileMD5(t, parent) != before {
		t.Fatal("writing the child changed the parent")
	}
	vhdCheckFooters(t, child)
	d = mustOpen(t, child, Options{ReadOnly: true})
	vhdCompare(t, d, model)
	if len(model) < 4<<20 { // slow under -race; TestVHDWrite covers big ones
		checkConcurrentReads(t, d, model)
	}
	checkMap(t, d, model, nil)
}

// vhdSparseConcurrentWrites writes single sectors from 8 goroutines into
// the same few blocks (goroutine g owns the sectors = g mod 8), so that
// allocations and bitmap updates of one block race each other.
func vhdSparseConcurrentWrites(t *testing.T, d Disk, model []byte) {
	t.Helper()
	sectors := int64(len(model)) / SectorSize
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := int64(0); g < 8; g++ {
		wg.Add(1)
		go func(g int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(g + 50))
			for i := 0; i < 40; i++ {
				s := (r.Int63n(sectors)/8)*8 + g
				if s >= sectors {
					continue
				}
				p := make([]byte, SectorSize)
				r.Read(p)
				if _, err := d.WriteAt(p, s*SectorSize); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				copy(model[s*SectorSize:], p)
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

// TestVHDCorrupt opens damaged copies of small images: errors are fine,
// panics and huge allocations are not.
func TestVHDCorrupt(t *testing.T) {
	for i, opts := range []string{"subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
		img := vhdFixture(t, patternDisk(256<<10+4096, int64(i)), opts)
		b := readFile(t, img)
		for _, c := range corruptVariants(b, int64(i), 100) {
			tryCrafted(t, "c.vhd", c, readSome)
		}
	}
	for _, c := range corruptVariants(vhdSampleBytes(t, "go-vhd/win8-child.vhd"), 9, 100) {
		tryCrafted(t, "c.vhd", c, readSome)
	}
}

func vhdSampleBytes(t testing.TB, rel string) []byte {
	t.Helper()
	b := readFile(t, sampleFile(t, rel))
	return b
}

func FuzzVHD(f *testing.F) {
	for _, rel := range []string{"go-vhd/qemu.vhd", "go-vhd/xapi.vhd", "go-vhd/win8.vhd", "go-vhd/win8-child.vhd", "bad/qemu-iotests/afl5.img.bz2"} {
		f.Add(vhdSampleBytes(f, rel))
	}
	for _, opts := range []string{"subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
		img := vhdFixture(f, patternDisk(64<<10, 1), opts)
		b := readFile(f, img)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		commonFuzzDisk(t, "fuzz.vhd", data)
	})
}

func vhdBenchDisk(b *testing.B) Disk {
	img := vhdFixture(b, patternDisk(64<<20, 1), "subformat=dynamic,force_size=on")
	return mustOpen(b, img, Options{ReadOnly: true})
}

func BenchmarkVHDSeqRead(b *testing.B)  { benchReads(b, vhdBenchDisk(b), false) }
func BenchmarkVHDRandRead(b *testing.B) { benchReads(b, vhdBenchDisk(b), true) }

// BenchmarkVHDOpen2TiB compares attaching a 2040 GiB (the format's
// maximum) dynamic image with a 2 MiB one: the BAT is read lazily.
func BenchmarkVHDOpen2TiB(b *testing.B) {
	for _, c := range []struct{ name, size string }{{"2MiB", "2M"}, {"2TiB", "2040G"}} {
		img := filepath.Join(b.TempDir(), "disk.vhd")
		qemuImg(b, "create", "-q", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", img, c.size)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 4096)
			for i := 0; i < b.N; i++ {
				d, err := Open(img, Options{ReadOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.ReadAt(buf, 0); err != nil {
					b.Fatal(err)
				}
				d.Close()
			}
		})
	}
}
