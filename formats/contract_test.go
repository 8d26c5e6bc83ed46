package formats

// Test helpers that hold every format to the same contract (Mapper,
// Checker, crafted input), and small file helpers whose errors fail the
// test: no test may go on after its own setup failed.

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// mapRun is one answer of Map during checkMap's walk.
type mapRun struct {
	off, n int64
	alloc  bool
}

// checkMap enforces the whole Mapper contract on d. Walking the disk with
// Map(off, Size-off): no error; each answer covers at least one sector
// and at most the sectors asked for, in whole sectors except where it
// ends the disk; the answers tile the disk. A range called a hole must
// read as zeros in want (the disk's bytes from a real tool; nil to skip).
// When alloc is not nil (a flag a sector, as `qemu-img map` reports data)
// Map must agree with it sector by sector. Map asked for one sector at a
// spread of offsets must answer for exactly that sector, as the walk did.
// It returns how many holes the walk found.
func checkMap(t testing.TB, d Disk, want []byte, alloc []bool) (holes int) {
	t.Helper()
	m, ok := d.(Mapper)
	if !ok {
		t.Fatalf("%T does not implement Mapper", d)
	}
	size := d.Size()
	var runs []mapRun
	for off := int64(0); off < size; {
		a, n, err := m.Map(off, size-off)
		end := off + n
		if err != nil || n <= 0 || n > roundUp(size-off, SectorSize) || (n%SectorSize != 0 || n < SectorSize) && end != size {
			t.Fatalf("Map(%d, %d) = %v, %d, %v", off, size-off, a, n, err)
		}
		if !a {
			holes++
			if want != nil && !isZero(want[min(off, int64(len(want))):min(end, int64(len(want)))]) {
				t.Fatalf("Map calls [%d,+%d) a hole, but it holds data", off, n)
			}
		}
		for s := off / SectorSize; alloc != nil && s < (end+SectorSize-1)/SectorSize; s++ {
			if alloc[s] != a {
				t.Fatalf("Map: sector %d allocated=%v, qemu-img map says %v", s, a, alloc[s])
			}
		}
		runs = append(runs, mapRun{off, n, a})
		off = end
	}
	sectors := roundUp(size, SectorSize) / SectorSize
	for i := int64(0); i < 64 && i < sectors; i++ {
		off := sectors * i / min(64, sectors) * SectorSize
		a, n, err := m.Map(off, SectorSize)
		if err != nil || n != min(SectorSize, size-off) && n != SectorSize {
			t.Fatalf("Map(%d, %d) = %v, %d, %v", off, SectorSize, a, n, err)
		}
		r := runs[sort.Search(len(runs), func(j int) bool { return runs[j].off+runs[j].n > off })]
		if a != r.alloc {
			t.Fatalf("Map(%d, %d) says allocated=%v, the walk said %v", off, SectorSize, a, r.alloc)
		}
	}
	return holes
}

// qemuMapData returns, a flag a sector of a disk of size bytes, whether
// `qemu-img map` reports data there for the image spec (a path or a
// json: spec; fmtName may be empty).
func qemuMapData(t testing.TB, fmtName, spec string, size int64) []bool {
	t.Helper()
	args := []string{"map", "--output=json"}
	if fmtName != "" {
		args = append(args, "-f", fmtName)
	}
	var extents []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal(qemuImg(t, append(args, spec)...), &extents); err != nil {
		t.Fatal(err)
	}
	sectors := roundUp(size, SectorSize) / SectorSize
	data := make([]bool, sectors)
	for _, e := range extents {
		for s := e.Start / SectorSize; s < (e.Start+e.Length)/SectorSize && s < sectors; s++ {
			data[s] = e.Data
		}
	}
	return data
}

// checkFindings opens path read-only and returns what its Check finds;
// a disk without Check, or a Check that fails, fails the test.
func checkFindings(t testing.TB, path string) []string {
	t.Helper()
	d, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	defer d.Close()
	ck, ok := d.(Checker)
	if !ok {
		t.Fatalf("%s: %T does not implement Checker", path, d)
	}
	f, err := ck.Check()
	if err != nil {
		t.Fatalf("Check(%s): %v (findings %q)", path, err, f)
	}
	return f
}

// hasFinding reports whether one of findings contains want.
func hasFinding(findings []string, want string) bool {
	for _, s := range findings {
		if strings.Contains(s, want) {
			return true
		}
	}
	return false
}

// tryCrafted writes a crafted image to a temp file named name and, when
// it opens read-only, hands it to use. Opening may fail (a clear error is
// the point); nothing may panic, hang or allocate without bound.
func tryCrafted(t testing.TB, name string, data []byte, use func(d Disk)) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		return
	}
	defer d.Close()
	use(d)
}

// tryVariants hands n damaged variants of each seed (see corruptVariants)
// to tryCrafted.
func tryVariants(t testing.TB, name string, seeds [][]byte, n int, use func(d Disk)) {
	t.Helper()
	for i, seed := range seeds {
		for _, v := range corruptVariants(seed, int64(i), n) {
			tryCrafted(t, name, v, use)
		}
	}
}

// fuzzCrafted is a fuzz target over seeds: each input goes to tryCrafted.
func fuzzCrafted(f *testing.F, name string, seeds [][]byte, use func(d Disk)) {
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { tryCrafted(t, name, data, use) })
}

// damagedFindings writes orig, with b written over it at off, to a file
// named name and returns what its Check finds, and the file's path.
func damagedFindings(t testing.TB, name string, orig []byte, off int64, b []byte) ([]string, string) {
	t.Helper()
	c := append([]byte(nil), orig...)
	copy(c[off:], b)
	p := writeTemp(t, name, c)
	f := checkFindings(t, p)
	t.Logf("findings: %q", f)
	return f, p
}

// readSome reads a few places of d (start, middle, end), ignoring errors:
// what a crafted image's reads return does not matter, only that they
// return.
func readSome(d Disk) {
	_ = d.Info()
	buf := make([]byte, 64<<10)
	size := d.Size()
	for _, off := range []int64{0, size / 2, size - int64(len(buf))} {
		off = max(0, off) / SectorSize * SectorSize
		d.ReadAt(buf, off)
	}
}

// readAll reads every byte of d, ignoring errors, like readSome.
func readAll(d Disk) {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < d.Size(); off += int64(len(buf)) {
		d.ReadAt(buf, off)
	}
}

// runCheck runs d's Check when it has one, ignoring its answer, like
// readSome.
func runCheck(d Disk) {
	if ck, ok := d.(Checker); ok {
		ck.Check()
	}
}

// readFile reads a file the test made or was given.
func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces a file's content.
func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pokeFile overwrites bytes of a file at off (damage for a test).
func pokeFile(t testing.TB, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// peekFile reads n bytes of a file at off.
func peekFile(t testing.TB, p string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// removeFile deletes a file the test depends on being gone.
func removeFile(t testing.TB, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// fileMD5 is the MD5 of a file's bytes, to show that a test left a file
// (evidence, a parent) unchanged.
func fileMD5(t testing.TB, p string) string {
	t.Helper()
	s := md5.Sum(readFile(t, p))
	return hex.EncodeToString(s[:])
}

// qemuIO runs qemu-io commands on an image of format fmtName.
func qemuIO(t testing.TB, fmtName, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", fmtName}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, path)...)
}

// qemuConvert writes data as a raw file in dir and converts it with
// `qemu-img convert -O fmtName args...` to dir/name, the path returned.
// The raw source is removed: only the image is left in dir.
func qemuConvert(t testing.TB, dir string, data []byte, fmtName, name string, args ...string) string {
	t.Helper()
	src := filepath.Join(dir, name+".src.raw")
	writeFile(t, src, data)
	dst := filepath.Join(dir, name)
	qemuImg(t, append(append([]string{"convert", "-f", "raw", "-O", fmtName}, args...), src, dst)...)
	removeFile(t, src)
	return dst
}
