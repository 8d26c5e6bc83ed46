package formats

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// aff4SampleMembers returns the members of the reference images whose
// names end with suffix, as fuzz seeds.
func aff4SampleMembers(f *testing.F, suffix string) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join(samplesDir, "aff4", "*.aff4"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no AFF4 samples: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		zr, err := zip.OpenReader(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, zf := range zr.File {
			if !strings.HasSuffix(zf.Name, suffix) {
				continue
			}
			r, err := zf.Open()
			if err != nil {
				f.Fatal(err)
			}
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
		zr.Close()
	}
	return out
}

func FuzzAFF4Turtle(f *testing.F) {
	for _, b := range aff4SampleMembers(f, "information.turtle") {
		f.Add(b)
	}
	f.Add([]byte("@prefix a: <x:y> . [ a:b [ a:c 'x'@en, \"\"\"l\nong\"\"\" ; a:d -1.5, true ] ] ."))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := parseTurtle(data)
		if err != nil {
			return
		}
		g := newAff4Graph(ts)
		for _, tr := range ts {
			g.int(tr.S, tr.P)
			aff4Digests(g, tr.S, tr.P)
		}
	})
}

func FuzzAFF4Map(f *testing.F) {
	idxs := aff4SampleMembers(f, "/idx")
	maps := aff4SampleMembers(f, "/map")
	for i := range idxs {
		f.Add(idxs[i], maps[i][:min(len(maps[i]), 28*64)], int64(1)<<62)
	}
	f.Fuzz(func(t *testing.T, idx, raw []byte, size int64) {
		if size <= 0 {
			return
		}
		m := &aff4Map{size: size, gap: aff4Symbolic(aff4NS + "UnreadableData")}
		if m.parse(idx, raw) != nil {
			return
		}
		for i := range m.targets {
			if sym, ok := aff4SymbolicOK(m.targets[i].iri); ok {
				m.targets[i] = sym
			}
		}
		m.unreadable(10)
		m.storedBytes()
		buf := make([]byte, 4096)
		for _, off := range []int64{0, size / 2, size - int64(len(buf))} {
			off = max(0, off)
			if off >= size {
				continue
			}
			tg, n := m.at(off, size-off)
			if n <= 0 || tg == nil {
				t.Fatalf("at(%d) = %d bytes", off, n)
			}
			m.readAt(buf[:min(int64(len(buf)), size-off)], off)
		}
	})
}

// TestAFF4TurtleErrors: malformed metadata is refused with a reason.
func TestAFF4TurtleErrors(t *testing.T) {
	for _, src := range []string{
		"<x:a> <x:b> <x:c>",                  // no final dot
		"p:a p:b p:c .",                      // undefined prefix
		"@base <x:> .",                       // unsupported directive
		"<a> <x:b> <x:c> .",                  // relative IRI
		"<x:a> <x:b> ( <x:c> ) .",            // collection
		"<x:a> <x:b> \"open .",               // unterminated string
		"<x:a> <x:b> \"x\\q\" .",             // bad escape
		"\"lit\" <x:b> <x:c> .",              // literal subject
		strings.Repeat("[ <x:b> ", 40) + "1", // nesting
	} {
		if _, err := parseTurtle([]byte(src)); err == nil {
			t.Errorf("%q parsed, want an error", src)
		}
	}
	ts, err := parseTurtle([]byte("@prefix : <aff4://v> .\n@prefix x: <http://aff4.org/Schema#> .\n" +
		":\ta x:ZipVolume ; x:n \"3\"^^x:int , 'a\\tb'@en ; x:s : ;.\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []triple{
		{"aff4://v", rdfType, term{Kind: termIRI, Value: aff4NS + "ZipVolume"}},
		{"aff4://v", aff4NS + "n", term{Kind: termLiteral, Value: "3", Datatype: aff4NS + "int"}},
		{"aff4://v", aff4NS + "n", term{Kind: termLiteral, Value: "a\tb", Lang: "en"}},
		{"aff4://v", aff4NS + "s", term{Kind: termIRI, Value: "aff4://v"}},
	}
	if len(ts) != len(want) {
		t.Fatalf("got %v, want %v", ts, want)
	}
	for i := range want {
		if ts[i] != want[i] {
			t.Errorf("triple %d: got %v, want %v", i, ts[i], want[i])
		}
	}
}

// TestAFF4MapErrors: maps that point outside the image or overlap are
// refused.
func TestAFF4MapErrors(t *testing.T) {
	entry := func(off, l, toff uint64, tg uint32) []byte {
		b := make([]byte, 28)
		binary.LittleEndian.PutUint64(b, off)
		binary.LittleEndian.PutUint64(b[8:], l)
		binary.LittleEndian.PutUint64(b[16:], toff)
		binary.LittleEndian.PutUint32(b[24:], tg)
		return b
	}
	idx := []byte(aff4NS + "Zero\n")
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for name, raw := range map[string][]byte{
		"past size":     entry(4096, 8192, 0, 0),
		"overflow":      entry(1, math.MaxUint64, 0, 0),
		"bad target":    entry(0, 512, 0, 1),
		"overlap":       cat(entry(0, 1024, 0, 0), entry(512, 512, 0, 0)),
		"partial entry": entry(0, 512, 0, 0)[:27],
	} {
		m := &aff4Map{size: 8192}
		if err := m.parse(idx, raw); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}
