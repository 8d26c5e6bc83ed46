package formats

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zlib"
)

// Sparse VMDK extents: the hosted sparse extent ("KDMV", monolithicSparse,
// twoGbMaxExtentSparse, streamOptimized), the ESX COW extent ("COWD",
// vmfsSparse) and the ESXi space-efficient sparse extent (seSparse). All
// three map grains through a grain directory (GD) of grain tables (GT).
// Layouts: VMware "Virtual Disk Format 1.1", libvmdk's notes, and qemu's
// block/vmdk.c for seSparse (which VMware does not document).

const (
	vmdkMaxSectors   = 1 << 41 // 1 PiB: far above any VMDK extent
	vmdkGDAtEnd      = ^uint64(0)
	vmdkFlagRGD      = 1 << 1
	vmdkFlagZeroGTE  = 1 << 2
	vmdkFlagCompress = 1 << 16
	vmdkFlagMarkers  = 1 << 17
	vmdkMaxGrain     = 1 << 24  // bytes; VMware uses 64 KiB, qemu allows 1 GiB
	vmdkMaxGDEntries = 32 << 20 // qemu's bound
	vmdkGDPiece      = 1024     // GD entries loaded at once
	vmdkTableCache   = 16 << 20 // bytes of grain tables cached per extent
	vmdkSEConstMagic = 0xcafebabe
	vmdkSEVolMagic   = 0xcafecafe
)

type vmdkSparseKind int

const (
	vmdkHosted vmdkSparseKind = iota
	vmdkCOWD
	vmdkSESparse
)

func (k vmdkSparseKind) String() string {
	switch k {
	case vmdkCOWD:
		return "COWD"
	case vmdkSESparse:
		return "seSparse"
	}
	return "hosted sparse"
}

// Grain states.
const (
	vmdkUnalloc    = iota // read from the parent, or zeros
	vmdkZeroed            // zeros, whatever the parent holds
	vmdkData              // stored at a file offset
	vmdkCompressed        // a compressed grain (with marker) at a file offset
)

type vmdkGDPieceT struct {
	gt, rgt []int64 // file offsets of the primary and redundant GTs; 0 = none
}

type vmdkSparse struct {
	kind      vmdkSparseKind
	f         *os.File
	path      string
	fileSize  atomic.Int64
	capacity  int64 // virtual bytes the tables cover
	grainSize int64 // bytes
	gtEntries int64
	entrySize int64 // 4, or 8 for seSparse
	gdEntries int64
	gdOff     int64 // bytes
	rgdOff    int64 // bytes, 0 when there is no redundant GD
	zeroGTE   bool
	compress  bool
	markers   bool
	gdAtEnd   bool
	version   uint32
	flags     uint32
	unclean   bool
	seGTOff   int64
	seGrOff   int64
	descOff   int64 // embedded descriptor (hosted): bytes
	descSize  int64

	mu     sync.RWMutex // guards gd pieces, cached GT contents and gen
	gen    uint64       // bumped by every table update, so stale loads are not cached
	gd     []*vmdkGDPieceT
	gts    *lru[int64, []byte]
	grains *lru[int64, []byte] // decompressed grains, keyed by file offset

	allocMu sync.Mutex // serializes allocation (new grains and tables)
	meta    *metaMap   // metadata a grain write must not touch (overlap_vmdk.go)
	next    int64      // file offset for the next allocation
}

func (s *vmdkSparse) gtBytes() int64 { return s.gtEntries * s.entrySize }

func (s *vmdkSparse) errf(off int64, msg string, a ...any) error {
	return corruptf("vmdk", s.path, off, msg, a...)
}

func (s *vmdkSparse) init() error {
	if s.gdEntries > vmdkMaxGDEntries || s.gdEntries*s.entrySize > s.fileSize.Load() {
		return s.errf(-1, "grain directory of %d entries does not fit the %d-byte file", s.gdEntries, s.fileSize.Load())
	}
	s.gd = make([]*vmdkGDPieceT, (s.gdEntries+vmdkGDPiece-1)/vmdkGDPiece)
	s.gts = newLRU[int64, []byte](max(16, vmdkTableCache/int(s.gtBytes())))
	if s.compress {
		s.grains = newLRU[int64, []byte](max(4, int(4<<20/s.grainSize)))
	}
	s.next = roundUp(s.fileSize.Load(), s.grainSize)
	s.meta = &metaMap{format: "vmdk", path: s.path, build: s.vmdkMetadata}
	return nil
}

// vmdkOpenHosted reads a KDMV header (hdr: the first sector).
// vmdkHostedHeader is the header of a hosted sparse extent (sizes and
// offsets in sectors, as stored).
type vmdkHostedHeader struct {
	magic             string
	version, flags    uint32
	capacity, grain   uint64
	descOff, descSize int64
	gtEntries         int64
	rgd, gd           uint64
	overhead          uint64
	unclean           bool
	algo              uint16
}

func vmdkDecodeHosted(b []byte) vmdkHostedHeader {
	le := binary.LittleEndian
	return vmdkHostedHeader{
		magic: string(b[:4]), version: le.Uint32(b[4:]), flags: le.Uint32(b[8:]),
		capacity: le.Uint64(b[12:]), grain: le.Uint64(b[20:]),
		descOff: int64(le.Uint64(b[28:])), descSize: int64(le.Uint64(b[36:])),
		gtEntries: int64(le.Uint32(b[44:])), rgd: le.Uint64(b[48:]), gd: le.Uint64(b[56:]),
		overhead: le.Uint64(b[64:]), unclean: b[72] != 0, algo: le.Uint16(b[77:]),
	}
}

// validate checks the fields that size what open allocates and reads.
func (h *vmdkHostedHeader) validate(path string) error {
	if h.version < 1 || h.version > 3 {
		return unsupportedf("vmdk", path, "sparse extent version %d", h.version)
	}
	if h.descOff < 0 || h.descSize < 0 || h.descOff > vmdkMaxSectors || h.descSize > vmdkMaxSectors {
		return corruptf("vmdk", path, 28, "bad descriptor location %d+%d", h.descOff, h.descSize)
	}
	if h.grain == 0 || h.grain*512 > vmdkMaxGrain {
		return corruptf("vmdk", path, 20, "grain size %d sectors out of range", h.grain)
	}
	if h.gtEntries == 0 || h.gtEntries > 512 {
		return corruptf("vmdk", path, 44, "%d grain table entries per table (at most 512)", h.gtEntries)
	}
	if h.capacity > vmdkMaxSectors {
		return corruptf("vmdk", path, 12, "capacity of %d sectors is absurd", h.capacity)
	}
	if h.flags&vmdkFlagCompress != 0 {
		if h.algo != 1 {
			return unsupportedf("vmdk", path, "compression algorithm %d", h.algo)
		}
	} else if h.algo != 0 {
		return unsupportedf("vmdk", path, "compression algorithm %d without the compressed flag", h.algo)
	}
	return nil
}

// vmdkReadHosted decodes the header hdr of a hosted sparse extent of size
// bytes; a stream-optimized extent written as a stream keeps the real
// header in a footer, the second-to-last sector.
func vmdkReadHosted(f *os.File, path string, size int64, hdr []byte) (h vmdkHostedHeader, gdAtEnd bool, err error) {
	h = vmdkDecodeHosted(hdr)
	if h.gd != vmdkGDAtEnd {
		return h, false, nil
	}
	if size < 1536 {
		return h, false, corruptf("vmdk", path, -1, "grain directory at the end, but the file is too short for a footer")
	}
	foot := make([]byte, 512)
	if err := readFullAt(f, foot, size-1024, "vmdk", path); err != nil {
		return h, false, err
	}
	ft := vmdkDecodeHosted(foot)
	if ft.magic != "KDMV" || ft.gd == vmdkGDAtEnd {
		return h, false, corruptf("vmdk", path, size-1024, "grain directory at the end, but no valid footer")
	}
	// The descriptor location stays the header's.
	ft.descOff, ft.descSize = h.descOff, h.descSize
	return ft, true, nil
}

func vmdkOpenHosted(f *os.File, path string, size int64, hdr []byte) (*vmdkSparse, error) {
	s := &vmdkSparse{kind: vmdkHosted, f: f, path: path, entrySize: 4}
	s.fileSize.Store(size)
	h, gdAtEnd, err := vmdkReadHosted(f, path, size, hdr)
	if err != nil {
		return nil, err
	}
	if err := h.validate(path); err != nil {
		return nil, err
	}
	s.gdAtEnd = gdAtEnd
	s.version, s.flags, s.gtEntries, s.unclean = h.version, h.flags, h.gtEntries, h.unclean
	s.descOff, s.descSize = h.descOff*512, h.descSize*512
	s.grainSize = int64(h.grain) * 512
	s.capacity = int64(h.capacity) * 512
	s.gdEntries = (s.capacity + s.gtEntries*s.grainSize - 1) / (s.gtEntries * s.grainSize)
	s.compress = s.flags&vmdkFlagCompress != 0
	s.markers = s.compress && s.flags&vmdkFlagMarkers != 0
	s.zeroGTE = s.flags&vmdkFlagZeroGTE != 0
	gdBytes := s.gdEntries * 4
	gd, rgd := h.gd, h.rgd
	okGD := gd != 0 && gd <= uint64(size)/512 && int64(gd)*512+gdBytes <= size
	okRGD := s.flags&vmdkFlagRGD != 0 && rgd != 0 && rgd <= uint64(size)/512 && int64(rgd)*512+gdBytes <= size
	switch {
	case okGD:
		s.gdOff = int64(gd) * 512
		if okRGD {
			s.rgdOff = int64(rgd) * 512
		}
	case okRGD: // the primary directory is out of the file: use the redundant one
		s.gdOff = int64(rgd) * 512
	default:
		return nil, s.errf(56, "grain directory at sector %d (%d entries) is outside the %d-byte file", gd, s.gdEntries, size)
	}
	if err := s.init(); err != nil {
		return nil, err
	}
	if h.overhead > uint64(size)/512 {
		return nil, &vmdkTruncated{s.errf(64, "file truncated: %d bytes, header says metadata alone takes %d sectors", size, h.overhead)}
	}
	return s, nil
}

// vmdkTruncated marks a hosted sparse file cut short, so the embedded
// descriptor can be checked (and blamed) first.
type vmdkTruncated struct{ err error }

func (e *vmdkTruncated) Error() string { return e.err.Error() }
func (e *vmdkTruncated) Unwrap() error { return e.err }

// vmdkOpenCOWD reads an ESX "COWD" sparse extent header (2048 bytes; the
// grain tables have a fixed 4096 entries).
func vmdkOpenCOWD(f *os.File, path string, size int64) (*vmdkSparse, error) {
	s := &vmdkSparse{kind: vmdkCOWD, f: f, path: path, entrySize: 4, gtEntries: 4096}
	s.fileSize.Store(size)
	hdr := make([]byte, 2048)
	if err := readFullAt(f, hdr, 0, "vmdk", path); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if string(hdr[:4]) != "COWD" {
		return nil, s.errf(0, "not a COWD extent")
	}
	s.version = le.Uint32(hdr[4:])
	s.flags = le.Uint32(hdr[8:])
	capacity := int64(le.Uint32(hdr[12:]))
	grain := int64(le.Uint32(hdr[16:]))
	gd := int64(le.Uint32(hdr[20:]))
	s.gdEntries = int64(le.Uint32(hdr[24:]))
	s.unclean = le.Uint32(hdr[1648:]) != 0
	if grain == 0 || grain*512 > vmdkMaxGrain {
		return nil, s.errf(16, "grain size %d sectors out of range", grain)
	}
	s.grainSize = grain * 512
	s.capacity = capacity * 512
	if (s.capacity+s.gtEntries*s.grainSize-1)/(s.gtEntries*s.grainSize) > s.gdEntries {
		return nil, s.errf(24, "%d grain directory entries cannot map %d sectors", s.gdEntries, capacity)
	}
	if gd == 0 || gd*512+s.gdEntries*4 > size {
		return nil, s.errf(20, "grain directory at sector %d is outside the %d-byte file", gd, size)
	}
	s.gdOff = gd * 512
	if err := s.init(); err != nil {
		return nil, err
	}
	return s, nil
}

// vmdkOpenSESparse reads an ESXi seSparse extent: a 512-byte constant
// header, a volatile header, 64-bit GD/GT entries, 4 KiB grains, 4096-entry
// tables (the only values qemu, the reference reader, accepts).
func vmdkOpenSESparse(f *os.File, path string, size int64) (*vmdkSparse, error) {
	s := &vmdkSparse{kind: vmdkSESparse, f: f, path: path, entrySize: 8}
	s.fileSize.Store(size)
	h := make([]byte, 512)
	if err := readFullAt(f, h, 0, "vmdk", path); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	u := func(i int) uint64 { return le.Uint64(h[8*i:]) }
	if u(0) != vmdkSEConstMagic {
		return nil, s.errf(0, "not a seSparse extent (magic %#x)", u(0))
	}
	if u(1) != 0x0000000200000001 {
		return nil, unsupportedf("vmdk", path, "seSparse version %#x", u(1))
	}
	if u(3) != 8 || u(4) != 64 {
		return nil, unsupportedf("vmdk", path, "seSparse grain size %d / grain table size %d sectors", u(3), u(4))
	}
	if u(5) != 0 {
		return nil, unsupportedf("vmdk", path, "seSparse flags %#x", u(5))
	}
	if u(2) > vmdkMaxSectors {
		return nil, s.errf(16, "capacity of %d sectors is absurd", u(2))
	}
	s.capacity = int64(u(2)) * 512
	s.grainSize = 4096
	s.gtEntries = 64 * 512 / 8
	// Volatile header: a journal to replay means the tables are not current.
	vo := u(10)
	if vo == 0 || vo > uint64(size)/512-1 {
		return nil, s.errf(80, "seSparse volatile header at sector %d is outside the file", vo)
	}
	v := make([]byte, 512)
	if err := readFullAt(f, v, int64(vo)*512, "vmdk", path); err != nil {
		return nil, err
	}
	if le.Uint64(v) != vmdkSEVolMagic {
		return nil, s.errf(int64(vo)*512, "bad seSparse volatile header magic %#x", le.Uint64(v))
	}
	if le.Uint64(v[24:]) != 0 {
		return nil, unsupportedf("vmdk", path, "seSparse journal needs replaying (image not closed cleanly)")
	}
	gdOff, gdSize, gtOff, grOff := u(16), u(17), u(18), u(24)
	lim := uint64(size) / 512
	if gdOff == 0 || gdOff > lim || gdSize > lim || gtOff > lim || grOff > lim {
		return nil, s.errf(128, "seSparse tables outside the %d-byte file", size)
	}
	s.gdOff = int64(gdOff) * 512
	s.gdEntries = int64(gdSize) * 512 / 8
	if (s.capacity+s.gtEntries*s.grainSize-1)/(s.gtEntries*s.grainSize) > s.gdEntries {
		return nil, s.errf(136, "grain directory of %d entries cannot map the capacity", s.gdEntries)
	}
	if s.gdOff+s.gdEntries*8 > size {
		return nil, s.errf(128, "seSparse grain directory runs past the end of the file")
	}
	s.seGTOff = int64(gtOff) * 512
	s.seGrOff = int64(grOff) * 512
	if err := s.init(); err != nil {
		return nil, err
	}
	return s, nil
}

// validGT reports whether a GT at off fits in the file.
func (s *vmdkSparse) validGT(off int64) bool {
	return off >= 512 && off+s.gtBytes() <= s.fileSize.Load()
}

// decodeGD turns one GD entry into a GT file offset (0: none, -1: invalid).
func (s *vmdkSparse) decodeGD(b []byte) int64 {
	if s.kind == vmdkSESparse {
		v := binary.LittleEndian.Uint64(b)
		if v == 0 {
			return 0
		}
		if v>>32 != 0x10000000 {
			return -1
		}
		off := s.seGTOff + int64(v&0xffffffff)*s.gtBytes()
		if !s.validGT(off) {
			return -1
		}
		return off
	}
	v := int64(binary.LittleEndian.Uint32(b))
	if v == 0 {
		return 0
	}
	if !s.validGT(v * 512) {
		return -1
	}
	return v * 512
}

func (s *vmdkSparse) loadGDPiece(p int64) (*vmdkGDPieceT, error) {
	first := p * vmdkGDPiece
	n := min(vmdkGDPiece, s.gdEntries-first)
	es := s.entrySize
	buf := make([]byte, n*es)
	if err := readFullAt(s.f, buf, s.gdOff+first*es, "vmdk", s.path); err != nil {
		return nil, err
	}
	var rbuf []byte
	if s.rgdOff != 0 {
		rbuf = make([]byte, n*es)
		if err := readFullAt(s.f, rbuf, s.rgdOff+first*es, "vmdk", s.path); err != nil {
			return nil, err
		}
	}
	pc := &vmdkGDPieceT{gt: make([]int64, n)}
	if rbuf != nil {
		pc.rgt = make([]int64, n)
	}
	for i := int64(0); i < n; i++ {
		a := s.decodeGD(buf[i*es:])
		b := int64(0)
		if rbuf != nil {
			b = s.decodeGD(rbuf[i*es:])
		}
		switch {
		case a > 0:
		case b > 0: // primary entry damaged or lost: the redundant one is good
			a, b = b, 0
		case a == 0 || b == 0:
			a, b = 0, 0
		default:
			return nil, s.errf(s.gdOff+(first+i)*es, "grain directory entry %d points outside the file", first+i)
		}
		pc.gt[i] = a
		if rbuf != nil {
			pc.rgt[i] = max(b, 0)
		}
	}
	return pc, nil
}

// gtOffsets returns the file offsets of grain table gti (primary and
// redundant; 0 when absent).
func (s *vmdkSparse) gtOffsets(gti int64) (int64, int64, error) {
	p := gti / vmdkGDPiece
	s.mu.RLock()
	pc := s.gd[p]
	if pc != nil {
		a, b := pc.gt[gti%vmdkGDPiece], int64(0)
		if pc.rgt != nil {
			b = pc.rgt[gti%vmdkGDPiece]
		}
		s.mu.RUnlock()
		return a, b, nil
	}
	s.mu.RUnlock()
	pc, err := s.loadGDPiece(p)
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	if s.gd[p] == nil {
		s.gd[p] = pc
	}
	pc = s.gd[p]
	a, b := pc.gt[gti%vmdkGDPiece], int64(0)
	if pc.rgt != nil {
		b = pc.rgt[gti%vmdkGDPiece]
	}
	s.mu.Unlock()
	return a, b, nil
}

// entry returns raw GT entry i of the table at file offset gtOff.
func (s *vmdkSparse) entry(gtOff, i int64) (uint64, error) {
	s.mu.RLock()
	if t, ok := s.gts.Get(gtOff); ok {
		v := s.rawEntry(t, i)
		s.mu.RUnlock()
		return v, nil
	}
	gen := s.gen
	s.mu.RUnlock()
	t := make([]byte, s.gtBytes())
	if err := readFullAt(s.f, t, gtOff, "vmdk", s.path); err != nil {
		return 0, err
	}
	s.mu.Lock()
	if cur, ok := s.gts.Get(gtOff); ok {
		t = cur
	} else if gen == s.gen {
		s.gts.Put(gtOff, t)
	}
	v := s.rawEntry(t, i)
	s.mu.Unlock()
	return v, nil
}

func (s *vmdkSparse) rawEntry(t []byte, i int64) uint64 {
	if s.entrySize == 8 {
		return binary.LittleEndian.Uint64(t[i*8:])
	}
	return uint64(binary.LittleEndian.Uint32(t[i*4:]))
}

// decodeGT turns a GT entry into a grain state and file offset; ok is
// false for an entry that cannot be right.
func (s *vmdkSparse) decodeGT(v uint64) (state int, off int64, ok bool) {
	size := s.fileSize.Load()
	if s.kind == vmdkSESparse {
		switch v >> 60 {
		case 0:
			return vmdkUnalloc, 0, v == 0
		case 1, 2: // unmapped, zero
			return vmdkZeroed, 0, true
		case 3:
			c := int64((v&0x0fff000000000000)>>48 | (v&0x0000ffffffffffff)<<12)
			if c > size/s.grainSize {
				return 0, 0, false
			}
			off = s.seGrOff + c*s.grainSize
			return vmdkData, off, off < size
		}
		return 0, 0, false
	}
	switch {
	case v == 0:
		return vmdkUnalloc, 0, true
	case v == 1 && s.zeroGTE:
		return vmdkZeroed, 0, true
	}
	off = int64(v) * 512
	if s.compress {
		return vmdkCompressed, off, off+12 <= size
	}
	return vmdkData, off, off < size
}

// lookup finds grain g.
func (s *vmdkSparse) lookup(g int64) (int, int64, error) {
	gti, i := g/s.gtEntries, g%s.gtEntries
	if gti >= s.gdEntries {
		return vmdkUnalloc, 0, nil
	}
	gt, rgt, err := s.gtOffsets(gti)
	if err != nil || gt == 0 {
		return vmdkUnalloc, 0, err
	}
	v, err := s.entry(gt, i)
	if err != nil {
		return 0, 0, err
	}
	st, off, ok := s.decodeGT(v)
	if !ok && rgt != 0 { // damaged primary table: try the redundant copy
		if v, err = s.entry(rgt, i); err != nil {
			return 0, 0, err
		}
		st, off, ok = s.decodeGT(v)
	}
	if !ok {
		return 0, 0, s.errf(gt+i*s.entrySize, "grain table entry %#x for grain %d is invalid", v, g)
	}
	return st, off, nil
}

// readAt fills p from extent offset off. Unallocated ranges read from
// parent at virtual offset vbase+off (zeros without a parent).
func (s *vmdkSparse) readAt(p []byte, off int64, parent Disk, vbase int64) error {
	for len(p) > 0 {
		if off >= s.capacity {
			return readParent(parent, p, vbase+off)
		}
		g, in := off/s.grainSize, off%s.grainSize
		n := min(int64(len(p)), s.grainSize-in, s.capacity-off)
		st, foff, err := s.lookup(g)
		if err != nil {
			return err
		}
		if st == vmdkCompressed {
			data, err := s.grain(foff)
			if err != nil {
				return err
			}
			copy(p[:n], data[in:])
			p, off = p[n:], off+n
			continue
		}
		// Extend the run while the next grains continue it.
		for int64(len(p)) > n && off+n < s.capacity {
			st2, foff2, err := s.lookup(g + (in+n)/s.grainSize)
			if err != nil {
				return err
			}
			if st2 != st || (st == vmdkData && foff2 != foff+in+n) {
				break
			}
			n = min(int64(len(p)), n+s.grainSize, s.capacity-off)
		}
		switch st {
		case vmdkData:
			if err := vmdkPread(s.f, p[:n], foff+in, s.path); err != nil {
				return err
			}
		case vmdkZeroed:
			clear(p[:n])
		default:
			if err := readParent(parent, p[:n], vbase+off); err != nil {
				return err
			}
		}
		p, off = p[n:], off+n
	}
	return nil
}

// vmdkPread reads p at off; bytes past the end of the file read as zeros
// (a grain at the very end may be short, as qemu reads it).
func vmdkPread(f *os.File, p []byte, off int64, path string) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		clear(p[n:])
		return nil
	}
	return fmt.Errorf("vmdk: %s: read at %#x: %w", path, off, err)
}

// grain returns the decompressed grain whose marker (or data) is at off.
func (s *vmdkSparse) grain(off int64) ([]byte, error) {
	if g, ok := s.grains.Get(off); ok {
		return g, nil
	}
	size := s.fileSize.Load()
	var data []byte
	if s.markers {
		var h [12]byte
		if err := readFullAt(s.f, h[:], off, "vmdk", s.path); err != nil {
			return nil, err
		}
		n := int64(binary.LittleEndian.Uint32(h[8:]))
		if n == 0 || n > 2*s.grainSize+1024 || off+12+n > size {
			return nil, s.errf(off, "compressed grain of %d bytes is invalid", n)
		}
		data = make([]byte, n)
		if err := readFullAt(s.f, data, off+12, "vmdk", s.path); err != nil {
			return nil, err
		}
	} else {
		n := min(2*s.grainSize, size-off)
		data = make([]byte, n)
		if err := readFullAt(s.f, data, off, "vmdk", s.path); err != nil {
			return nil, err
		}
	}
	out := make([]byte, s.grainSize)
	var zr io.ReadCloser
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if errors.Is(err, zlib.ErrHeader) { // raw deflate, as the spec's wording allows
		zr, err = flate.NewReader(bytes.NewReader(data)), nil
	}
	if err != nil {
		return nil, s.errf(off, "compressed grain: %v", err)
	}
	if _, err := io.ReadFull(zr, out); err != nil && err != io.ErrUnexpectedEOF {
		return nil, s.errf(off, "compressed grain: %v", err)
	}
	s.grains.Put(off, out)
	return out, nil
}

// writable reports why the extent cannot be written ("" when it can).
func (s *vmdkSparse) readOnlyReason() string {
	switch {
	case s.kind == vmdkCOWD:
		return "vmfsSparse (COWD) extents are read-only"
	case s.kind == vmdkSESparse:
		return "seSparse extents are read-only"
	case s.compress:
		return "streamOptimized (compressed) extents are read-only"
	case s.version == 3:
		return "sparse extent version 3 (changed block tracking) is read-only"
	case s.gdAtEnd:
		return "grain directory at the end of the extent"
	}
	return ""
}

// writeAt writes p at extent offset off. Grains not yet stored are
// allocated at the end of the file, filled from the parent (or zeros).
func (s *vmdkSparse) writeAt(p []byte, off int64, parent Disk, vbase int64) error {
	for len(p) > 0 {
		if off >= s.capacity {
			return s.errf(-1, "write at %d past the extent's capacity %d", off, s.capacity)
		}
		g, in := off/s.grainSize, off%s.grainSize
		n := min(int64(len(p)), s.grainSize-in, s.capacity-off)
		st, foff, err := s.lookup(g)
		if err != nil {
			return err
		}
		if st == vmdkData {
			// Extend over following grains stored right after this one.
			for int64(len(p)) > n && off+n < s.capacity {
				st2, foff2, err := s.lookup(g + (in+n)/s.grainSize)
				if err != nil {
					return err
				}
				if st2 != vmdkData || foff2 != foff+in+n {
					break
				}
				n = min(int64(len(p)), n+s.grainSize, s.capacity-off)
			}
			if err := s.checkData(foff+in, n); err != nil {
				return err
			}
			if err := writeFullAt(s.f, p[:n], foff+in, "vmdk", s.path); err != nil {
				return err
			}
		} else if err := s.allocate(g, in, p[:n], st, parent, vbase+g*s.grainSize); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (s *vmdkSparse) allocate(g, in int64, chunk []byte, st int, parent Disk, vgrain int64) error {
	if isZero(chunk) && (st == vmdkZeroed || parent == nil) {
		return nil // already reads as zeros
	}
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	st, foff, err := s.lookup(g)
	if err != nil {
		return err
	}
	if st == vmdkData { // a concurrent writer allocated it meanwhile
		if err := s.checkData(foff+in, int64(len(chunk))); err != nil {
			return err
		}
		return writeFullAt(s.f, chunk, foff+in, "vmdk", s.path)
	}
	buf := make([]byte, s.grainSize)
	if st == vmdkUnalloc && parent != nil && int64(len(chunk)) < s.grainSize {
		if _, err := parent.ReadAt(buf, vgrain); err != nil {
			return err
		}
	}
	copy(buf[in:], chunk)
	gti, i := g/s.gtEntries, g%s.gtEntries
	gt, rgt, err := s.gtOffsets(gti)
	if err != nil {
		return err
	}
	if gt == 0 {
		if gt, rgt, err = s.newGT(gti); err != nil {
			return err
		}
	}
	goff := roundUp(s.next, s.grainSize)
	if (goff+s.grainSize)/512 > 0xffffffff {
		return fmt.Errorf("vmdk: %s: sparse extent full (2 TiB of grains): %w", s.path, ErrUnsupported)
	}
	if err := writeFullAt(s.f, buf, goff, "vmdk", s.path); err != nil {
		return err
	}
	s.next = goff + s.grainSize
	s.fileSize.Store(max(s.fileSize.Load(), s.next))
	// Data first, then the tables that point to it.
	var e [4]byte
	binary.LittleEndian.PutUint32(e[:], uint32(goff/512))
	for _, t := range []int64{rgt, gt} {
		if t == 0 {
			continue
		}
		if err := writeFullAt(s.f, e[:], t+i*4, "vmdk", s.path); err != nil {
			return err
		}
	}
	s.mu.Lock()
	for _, t := range []int64{gt, rgt} {
		if c, ok := s.gts.Get(t); ok && t != 0 {
			copy(c[i*4:], e[:])
		}
	}
	s.gen++
	s.mu.Unlock()
	return nil
}

// newGT allocates grain table gti (and its redundant copy) at the end of
// the file and links it from the directories. Called with allocMu held.
func (s *vmdkSparse) newGT(gti int64) (int64, int64, error) {
	tb := roundUp(s.gtBytes(), 512)
	zero := make([]byte, tb)
	gt := s.next
	rgt := int64(0)
	if s.rgdOff != 0 {
		rgt = gt + tb
	}
	end := gt + tb
	if rgt != 0 {
		end += tb
	}
	if end/512 > 0xffffffff {
		return 0, 0, fmt.Errorf("vmdk: %s: sparse extent full: %w", s.path, ErrUnsupported)
	}
	for _, t := range []int64{gt, rgt} {
		if t == 0 {
			continue
		}
		if err := writeFullAt(s.f, zero, t, "vmdk", s.path); err != nil {
			return 0, 0, err
		}
	}
	s.next = end
	s.fileSize.Store(max(s.fileSize.Load(), end))
	s.meta.add("grain table", gt, tb)
	s.meta.add("redundant grain table", rgt, tb)
	var e [4]byte
	for _, d := range [][2]int64{{s.rgdOff, rgt}, {s.gdOff, gt}} {
		if d[0] == 0 {
			continue
		}
		binary.LittleEndian.PutUint32(e[:], uint32(d[1]/512))
		if err := writeFullAt(s.f, e[:], d[0]+gti*4, "vmdk", s.path); err != nil {
			return 0, 0, err
		}
	}
	s.mu.Lock()
	pc := s.gd[gti/vmdkGDPiece] // loaded by the gtOffsets call before
	pc.gt[gti%vmdkGDPiece] = gt
	if pc.rgt != nil {
		pc.rgt[gti%vmdkGDPiece] = rgt
	}
	s.gen++
	s.mu.Unlock()
	return gt, rgt, nil
}

// mapAt reports the state of the range at extent offset off.
func (s *vmdkSparse) mapAt(off, length int64) (int, int64, error) {
	if off >= s.capacity {
		return vmdkUnalloc, length, nil
	}
	g, in := off/s.grainSize, off%s.grainSize
	n := min(length, s.grainSize-in, s.capacity-off)
	st, _, err := s.lookup(g)
	if err != nil {
		return 0, 0, err
	}
	if st == vmdkCompressed {
		st = vmdkData
	}
	for steps := 0; n < length && off+n < s.capacity && steps < mapMaxSteps; steps++ {
		st2, _, err := s.lookup(g + (in+n)/s.grainSize)
		if err != nil {
			return 0, 0, err
		}
		if st2 == vmdkCompressed {
			st2 = vmdkData
		}
		if st2 != st {
			break
		}
		n = min(length, n+s.grainSize, s.capacity-off)
	}
	return st, n, nil
}
