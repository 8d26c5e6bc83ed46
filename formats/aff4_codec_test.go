package formats

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

const aff4SnappyIRI = "http://code.google.com/p/snappy/"

// aff4Recode rewrites the Base-Linear reference image with its chunks
// compressed by encode (nil: stored) under the compression method IRI
// method, and the small segments ZIP-deflated when deflateMeta is set.
// The stored hashes of the original stay valid: they cover the decoded
// chunks, the block hashes and the map, none of which change. So the
// reference image's own hashes remain the oracle.
func aff4Recode(t *testing.T, method string, encode func([]byte) []byte, deflateMeta bool) string {
	t.Helper()
	src := filepath.Join(samplesDir, "aff4/Base-Linear.aff4")
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	read := func(name string) []byte {
		for _, f := range zr.File {
			if f.Name == name {
				r, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				b, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
		t.Fatalf("%s: no member %s", src, name)
		return nil
	}
	const stream = "aff4%3A%2F%2Fc215ba20-5648-4209-a793-1f918c723610/00000000"
	const chunkSize = 32768
	bevy, index := read(stream), read(stream+".index")
	var newBevy, newIndex bytes.Buffer
	for i := 0; i < len(index); i += 12 {
		off, l := binary.LittleEndian.Uint64(index[i:]), binary.LittleEndian.Uint32(index[i+8:])
		chunk := bevy[off : off+uint64(l)]
		if l != chunkSize {
			if chunk, err = snappy.Decode(nil, chunk); err != nil {
				t.Fatal(err)
			}
		}
		out := chunk
		if encode != nil {
			if c := encode(chunk); len(c) > 0 && len(c) < chunkSize {
				out = c
			}
		}
		binary.Write(&newIndex, binary.LittleEndian, uint64(newBevy.Len()))
		binary.Write(&newIndex, binary.LittleEndian, uint32(len(out)))
		newBevy.Write(out)
	}
	p := filepath.Join(t.TempDir(), "recoded.aff4")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, zf := range zr.File {
		b := read(zf.Name)
		switch zf.Name {
		case stream:
			b = newBevy.Bytes()
		case stream + ".index":
			b = newIndex.Bytes()
		case "information.turtle":
			old := "<" + aff4SnappyIRI + ">"
			if method == "" {
				b = []byte(strings.Replace(string(b), "aff4:compressionMethod     "+old+" ;", "", 1))
			} else {
				b = []byte(strings.Replace(string(b), old, "<"+method+">", 1))
			}
		}
		m := zip.Store
		if deflateMeta && zf.Name != stream {
			m = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: zf.Name, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	zw.SetComment(zr.Comment)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAFF4Codecs reads the reference image recoded with every chunk
// compression the Standard and its writers use.
func TestAFF4Codecs(t *testing.T) {
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zenc.Close()
	stream := func(newW func(w io.Writer) io.WriteCloser) func([]byte) []byte {
		return func(b []byte) []byte {
			var buf bytes.Buffer
			w := newW(&buf)
			w.Write(b)
			w.Close()
			return buf.Bytes()
		}
	}
	cases := []struct {
		name, method string
		encode       func([]byte) []byte
		deflateMeta  bool
	}{
		{"stored-no-method", "", nil, false},
		{"stored-null", aff4NS + "NullCompressor", nil, true},
		{"snappy-github", "https://github.com/google/snappy", func(b []byte) []byte { return snappy.Encode(nil, b) }, false},
		{"lz4", "https://code.google.com/p/lz4/", func(b []byte) []byte {
			dst := make([]byte, lz4.CompressBlockBound(len(b)))
			n, err := lz4.CompressBlock(b, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			return dst[:n]
		}, true},
		{"deflate", "https://tools.ietf.org/html/rfc1951", stream(func(w io.Writer) io.WriteCloser {
			fw, _ := flate.NewWriter(w, 6)
			return fw
		}), false},
		{"zlib", "https://www.ietf.org/rfc/rfc1950.txt", stream(func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) }), false},
		{"zstd", "https://facebook.github.io/zstd/", func(b []byte) []byte { return zenc.EncodeAll(b, nil) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := mustOpen(t, aff4Recode(t, c.method, c.encode, c.deflateMeta), Options{ReadOnly: true})
			if got, want := diskMD5(t, d), "dd6dbda282e27fd0d196abd95f5c3e58"; got != want {
				t.Fatalf("md5 %s, want %s", got, want)
			}
			aff4CheckClean(t, d)
			checkConcurrentReads(t, d, aff4ReadAll(t, d))
		})
	}
}

// TestAFF4DamagedChunk: a flipped byte in a stored chunk (which carries
// no checksum of its own) is found by Check through the block hashes and
// the stream's linear hash.
func TestAFF4DamagedChunk(t *testing.T) {
	p := aff4Recode(t, "", nil, false)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The bevy is the third member, stored: damage a byte well inside it.
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	off, err := zr.File[2].DataOffset()
	if err != nil {
		t.Fatal(err)
	}
	b[off+40000] ^= 0xff // chunk 1 (stored chunks of 32 KiB)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, p, Options{ReadOnly: true})
	findings, err := d.(Checker).Check()
	if err != nil {
		t.Fatal(err)
	}
	var block, linear bool
	for _, f := range findings {
		block = block || strings.Contains(f, "chunk 1 ") && strings.Contains(f, "block hash differs")
		linear = linear || strings.Contains(f, "image stream") && strings.Contains(f, "stored sha1")
	}
	if !block || !linear {
		t.Fatalf("findings %q: want chunk 1's block hashes and the stream's hash", findings)
	}
}

func BenchmarkAFF4(b *testing.B) {
	for _, c := range []struct {
		name   string
		random bool
	}{{"sequential", false}, {"random", true}} {
		b.Run(c.name, func(b *testing.B) {
			d, err := Open(filepath.Join(samplesDir, "aff4/Base-Linear.aff4"), Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			benchReads(b, d, c.random)
		})
	}
	b.Run("open-9EB", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			d, err := Open(filepath.Join(samplesDir, "aff4/Base-ExabyteSparse.aff4"), Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			d.Close()
		}
	})
}
