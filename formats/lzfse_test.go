package formats

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"
)

// The LZFSE-compressed bvx2 blocks come from the hdiutil sample
// udif/compression-lzfse.dmg (its expected output was made with Apple's
// reference decoder); the other block kinds are built by hand here.

// lzfseTestChunks returns the stored LZFSE chunks of the sample and their
// decompressed sizes.
func lzfseTestChunks(t testing.TB) (chunks [][]byte, sizes []int) {
	t.Helper()
	p := filepath.Join(samplesDir, "udif", "compression-lzfse.dmg")
	d, err := dmgOpen(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	raw := readFile(t, p)
	for _, c := range d.(*dmgDisk).data {
		if c.typ == dmgLZFSE {
			chunks = append(chunks, raw[c.fOff:c.fOff+c.fLen])
			sizes = append(sizes, int(c.vLen))
		}
	}
	if len(chunks) == 0 {
		t.Fatal("no LZFSE chunks in the sample")
	}
	return chunks, sizes
}

func lzfseTestBlock(magic string, fields ...uint32) []byte {
	b := []byte(magic)
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, f)
	}
	return b
}

func TestLZFSETables(t *testing.T) {
	// Spot values of the D base table as the format defines it.
	for s, want := range map[int]int32{0: 0, 4: 4, 5: 6, 9: 16, 13: 36, 32: 1020, 40: 4092, 56: 65532, 63: 229372} {
		if lzfseDBase[s] != want {
			t.Errorf("D base[%d] = %d, want %d", s, lzfseDBase[s], want)
		}
	}
	if lzfseDBits[63] != 15 || lzfseDBits[3] != 0 || lzfseDBits[4] != 1 {
		t.Errorf("D extra bits wrong: %v", lzfseDBits)
	}
}

func TestLZFSESampleChunks(t *testing.T) {
	chunks, sizes := lzfseTestChunks(t)
	kinds := map[string]bool{}
	for i, c := range chunks {
		kinds[string(c[:4])] = true
		out := make([]byte, sizes[i])
		n, err := lzfseDecode(out, c)
		if err != nil || n != sizes[i] {
			t.Fatalf("chunk %d: %d, %v; want %d bytes", i, n, err, sizes[i])
		}
		// One byte less room than the data needs: an error, not a
		// write past the buffer.
		short := make([]byte, sizes[i]-1, sizes[i]+64)
		if _, err := lzfseDecode(short, c); err != lzfseErrOverflow {
			t.Errorf("chunk %d into %d bytes: %v, want overflow", i, len(short), err)
		}
		if !isZero(short[len(short):cap(short)]) {
			t.Errorf("chunk %d: wrote past the declared size", i)
		}
		// Every truncation fails cleanly.
		for cut := 0; cut < len(c); cut += 1 + len(c)/50 {
			if _, err := lzfseDecode(out, c[:cut]); err == nil {
				t.Fatalf("chunk %d cut to %d bytes decoded without error", i, cut)
			}
		}
	}
	t.Logf("block kinds in the sample: %v", kinds)
	if !kinds["bvx2"] {
		t.Errorf("sample has no bvx2 block: %v", kinds)
	}
}

// TestLZFSEV1 re-encodes the sample's bvx2 headers in the bvx1 layout
// (plain little-endian fields and uint16 frequency tables) and decodes
// again.
func TestLZFSEV1(t *testing.T) {
	chunks, sizes := lzfseTestChunks(t)
	st := new(lzfseState)
	for i, c := range chunks {
		if string(c[:4]) != "bvx2" {
			continue
		}
		if _, err := st.readHeader(c, 0); err != nil {
			t.Fatal(err)
		}
		h := st.hdr
		payload := c[h.headerSize : h.headerSize+int(h.nLitPayload+h.nLmdPayload)]
		rest := c[h.headerSize+len(payload):]
		v1 := make([]byte, lzfseV1HeaderSize)
		le := binary.LittleEndian
		copy(v1, "bvx1")
		le.PutUint32(v1[4:], le.Uint32(c[4:]))
		le.PutUint32(v1[8:], h.nLitPayload+h.nLmdPayload)
		le.PutUint32(v1[12:], h.nLiterals)
		le.PutUint32(v1[16:], h.nMatches)
		le.PutUint32(v1[20:], h.nLitPayload)
		le.PutUint32(v1[24:], h.nLmdPayload)
		le.PutUint32(v1[28:], uint32(h.litBits))
		for j, s := range h.litState {
			le.PutUint16(v1[32+2*j:], s)
		}
		le.PutUint32(v1[40:], uint32(h.lmdBits))
		le.PutUint16(v1[44:], h.lState)
		le.PutUint16(v1[46:], h.mState)
		le.PutUint16(v1[48:], h.dState)
		for j, f := range h.freq {
			le.PutUint16(v1[50+2*j:], f)
		}
		// The literal stream may read back into the header; pad so
		// both layouts give it the same bytes before the payload.
		stream := append(append(v1, payload...), rest...)
		want := make([]byte, sizes[i])
		if _, err := lzfseDecode(want, c); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, sizes[i])
		n, err := lzfseDecode(got, stream)
		if err != nil {
			// A literal stream that reads into the header sees other
			// bytes in the v1 layout: only then may it differ.
			t.Logf("chunk %d as bvx1: %v", i, err)
			continue
		}
		if n != sizes[i] || !bytes.Equal(got, want) {
			t.Fatalf("chunk %d as bvx1: %d bytes, equal %v", i, n, bytes.Equal(got, want))
		}
		return
	}
	t.Fatal("no bvx2 chunk converted")
}

func TestLZFSERawBlock(t *testing.T) {
	data := []byte("uncompressed block payload")
	s := append(lzfseTestBlock("bvx-", uint32(len(data))), data...)
	s = append(s, lzfseTestBlock("bvx-", 3)...)
	s = append(s, "xyz"...)
	s = append(s, "bvx$"...)
	out := make([]byte, 64)
	n, err := lzfseDecode(out, s)
	if err != nil || string(out[:n]) != string(data)+"xyz" {
		t.Fatalf("got %q, %v", out[:n], err)
	}
	if _, err := lzfseDecode(make([]byte, 10), s); err != lzfseErrOverflow {
		t.Errorf("small output: %v, want overflow", err)
	}
	if _, err := lzfseDecode(out, s[:len(s)-4]); err != lzfseErrTruncated {
		t.Errorf("no end block: %v, want truncated", err)
	}
	if _, err := lzfseDecode(out, []byte("bvxZ....")); err != lzfseErrCorrupt {
		t.Errorf("bad magic: %v, want corrupt", err)
	}
}

// lzfseTestLZVN is a hand-assembled LZVN payload using every opcode
// kind, and the bytes it stands for after the history pre.
func lzfseTestLZVN(pre []byte) (payload, want []byte) {
	var p []byte
	w := append([]byte(nil), pre...)
	match := func(d, m int) { // LZ77 semantics, byte by byte
		for range m {
			w = append(w, w[len(w)-d])
		}
	}
	p = append(p, 0xE3, 'a', 'b', 'c') // small literal, L=3
	w = append(w, "abc"...)
	p = append(p, 0x40, 3, 'd') // small distance: L=1 M=3 D=3
	w = append(w, 'd')
	match(3, 3)
	p = append(p, 0x0E)      // nop
	p = append(p, 0x4E, 'e') // previous distance: L=1 M=4
	w = append(w, 'e')
	match(3, 4)
	p = append(p, 0x07, 12, 0) // large distance: L=0 M=3 D=12
	match(12, 3)
	p = append(p, 0xA0, 62, 0) // medium distance: L=0 M=(0<<2|2)+3=5 D=15
	match(15, 5)
	p = append(p, 0xF2) // small match, previous distance: M=2
	match(15, 2)
	p = append(p, 0xF0, 0) // large match: M=16
	match(15, 16)
	p = append(p, 0x16)    // nop
	p = append(p, 0xE0, 4) // large literal: L=20
	lit := []byte("twenty literal bytes")
	p = append(p, lit...)
	w = append(w, lit...)
	p = append(p, 0xC9, 0x01, 'X', 'Y', 'Z') // small distance: L=3 M=4 D=0x101
	w = append(w, "XYZ"...)
	match(0x101, 4)
	p = append(p, 0x06, 0, 0, 0, 0, 0, 0, 0) // end of stream
	return p, w
}

// lzfseTestStream is a raw block of 300 bytes, then an LZVN block whose
// last small-distance match reaches 257 bytes back, into the raw block
// (matches may reach into earlier blocks).
func lzfseTestStream() (stream, want []byte) {
	pre := bytes.Repeat([]byte("0123456789"), 30)
	payload, want := lzfseTestLZVN(pre)
	s := append(lzfseTestBlock("bvx-", uint32(len(pre))), pre...)
	s = append(s, lzfseTestBlock("bvxn", uint32(len(want)-len(pre)), uint32(len(payload)))...)
	s = append(s, payload...)
	return append(s, "bvx$"...), want
}

func TestLZFSELZVN(t *testing.T) {
	s, want := lzfseTestStream()
	out := make([]byte, len(want))
	n, err := lzfseDecode(out, s)
	if err != nil || !bytes.Equal(out[:n], want) {
		t.Fatalf("got %q, %v\nwant %q", out[:n], err, want)
	}

	// Errors in the LZVN payload itself.
	for _, tc := range []struct {
		name    string
		payload []byte
		size    int
		want    error
	}{
		{"undefined-0x70", []byte{0xE1, 'a', 0x70, 6, 0, 0, 0, 0, 0, 0, 0}, 10, lzfseErrCorrupt},
		{"undefined-0xd0", []byte{0xE1, 'a', 0xD0, 6, 0, 0, 0, 0, 0, 0, 0}, 10, lzfseErrCorrupt},
		{"undefined-0x1e", []byte{0xE1, 'a', 0x1E, 6, 0, 0, 0, 0, 0, 0, 0}, 10, lzfseErrCorrupt},
		{"distance-too-far", []byte{0xE1, 'a', 0x00, 2, 6, 0, 0, 0, 0, 0, 0, 0}, 10, lzfseErrCorrupt},
		{"no-previous-distance", []byte{0xE1, 'a', 0xF1, 6, 0, 0, 0, 0, 0, 0, 0}, 10, lzfseErrCorrupt},
		{"literal-truncated", []byte{0xE5, 'a'}, 10, lzfseErrTruncated},
		{"no-eos", []byte{0xE1, 'a'}, 1, lzfseErrTruncated},
		{"eos-truncated", []byte{0xE1, 'a', 6, 0, 0}, 1, lzfseErrTruncated},
		{"data-after-eos", []byte{0xE1, 'a', 6, 0, 0, 0, 0, 0, 0, 0, 0xE1}, 1, lzfseErrCorrupt},
		{"overflow", []byte{0xE3, 'a', 'b', 'c', 6, 0, 0, 0, 0, 0, 0, 0}, 2, lzfseErrOverflow},
		{"match-overflow", []byte{0xE1, 'a', 0x08, 0x01, 6, 0, 0, 0, 0, 0, 0, 0}, 2, lzfseErrOverflow},
	} {
		dst := make([]byte, tc.size)
		_, err := lzfseLZVN(dst, 0, tc.payload)
		if err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A block whose payload decodes to fewer bytes than it declares.
	short := append(lzfseTestBlock("bvxn", 5, 10), 0xE1, 'a', 6, 0, 0, 0, 0, 0, 0, 0)
	if _, err := lzfseDecode(make([]byte, 10), append(short, "bvx$"...)); err == nil {
		t.Error("short LZVN block decoded without error")
	}
}

// TestLZFSENoAllocs: decoding uses the pooled state and the caller's
// buffer only.
func TestLZFSENoAllocs(t *testing.T) {
	chunks, sizes := lzfseTestChunks(t)
	out := make([]byte, sizes[0])
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := lzfseDecode(out, chunks[0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations per decode", allocs)
	}
}

func FuzzLZFSE(f *testing.F) {
	chunks, sizes := lzfseTestChunks(f)
	for i, c := range chunks {
		if i < 4 {
			f.Add(c, sizes[i])
		}
	}
	s, want := lzfseTestStream()
	f.Add(s, len(want))
	f.Add(append(append(lzfseTestBlock("bvx-", 3), "abc"...), "bvx$"...), 3)
	f.Fuzz(func(t *testing.T, src []byte, size int) {
		size = max(0, size) % (4 << 20)
		out := make([]byte, size, size+16)
		n, _ := lzfseDecode(out, src)
		if n < 0 || n > size {
			t.Fatalf("lzfseDecode wrote %d bytes into %d", n, size)
		}
		if !isZero(out[size:cap(out)]) {
			t.Fatal("wrote past the declared size")
		}
	})
}

func BenchmarkLZFSEDecode(b *testing.B) {
	chunks, sizes := lzfseTestChunks(b)
	out := make([]byte, sizes[0])
	b.SetBytes(int64(sizes[0]))
	for range b.N {
		lzfseDecode(out, chunks[0])
	}
}
