package formats

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// aff4Siblings are the other volumes of striped samples.
var aff4Siblings = map[string][]string{"Base-Linear_1.aff4": {"Base-Linear_2.aff4"}}

// TestAFF4Samples flattens each canonical reference image listed in
// expected.tsv and compares it with the md5 there; the stored hashes of
// each image (stream, block, map and block map hashes) must all check.
func TestAFF4Samples(t *testing.T) {
	for _, s := range samples(t, "aff4") {
		t.Run(filepath.Base(s.Path), func(t *testing.T) {
			p := sampleFile(t, s.Path, aff4Siblings[filepath.Base(s.Path)]...)
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Size() != s.VSize {
				t.Fatalf("size %d, want %d", d.Size(), s.VSize)
			}
			if got := diskMD5(t, d); got != s.MD5 {
				t.Fatalf("md5 %s, want %s", got, s.MD5)
			}
			aff4CheckClean(t, d)
			info := d.Info()
			if !info.ReadOnly || info.Format != "aff4" {
				t.Fatalf("info %+v: want a read-only aff4 disk", info)
			}
			if info.Metadata["image blockMapHash sha512"] == "" || info.Metadata["stream sha1"] == "" && info.Metadata["stream 1 sha1"] == "" {
				t.Fatalf("stored hashes missing from info: %v", info.Metadata)
			}
			if info.Metadata["diskSerial"] != "SGAT5060001234" {
				t.Fatalf("diskSerial %q, want SGAT5060001234", info.Metadata["diskSerial"])
			}
		})
	}
}

// aff4CheckClean runs Check and fails on any finding.
func aff4CheckClean(t *testing.T, d Disk) {
	t.Helper()
	findings, err := d.(Checker).Check()
	if err != nil || len(findings) > 0 {
		t.Fatalf("check: %v, findings:\n%s", err, strings.Join(findings, "\n"))
	}
}

// TestAFF4StripedSecondVolume opens the striped image by its second
// volume: the first is found beside it by its volume IRI.
func TestAFF4StripedSecondVolume(t *testing.T) {
	p := sampleFile(t, "aff4/Base-Linear_2.aff4", "Base-Linear_1.aff4")
	d := mustOpen(t, p, Options{ReadOnly: true})
	if got, want := diskMD5(t, d), "dd6dbda282e27fd0d196abd95f5c3e58"; got != want {
		t.Fatalf("md5 %s, want %s", got, want)
	}
	if n := len(d.Info().Files); n != 2 {
		t.Fatalf("%d volumes in Files, want 2", n)
	}
	aff4CheckClean(t, d)
}

// TestAFF4StripedMissingVolume: without the other volume, open fails and
// says which volume is missing.
func TestAFF4StripedMissingVolume(t *testing.T) {
	p := sampleFile(t, "aff4/Base-Linear_1.aff4")
	d, err := Open(p, Options{ReadOnly: true})
	if err == nil {
		d.Close()
		t.Fatal("opened a striped image without its second volume")
	}
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "aff4://51725cd9-3769-4be7-a8ab-94e3ea62bf9a") {
		t.Fatalf("error %v: want a not-exist error naming the missing volume", err)
	}
}

// TestAFF4Allocated: the allocated-only image reads like the linear one
// wherever its map stores data, and the rest reads as the Standard's
// aff4:UnknownData ("UNKNOWN" repeated, restarting every MiB).
func TestAFF4Allocated(t *testing.T) {
	full := aff4ReadAll(t, mustOpen(t, sampleFile(t, "aff4/Base-Linear.aff4"), Options{ReadOnly: true}))
	d := mustOpen(t, sampleFile(t, "aff4/Base-Allocated.aff4"), Options{ReadOnly: true})
	got := aff4ReadAll(t, d)
	a := d.(*aff4Image)
	var stored, unknown int64
	for off := int64(0); off < a.size; {
		tg, n := a.m.at(off, a.size-off)
		switch {
		case tg.stream != nil:
			stored += n
			if !bytes.Equal(got[off:off+n], full[off:off+n]) {
				t.Fatalf("stored range %d+%d differs from the linear image", off, n)
			}
		case tg.pattern == "UNKNOWN":
			unknown += n
			for i := off; i < off+n; i++ {
				if want := "UNKNOWN"[(i%(1<<20))%7]; got[i] != want {
					t.Fatalf("byte %d = %#x, want %q", i, got[i], want)
				}
			}
		}
		off += n
	}
	if stored == 0 || unknown == 0 {
		t.Fatalf("stored %d, unknown %d: want both", stored, unknown)
	}
	aff4CheckClean(t, d)
}

// TestAFF4ReadError: the unreadable ranges are findings of Check, and
// the rest of the image equals the linear image.
func TestAFF4ReadError(t *testing.T) {
	d := mustOpen(t, sampleFile(t, "aff4/Base-Linear-ReadError.aff4"), Options{ReadOnly: true})
	findings, err := d.(Checker).Check()
	if err != nil {
		t.Fatal(err)
	}
	var unreadable int
	for _, f := range findings {
		if !strings.Contains(f, "aff4:UnreadableData") {
			t.Fatalf("unexpected finding %q", f)
		}
		unreadable++
	}
	if unreadable == 0 {
		t.Fatal("no unreadable ranges reported")
	}
	a := d.(*aff4Image)
	got := aff4ReadAll(t, d)
	for off := int64(0); off < a.size; {
		tg, n := a.m.at(off, a.size-off)
		if tg.unreadable && !bytes.Equal(got[off:off+14], []byte("UNREADABLEDATA")[:14]) && off%(1<<20) == 0 {
			t.Fatalf("unreadable range at %d reads %q", off, got[off:off+14])
		}
		off += n
	}
}

// TestAFF4ExabyteSparse: the 9 EB image opens at once and reads its
// islands as the samples' README describes them.
func TestAFF4ExabyteSparse(t *testing.T) {
	d := mustOpen(t, sampleFile(t, "aff4/Base-ExabyteSparse.aff4"), Options{ReadOnly: true})
	if d.Size() != 0x7ffffffffffffe00 {
		t.Fatalf("size %#x", d.Size())
	}
	ff := bytes.Repeat([]byte{0xff}, 1<<20)
	buf := make([]byte, 1<<20)
	for _, off := range []int64{0, 0x7fffffffffeffe00} {
		if _, err := d.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, ff) {
			t.Fatalf("1 MiB at %#x is not all 0xFF", off)
		}
	}
	if _, err := d.ReadAt(buf, 0x100000000); err != nil || !isZero(buf) {
		t.Fatalf("a gap reads %v (zero %v), want zeros", err, isZero(buf))
	}
	aff4CheckClean(t, d)
}

func aff4ReadAll(t *testing.T, d Disk) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
