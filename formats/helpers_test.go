package formats

// Shared test helpers. The oracle is always a real tool (qemu-img,
// ewfexport, dmg2img, ...), never this package's own idea of the answer.
// A missing tool fails the test: CI installs every tool it needs.

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// samplesDir is ../shared/samples beside the repository.
var samplesDir = filepath.Join("..", "..", "shared", "samples")

// run runs a tool and returns its standard output; any failure is fatal.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (CI installs it in .ci/run): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// qemuImg runs qemu-img with args.
func qemuImg(t testing.TB, args ...string) []byte {
	t.Helper()
	return run(t, "qemu-img", args...)
}

// qemuRaw converts an image to raw with qemu-img and returns the bytes.
func qemuRaw(t testing.TB, fmtName, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	qemuImg(t, "convert", "-f", fmtName, "-O", "raw", path, out)
	b := readFile(t, out)
	return b
}

// qemuCheck runs `qemu-img check` and fails on any error or leak.
func qemuCheck(t testing.TB, fmtName, path string) {
	t.Helper()
	cmd := exec.Command("qemu-img", "check", "-f", fmtName, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img check %s: %v\n%s", path, err, out)
	}
	if s := string(out); strings.Contains(s, "leak") || strings.Contains(s, "ERROR") || strings.Contains(s, "corrupt") {
		t.Fatalf("qemu-img check %s:\n%s", path, out)
	}
}

// patternDisk returns size bytes that exercise a format: random data,
// runs of zeros and of text (1 sector to 3 clusters long), and data in
// the very last sector.
func patternDisk(size int64, seed int64) []byte {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, size)
	text := []byte("vdflat test pattern: the quick brown fox jumps over the lazy dog. ")
	for off := int64(0); off < size; {
		n := int64(1+r.Intn(96)) * SectorSize * int64(1+r.Intn(8))
		if off+n > size {
			n = size - off
		}
		switch r.Intn(3) {
		case 0:
			r.Read(b[off : off+n])
		case 1:
			for i := off; i < off+n; i++ {
				b[i] = text[(i-off)%int64(len(text))]
			}
		case 2: // zeros
		}
		off += n
	}
	last := (size - 1) / SectorSize * SectorSize
	r.Read(b[last:size])
	return b
}

// writeTemp writes data to a new file in a test temp dir.
func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, data)
	return p
}

// mustOpen opens path with Open and closes it at the end of the test.
func mustOpen(t testing.TB, path string, opt Options) Disk {
	t.Helper()
	d, err := Open(path, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// checkDisk compares every byte of d with want: a sequential pass in
// 1 MiB reads, then random aligned reads of random lengths, including
// reads that run past the end (zeros expected past Size).
func checkDisk(t testing.TB, d Disk, want []byte) {
	t.Helper()
	checkDiskReads(t, 200, d, want)
}

// checkDiskReads is checkDisk with random reads in number (fewer for a
// quicker pass over a slow format, more for a format with many paths).
func checkDiskReads(t testing.TB, random int, d Disk, want []byte) {
	t.Helper()
	if d.Size() != int64(len(want)) {
		t.Fatalf("Size() = %d, want %d", d.Size(), len(want))
	}
	padded := roundUp(int64(len(want)), SectorSize)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < padded; off += int64(len(buf)) {
		n := min(int64(len(buf)), padded-off)
		compareRead(t, d, buf[:n], off, want)
	}
	r := rand.New(rand.NewSource(1))
	sectors := padded / SectorSize
	for i := 0; i < random; i++ {
		s := r.Int63n(sectors)
		n := 1 + r.Int63n(min(sectors-s+2, 300))
		compareRead(t, d, make([]byte, n*SectorSize), s*SectorSize, want)
	}
}

func compareRead(t testing.TB, d Disk, p []byte, off int64, want []byte) {
	t.Helper()
	n, err := d.ReadAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
	// Compare in bulk (byte loops are slow under -race); look for the
	// first difference only to report it.
	if inRange := max(0, min(int64(len(p)), int64(len(want))-off)); bytes.Equal(p[:inRange], want[min(off, int64(len(want))):][:inRange]) && isZero(p[inRange:]) {
		return
	}
	for i := range p {
		pos := off + int64(i)
		var w byte
		if pos < int64(len(want)) {
			w = want[pos]
		}
		if p[i] != w {
			t.Fatalf("byte at %d (read of %d at %d): got %#x, want %#x", pos, len(p), off, p[i], w)
		}
	}
}

// checkConcurrentReads reads d from many goroutines at once (run with
// -race) and compares with want.
func checkConcurrentReads(t testing.TB, d Disk, want []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	padded := roundUp(int64(len(want)), SectorSize)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			sectors := padded / SectorSize
			for i := 0; i < 100; i++ {
				s := r.Int63n(sectors)
				n := 1 + r.Int63n(min(sectors-s, 256))
				p := make([]byte, n*SectorSize)
				off := s * SectorSize
				if _, err := d.ReadAt(p, off); err != nil {
					errs <- err.Error()
					return
				}
				inRange := max(0, min(int64(len(p)), int64(len(want))-off))
				if !bytes.Equal(p[:inRange], want[min(off, int64(len(want))):][:inRange]) || !isZero(p[inRange:]) {
					errs <- "mismatch in the read of " + strconv.Itoa(len(p)) + " bytes at " + strconv.FormatInt(off, 10)
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// randomWrites makes n aligned writes of random data at random places of
// d (some crossing the end), applying each to model, from several
// goroutines on disjoint ranges when parallel is set.
func randomWrites(t testing.TB, d Disk, model []byte, n int, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	padded := roundUp(int64(len(model)), SectorSize)
	sectors := padded / SectorSize
	for i := 0; i < n; i++ {
		s := r.Int63n(sectors)
		cnt := 1 + r.Int63n(min(sectors-s, 300))
		p := make([]byte, cnt*SectorSize)
		r.Read(p)
		if i%5 == 0 {
			clear(p) // zero writes too
		}
		off := s * SectorSize
		if nw, err := d.WriteAt(p, off); err != nil || nw != len(p) {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, nw, err)
		}
		if off < int64(len(model)) {
			copy(model[off:], p)
		}
	}
}

// concurrentWrites writes random data from 8 goroutines, each to its own
// interleaved stripes of the disk, and applies the writes to model.
func concurrentWrites(t testing.TB, d Disk, model []byte, stripe int64) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make(chan error, 8)
	for g := int64(0); g < 8; g++ {
		wg.Add(1)
		go func(g int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(g + 100))
			for off := g * stripe; off < int64(len(model)); off += 8 * stripe {
				n := min(stripe, roundUp(int64(len(model))-off, SectorSize))
				p := make([]byte, n)
				r.Read(p)
				if _, err := d.WriteAt(p, off); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				copy(model[off:], p)
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// diskMD5 hashes the first Size() bytes of d.
func diskMD5(t testing.TB, d Disk) string {
	t.Helper()
	h := md5.New()
	buf := make([]byte, 4<<20)
	size := d.Size()
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), roundUp(size-off, SectorSize))
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("ReadAt at %d: %v", off, err)
		}
		h.Write(buf[:min(n, size-off)])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sampleRow is one line of ../shared/samples/expected.tsv.
type sampleRow struct {
	Path, Format string
	VSize        int64
	MD5, SHA256  string
	Oracle       string
	Notes        string
}

// ExpectError reports a negative sample: the open must fail.
func (r sampleRow) ExpectError() bool {
	return strings.Contains(r.Notes, "EXPECT ERROR") || r.MD5 == "-"
}

// samples lists the rows of expected.tsv for one format.
func samples(t testing.TB, format string) []sampleRow {
	t.Helper()
	f, err := os.Open(filepath.Join(samplesDir, "expected.tsv"))
	if err != nil {
		t.Fatalf("samples: %v", err)
	}
	defer f.Close()
	var rows []sampleRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for first := true; sc.Scan(); first = false {
		c := strings.Split(sc.Text(), "\t")
		if first || len(c) < 7 || c[1] != format {
			continue
		}
		size, _ := strconv.ParseInt(c[2], 10, 64)
		rows = append(rows, sampleRow{c[0], c[1], size, c[3], c[4], c[5], c[6]})
	}
	if len(rows) == 0 {
		t.Fatalf("no samples of format %s in expected.tsv", format)
	}
	return rows
}

// openSample opens sample s, copied to p, read-only and checks its
// virtual size and, when full, the MD5 of all of it, against the values
// the samples' README lists.
func openSample(t testing.TB, p string, s sampleRow, full bool) Disk {
	t.Helper()
	d := mustOpen(t, p, Options{ReadOnly: true})
	if d.Size() != s.VSize {
		t.Fatalf("size %d, want %d", d.Size(), s.VSize)
	}
	if full {
		if got := diskMD5(t, d); got != s.MD5 {
			t.Fatalf("md5 %s, want %s", got, s.MD5)
		}
	}
	return d
}

// sampleFile copies the sample at rel (relative to the samples folder)
// and any siblings named into a fresh temp dir, decompressing .gz and
// .bz2 files, and returns the path of the first one there. Siblings are
// given relative to rel's folder (for example "image.vhd.gz").
func sampleFile(t testing.TB, rel string, siblings ...string) string {
	t.Helper()
	dir := t.TempDir()
	var first string
	for i, name := range append([]string{filepath.Base(rel)}, siblings...) {
		src := filepath.Join(samplesDir, filepath.Dir(rel), name)
		p := copyDecompressed(t, src, dir)
		if i == 0 {
			first = p
		}
	}
	return first
}

// copyDecompressed copies src into dir, decompressing a .gz or .bz2 file
// with the gzip or bzip2 tool (Go's bzip2 under -race takes most of a
// minute for the largest samples), and returns the copy's path. Zeros are
// written as holes: several samples are GiBs of zeros.
func copyDecompressed(t testing.TB, src, dir string) string {
	t.Helper()
	name := filepath.Base(src)
	var cmd *exec.Cmd
	var r io.Reader
	for ext, tool := range map[string]string{".gz": "gzip", ".bz2": "bzip2"} {
		if strings.HasSuffix(name, ext) {
			cmd, name = exec.Command(tool, "-dc", src), strings.TrimSuffix(name, ext)
		}
	}
	if cmd != nil {
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		r = out
	} else {
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		r = in
	}
	dst := filepath.Join(dir, name)
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 && !isZero(buf[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				t.Fatal(werr)
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
	}
	if cmd != nil {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	if err := out.Truncate(off); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// corruptVariants yields truncated and bit-flipped copies of an image
// for crafted-input tests: opening and reading each must not panic.
func corruptVariants(data []byte, seed int64, n int) [][]byte {
	r := rand.New(rand.NewSource(seed))
	var out [][]byte
	for _, cut := range []int{0, 1, 511, 512, len(data) / 2, len(data) - 512, len(data) - 1} {
		if cut >= 0 && cut < len(data) {
			out = append(out, append([]byte(nil), data[:cut]...))
		}
	}
	for i := 0; i < n; i++ {
		c := append([]byte(nil), data...)
		for j := 0; j < 1+r.Intn(8); j++ {
			// Bias flips toward headers and tables at the start.
			pos := r.Intn(min(len(c), 1<<16))
			if r.Intn(4) == 0 {
				pos = r.Intn(len(c))
			}
			c[pos] ^= byte(1 << r.Intn(8))
		}
		out = append(out, c)
	}
	return out
}

// benchFixture opens, read-only, an 8 MiB pattern disk converted by
// fixture, for benchReads.
func benchFixture(b *testing.B, fixture func(testing.TB, []byte, ...string) string) Disk {
	return mustOpen(b, fixture(b, patternDisk(8<<20, 1)), Options{ReadOnly: true})
}

// benchReads measures reads of d: sequential 1 MiB requests when
// random is false, random 4 KiB requests otherwise.
func benchReads(b *testing.B, d Disk, random bool) {
	b.Helper()
	size := d.Size() / SectorSize * SectorSize
	n := int64(1 << 20)
	if random {
		n = 4096
	}
	if size < n {
		b.Fatalf("disk of %d bytes too small for %d-byte reads", size, n)
	}
	buf := make([]byte, n)
	r := rand.New(rand.NewSource(1))
	b.SetBytes(n)
	b.ResetTimer()
	var off int64
	for i := 0; i < b.N; i++ {
		if random {
			off = r.Int63n(size/n) * n
		} else if off+n > size {
			off = 0
		}
		if _, err := d.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if !random {
			off += n
		}
	}
}

// benchOpen measures attaching an empty image of qemu format fmtName at
// 2 MiB and at 2 TiB, with one read in the middle: the two must cost
// about the same (tables are read lazily).
func benchOpen(b *testing.B, fmtName, ext string) {
	var cases []benchOpenCase
	for _, size := range []string{"2M", "2T"} {
		p := filepath.Join(b.TempDir(), "img."+ext)
		qemuImg(b, "create", "-f", fmtName, p, size)
		cases = append(cases, benchOpenCase{size, p})
	}
	benchOpens(b, true, cases...)
}

// benchOpenCase is one image an open benchmark opens.
type benchOpenCase struct{ name, path string }

// benchOpens measures opening and closing each image, with a 4 KiB read
// in the middle of the disk when read is set.
func benchOpens(b *testing.B, read bool, cases ...benchOpenCase) {
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 4096)
			for i := 0; i < b.N; i++ {
				d, err := Open(c.path, Options{ReadOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				if read {
					d.ReadAt(buf, d.Size()/2/SectorSize*SectorSize)
				}
				d.Close()
			}
		})
	}
}
