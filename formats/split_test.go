package formats

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// splitWith cuts data into parts with coreutils split and returns the
// part paths in order.
func splitWith(t testing.TB, data []byte, prefix string, args ...string) []string {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "input")
	writeFile(t, in, data)
	run(t, "split", append(args, in, filepath.Join(dir, prefix))...)
	removeFile(t, in)
	parts, err := filepath.Glob(filepath.Join(dir, prefix+"*"))
	if err != nil || len(parts) < 2 {
		t.Fatalf("split made %v (%v)", parts, err)
	}
	sort.Strings(parts)
	return parts
}

func splitCat(t testing.TB, parts []string) []byte {
	t.Helper()
	var all []byte
	for _, p := range parts {
		b := readFile(t, p)
		all = append(all, b...)
	}
	return all
}

func TestSplitVariants(t *testing.T) {
	const size = 2<<20 + 5*512
	want := patternDisk(size, 21)
	cases := []struct {
		name   string
		args   []string
		rename func(t *testing.T, parts []string) []string
	}{
		{"alpha", []string{"-b", "700K"}, nil},
		{"numeric000", []string{"-d", "-a", "3", "-b", "700K"}, nil},
		{"numeric00", []string{"-d", "-b", "1000000"}, nil},
		{"numeric001", []string{"-d", "-a", "3", "-b", "700K"}, func(t *testing.T, parts []string) []string {
			// Renumber from .001 as FTK and others do; rename backwards.
			out := make([]string, len(parts))
			for i := len(parts) - 1; i >= 0; i-- {
				out[i] = parts[i][:len(parts[i])-3] + []string{"001", "002", "003", "004", "005"}[i]
				if err := os.Rename(parts[i], out[i]); err != nil {
					t.Fatal(err)
				}
			}
			return out
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parts := splitWith(t, want, "disk.img.", c.args...)
			if c.rename != nil {
				parts = c.rename(t, parts)
			}
			if got, err := Detect(parts[0]); err != nil || got != "split" {
				t.Fatalf("Detect(%s) = %q, %v", parts[0], got, err)
			}
			// A later part is not the start of a set.
			if got, _ := Detect(parts[1]); got == "split" {
				t.Fatalf("Detect(%s) = split", parts[1])
			}
			d := mustOpen(t, parts[0], Options{ReadOnly: true})
			info := d.Info()
			if info.Format != "raw" || info.Variant != "split" || len(info.Files) != len(parts) {
				t.Fatalf("info %+v, want %d parts", info, len(parts))
			}
			for i := range parts {
				if info.Files[i] != parts[i] {
					t.Fatalf("Files %v, want %v", info.Files, parts)
				}
			}
			if !bytes.Equal(splitCat(t, parts), want) {
				t.Fatal("split's parts differ from the input")
			}
			checkDisk(t, d, want)
			if c.name == "alpha" {
				checkConcurrentReads(t, d, want)
			}
			if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("read-only WriteAt: %v", err)
			}
		})
	}
}

func TestSplitWrites(t *testing.T) {
	const size = 2<<20 + 3*512 // parts of 700000 bytes: boundaries off the sector grid
	want := patternDisk(size, 22)
	parts := splitWith(t, want, "disk.", "-d", "-a", "3", "-b", "700000")
	var sizes []int64
	for _, p := range parts {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
	}
	d := mustOpen(t, parts[0], Options{})
	randomWrites(t, d, want, 60, 5)
	concurrentWrites(t, d, want, 64<<10)
	// Writes exactly across each boundary.
	var start int64
	for _, s := range sizes[:len(sizes)-1] {
		start += s
		off := start / SectorSize * SectorSize
		p := bytes.Repeat([]byte{0xa5}, 2*SectorSize)
		if _, err := d.WriteAt(p, off-SectorSize); err != nil {
			t.Fatal(err)
		}
		copy(want[off-SectorSize:], p)
	}
	checkDisk(t, d, want)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := splitCat(t, parts); !bytes.Equal(got, want) {
		t.Fatal("cat of the parts differs from the model")
	}
	for i, p := range parts {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != sizes[i] {
			t.Fatalf("%s changed size: %d, want %d", p, st.Size(), sizes[i])
		}
	}
}

func TestSplitNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"aa", []string{"ab"}}, {"az", []string{"ba"}}, {"yz", []string{"za", "zaaa"}},
		{"zaaa", []string{"zaab"}}, {"zyzz", []string{"zzaa", "zzaaaa"}},
		{"000", []string{"001"}}, {"009", []string{"010"}}, {"89", []string{"90", "9000"}},
		{"999", nil},
	} {
		got := splitNext(c.in, c.in[0] >= '0' && c.in[0] <= '9')
		if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) || (len(got) > 1 && got[1] != c.want[1]) {
			t.Errorf("splitNext(%s) = %v, want %v", c.in, got, c.want)
		}
	}
	// A symlink with another name opens the set it points into.
	want := patternDisk(1<<20, 24)
	parts := splitWith(t, want, "img.", "-d", "-a", "3", "-b", "300000")
	link := filepath.Join(t.TempDir(), "evidence")
	if err := os.Symlink(parts[0], link); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, link, Options{ReadOnly: true})
	if info := d.Info(); info.Variant != "split" || len(info.Files) != len(parts) || info.Files[0] != link {
		t.Fatalf("info %+v", info)
	}
	checkDiskReads(t, 40, d, want)

	// A lone .001 with no .002 is plain raw.
	p := writeTemp(t, "single.001", make([]byte, 4096))
	if got, _ := Detect(p); got != "raw" {
		t.Fatalf("lone part detected as %q", got)
	}
}

func TestSplitSamples(t *testing.T) {
	found := false
	for _, s := range samples(t, "raw") {
		if filepath.Base(s.Path) != "ext2.splitraw.000.gz" {
			continue
		}
		found = true
		p := sampleFile(t, s.Path, "ext2.splitraw.001.gz")
		d := mustOpen(t, p, Options{ReadOnly: true})
		if info := d.Info(); info.Variant != "split" || len(info.Files) != 2 {
			t.Fatalf("info %+v", info)
		}
		if got := diskMD5(t, d); got != s.MD5 || d.Size() != s.VSize {
			t.Fatalf("%s: md5 %s size %d, want %s %d", s.Path, got, d.Size(), s.MD5, s.VSize)
		}
	}
	if !found {
		t.Fatal("split raw sample missing from expected.tsv")
	}
}

func BenchmarkSplitSeqRead(b *testing.B) {
	parts := splitWith(b, patternDisk(8<<20, 23), "d.", "-b", "3000000")
	d, err := Open(parts[0], Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	benchReads(b, d, false)
}

func BenchmarkSplitRandRead(b *testing.B) {
	parts := splitWith(b, patternDisk(8<<20, 23), "d.", "-b", "3000000")
	d, err := Open(parts[0], Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	benchReads(b, d, true)
}

// BenchmarkSplitOpen2TiB opens a set of two sparse 1 TiB parts against a
// 2 MiB set of two parts.
func BenchmarkSplitOpen2TiB(b *testing.B) {
	dir := b.TempDir()
	for _, name := range []string{"big.000", "big.001"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(1 << 40); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	small := splitWith(b, patternDisk(2<<20, 25), "small.", "-d", "-a", "3", "-b", "1M")
	for _, c := range []struct{ name, path string }{{"2TiB", filepath.Join(dir, "big.000")}, {"2MiB", small[0]}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				d, err := Open(c.path, Options{ReadOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				if c.name == "2TiB" && d.Size() != 2<<40 {
					b.Fatalf("size %d", d.Size())
				}
				d.Close()
			}
		})
	}
}
