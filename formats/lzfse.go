package formats

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
)

// A decoder for Apple's LZFSE (ULFO images, chunk type 0x80000007),
// written from the format as Apple's reference implementation
// (github.com/lzfse/lzfse) defines it. A stream is a sequence of blocks,
// each starting with a little-endian magic:
//
//	bvx-  uncompressed: n_raw_bytes, then the bytes
//	bvx1  LZFSE, frequency tables stored as plain uint16 (772-byte header)
//	bvx2  LZFSE, header fields bit-packed and frequency tables
//	      variable-length coded
//	bvxn  LZVN (a byte-oriented LZ77): n_raw_bytes, n_payload_bytes
//	bvx$  end of stream
//
// An LZFSE block holds literals coded by four interleaved FSE (tANS)
// streams and (L, M, D) triples - literal length, match length, match
// distance - coded by three FSE streams plus raw extra bits. Both bit
// streams are read backwards from their end. Matches may reach back into
// earlier blocks of the same stream.
//
// The decoder writes only into the caller's buffer: a stream that would
// produce more than len(dst) bytes is an error, so the output bound is
// the caller's (a DMG chunk's sector count).

const (
	lzfseMagicEnd  = 0x24787662 // "bvx$"
	lzfseMagicRaw  = 0x2d787662 // "bvx-"
	lzfseMagicV1   = 0x31787662 // "bvx1"
	lzfseMagicV2   = 0x32787662 // "bvx2"
	lzfseMagicLZVN = 0x6e787662 // "bvxn"

	lzfseLSymbols   = 20
	lzfseMSymbols   = 20
	lzfseDSymbols   = 64
	lzfseLitSymbols = 256
	lzfseLStates    = 64
	lzfseMStates    = 64
	lzfseDStates    = 256
	lzfseLitStates  = 1024

	lzfseMaxMatches  = 10000
	lzfseMaxLiterals = 4 * lzfseMaxMatches

	lzfseV1HeaderSize = 772 // sizeof the C struct, padded to 4
	lzfseV2FixedSize  = 32  // magic, n_raw_bytes, three packed uint64
)

// Extra-bit counts and base values of the L, M and D symbols: a value is
// base[symbol] plus that many raw bits.
var (
	lzfseLBits = [lzfseLSymbols]uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 5, 8}
	lzfseLBase = [lzfseLSymbols]int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20, 28, 60}
	lzfseMBits = [lzfseMSymbols]uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 5, 8, 11}
	lzfseMBase = [lzfseMSymbols]int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 56, 312}
	lzfseDBits [lzfseDSymbols]uint8
	lzfseDBase [lzfseDSymbols]int32
)

func init() {
	// D symbols come in groups of four sharing an extra-bit count
	// (0,0,0,0, 1,1,1,1, 2,...); each base is the previous base plus
	// the previous symbol's range.
	base := int32(0)
	for s := range lzfseDSymbols {
		n := uint8(s / 4)
		lzfseDBits[s] = n
		lzfseDBase[s] = base
		base += 1 << n
	}
}

var (
	lzfseErrTruncated = errors.New("lzfse: compressed data truncated")
	lzfseErrOverflow  = errors.New("lzfse: output larger than the declared size")
	lzfseErrCorrupt   = errors.New("lzfse: invalid compressed data")
)

// lzfseValueEntry is one state of an L, M or D decoding table.
type lzfseValueEntry struct {
	totalBits uint8 // state bits + extra value bits to pull
	valueBits uint8 // extra value bits
	delta     uint16
	vbase     int32
}

// lzfseLitEntry is one state of the literal decoding table.
type lzfseLitEntry struct {
	k     uint8
	sym   uint8
	delta uint16
}

// lzfseBlock is the decoded header of a bvx1/bvx2 block.
type lzfseBlock struct {
	nLiterals, nMatches      uint32
	nLitPayload, nLmdPayload uint32
	litBits, lmdBits         int32
	litState                 [4]uint16
	lState, mState, dState   uint16
	freq                     [lzfseLSymbols + lzfseMSymbols + lzfseDSymbols + lzfseLitSymbols]uint16
	headerSize               int
}

// lzfseState is the scratch space of one decode, pooled: about 50 KiB.
type lzfseState struct {
	hdr      lzfseBlock
	lTab     [lzfseLStates]lzfseValueEntry
	mTab     [lzfseMStates]lzfseValueEntry
	dTab     [lzfseDStates]lzfseValueEntry
	litTab   [lzfseLitStates]lzfseLitEntry
	literals [lzfseMaxLiterals]byte
}

var lzfsePool = sync.Pool{New: func() any { return new(lzfseState) }}

// lzfseDecode decodes a complete LZFSE stream (up to its bvx$ block) from
// src into dst and returns the number of bytes written.
func lzfseDecode(dst, src []byte) (int, error) {
	st := lzfsePool.Get().(*lzfseState)
	defer lzfsePool.Put(st)
	o, pos := 0, 0
	for {
		if len(src)-pos < 4 {
			return o, lzfseErrTruncated
		}
		switch binary.LittleEndian.Uint32(src[pos:]) {
		case lzfseMagicEnd:
			return o, nil
		case lzfseMagicRaw:
			if len(src)-pos < 8 {
				return o, lzfseErrTruncated
			}
			n := uint64(binary.LittleEndian.Uint32(src[pos+4:]))
			pos += 8
			if n > uint64(len(src)-pos) {
				return o, lzfseErrTruncated
			}
			if n > uint64(len(dst)-o) {
				return o, lzfseErrOverflow
			}
			o += copy(dst[o:], src[pos:pos+int(n)])
			pos += int(n)
		case lzfseMagicLZVN:
			if len(src)-pos < 12 {
				return o, lzfseErrTruncated
			}
			nRaw := uint64(binary.LittleEndian.Uint32(src[pos+4:]))
			nPayload := uint64(binary.LittleEndian.Uint32(src[pos+8:]))
			pos += 12
			if nPayload > uint64(len(src)-pos) {
				return o, lzfseErrTruncated
			}
			if nRaw > uint64(len(dst)-o) {
				return o, lzfseErrOverflow
			}
			end := o + int(nRaw)
			n, err := lzfseLZVN(dst[:end], o, src[pos:pos+int(nPayload)])
			if err != nil {
				return n, err
			}
			if n != end {
				return n, lzfseErrCorrupt
			}
			o = n
			pos += int(nPayload)
		case lzfseMagicV1, lzfseMagicV2:
			var err error
			if pos, err = st.readHeader(src, pos); err != nil {
				return o, err
			}
			if o, err = st.decodeBlock(dst, o, src, pos); err != nil {
				return o, err
			}
			pos += st.hdr.headerSize + int(st.hdr.nLitPayload) + int(st.hdr.nLmdPayload)
		default:
			return o, lzfseErrCorrupt
		}
	}
}

// readHeader decodes the bvx1/bvx2 header at src[pos:] into st.hdr and
// checks every field against the format's limits.
func (st *lzfseState) readHeader(src []byte, pos int) (int, error) {
	h := &st.hdr
	b := src[pos:]
	le := binary.LittleEndian
	if le.Uint32(b) == lzfseMagicV1 {
		if len(b) < lzfseV1HeaderSize {
			return pos, lzfseErrTruncated
		}
		h.nLiterals = le.Uint32(b[12:])
		h.nMatches = le.Uint32(b[16:])
		h.nLitPayload = le.Uint32(b[20:])
		h.nLmdPayload = le.Uint32(b[24:])
		h.litBits = int32(le.Uint32(b[28:]))
		for i := range h.litState {
			h.litState[i] = le.Uint16(b[32+2*i:])
		}
		h.lmdBits = int32(le.Uint32(b[40:]))
		h.lState, h.mState, h.dState = le.Uint16(b[44:]), le.Uint16(b[46:]), le.Uint16(b[48:])
		for i := range h.freq {
			h.freq[i] = le.Uint16(b[50+2*i:])
		}
		h.headerSize = lzfseV1HeaderSize
	} else {
		if len(b) < lzfseV2FixedSize {
			return pos, lzfseErrTruncated
		}
		v0, v1, v2 := le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:])
		field := func(v uint64, off, n uint) uint32 { return uint32(v>>off) & (1<<n - 1) }
		h.nLiterals = field(v0, 0, 20)
		h.nLitPayload = field(v0, 20, 20)
		h.nMatches = field(v0, 40, 20)
		h.litBits = int32(field(v0, 60, 3)) - 7
		for i := range h.litState {
			h.litState[i] = uint16(field(v1, uint(10*i), 10))
		}
		h.nLmdPayload = field(v1, 40, 20)
		h.lmdBits = int32(field(v1, 60, 3)) - 7
		size := uint64(uint32(v2))
		h.lState = uint16(field(v2, 32, 10))
		h.mState = uint16(field(v2, 42, 10))
		h.dState = uint16(field(v2, 52, 10))
		if size < lzfseV2FixedSize {
			return pos, lzfseErrCorrupt
		}
		if size > uint64(len(b)) {
			return pos, lzfseErrTruncated
		}
		h.headerSize = int(size)
		if err := lzfseReadFreqs(h.freq[:], b[lzfseV2FixedSize:size]); err != nil {
			return pos, err
		}
	}
	if uint64(h.headerSize)+uint64(h.nLitPayload)+uint64(h.nLmdPayload) > uint64(len(b)) {
		return pos, lzfseErrTruncated
	}
	if h.nLiterals > lzfseMaxLiterals || h.nMatches > lzfseMaxMatches ||
		h.lState >= lzfseLStates || h.mState >= lzfseMStates || h.dState >= lzfseDStates ||
		h.litBits < -7 || h.litBits > 0 || h.lmdBits < -7 || h.lmdBits > 0 {
		return pos, lzfseErrCorrupt
	}
	for _, s := range h.litState {
		if s >= lzfseLitStates {
			return pos, lzfseErrCorrupt
		}
	}
	f := h.freq[:]
	lf, f := f[:lzfseLSymbols], f[lzfseLSymbols:]
	mf, f := f[:lzfseMSymbols], f[lzfseMSymbols:]
	df, litf := f[:lzfseDSymbols], f[lzfseDSymbols:]
	if !lzfseValueTable(st.lTab[:], lf, lzfseLBits[:], lzfseLBase[:]) ||
		!lzfseValueTable(st.mTab[:], mf, lzfseMBits[:], lzfseMBase[:]) ||
		!lzfseValueTable(st.dTab[:], df, lzfseDBits[:], lzfseDBase[:]) ||
		!lzfseLitTable(st.litTab[:], litf) {
		return pos, lzfseErrCorrupt
	}
	return pos, nil
}

// lzfseReadFreqs decodes the v2 frequency tables: values packed LSB
// first with a prefix code read from the low bits -
//
//	..00 -> 0, ..10 -> 1 (2 bits); .001 -> 2, .101 -> 3 (3 bits);
//	vv011 -> 4+vv (5 bits); vvvv0111 -> 8+vvvv (8 bits);
//	v(10) 1111 -> 24+v (14 bits).
//
// An empty table area means every frequency is zero.
func lzfseReadFreqs(freq []uint16, b []byte) error {
	clear(freq)
	if len(b) == 0 {
		return nil
	}
	var acc uint32
	nb, p := 0, 0
	for i := range freq {
		for p < len(b) && nb+8 <= 32 {
			acc |= uint32(b[p]) << nb
			nb += 8
			p++
		}
		var v uint32
		var n int
		switch {
		case acc&3 == 0:
			v, n = 0, 2
		case acc&3 == 2:
			v, n = 1, 2
		case acc&7 == 1:
			v, n = 2, 3
		case acc&7 == 5:
			v, n = 3, 3
		case acc&7 == 3:
			v, n = 4+(acc>>3)&3, 5
		case acc&15 == 7:
			v, n = 8+(acc>>4)&15, 8
		default: // acc&15 == 15
			v, n = 24+(acc>>4)&0x3ff, 14
		}
		if n > nb {
			return lzfseErrTruncated
		}
		acc >>= n
		nb -= n
		freq[i] = uint16(v)
	}
	if nb >= 8 || p != len(b) {
		return lzfseErrCorrupt
	}
	return nil
}

// lzfseSpread yields, for a symbol of frequency f in a table of n states,
// the shift k (so that n <= f<<k < 2n) and the split j0: the first j0 of
// the symbol's states read k bits, the others k-1.
func lzfseSpread(f, n int) (k, j0 int) {
	k = bits.LeadingZeros32(uint32(f)) - bits.LeadingZeros32(uint32(n))
	return k, (2*n)>>k - f
}

// lzfseFillTable spreads the states of a decoding table t over the
// symbols by frequency; entry makes symbol s's entry that reads k bits and
// adds delta. It is false if the frequencies sum to more than the number
// of states.
func lzfseFillTable[E any](t []E, freq []uint16, entry func(s, k int, delta uint16) E) bool {
	n := len(t)
	sum := 0
	for _, f := range freq {
		sum += int(f)
	}
	if sum > n {
		return false
	}
	clear(t)
	i := 0
	for s, f16 := range freq {
		f := int(f16)
		if f == 0 {
			continue
		}
		k, j0 := lzfseSpread(f, n)
		for j := 0; j < f; j++ {
			if j < j0 {
				t[i] = entry(s, k, uint16((f+j)<<k-n))
			} else {
				t[i] = entry(s, k-1, uint16((j-j0)<<(k-1)))
			}
			i++
		}
	}
	return true
}

// lzfseValueTable fills an L, M or D decoding table; false if the
// frequencies sum to more than the number of states.
func lzfseValueTable(t []lzfseValueEntry, freq []uint16, vbits []uint8, vbase []int32) bool {
	return lzfseFillTable(t, freq, func(s, k int, delta uint16) lzfseValueEntry {
		return lzfseValueEntry{valueBits: vbits[s], vbase: vbase[s], totalBits: uint8(k) + vbits[s], delta: delta}
	})
}

// lzfseLitTable fills the literal decoding table.
func lzfseLitTable(t []lzfseLitEntry, freq []uint16) bool {
	return lzfseFillTable(t, freq, func(s, k int, delta uint16) lzfseLitEntry {
		return lzfseLitEntry{sym: uint8(s), k: uint8(k), delta: delta}
	})
}

// lzfseBits reads an FSE bit stream backwards: bytes are taken from the
// end towards the start, and bits from the top of the accumulator.
type lzfseBits struct {
	src   []byte
	p     int // next byte to load is src[p-1]
	floor int // lowest index the stream may read
	acc   uint64
	n     int // valid bits in acc, 56..63 after fill
}

// init starts a stream that ends at src[end] with extra (-7..0) bits.
func (s *lzfseBits) init(src []byte, end, floor int, extra int32) error {
	s.src, s.floor = src, floor
	if extra != 0 {
		if end-8 < floor {
			return lzfseErrTruncated
		}
		s.p = end - 8
		s.acc = binary.LittleEndian.Uint64(src[s.p:])
		s.n = int(extra) + 64
	} else {
		if end-7 < floor {
			return lzfseErrTruncated
		}
		s.p = end - 7
		var b [8]byte
		copy(b[:], src[s.p:end])
		s.acc = binary.LittleEndian.Uint64(b[:])
		s.n = 56
	}
	if s.n < 56 || s.n >= 64 || s.acc>>s.n != 0 {
		return lzfseErrCorrupt
	}
	return nil
}

// fill loads whole bytes until the accumulator holds 56 to 63 bits.
func (s *lzfseBits) fill() error {
	nb := (63 - s.n) &^ 7
	k := nb >> 3
	if s.p-k < s.floor {
		return lzfseErrTruncated
	}
	s.p -= k
	var in uint64
	for i := k - 1; i >= 0; i-- {
		in = in<<8 | uint64(s.src[s.p+i])
	}
	s.acc = s.acc<<nb | in
	s.n += nb
	return nil
}

// pull takes the top n bits; callers never ask for more than fill left.
func (s *lzfseBits) pull(n int) uint64 {
	s.n -= n
	v := s.acc >> s.n
	s.acc &= 1<<s.n - 1
	return v
}

func (s *lzfseBits) literal(t *[lzfseLitStates]lzfseLitEntry, state *uint16) byte {
	e := t[*state&(lzfseLitStates-1)]
	*state = (e.delta + uint16(s.pull(int(e.k)))) & (lzfseLitStates - 1)
	return e.sym
}

func (s *lzfseBits) value(t []lzfseValueEntry, state *uint16) int {
	e := t[int(*state)&(len(t)-1)]
	v := s.pull(int(e.totalBits))
	*state = (e.delta + uint16(v>>e.valueBits)) & uint16(len(t)-1)
	return int(e.vbase) + int(v&(1<<e.valueBits-1))
}

// decodeBlock decodes the literals and then executes the L, M, D triples
// of the block whose header st.hdr describes, writing at dst[o:].
func (st *lzfseState) decodeBlock(dst []byte, o int, src []byte, pos int) (int, error) {
	h := &st.hdr
	litEnd := pos + h.headerSize + int(h.nLitPayload)
	// The literal stream may start inside the header (an empty literal
	// payload still reads its 7 or 8 initial bytes): the reference
	// decoder bounds it by the start of the whole input, so do we.
	var in lzfseBits
	if err := in.init(src, litEnd, 0, h.litBits); err != nil {
		return o, err
	}
	s0, s1, s2, s3 := h.litState[0], h.litState[1], h.litState[2], h.litState[3]
	nLit := int(h.nLiterals+3) &^ 3
	lits := st.literals[:nLit]
	for i := 0; i < nLit; i += 4 {
		if err := in.fill(); err != nil {
			return o, err
		}
		lits[i] = in.literal(&st.litTab, &s0)
		lits[i+1] = in.literal(&st.litTab, &s1)
		lits[i+2] = in.literal(&st.litTab, &s2)
		lits[i+3] = in.literal(&st.litTab, &s3)
	}

	if err := in.init(src, litEnd+int(h.nLmdPayload), litEnd, h.lmdBits); err != nil {
		return o, err
	}
	ls, ms, ds := h.lState, h.mState, h.dState
	lit, d := 0, -1
	for range h.nMatches {
		if err := in.fill(); err != nil {
			return o, err
		}
		l := in.value(st.lTab[:], &ls)
		m := in.value(st.mTab[:], &ms)
		if nd := in.value(st.dTab[:], &ds); nd != 0 {
			d = nd
		}
		if l > nLit-lit {
			return o, lzfseErrCorrupt
		}
		if l+m > len(dst)-o {
			return o, lzfseErrOverflow
		}
		copy(dst[o:], lits[lit:lit+l])
		o += l
		lit += l
		if d <= 0 || d > o {
			return o, lzfseErrCorrupt
		}
		adcCopyMatch(dst, o, d, m)
		o += m
	}
	return o, nil
}

// lzfseLZVN decodes one LZVN payload into dst[o:len(dst)] (dst[:o] is
// history that matches may reach into) and returns the new position. The
// payload must end with the end-of-stream opcode, exactly at its end.
//
// Opcodes (first byte; L literal length, M match length, D distance):
//
//	LLMMMDDD D8            small distance: L 0-3, M 3-10, D 11 bits
//	101LLMMM D6MM D8       medium distance (D 14 bits, M 3-34)
//	LLMMM111 D16le         large distance
//	LLMMM110               previous distance (first byte >= 0x40)
//	1110LLLL, 0xE0 L8      literal only: L 1-15, or L8+16
//	1111MMMM, 0xF0 M8      match only, previous distance: M 1-15, or M8+16
//	0x06 + 7 bytes         end of stream; 0x0E, 0x16 no-op
//	0x1E..0x3E (step 8), 0x70-0x7F, 0xD0-0xDF undefined
//
// One piece on purpose: the opcode switch is the decoder's inner loop,
// and each case shares the cursor, the output position and the previous
// distance with the copy that follows it.
func lzfseLZVN(dst []byte, o int, src []byte) (int, error) {
	d := 0
	for i := 0; ; {
		if i >= len(src) {
			return o, lzfseErrTruncated
		}
		op := src[i]
		var l, m int
		switch {
		case op >= 0xF0: // match only
			if op == 0xF0 {
				if len(src)-i < 2 {
					return o, lzfseErrTruncated
				}
				m = int(src[i+1]) + 16
				i += 2
			} else {
				m = int(op & 15)
				i++
			}
		case op >= 0xE0: // literal only
			if op == 0xE0 {
				if len(src)-i < 2 {
					return o, lzfseErrTruncated
				}
				l = int(src[i+1]) + 16
				i += 2
			} else {
				l = int(op & 15)
				i++
			}
		case op >= 0xD0 && op < 0xE0, op >= 0x70 && op < 0x80:
			return o, lzfseErrCorrupt
		case op >= 0xA0 && op < 0xC0: // medium distance
			if len(src)-i < 3 {
				return o, lzfseErrTruncated
			}
			w := int(binary.LittleEndian.Uint16(src[i+1:]))
			l = int(op>>3) & 3
			m = (int(op&7)<<2 | w&3) + 3
			d = w >> 2
			i += 3
		case op&7 == 7: // large distance
			if len(src)-i < 3 {
				return o, lzfseErrTruncated
			}
			l, m = int(op>>6), int(op>>3&7)+3
			d = int(binary.LittleEndian.Uint16(src[i+1:]))
			i += 3
		case op&7 == 6:
			switch {
			case op == 0x06: // end of stream
				if len(src)-i < 8 {
					return o, lzfseErrTruncated
				}
				if i+8 != len(src) {
					return o, lzfseErrCorrupt
				}
				return o, nil
			case op == 0x0E || op == 0x16: // no-op
				i++
				continue
			case op < 0x40:
				return o, lzfseErrCorrupt
			}
			l, m = int(op>>6), int(op>>3&7)+3 // previous distance
			i++
		default: // small distance
			if len(src)-i < 2 {
				return o, lzfseErrTruncated
			}
			l, m = int(op>>6), int(op>>3&7)+3
			d = int(op&7)<<8 | int(src[i+1])
			i += 2
		}
		if l > 0 {
			if l > len(src)-i {
				return o, lzfseErrTruncated
			}
			if l > len(dst)-o {
				return o, lzfseErrOverflow
			}
			copy(dst[o:], src[i:i+l])
			i += l
			o += l
		}
		if m > 0 {
			if d <= 0 || d > o {
				return o, lzfseErrCorrupt
			}
			if m > len(dst)-o {
				return o, lzfseErrOverflow
			}
			adcCopyMatch(dst, o, d, m)
			o += m
		}
	}
}
