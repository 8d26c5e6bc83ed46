package formats

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
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

// aff4Tiny builds a small volume: a 4-chunk stored image stream in two
// bevies, mapped with a hole, a zero range and an unknown range. It seeds
// the open fuzzer and the crafted-volume tests.
func aff4Tiny(t testing.TB) []byte { return aff4TinyVolume(t, "aff4://m0") }

// aff4TinyVolume is aff4Tiny with the image's data stream named: the map
// aff4://m0, or the image stream aff4://s0 itself.
func aff4TinyVolume(t testing.TB, dataStream string) []byte {
	const vol, img, mp, st = "aff4://v0", "aff4://i0", "aff4://m0", "aff4://s0"
	size := "65536"
	if dataStream == st {
		size = "16384"
	}
	turtle := `@prefix aff4: <http://aff4.org/Schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
<` + img + `> a aff4:Image, aff4:DiskImage ; aff4:dataStream <` + dataStream + `> ; aff4:size "` + size + `"^^xsd:long .
<` + mp + `> a aff4:Map ; aff4:size "65536"^^xsd:long ; aff4:stored <` + vol + `> .
<` + st + `> a aff4:ImageStream ; aff4:size "16384"^^xsd:long ; aff4:chunkSize "4096"^^xsd:int ;
	aff4:chunksInSegment "2"^^xsd:int ; aff4:stored <` + vol + `> .
`
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, b []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	add("container.description", []byte(vol))
	data := patternDisk(16384, 7)
	for b := 0; b < 2; b++ {
		var idx bytes.Buffer
		for c := 0; c < 2; c++ {
			binary.Write(&idx, binary.LittleEndian, uint64(c*4096))
			binary.Write(&idx, binary.LittleEndian, uint32(4096))
		}
		seg := "aff4%3A%2F%2Fs0/0000000" + string(rune('0'+b))
		add(seg, data[b*8192:(b+1)*8192])
		add(seg+".index", idx.Bytes())
	}
	var m bytes.Buffer
	for _, e := range [][4]uint64{{0, 8192, 0, 0}, {16384, 8192, 8192, 0}, {32768, 4096, 0, 1}, {40960, 4096, 0, 2}} {
		binary.Write(&m, binary.LittleEndian, e[:3])
		binary.Write(&m, binary.LittleEndian, uint32(e[3]))
	}
	add("aff4%3A%2F%2Fm0/map", m.Bytes())
	add("aff4%3A%2F%2Fm0/idx", []byte(st+"\n"+aff4NS+"Zero\n"+aff4NS+"UnknownData\n"))
	add("information.turtle", []byte(turtle))
	zw.SetComment(vol)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAFF4Tiny reads the small volume: mapped ranges from the stream,
// the hole and aff4:Zero as zeros, aff4:UnknownData as "UNKNOWN".
func TestAFF4Tiny(t *testing.T) {
	p := writeTemp(t, "tiny.aff4", aff4Tiny(t))
	if name, err := Detect(p); err != nil || name != "aff4" {
		t.Fatalf("detected %q, %v: want aff4", name, err)
	}
	d := mustOpen(t, p, Options{ReadOnly: true})
	data := patternDisk(16384, 7)
	want := make([]byte, 65536)
	copy(want, data[:8192])
	copy(want[16384:], data[8192:])
	for i := 40960; i < 45056; i++ {
		want[i] = "UNKNOWN"[(i-40960)%7] // from the target offset, 0
	}
	checkDisk(t, d, want)
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
	}
	if alloc, n, err := d.(Mapper).Map(8192, 65536); err != nil || alloc || n != 8192 {
		t.Fatalf("Map(8192) = %v %d %v, want a hole of 8192", alloc, n, err)
	}
}

// TestAFF4TinyImageStream: an image whose data stream is an image
// stream, without a map, reads the stream.
func TestAFF4TinyImageStream(t *testing.T) {
	d := mustOpen(t, writeTemp(t, "direct.aff4", aff4TinyVolume(t, "aff4://s0")), Options{ReadOnly: true})
	checkDisk(t, d, patternDisk(16384, 7))
	if v := d.Info().Variant; v != "image stream" {
		t.Fatalf("variant %q, want image stream", v)
	}
}

// TestAFF4TinyCrafted: damaged copies of the small volume open with an
// error or read, never panic; a plain ZIP is not AFF4.
func TestAFF4TinyCrafted(t *testing.T) {
	for i, b := range corruptVariants(aff4Tiny(t), 5, 300) {
		tryCrafted(t, "v"+string(rune('a'+i%26))+".aff4", b, readSome)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("readme.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if name, err := Detect(writeTemp(t, "plain.zip", buf.Bytes())); name == "aff4" {
		t.Fatalf("a plain ZIP detected as aff4 (%v)", err)
	}
}

func FuzzAFF4(f *testing.F) {
	f.Add(aff4Tiny(f))
	f.Add(aff4TinyVolume(f, "aff4://s0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "fuzz.aff4", data, readSome)
	})
}

// TestAFF4MapUnaligned: map entries that end inside a sector still give
// sector-aligned allocation runs; a sector with any stored byte counts
// as stored.
func TestAFF4MapUnaligned(t *testing.T) {
	ff := aff4Symbolic(aff4NS + "SymbolicStreamFF")
	d := &aff4Image{size: 4096, m: &aff4Map{size: 4096, gap: aff4Symbolic(aff4NS + "Zero"),
		targets: []aff4Target{ff}, entries: []aff4MapEntry{{0, 100, 0, 0}, {1000, 24, 0, 0}}}}
	for _, c := range []struct {
		off   int64
		alloc bool
		n     int64
	}{{0, true, 512}, {512, true, 512}, {1024, false, 3072}} {
		alloc, n, err := d.Map(c.off, 4096)
		if err != nil || alloc != c.alloc || n != c.n {
			t.Errorf("Map(%d) = %v %d %v, want %v %d", c.off, alloc, n, err, c.alloc, c.n)
		}
	}
}
