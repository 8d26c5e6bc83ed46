package formats

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRawReadWrite(t *testing.T) {
	for _, size := range []int64{512, 4096, 1<<20 + 1234, 3 << 20} {
		want := patternDisk(size, size)
		p := writeTemp(t, "disk.img", want)
		d := mustOpen(t, p, Options{})
		if got := d.Info().Format; got != "raw" {
			t.Fatalf("format %q, want raw", got)
		}
		checkDisk(t, d, want)
		checkConcurrentReads(t, d, want)
		randomWrites(t, d, want, 50, size)
		checkDisk(t, d, want)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, p)
		if int64(len(got)) != size {
			t.Fatalf("file size changed: %d, want %d", len(got), size)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("byte %d: got %#x want %#x", i, got[i], want[i])
			}
		}
	}
}

func TestRawReadOnly(t *testing.T) {
	p := writeTemp(t, "disk.img", patternDisk(8192, 1))
	d := mustOpen(t, p, Options{ReadOnly: true})
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt on read-only raw: %v, want ErrReadOnly", err)
	}
	if _, err := d.ReadAt(make([]byte, 100), 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unaligned ReadAt: %v, want ErrInvalid", err)
	}
}

func TestRawSamples(t *testing.T) {
	for _, s := range samples(t, "raw") {
		if filepath.Base(s.Path) != "ext2.raw.gz" {
			continue // split raw samples are tested with the split format
		}
		d := mustOpen(t, sampleFile(t, s.Path), Options{ReadOnly: true})
		if got := diskMD5(t, d); got != s.MD5 {
			t.Fatalf("%s: md5 %s, want %s", s.Path, got, s.MD5)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open(t.TempDir(), Options{}); err == nil {
		t.Fatal("directory opened as a disk")
	}
}

func TestRawRefusesNonDisks(t *testing.T) {
	empty := writeTemp(t, "empty", nil)
	for _, p := range []string{empty, "/dev/null"} {
		if _, err := Open(p, Options{ReadOnly: true}); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("Open(%s) = %v, want ErrUnknownFormat", p, err)
		}
	}
}
