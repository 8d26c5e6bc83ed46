package formats

import (
	"bytes"
	"compress/bzip2"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Apple UDIF disk images (.dmg), read-only.
//
// Layout (big-endian): a 512-byte "koly" trailer at the very end of the
// file gives the data fork (the chunk data), and the block tables either
// in an XML property list (resource-fork -> blkx -> Data) or, in older
// images, in a classic Mac resource fork holding 'blkx' resources. Each
// block table ("mish") covers a range of sectors of the disk with chunks:
// zero-fill, raw, ignored (zeros) or compressed (ADC, zlib, bzip2, LZFSE,
// LZMA). Chunk sector numbers are relative to their table's first sector;
// chunk data offsets are relative to the data fork (plus the table's own
// DataOffset, as qemu reads them). The virtual size is the trailer's
// SectorCount x 512.

func init() {
	register(format{name: "dmg", order: orderTail, probe: dmgProbe, open: dmgOpen})
}

const (
	dmgKolySize = 512
	dmgMishSize = 204 // fixed part of a block table, before its chunks
	dmgChunkLen = 40

	dmgZero       = 0x00000000
	dmgRaw        = 0x00000001
	dmgIgnore     = 0x00000002
	dmgADC        = 0x80000004
	dmgZlib       = 0x80000005
	dmgBzip2      = 0x80000006
	dmgLZFSE      = 0x80000007
	dmgLZMA       = 0x80000008
	dmgComment    = 0x7ffffffe
	dmgTerminator = 0xffffffff

	dmgMaxChunkBytes = 64 << 20  // decompressed size of one compressed chunk
	dmgMaxTableBytes = 256 << 20 // XML plist or resource fork
	dmgMaxChunks     = 1 << 24
	dmgMaxSectors    = 1 << 50 // 512 PiB: keeps sector arithmetic far from overflow
	dmgCacheBudget   = 8 << 20 // decompressed chunks kept: a 1 MiB chunk serves eight 128 KiB requests
)

// dmgProbe claims files with a koly trailer, and encrypted images (whose
// trailer is encrypted) so that they fail with a clear message instead of
// being read as raw data.
func dmgProbe(pd *ProbeData) bool {
	if pd.IsDir {
		return false
	}
	if bytes.HasPrefix(pd.Head, []byte("encrcdsa")) || bytes.HasSuffix(pd.Tail, []byte("cdsaencr")) {
		return true
	}
	_, found := dmgFindKoly(pd.Tail, pd.Size)
	return found
}

// dmgKolySearch is how far from the end a koly trailer is looked for: it
// belongs in the last 512 bytes, but like qemu vdflat accepts up to 511
// bytes of padding after it, and recognises a trailer cut short by
// truncation so that the error says so.
const dmgKolySearch = 2*dmgKolySize - 1

// dmgFindKoly finds the koly trailer in tail, the last bytes of a file of
// size bytes, and returns its file offset (it may run past the end of a
// truncated file).
func dmgFindKoly(tail []byte, size int64) (int64, bool) {
	base := size - int64(len(tail))
	// A trailer cut short may keep only its magic: check what is there.
	valid := func(i int) bool {
		k := tail[i:]
		return string(k[:4]) == "koly" &&
			(len(k) < 8 || binary.BigEndian.Uint32(k[4:]) == 4) &&
			(len(k) < 12 || binary.BigEndian.Uint32(k[8:]) == dmgKolySize)
	}
	if i := len(tail) - dmgKolySize; i >= 0 && string(tail[i:i+4]) == "koly" && binary.BigEndian.Uint32(tail[i+8:]) == dmgKolySize {
		return base + int64(i), true
	}
	for i := len(tail) - 4; i >= 0 && i >= len(tail)-dmgKolySearch; i-- {
		if valid(i) {
			return base + int64(i), true
		}
	}
	return 0, false
}

// dmgChunk is one stored chunk, in bytes of the virtual disk and the file.
type dmgChunk struct {
	vOff, vLen int64 // virtual range
	fOff, fLen int64 // stored (compressed) data
	typ        uint32
}

func (c *dmgChunk) vEnd() int64 { return c.vOff + c.vLen }

type dmgDisk struct {
	readOnlyFormat
	f     *os.File
	path  string
	size  int64
	data  []dmgChunk // stored chunks, sorted, non-overlapping; the rest reads as zeros
	info  Info
	cache *lru[int, []byte]

	mu       sync.Mutex
	inflight map[int]*dmgFlight // chunks being decompressed, so each is done once
}

// dmgFlight is one decompression that concurrent readers of the same
// chunk wait for.
type dmgFlight struct {
	done chan struct{}
	buf  []byte
	err  error
}

// dmgKoly holds the trailer fields vdflat uses.
type dmgKoly struct {
	version, flags               uint32
	dataOff, dataLen             uint64
	rsrcOff, rsrcLen             uint64
	segNum, segCount             uint32
	xmlOff, xmlLen               uint64
	dataCksumType, mainCksumType uint32
	variant                      uint32
	sectors                      uint64
}

func dmgParseKoly(b []byte) dmgKoly {
	be := binary.BigEndian
	return dmgKoly{
		version: be.Uint32(b[4:]), flags: be.Uint32(b[12:]),
		dataOff: be.Uint64(b[24:]), dataLen: be.Uint64(b[32:]),
		rsrcOff: be.Uint64(b[40:]), rsrcLen: be.Uint64(b[48:]),
		segNum: be.Uint32(b[56:]), segCount: be.Uint32(b[60:]),
		dataCksumType: be.Uint32(b[80:]),
		xmlOff:        be.Uint64(b[216:]), xmlLen: be.Uint64(b[224:]),
		mainCksumType: be.Uint32(b[352:]),
		variant:       be.Uint32(b[488:]), sectors: be.Uint64(b[492:]),
	}
}

// dmgBlkx is one block table with the name the image gives it.
type dmgBlkx struct {
	name string
	data []byte
	off  int64 // file offset of the table's container, for messages
}

func dmgOpen(path string, opt Options) (Disk, error) {
	f, err := OpenImageFile(path, false) // the format is read-only whatever opt says
	if err != nil {
		return nil, err
	}
	d, err := dmgLoad(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func dmgLoad(f *os.File, path string) (*dmgDisk, error) {
	fsize, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("dmg: %s: %w", path, err)
	}
	if err := dmgRefuseEncrypted(f, fsize, path); err != nil {
		return nil, err
	}
	k, kolyOff, warnings, err := dmgReadKoly(f, fsize, path)
	if err != nil {
		return nil, err
	}
	tables, source, err := dmgReadTables(f, k, kolyOff, path)
	if err != nil {
		return nil, err
	}
	d := &dmgDisk{f: f, path: path, inflight: make(map[int]*dmgFlight)}
	typeSectors := map[uint32]int64{} // sectors per chunk type, for the variant
	sizeCount := map[int64]int{}      // compressed chunk sizes, for ClusterSize
	var maxEnd int64
	meta := map[string]string{}
	for ti, t := range tables {
		if t.name != "" {
			meta[fmt.Sprintf("partition.%d", ti)] = t.name
		}
		end, err := d.addTable(t, k, uint64(kolyOff), typeSectors, sizeCount)
		if err != nil {
			return nil, err
		}
		maxEnd = max(maxEnd, end)
	}
	d.size = int64(k.sectors) * SectorSize
	if k.sectors == 0 { // old images leave it unset
		d.size = maxEnd
	}
	if err := d.mergeChunks(); err != nil {
		return nil, err
	}
	maxChunk := int64(SectorSize)
	for _, c := range d.data {
		if c.typ != dmgRaw {
			maxChunk = max(maxChunk, c.vLen)
		}
	}
	d.cache = newLRU[int, []byte](int(min(64, max(2, dmgCacheBudget/maxChunk))))
	d.info = d.makeInfo(k, source, typeSectors, sizeCount, meta)
	d.info.Warnings = warnings
	return d, nil
}

// dmgRefuseEncrypted names the two encrypted containers, which have no
// koly trailer to find.
func dmgRefuseEncrypted(f *os.File, fsize int64, path string) error {
	if fsize < 8 {
		return nil
	}
	var head, tail [8]byte
	if err := readFullAt(f, head[:], 0, "dmg", path); err != nil {
		return err
	}
	if string(head[:]) == "encrcdsa" {
		return unsupportedf("dmg", path, "encrypted disk image (encrcdsa, version 2): decrypt it first (hdiutil convert)")
	}
	if err := readFullAt(f, tail[:], fsize-8, "dmg", path); err != nil {
		return err
	}
	if string(tail[:]) == "cdsaencr" {
		return unsupportedf("dmg", path, "encrypted disk image (cdsaencr, version 1): decrypt it first (hdiutil convert)")
	}
	return nil
}

// dmgReadKoly finds the koly trailer near the end of the file, decodes
// and validates it, and returns it with its offset.
func dmgReadKoly(f *os.File, fsize int64, path string) (k dmgKoly, kolyOff int64, warnings []string, err error) {
	tail := make([]byte, min(fsize, dmgKolySearch))
	if err := readFullAt(f, tail, fsize-int64(len(tail)), "dmg", path); err != nil {
		return k, 0, nil, err
	}
	kolyOff, found := dmgFindKoly(tail, fsize)
	if !found {
		return k, 0, nil, corruptf("dmg", path, -1, "no koly trailer in the last %d bytes", len(tail))
	}
	if kolyOff+dmgKolySize > fsize {
		return k, 0, nil, corruptf("dmg", path, kolyOff, "file truncated: koly trailer cut short by %d bytes", kolyOff+dmgKolySize-fsize)
	}
	if pad := fsize - kolyOff - dmgKolySize; pad > 0 {
		warnings = append(warnings, fmt.Sprintf("%d bytes after the koly trailer ignored", pad))
	}
	k = dmgParseKoly(tail[kolyOff-(fsize-int64(len(tail))):][:dmgKolySize])
	if err := k.validate(kolyOff, path); err != nil {
		return k, 0, nil, err
	}
	return k, kolyOff, warnings, nil
}

// inFile reports whether n bytes at off lie before the trailer at kolyOff.
func (k *dmgKoly) inFile(off, n uint64, kolyOff int64) bool {
	return off <= uint64(kolyOff) && n <= uint64(kolyOff)-off
}

// validate checks the trailer at kolyOff: one segment, a data fork in the
// file, a sector count within bounds.
func (k *dmgKoly) validate(kolyOff int64, path string) error {
	if k.version != 4 { // every UDIF image says 4; anything else is damage
		return corruptf("dmg", path, kolyOff+4, "koly trailer version %d (want 4)", k.version)
	}
	if k.segCount > 1 {
		return unsupportedf("dmg", path, "segmented image (segment %d of %d)", k.segNum, k.segCount)
	}
	if !k.inFile(k.dataOff, k.dataLen, kolyOff) {
		return corruptf("dmg", path, kolyOff+24, "data fork (offset %d, length %d) outside the file", k.dataOff, k.dataLen)
	}
	if k.sectors > dmgMaxSectors {
		return corruptf("dmg", path, kolyOff+492, "sector count %d too large", k.sectors)
	}
	return nil
}

// dmgReadTables reads the block tables from the XML plist or, in older
// images, the resource fork; source names which.
func dmgReadTables(f *os.File, k dmgKoly, kolyOff int64, path string) (tables []dmgBlkx, source string, err error) {
	var off, n uint64
	var kolyField int64 // where the trailer records off, for messages
	var what string
	var parse func([]byte, int64) ([]dmgBlkx, error)
	switch {
	case k.xmlLen > 0:
		off, n, kolyField, parse, source, what = k.xmlOff, k.xmlLen, 216, dmgParsePlist, "xml-plist", "XML plist"
	case k.rsrcLen > 0:
		off, n, kolyField, parse, source, what = k.rsrcOff, k.rsrcLen, 40, dmgParseRsrc, "resource-fork", "resource fork"
	default:
		return nil, "", unsupportedf("dmg", path, "image without block tables (no XML plist, no resource fork)")
	}
	if !k.inFile(off, n, kolyOff) || n > dmgMaxTableBytes {
		return nil, "", corruptf("dmg", path, kolyOff+kolyField, "%s (offset %d, length %d) outside the file or too large", what, off, n)
	}
	b := make([]byte, n)
	if err := readFullAt(f, b, int64(off), "dmg", path); err != nil {
		return nil, "", err
	}
	if tables, err = parse(b, int64(off)); err != nil {
		return nil, "", corruptf("dmg", path, int64(off), "%s: %v", what, err)
	}
	if len(tables) == 0 {
		return nil, "", corruptf("dmg", path, -1, "no blkx block tables in the %s", source)
	}
	return tables, source, nil
}

// mergeChunks sorts the stored chunks, checks that they lie in the disk
// without overlapping, and joins raw chunks stored back to back.
func (d *dmgDisk) mergeChunks() error {
	sort.Slice(d.data, func(i, j int) bool { return d.data[i].vOff < d.data[j].vOff })
	var merged []dmgChunk
	for _, c := range d.data {
		if c.vEnd() > d.size {
			return corruptf("dmg", d.path, -1, "chunk at sector %d (%d sectors) runs past the disk size of %d sectors", c.vOff/SectorSize, c.vLen/SectorSize, d.size/SectorSize)
		}
		if n := len(merged); n > 0 {
			p := &merged[n-1]
			if c.vOff < p.vEnd() {
				return corruptf("dmg", d.path, -1, "chunks overlap at sector %d", c.vOff/SectorSize)
			}
			// Adjacent raw chunks stored back to back are one pread.
			if p.typ == dmgRaw && c.typ == dmgRaw && p.vEnd() == c.vOff && p.fOff+p.vLen == c.fOff && p.fLen == p.vLen {
				p.vLen += c.vLen
				p.fLen += c.fLen
				continue
			}
		}
		merged = append(merged, c)
	}
	d.data = merged
	return nil
}

// addTable adds one mish block table's stored chunks and returns the end
// of the table's range in bytes.
func (d *dmgDisk) addTable(t dmgBlkx, k dmgKoly, kolyOff uint64, typeSectors map[uint32]int64, sizeCount map[int64]int) (int64, error) {
	b := t.data
	bad := func(msg string, a ...any) error {
		return corruptf("dmg", d.path, t.off, "block table %q: %s", t.name, fmt.Sprintf(msg, a...))
	}
	if len(b) < dmgMishSize || string(b[:4]) != "mish" {
		return 0, bad("no mish header")
	}
	be := binary.BigEndian
	first, count := be.Uint64(b[8:]), be.Uint64(b[16:])
	dataOff := be.Uint64(b[24:])
	n := uint64(be.Uint32(b[200:]))
	if first > dmgMaxSectors || count > dmgMaxSectors {
		return 0, bad("sector range %d+%d too large", first, count)
	}
	if n > uint64(len(b)-dmgMishSize)/dmgChunkLen {
		return 0, bad("%d chunks do not fit in %d bytes", n, len(b))
	}
	if uint64(len(d.data))+n > dmgMaxChunks {
		return 0, bad("more than %d chunks", dmgMaxChunks)
	}
	base := k.dataOff + dataOff // chunk data offsets are relative to this
	end := int64(first+count) * SectorSize
	for i := range n {
		e := b[dmgMishSize+i*dmgChunkLen:]
		typ := be.Uint32(e)
		sec, cnt := be.Uint64(e[8:]), be.Uint64(e[16:])
		off, length := be.Uint64(e[24:]), be.Uint64(e[32:])
		if typ == dmgTerminator {
			break
		}
		if typ == dmgComment {
			continue
		}
		if sec > dmgMaxSectors || cnt > dmgMaxSectors {
			return 0, bad("chunk %d: sector range %d+%d too large", i, sec, cnt)
		}
		c := dmgChunk{typ: typ, vOff: int64(first+sec) * SectorSize, vLen: int64(cnt) * SectorSize}
		end = max(end, c.vEnd())
		typeSectors[typ] += int64(cnt)
		switch typ {
		case dmgZero, dmgIgnore:
			continue // reads as zeros: nothing stored
		case dmgRaw:
			if length < cnt*SectorSize {
				return 0, bad("raw chunk %d: %d bytes stored for %d sectors", i, length, cnt)
			}
		case dmgADC, dmgZlib, dmgBzip2, dmgLZFSE, dmgLZMA:
			if c.vLen > dmgMaxChunkBytes {
				return 0, bad("chunk %d: %d sectors exceed the %d MiB chunk limit", i, cnt, dmgMaxChunkBytes>>20)
			}
			sizeCount[c.vLen]++
		default:
			return 0, unsupportedf("dmg", d.path, "block table %q: chunk %d has unknown type %#08x", t.name, i, typ)
		}
		if cnt == 0 {
			continue
		}
		if base < k.dataOff || off > kolyOff || base > kolyOff-off || length > kolyOff-off-base {
			return 0, bad("chunk %d: data (offset %d, length %d) outside the file", i, off, length)
		}
		c.fOff, c.fLen = int64(base+off), int64(length)
		d.data = append(d.data, c)
	}
	return end, nil
}

var dmgTypeNames = map[uint32]string{
	dmgZero: "zero", dmgRaw: "raw", dmgIgnore: "ignore", dmgADC: "adc", dmgZlib: "zlib",
	dmgBzip2: "bzip2", dmgLZFSE: "lzfse", dmgLZMA: "lzma",
}

// dmgVariants names images by their dominant stored chunk type, as hdiutil
// names its output formats.
var dmgVariants = map[uint32]string{
	dmgRaw: "UDRO", dmgADC: "UDCO", dmgZlib: "UDZO", dmgBzip2: "UDBZ", dmgLZFSE: "ULFO", dmgLZMA: "ULMO",
}

func (d *dmgDisk) makeInfo(k dmgKoly, source string, typeSectors map[uint32]int64, sizeCount map[int64]int, meta map[string]string) Info {
	info := Info{
		Format: "dmg", Path: d.path, Files: []string{d.path}, Size: d.size,
		ReadOnly: true, ReadOnlyReason: "dmg images are read-only in vdflat",
		Variant: "UDIF", Metadata: meta,
	}
	var best int64
	var types []uint32
	for t, n := range typeSectors {
		types = append(types, t)
		if v, ok := dmgVariants[t]; ok && (n > best || n == best && v < info.Variant) {
			best, info.Variant = n, v
		}
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	info.Features = append(info.Features, source)
	for _, t := range types {
		info.Features = append(info.Features, dmgTypeNames[t])
	}
	for size := range sizeCount { // hdiutil's chunk size: the largest chunk
		info.ClusterSize = max(info.ClusterSize, size)
	}
	for _, c := range d.data {
		info.Allocated += c.vLen
	}
	meta["koly.version"] = strconv.FormatUint(uint64(k.version), 10)
	meta["koly.flags"] = fmt.Sprintf("%#x", k.flags)
	if k.variant != 0 {
		meta["koly.image_variant"] = strconv.FormatUint(uint64(k.variant), 10)
	}
	return info
}

func (d *dmgDisk) Size() int64  { return d.size }
func (d *dmgDisk) Info() Info   { return d.info }
func (d *dmgDisk) Close() error { return d.f.Close() }

// find returns the index of the first stored chunk that ends after off.
func (d *dmgDisk) find(off int64) int {
	lo, hi := 0, len(d.data)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.data[m].vEnd() <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (d *dmgDisk) ReadAt(p []byte, off int64) (int, error) {
	return readUnits(p, off, d.size, 0, d.read)
}

// read fills p from off chunk by chunk; what no chunk holds reads as
// zeros.
func (d *dmgDisk) read(p []byte, off int64) error {
	for i := d.find(off); len(p) > 0; i++ {
		if i >= len(d.data) {
			clear(p)
			break
		}
		c := &d.data[i]
		if c.vOff > off { // hole before the chunk
			k := min(int64(len(p)), c.vOff-off)
			clear(p[:k])
			p, off = p[k:], off+k
			if len(p) == 0 {
				break
			}
		}
		k := min(int64(len(p)), c.vEnd()-off)
		if c.typ == dmgRaw {
			if err := readFullAt(d.f, p[:k], c.fOff+off-c.vOff, "dmg", d.path); err != nil {
				return err
			}
		} else {
			buf, err := d.chunk(i)
			if err != nil {
				return err
			}
			copy(p[:k], buf[off-c.vOff:])
		}
		p, off = p[k:], off+k
	}
	return nil
}

// Map reports stored chunks as allocated, zero chunks and gaps as holes.
func (d *dmgDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off >= d.size || off%SectorSize != 0 || length <= 0 {
		return false, 0, fmt.Errorf("%w: map offset %d length %d", ErrInvalid, off, length)
	}
	i := d.find(off)
	if i < len(d.data) && d.data[i].vOff <= off {
		return true, max(SectorSize, min(length, d.data[i].vEnd()-off)), nil
	}
	end := d.size
	if i < len(d.data) {
		end = d.data[i].vOff
	}
	return false, max(SectorSize, min(length, end-off)), nil
}

// chunk returns the decompressed data of stored chunk i, from the cache or
// by decompressing it once however many readers want it at the same time.
func (d *dmgDisk) chunk(i int) ([]byte, error) {
	if b, ok := d.cache.Get(i); ok {
		return b, nil
	}
	d.mu.Lock()
	if fl, ok := d.inflight[i]; ok {
		d.mu.Unlock()
		<-fl.done
		return fl.buf, fl.err
	}
	// The decompressing reader fills the cache before it leaves inflight,
	// so a second look under the lock cannot miss a finished chunk.
	if b, ok := d.cache.Get(i); ok {
		d.mu.Unlock()
		return b, nil
	}
	fl := &dmgFlight{done: make(chan struct{})}
	d.inflight[i] = fl
	d.mu.Unlock()

	fl.buf, fl.err = d.decompress(&d.data[i])
	if fl.err == nil {
		d.cache.Put(i, fl.buf)
	}
	d.mu.Lock()
	delete(d.inflight, i)
	d.mu.Unlock()
	close(fl.done)
	return fl.buf, fl.err
}

// dmgSrcPool holds buffers for compressed chunk data.
var dmgSrcPool = sync.Pool{New: func() any { return new([]byte) }}

// dmgZlibPool holds zlib readers for reuse (each holds a 32 KiB window).
var dmgZlibPool sync.Pool

func (d *dmgDisk) decompress(c *dmgChunk) ([]byte, error) {
	bp := dmgSrcPool.Get().(*[]byte)
	defer dmgSrcPool.Put(bp)
	if int64(cap(*bp)) < c.fLen {
		*bp = make([]byte, c.fLen)
	}
	src := (*bp)[:c.fLen]
	if err := readFullAt(d.f, src, c.fOff, "dmg", d.path); err != nil {
		return nil, err
	}
	out := make([]byte, c.vLen)
	var n int
	var err error
	switch c.typ {
	case dmgZlib:
		var zr io.ReadCloser
		if r, ok := dmgZlibPool.Get().(io.ReadCloser); ok {
			if err = r.(zlib.Resetter).Reset(bytes.NewReader(src), nil); err == nil {
				zr = r
			}
		} else {
			zr, err = zlib.NewReader(bytes.NewReader(src))
		}
		if err == nil {
			n, err = io.ReadFull(zr, out)
			dmgZlibPool.Put(zr)
		}
	case dmgBzip2:
		n, err = io.ReadFull(bzip2.NewReader(bytes.NewReader(src)), out)
	case dmgADC:
		n, err = adcDecode(out, src)
	case dmgLZFSE:
		n, err = lzfseDecode(out, src)
	case dmgLZMA:
		n, err = dmgLZMADecode(out, src)
	default:
		err = fmt.Errorf("unknown chunk type %#08x", c.typ)
	}
	if err == nil && n != len(out) {
		err = fmt.Errorf("decompressed to %d bytes instead of %d", n, len(out))
	}
	if err != nil {
		return nil, corruptf("dmg", d.path, c.fOff, "%s chunk at sector %d: %v", dmgTypeNames[c.typ], c.vOff/SectorSize, err)
	}
	return out, nil
}

// dmgLZMADecode decodes an LZMA chunk. hdiutil's ULMO chunks are xz
// streams (Apple's libcompression LZMA is LZMA2 in an xz container); a
// classic .lzma stream is accepted too. The xz reader allocates the
// dictionary the stream declares, so that is bounded first.
func dmgLZMADecode(out, src []byte) (int, error) {
	var r io.Reader
	var err error
	if bytes.HasPrefix(src, []byte("\xfd7zXZ\x00")) {
		if err := dmgXZDictCheck(src); err != nil {
			return 0, err
		}
		r, err = xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(src))
	} else {
		r, err = lzma.ReaderConfig{DictCap: dmgMaxChunkBytes}.NewReader(bytes.NewReader(src))
	}
	if err != nil {
		return 0, err
	}
	return io.ReadFull(r, out)
}

// dmgXZDictCheck refuses an xz stream whose first block declares an LZMA2
// dictionary larger than the largest chunk: the 12-byte stream header,
// then a block header (size, flags, optional sizes, filter flags).
func dmgXZDictCheck(src []byte) error {
	const hdr = 12
	if len(src) < hdr+2 {
		return io.ErrUnexpectedEOF
	}
	end := hdr + (int(src[hdr])+1)*4
	if src[hdr] == 0 || end > len(src) {
		return nil // an index (empty stream) or truncated: the reader reports it
	}
	p := hdr + 2
	varint := func() uint64 {
		var v uint64
		for i := 0; i < 9 && p < end; i++ {
			b := src[p]
			p++
			v |= uint64(b&0x7f) << (7 * i)
			if b&0x80 == 0 {
				break
			}
		}
		return v
	}
	flags := src[hdr+1]
	if flags&0x40 != 0 {
		varint()
	}
	if flags&0x80 != 0 {
		varint()
	}
	for range int(flags&3) + 1 {
		id, n := varint(), varint()
		if n > uint64(end-p) {
			return fmt.Errorf("xz block header truncated")
		}
		if id == 0x21 && n == 1 { // LZMA2: dictionary size code
			if c := src[p]; c > 40 || (2|uint64(c&1))<<(c/2+11) > dmgMaxChunkBytes {
				return fmt.Errorf("xz dictionary size code %d too large for a chunk", c)
			}
		}
		p += int(n)
	}
	return nil
}

// dmgPlist is a parsed XML property list value.
type dmgPlist struct {
	kind string // dict, array, string, data, integer, true, false, ...
	text string
	keys []string // dict keys, parallel to vals
	vals []*dmgPlist
}

func (p *dmgPlist) get(key string) *dmgPlist {
	if p == nil || p.kind != "dict" {
		return nil
	}
	for i, k := range p.keys {
		if k == key {
			return p.vals[i]
		}
	}
	return nil
}

func (p *dmgPlist) str(key string) string {
	if v := p.get(key); v != nil && v.kind == "string" {
		return v.text
	}
	return ""
}

// dmgParsePlist returns the blkx tables of an XML plist:
// plist -> dict -> resource-fork -> blkx -> [dict: Data, Name, CFName].
func dmgParsePlist(b []byte, off int64) ([]dmgBlkx, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	var root *dmgPlist
	for root == nil {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "plist" {
				return nil, fmt.Errorf("root element <%s>, want <plist>", se.Name.Local)
			}
			if root, err = dmgPlistNext(dec, 0); err != nil {
				return nil, err
			}
			if root == nil {
				return nil, fmt.Errorf("empty plist")
			}
		}
	}
	blkx := root.get("resource-fork").get("blkx")
	if blkx == nil || blkx.kind != "array" {
		return nil, fmt.Errorf("no resource-fork/blkx array")
	}
	var out []dmgBlkx
	for i, e := range blkx.vals {
		data := e.get("Data")
		if data == nil || data.kind != "data" {
			return nil, fmt.Errorf("blkx %d: no Data", i)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, data.text))
		if err != nil {
			return nil, fmt.Errorf("blkx %d: Data: %v", i, err)
		}
		name := e.str("Name")
		if name == "" {
			name = e.str("CFName")
		}
		out = append(out, dmgBlkx{name: name, data: raw, off: off})
	}
	return out, nil
}

// dmgPlistNext reads the next value (nil at the parent's end element).
func dmgPlistNext(dec *xml.Decoder, depth int) (*dmgPlist, error) {
	if depth > 32 {
		return nil, fmt.Errorf("plist nested too deeply")
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, nil
		case xml.StartElement:
			v := &dmgPlist{kind: t.Name.Local}
			switch v.kind {
			case "dict":
				for {
					key, err := dmgPlistNext(dec, depth+1)
					if err != nil {
						return nil, err
					}
					if key == nil {
						return v, nil
					}
					if key.kind != "key" {
						return nil, fmt.Errorf("dict entry <%s> where <key> expected", key.kind)
					}
					val, err := dmgPlistNext(dec, depth+1)
					if err != nil {
						return nil, err
					}
					if val == nil {
						return nil, fmt.Errorf("dict key %q without a value", key.text)
					}
					v.keys, v.vals = append(v.keys, key.text), append(v.vals, val)
				}
			case "array":
				for {
					e, err := dmgPlistNext(dec, depth+1)
					if err != nil {
						return nil, err
					}
					if e == nil {
						return v, nil
					}
					v.vals = append(v.vals, e)
				}
			default: // a scalar: its character data up to its end element
				var sb strings.Builder
				for {
					tok, err := dec.Token()
					if err != nil {
						return nil, err
					}
					if cd, ok := tok.(xml.CharData); ok {
						sb.Write(cd)
					} else if _, ok := tok.(xml.EndElement); ok {
						v.text = sb.String()
						return v, nil
					} else if _, ok := tok.(xml.StartElement); ok {
						return nil, fmt.Errorf("element inside <%s>", v.kind)
					}
				}
			}
		}
	}
}

// dmgParseRsrc returns the 'blkx' resources of a classic Mac resource
// fork: a 16-byte header (data offset, map offset, data length, map
// length), resource data (each a 4-byte length and the bytes), and a map
// with a type list (type, count-1, offset of its reference list) and
// 12-byte references (ID, name offset, attributes, 3-byte data offset).
func dmgParseRsrc(b []byte, off int64) ([]dmgBlkx, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%d bytes, too short", len(b))
	}
	be := binary.BigEndian
	dataOff, mapOff := uint64(be.Uint32(b)), uint64(be.Uint32(b[4:]))
	dataLen, mapLen := uint64(be.Uint32(b[8:])), uint64(be.Uint32(b[12:]))
	size := uint64(len(b))
	if dataOff > size || dataLen > size-dataOff || mapOff > size || mapLen > size-mapOff || mapLen < 30 {
		return nil, fmt.Errorf("header ranges outside the fork")
	}
	m := b[mapOff : mapOff+mapLen]
	typeList := uint64(be.Uint16(m[24:]))
	nameList := uint64(be.Uint16(m[26:]))
	if typeList+2 > mapLen {
		return nil, fmt.Errorf("type list outside the map")
	}
	tl := m[typeList:]
	ntypes := int(be.Uint16(tl)+1) & 0xffff
	var out []dmgBlkx
	for t := range ntypes {
		te := 2 + 8*t
		if te+8 > len(tl) {
			return nil, fmt.Errorf("type list truncated")
		}
		if string(tl[te:te+4]) != "blkx" {
			continue
		}
		nres := int(be.Uint16(tl[te+4:])) + 1
		refs := uint64(be.Uint16(tl[te+6:]))
		for r := range nres {
			ro := refs + 12*uint64(r)
			if ro+12 > uint64(len(tl)) {
				return nil, fmt.Errorf("blkx reference %d outside the map", r)
			}
			ref := tl[ro:]
			nameOff := be.Uint16(ref[2:])
			rd := uint64(ref[5])<<16 | uint64(ref[6])<<8 | uint64(ref[7])
			if rd+4 > dataLen {
				return nil, fmt.Errorf("blkx resource %d data outside the fork", r)
			}
			n := uint64(be.Uint32(b[dataOff+rd:]))
			if n > dataLen-rd-4 {
				return nil, fmt.Errorf("blkx resource %d length %d outside the fork", r, n)
			}
			e := dmgBlkx{data: b[dataOff+rd+4 : dataOff+rd+4+n], off: off + int64(dataOff+rd)}
			if nameOff != 0xffff {
				if no := nameList + uint64(nameOff); no < mapLen {
					if l := uint64(m[no]); no+1+l <= mapLen {
						e.name = string(m[no+1 : no+1+l])
					}
				}
			}
			if e.name == "" {
				e.name = "blkx " + strconv.Itoa(int(int16(be.Uint16(ref))))
			}
			out = append(out, e)
		}
	}
	return out, nil
}
