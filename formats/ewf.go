package formats

// EWF (Expert Witness Compression Format, .E01/.s01): the segment-file
// format written by EnCase, FTK Imager, linen and libewf's ewfacquire.
// Layout facts from libyal/libewf "Expert Witness Compression Format
// (EWF).asciidoc"; this is an independent, read-only implementation.
//
// A segment file is a 13-byte file header followed by a chain of
// sections, each starting with a 76-byte descriptor (type, absolute
// offset of the next section, section size, Adler-32). The volume (or
// disk/data) section gives the geometry; table sections list one 32-bit
// entry per chunk (31-bit offset, MSB = zlib-compressed) relative to a
// base offset; chunks live in sectors sections (EnCase 2+) or inside the
// table section itself (EWF/SMART/EnCase 1). Uncompressed chunks carry a
// trailing Adler-32; compressed chunks are zlib streams, which carry one.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/klauspost/compress/zlib"
)

func init() {
	register(format{name: "ewf", order: orderHead, probe: ewfProbe, open: ewfOpen})
}

var (
	ewfSigE01 = []byte("EVF\x09\x0d\x0a\xff\x00")
	ewfSigL01 = []byte("LVF\x09\x0d\x0a\xff\x00")
	ewfSigEx2 = []byte("EVF2\r\n\x81\x00")
	ewfSigLx2 = []byte("LEF2\r\n\x81\x00")
)

const (
	ewfFileHeaderSize  = 13
	ewfDescriptorSize  = 76
	ewfTableHeaderSize = 24
	ewfMaxChunkSize    = 64 << 20 // memory per chunk; EnCase stops at 32768 x 512-byte sectors (16 MiB)
	ewfMaxTableEntries = 1 << 21  // far above EnCase's 16375; 8 MiB once loaded
	ewfMaxSegments     = 14971    // .E01-.E99 plus .EAA-.ZZZ
	ewfMaxMetaSection  = 16 << 20 // header sections are a few hundred bytes
	ewfTableCacheSize  = 64
	ewfMaxSections     = 1 << 21  // in the whole set: a 64 TiB image of 32 KiB chunks has ~400000
	ewfTableCacheBytes = 16 << 20 // loaded tables kept, at 4 bytes an entry
	ewfChunkCacheBytes = 2 << 20  // decompressed chunks kept: requests of 128 KiB span whole chunks
)

func ewfProbe(pd *ProbeData) bool {
	for _, sig := range [][]byte{ewfSigE01, ewfSigL01, ewfSigEx2, ewfSigLx2} {
		if bytes.HasPrefix(pd.Head, sig) {
			return true
		}
	}
	return false
}

// ewfSection is one section descriptor of a segment file.
type ewfSection struct {
	typ       string
	off, end  int64 // descriptor offset; end of the section's data
	size      int64 // size from the descriptor (descriptor included)
	nextStart int64
}

// ewfSegment is one open segment file.
type ewfSegment struct {
	f        *os.File
	path     string
	size     int64
	sections []ewfSection // in file order
}

// sectionAt returns the section holding file offset off, if any.
func (s *ewfSegment) sectionAt(off int64) (ewfSection, bool) {
	i := sort.Search(len(s.sections), func(i int) bool { return s.sections[i].off > off })
	if i == 0 || off >= s.sections[i-1].end {
		return ewfSection{}, false
	}
	return s.sections[i-1], true
}

// ewfTable locates one table section (and its table2 mirror) at open;
// its entries are loaded on demand.
type ewfTable struct {
	seg        int   // index into ewfDisk.segs
	off, off2  int64 // table and table2 descriptor offsets (off2 -1 if none)
	first      int64 // index of its first chunk in the image
	count      int64 // entries used by the image
	headerGood bool  // the table header checksum matched at open
}

// ewfEntries is a loaded table, kept as stored and decoded per chunk, so
// that loading one costs a read and a checksum.
type ewfEntries struct {
	seg  *ewfSegment
	raw  []byte // the section's little-endian entries: offset from base, top bit set for zlib
	base int64
}

type ewfDisk struct {
	readOnlyFormat
	path       string
	segs       []*ewfSegment
	size       int64
	chunkSize  int64
	nchunks    int64
	tables     []ewfTable
	nsections  int // sections walked so far, bounded by ewfMaxSections
	tableCache *lru[int, *ewfEntries]
	chunkCache *lru[int64, []byte]
	bufPool    sync.Pool // *[]byte for stored chunk bytes
	zPool      sync.Pool // io.ReadCloser implementing zlib.Resetter
	info       Info
}

func ewfOpen(path string, opt Options) (Disk, error) {
	d := &ewfDisk{path: path}
	if err := d.open(); err != nil {
		d.closeFiles()
		return nil, err
	}
	return d, nil
}

func (d *ewfDisk) closeFiles() {
	for _, s := range d.segs {
		s.f.Close()
	}
}

// ewfSegmentExt returns the extension of segment n (1-based) of a set
// whose first extension is first ("E01", "e01", "s01", ...): 01-99,
// then AA-ZZ with the first letter counting up from first[0].
func ewfSegmentExt(first string, n int) (string, error) {
	if len(first) != 3 || n < 1 {
		return "", fmt.Errorf("no segment naming rule for %q", first)
	}
	if n <= 99 {
		return fmt.Sprintf("%c%02d", first[0], n), nil
	}
	k := n - 100
	lower := first[0] >= 'a' && first[0] <= 'z'
	base := byte('A')
	lead := first[0]
	if lower {
		base = 'a'
	}
	c1 := int(lead) + k/(26*26)
	if (lower && c1 > 'z') || (!lower && c1 > 'Z') {
		return "", fmt.Errorf("segment %d is beyond the naming rule", n)
	}
	return string([]byte{byte(c1), base + byte(k/26%26), base + byte(k%26)}), nil
}

// segmentPath names segment n beside the first segment.
func ewfSegmentPath(first string, n int) (string, error) {
	ext := filepath.Ext(first)
	if len(ext) != 4 || !strings.HasSuffix(strings.ToLower(ext), "01") {
		return "", fmt.Errorf("file name %q does not end in .E01/.e01/.s01, so the next segments cannot be named", filepath.Base(first))
	}
	e, err := ewfSegmentExt(ext[1:], n)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(first, ext) + "." + e, nil
}

// ewfSets is what the walk over every segment's sections gathers beside
// the tables: the volume geometry and the metadata sections.
type ewfSets struct {
	vol                      *ewfVolume
	header, header2, xheader []byte
	meta                     map[string]string
	warnings                 []string
	done                     bool // a done section ended the set
}

func (d *ewfDisk) open() error {
	st := &ewfSets{meta: map[string]string{}}
	if err := d.walkSegments(st); err != nil {
		return err
	}
	if st.vol == nil {
		return corruptf("ewf", d.path, -1, "no volume section")
	}
	if err := st.vol.validate(d.path); err != nil {
		return err
	}
	d.chunkSize = st.vol.sectorsPerChunk * st.vol.bytesPerSector
	d.size = st.vol.sectors * st.vol.bytesPerSector
	d.nchunks = (d.size + d.chunkSize - 1) / d.chunkSize
	if err := d.indexTables(); err != nil {
		return err
	}
	d.info = d.describe(st)
	return nil
}

// walkSegments opens the segments one after another, from the first
// (which may be a symlink with any name, so the following segments are
// named after its target) to the one with a done section.
func (d *ewfDisk) walkSegments(st *ewfSets) error {
	first := d.path
	for n := 1; !st.done; n++ {
		if n > ewfMaxSegments {
			return corruptf("ewf", d.path, -1, "more than %d segments", ewfMaxSegments)
		}
		p := first
		if n > 1 {
			if n == 2 {
				// A symlink with another name: name the set after its target.
				if _, err := ewfSegmentPath(first, 2); err != nil {
					if r, rerr := evalSymlinksPath(first); rerr == nil {
						first = r
					}
				}
			}
			var err error
			if p, err = ewfSegmentPath(first, n); err != nil {
				return corruptf("ewf", d.path, -1, "segment %d needed: %v", n, err)
			}
		}
		seg, err := d.openSegment(p, n)
		if err != nil {
			return err
		}
		d.segs = append(d.segs, seg)
		for _, sec := range seg.sections {
			if err := d.readSection(st, seg, sec); err != nil {
				return err
			}
		}
		if !st.done {
			last := seg.sections[len(seg.sections)-1]
			if last.typ != "next" {
				return corruptf("ewf", p, last.off, "segment %d ends with a %q section instead of next or done (incomplete image?)", n, last.typ)
			}
		}
	}
	return nil
}

// readSection takes in one section of the segment just opened: the set's
// structure (volume, tables, done) here, metadata in readMetaSection.
func (d *ewfDisk) readSection(st *ewfSets, seg *ewfSegment, sec ewfSection) error {
	switch sec.typ {
	case "done":
		st.done = true
	case "volume", "disk", "data":
		// The data section of later segments repeats the volume;
		// the first one found wins.
		if st.vol == nil {
			vol, err := d.readVolume(seg, sec)
			if err != nil {
				return err
			}
			st.vol = vol
		}
	case "table":
		return d.addTable(len(d.segs)-1, sec)
	case "table2":
		d.addTable2(len(d.segs)-1, sec)
	case "ltree", "ltypes":
		return unsupportedf("ewf", d.path, "logical evidence (%s section)", sec.typ)
	default:
		d.readMetaSection(st, seg, sec)
	}
	return nil
}

// readMetaSection reads a metadata section (headers, stored hashes, read
// errors). Damage there costs only the metadata, with a warning.
func (d *ewfDisk) readMetaSection(st *ewfSets, seg *ewfSegment, sec ewfSection) {
	var err error
	switch sec.typ {
	case "header":
		if st.header == nil {
			if st.header, err = d.readZlibSection(seg, sec); err != nil {
				st.warnings = append(st.warnings, fmt.Sprintf("header section damaged: %v", err))
			}
		}
	case "header2":
		if st.header2 == nil {
			if st.header2, err = d.readZlibSection(seg, sec); err != nil {
				st.warnings = append(st.warnings, fmt.Sprintf("header2 section damaged: %v", err))
			}
		}
	case "xheader":
		if st.xheader == nil {
			st.xheader, _ = d.readZlibSection(seg, sec)
		}
	case "hash":
		if b, err := d.readSectionData(seg, sec, 36); err == nil && ewfChecksumOK(b[:32], b[32:36]) {
			st.meta["md5"] = hex.EncodeToString(b[:16])
		} else {
			st.warnings = append(st.warnings, "hash section damaged; stored md5 ignored")
		}
	case "digest":
		if b, err := d.readSectionData(seg, sec, 80); err == nil && ewfChecksumOK(b[:76], b[76:80]) {
			if !isZero(b[:16]) {
				st.meta["md5"] = hex.EncodeToString(b[:16])
			}
			if !isZero(b[16:36]) {
				st.meta["sha1"] = hex.EncodeToString(b[16:36])
			}
		} else {
			st.warnings = append(st.warnings, "digest section damaged; stored hashes ignored")
		}
	case "xhash":
		if b, err := d.readZlibSection(seg, sec); err == nil {
			for _, k := range []string{"MD5", "SHA1"} {
				if v := ewfXMLValue(b, k); v != "" && st.meta[strings.ToLower(k)] == "" {
					st.meta[strings.ToLower(k)] = strings.ToLower(v)
				}
			}
		}
	case "error2":
		if ranges, err := d.readErrors(seg, sec); err == nil {
			if len(ranges) > 0 {
				st.meta["acquiry_read_errors"] = strings.Join(ranges, ",")
				st.warnings = append(st.warnings, fmt.Sprintf("the imager could not read %d range(s) of the source; they hold zeros (see acquiry_read_errors)", len(ranges)))
			}
		} else {
			st.warnings = append(st.warnings, "error2 section damaged; acquisition read errors unknown")
		}
	}
}

// indexTables numbers the chunks of every table, checks that they cover
// the volume and sizes the caches.
func (d *ewfDisk) indexTables() error {
	var total int64
	for i := range d.tables {
		d.tables[i].first = total
		total += d.tables[i].count
	}
	if total < d.nchunks {
		return corruptf("ewf", d.path, -1, "tables list %d chunks, the volume needs %d (missing segments?)", total, d.nchunks)
	}
	// Chunks past the image's end (padding entries) are not read.
	for i := range d.tables {
		t := &d.tables[i]
		if t.first+t.count > d.nchunks {
			t.count = max(0, d.nchunks-t.first)
		}
	}
	var biggest int64 = 1
	for _, t := range d.tables {
		biggest = max(biggest, t.count)
	}
	d.tableCache = newLRU[int, *ewfEntries](int(min(ewfTableCacheSize, max(2, ewfTableCacheBytes/(4*biggest)))))
	d.chunkCache = newLRU[int64, []byte](max(4, int(ewfChunkCacheBytes/d.chunkSize)))
	bufSize := int(ewfStoredMax(d.chunkSize))
	d.bufPool.New = func() any { b := make([]byte, bufSize); return &b }
	return nil
}

// describe builds the Info of an opened set.
func (d *ewfDisk) describe(st *ewfSets) Info {
	// Metadata: header2 (UTF-16) is the richest; header is its ASCII twin.
	variant := ewfVariant(st.header, st.header2, st.xheader, st.vol, d)
	meta := st.meta
	for k, v := range ewfHeaderValues(st.header, false) {
		meta[k] = v
	}
	for k, v := range ewfHeaderValues(st.header2, true) {
		meta[k] = v
	}
	meta["bytes_per_sector"] = strconv.FormatInt(st.vol.bytesPerSector, 10)
	meta["sectors_per_chunk"] = strconv.FormatInt(st.vol.sectorsPerChunk, 10)
	files := make([]string, len(d.segs))
	for i, s := range d.segs {
		files[i] = s.path
	}
	files[0] = d.path
	return Info{
		Format: "ewf", Variant: variant, Path: d.path, Files: files, Size: d.size,
		ClusterSize: d.chunkSize, Allocated: d.size, ReadOnly: true,
		ReadOnlyReason: "EWF images are evidence containers; vdflat reads them only",
		Metadata:       meta, Warnings: st.warnings,
		Hashes: storedHashes(meta), Acquisition: acquisitionFrom(meta, ewfAcquisitionKeys),
	}
}

// openSegment opens segment n and walks its section descriptors.
func (d *ewfDisk) openSegment(p string, n int) (*ewfSegment, error) {
	f, err := OpenImageFile(p, false)
	if err != nil {
		if n > 1 && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ewf: %s: missing segment %d %s: %w", d.path, n, p, err)
		}
		return nil, err
	}
	seg := &ewfSegment{f: f, path: p}
	fail := func(e error) (*ewfSegment, error) { f.Close(); return nil, e }
	if seg.size, err = fileSize(f); err != nil {
		return fail(fmt.Errorf("ewf: %s: %w", p, err))
	}
	var fh [ewfFileHeaderSize]byte
	if err := readFullAt(f, fh[:], 0, "ewf", p); err != nil {
		return fail(err)
	}
	if err := ewfDecodeFileHeader(fh[:]).validate(p, n); err != nil {
		return fail(err)
	}
	var desc [ewfDescriptorSize]byte
	off := int64(ewfFileHeaderSize)
	for {
		if off+ewfDescriptorSize > seg.size {
			return fail(corruptf("ewf", p, off, "section descriptor past the end of the file (truncated segment?)"))
		}
		if err := readFullAt(f, desc[:], off, "ewf", p); err != nil {
			return fail(err)
		}
		sec, err := ewfDecodeDescriptor(desc[:], off, seg.size, p)
		if err != nil {
			return fail(err)
		}
		last := sec.typ == "done" || sec.typ == "next"
		if d.nsections++; d.nsections > ewfMaxSections {
			return fail(corruptf("ewf", p, off, "more than %d sections in the set", ewfMaxSections))
		}
		seg.sections = append(seg.sections, sec)
		if last {
			break
		}
		off = sec.nextStart
	}
	return seg, nil
}

// ewfFileHeader is the 13-byte header of a segment file.
type ewfFileHeader struct {
	signature []byte // 8 bytes
	segment   int    // 1-based number of this segment in the set
}

func ewfDecodeFileHeader(b []byte) ewfFileHeader {
	return ewfFileHeader{signature: b[:8], segment: int(binary.LittleEndian.Uint16(b[9:11]))}
}

// validate accepts version 1 evidence files (E01) that are segment n of
// their set.
func (h ewfFileHeader) validate(p string, n int) error {
	switch {
	case bytes.Equal(h.signature, ewfSigE01):
	case bytes.Equal(h.signature, ewfSigL01):
		return unsupportedf("ewf", p, "logical evidence file (LVF, .L01)")
	case bytes.Equal(h.signature, ewfSigEx2), bytes.Equal(h.signature, ewfSigLx2):
		return unsupportedf("ewf", p, "EWF version 2 (Ex01/Lx01, EnCase 7 \"EVF2\")")
	default:
		return corruptf("ewf", p, 0, "segment %d has no EWF signature", n)
	}
	if got := h.segment; got != n {
		if n == 1 && got > 1 {
			return corruptf("ewf", p, 9, "segment number %d in the header: open the set's first segment (.E01)", got)
		}
		return corruptf("ewf", p, 9, "segment number %d in the header, expected %d", got, n)
	}
	return nil
}

// ewfDecodeDescriptor decodes and checks the section descriptor desc
// found at off in segment p of size bytes. A section's data ends at its
// recorded size when that is plausible, else at the next section.
func ewfDecodeDescriptor(desc []byte, off, size int64, p string) (ewfSection, error) {
	if !ewfChecksumOK(desc[:72], desc[72:76]) {
		return ewfSection{}, corruptf("ewf", p, off, "section descriptor checksum mismatch")
	}
	sec := ewfSection{
		typ:       string(bytes.TrimRight(desc[:16], "\x00")),
		off:       off,
		nextStart: int64(binary.LittleEndian.Uint64(desc[16:24])),
		size:      int64(binary.LittleEndian.Uint64(desc[24:32])),
	}
	last := sec.typ == "done" || sec.typ == "next"
	if sec.nextStart < 0 || sec.nextStart > size || (!last && sec.nextStart < off+ewfDescriptorSize) {
		return ewfSection{}, corruptf("ewf", p, off, "%q section: next section offset %#x out of range", sec.typ, sec.nextStart)
	}
	sec.end = sec.nextStart
	if sec.size >= ewfDescriptorSize && sec.size <= size-off && (last || off+sec.size <= sec.nextStart) {
		sec.end = off + sec.size
	}
	if last {
		sec.end = off + ewfDescriptorSize
	}
	return sec, nil
}

func ewfChecksumOK(data, sum []byte) bool {
	return adler32.Checksum(data) == binary.LittleEndian.Uint32(sum)
}

// readSectionData reads n bytes of a section's data (after its descriptor).
func (d *ewfDisk) readSectionData(seg *ewfSegment, sec ewfSection, n int64) ([]byte, error) {
	if sec.end-sec.off-ewfDescriptorSize < n {
		return nil, corruptf("ewf", seg.path, sec.off, "%q section too small (%d bytes)", sec.typ, sec.end-sec.off)
	}
	b := make([]byte, n)
	if err := readFullAt(seg.f, b, sec.off+ewfDescriptorSize, "ewf", seg.path); err != nil {
		return nil, err
	}
	return b, nil
}

// readZlibSection reads and inflates a small zlib-compressed section.
func (d *ewfDisk) readZlibSection(seg *ewfSegment, sec ewfSection) ([]byte, error) {
	n := sec.end - sec.off - ewfDescriptorSize
	if n <= 0 || n > ewfMaxMetaSection {
		return nil, corruptf("ewf", seg.path, sec.off, "%q section size %d", sec.typ, n)
	}
	b, err := d.readSectionData(seg, sec, n)
	if err != nil {
		return nil, err
	}
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, corruptf("ewf", seg.path, sec.off, "%q section: %v", sec.typ, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, ewfMaxMetaSection))
	if err != nil {
		return nil, corruptf("ewf", seg.path, sec.off, "%q section: %v", sec.typ, err)
	}
	return out, nil
}

// ewfMaxErrorRanges bounds the read-error ranges listed in Metadata.
const ewfMaxErrorRanges = 256

// readErrors reads an error2 section: the source ranges the imager could
// not read, as "first_sector+count" strings.
func (d *ewfDisk) readErrors(seg *ewfSegment, sec ewfSection) ([]string, error) {
	hdr, err := d.readSectionData(seg, sec, 520)
	if err != nil {
		return nil, err
	}
	if !ewfChecksumOK(hdr[:516], hdr[516:520]) {
		return nil, corruptf("ewf", seg.path, sec.off, "error2 header checksum mismatch")
	}
	n := int64(binary.LittleEndian.Uint32(hdr[:4]))
	if n > 1<<20 || n*8+4 > sec.end-sec.off-ewfDescriptorSize-520 {
		return nil, corruptf("ewf", seg.path, sec.off, "error2 section of %d entries does not fit", n)
	}
	b, err := d.readSectionData(seg, sec, 520+n*8+4)
	if err != nil {
		return nil, err
	}
	ents := b[520 : 520+n*8]
	if !ewfChecksumOK(ents, b[520+n*8:]) {
		return nil, corruptf("ewf", seg.path, sec.off, "error2 entries checksum mismatch")
	}
	var out []string
	for i := int64(0); i < n && i < ewfMaxErrorRanges; i++ {
		out = append(out, fmt.Sprintf("%d+%d", binary.LittleEndian.Uint32(ents[8*i:]), binary.LittleEndian.Uint32(ents[8*i+4:])))
	}
	return out, nil
}

// readVolume reads a volume/disk/data section: 1052 bytes in EnCase-style
// files, 94 bytes in EWF/SMART (S01-style) ones.
func (d *ewfDisk) readVolume(seg *ewfSegment, sec ewfSection) (*ewfVolume, error) {
	n := sec.end - sec.off - ewfDescriptorSize
	size, e01 := int64(94), false // SMART and EWF-S01
	switch {
	case n >= 1052: // EnCase and EWF-E01
		size, e01 = 1052, true
	case n < 94:
		return nil, corruptf("ewf", seg.path, sec.off, "%s section of %d bytes is too small", sec.typ, n)
	}
	b, err := d.readSectionData(seg, sec, size)
	if err != nil {
		return nil, err
	}
	if !ewfChecksumOK(b[:size-4], b[size-4:]) {
		return nil, corruptf("ewf", seg.path, sec.off, "%s section checksum mismatch", sec.typ)
	}
	return ewfDecodeVolume(b, e01), nil
}

// ewfVolume is the geometry a volume (disk, data) section records.
type ewfVolume struct {
	e01             bool // the 1052-byte layout, not SMART's 94 bytes
	smart           bool // a 94-byte volume signed "SMART"
	sectorsPerChunk int64
	bytesPerSector  int64
	sectors         int64
}

// ewfDecodeVolume decodes a volume section's data without judging it.
func ewfDecodeVolume(b []byte, e01 bool) *ewfVolume {
	le := binary.LittleEndian
	v := &ewfVolume{
		e01:             e01,
		sectorsPerChunk: int64(le.Uint32(b[8:12])),
		bytesPerSector:  int64(le.Uint32(b[12:16])),
	}
	if e01 {
		v.sectors = int64(le.Uint64(b[16:24]))
	} else {
		v.sectors = int64(le.Uint32(b[16:20]))
		v.smart = bytes.Equal(b[85:90], []byte("SMART"))
	}
	return v
}

// validate bounds the geometry: chunk memory, and a size that fits.
func (v *ewfVolume) validate(path string) error {
	spc, bps := v.sectorsPerChunk, v.bytesPerSector
	if bps < 1 || bps > 1<<16 || spc < 1 || spc*bps > ewfMaxChunkSize {
		return unsupportedf("ewf", path, "geometry %d sectors per chunk of %d bytes", spc, bps)
	}
	if v.sectors < 0 || v.sectors > (1<<62)/bps {
		return corruptf("ewf", path, -1, "sector count %d out of range", v.sectors)
	}
	return nil
}

// addTable records a table section: its header is read now (for the
// entry count), its entries when first needed.
func (d *ewfDisk) addTable(segIdx int, sec ewfSection) error {
	seg := d.segs[segIdx]
	t := ewfTable{seg: segIdx, off: sec.off, off2: -1}
	n, ok, err := d.tableHeader(seg, sec)
	if err != nil {
		return err
	}
	t.count, t.headerGood = n, ok
	d.tables = append(d.tables, t)
	return nil
}

// addTable2 pairs a table2 mirror with the table just before it.
func (d *ewfDisk) addTable2(segIdx int, sec ewfSection) {
	if len(d.tables) == 0 {
		return
	}
	t := &d.tables[len(d.tables)-1]
	if t.seg != segIdx || t.off2 >= 0 {
		return
	}
	t.off2 = sec.off
	if !t.headerGood {
		// The table's own header is damaged: take the count from the mirror.
		if n, ok, err := d.tableHeader(d.segs[segIdx], sec); err == nil && ok {
			t.count = n
		}
	}
}

// tableHeader reads a table header: entry count and whether its checksum
// holds.
func (d *ewfDisk) tableHeader(seg *ewfSegment, sec ewfSection) (int64, bool, error) {
	b, err := d.readSectionData(seg, sec, ewfTableHeaderSize)
	if err != nil {
		return 0, false, err
	}
	n := int64(binary.LittleEndian.Uint32(b[0:4]))
	ok := ewfChecksumOK(b[:20], b[20:24])
	if room := (sec.end - sec.off - ewfDescriptorSize - ewfTableHeaderSize) / 4; n > room || n > ewfMaxTableEntries {
		if ok {
			return 0, false, corruptf("ewf", seg.path, sec.off, "table of %d entries does not fit its section", n)
		}
		n = 0
	}
	return n, ok, nil
}

// ewfStoredMax bounds a stored chunk: zlib output of incompressible data
// grows by a few bytes per 16 KiB block.
func ewfStoredMax(chunkSize int64) int64 { return chunkSize + chunkSize/64 + 1024 }

// loadTable reads table ti's entries, from table2 when table is damaged.
func (d *ewfDisk) loadTable(ti int) (*ewfEntries, error) {
	if e, ok := d.tableCache.Get(ti); ok {
		return e, nil
	}
	t := d.tables[ti]
	seg := d.segs[t.seg]
	e, err := d.readEntries(seg, t.off, t.count)
	if err != nil && t.off2 >= 0 {
		var err2 error
		if e, err2 = d.readEntries(seg, t.off2, t.count); err2 == nil {
			err = nil
		}
	}
	if err != nil {
		return nil, err
	}
	d.tableCache.Put(ti, e)
	return e, nil
}

// readEntries reads and checks the table section at off (its first count
// entries are used).
func (d *ewfDisk) readEntries(seg *ewfSegment, off int64, count int64) (*ewfEntries, error) {
	i := sort.Search(len(seg.sections), func(i int) bool { return seg.sections[i].off >= off })
	if i == len(seg.sections) || seg.sections[i].off != off {
		return nil, corruptf("ewf", seg.path, off, "no table section")
	}
	sec := seg.sections[i]
	hdr, err := d.readSectionData(seg, sec, ewfTableHeaderSize)
	if err != nil {
		return nil, err
	}
	if !ewfChecksumOK(hdr[:20], hdr[20:24]) {
		return nil, corruptf("ewf", seg.path, off, "%s header checksum mismatch", sec.typ)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if n < count {
		return nil, corruptf("ewf", seg.path, off, "%s holds %d entries, its mirror %d", sec.typ, n, count)
	}
	base := int64(binary.LittleEndian.Uint64(hdr[8:16]))
	room := sec.end - sec.off - ewfDescriptorSize - ewfTableHeaderSize
	if n*4 > room || n > ewfMaxTableEntries || base < 0 || base > seg.size {
		return nil, corruptf("ewf", seg.path, off, "%s of %d entries (base %#x) does not fit", sec.typ, n, base)
	}
	raw := make([]byte, n*4+4)
	if n*4+4 > room {
		raw = raw[:n*4]
	}
	if err := readFullAt(seg.f, raw, off+ewfDescriptorSize+ewfTableHeaderSize, "ewf", seg.path); err != nil {
		return nil, err
	}
	e := &ewfEntries{seg: seg, raw: raw[:n*4], base: base}
	// EnCase-style tables end with an Adler-32 of the entries; tables
	// whose chunks follow inside the same section (EWF/SMART) do not.
	inside := false
	if n > 0 {
		first, _ := e.entry(0)
		inside = first >= sec.off && first < sec.end
	}
	if !inside && len(raw) == int(n*4+4) && !ewfChecksumOK(raw[:n*4], raw[n*4:]) {
		return nil, corruptf("ewf", seg.path, off, "%s entries checksum mismatch", sec.typ)
	}
	return e, nil
}

// entry decodes entry j: the chunk's file offset and whether it is zlib.
func (e *ewfEntries) entry(j int64) (int64, bool) {
	v := binary.LittleEndian.Uint32(e.raw[4*j:])
	return e.base + int64(v&0x7fffffff), v&0x80000000 != 0
}

// chunk returns where chunk j is stored: its file offset, its stored size
// (up to the next chunk or the end of its section) and whether it is zlib.
// The size is 0, an error when read, for a chunk outside any section or
// bigger than any chunk can be.
func (e *ewfEntries) chunk(j int64) (off, stored int64, compressed bool) {
	start, compressed := e.entry(j)
	end := int64(-1)
	if sec, ok := e.seg.sectionAt(start); ok {
		end = sec.end
	}
	if (j+1)*4 < int64(len(e.raw)) {
		if next, _ := e.entry(j + 1); next > start && (end < 0 || next <= end) {
			end = next
		}
	}
	if stored := end - start; end >= 0 && stored <= ewfStoredMax(ewfMaxChunkSize) {
		return start, stored, compressed
	}
	return start, 0, compressed
}

func (d *ewfDisk) Size() int64 { return d.size }

func (d *ewfDisk) ReadAt(p []byte, off int64) (int, error) {
	return readUnits(p, off, d.size, d.chunkSize, d.readChunk)
}

// readChunk fills q, which lies within one chunk, from that chunk.
func (d *ewfDisk) readChunk(q []byte, off int64) error {
	ci := off / d.chunkSize
	data, err := d.chunk(ci)
	if err != nil {
		return err
	}
	if in := off % d.chunkSize; in >= int64(len(data)) || copy(q, data[in:]) < len(q) {
		return corruptf("ewf", d.path, -1, "chunk %d is short", ci)
	}
	return nil
}

// chunk returns chunk ci's data (shared; callers must not modify it).
func (d *ewfDisk) chunk(ci int64) ([]byte, error) {
	if b, ok := d.chunkCache.Get(ci); ok {
		return b, nil
	}
	ti := sort.Search(len(d.tables), func(i int) bool { return d.tables[i].first+d.tables[i].count > ci })
	if ti == len(d.tables) {
		return nil, corruptf("ewf", d.path, -1, "chunk %d is in no table", ci)
	}
	e, err := d.loadTable(ti)
	if err != nil {
		return nil, err
	}
	t := d.tables[ti]
	j := ci - t.first
	seg := d.segs[t.seg]
	want := min(d.chunkSize, d.size-ci*d.chunkSize)
	off, stored, compressed := e.chunk(j)
	if stored <= 0 || stored > ewfStoredMax(d.chunkSize) {
		return nil, corruptf("ewf", seg.path, off, "chunk %d: stored size %d out of range", ci, stored)
	}
	bp := d.bufPool.Get().(*[]byte)
	defer d.bufPool.Put(bp)
	out := make([]byte, want)
	if compressed {
		buf := (*bp)[:stored]
		if err := readFullAt(seg.f, buf, off, "ewf", seg.path); err != nil {
			return nil, err
		}
		dst := out
		if want < d.chunkSize {
			// libewf stores a last chunk of odd-sized media whole, past the
			// sectors it counts (ewfexport stops at those): inflate it all.
			dst = make([]byte, d.chunkSize)
		}
		if err := d.inflate(buf, dst, want); err != nil {
			return nil, corruptf("ewf", seg.path, off, "chunk %d (image offset %#x): %v", ci, ci*d.chunkSize, err)
		}
		copy(out, dst)
	} else {
		if stored < want+4 {
			return nil, corruptf("ewf", seg.path, off, "chunk %d: stored size %d, need %d", ci, stored, want+4)
		}
		n := want // the last chunk of odd-sized media holds more (see above)
		if want < d.chunkSize {
			n = min(stored-4, d.chunkSize)
		}
		buf := (*bp)[:n+4]
		if err := readFullAt(seg.f, buf, off, "ewf", seg.path); err != nil {
			return nil, err
		}
		if !ewfChecksumOK(buf[:want], buf[want:want+4]) && !ewfChecksumOK(buf[:n], buf[n:]) {
			return nil, corruptf("ewf", seg.path, off, "chunk %d (image offset %#x): checksum mismatch", ci, ci*d.chunkSize)
		}
		copy(out, buf)
	}
	d.chunkCache.Put(ci, out)
	return out, nil
}

// inflate decompresses a zlib chunk into out, which it must fill, or at
// least its first want bytes; zlib's own Adler-32 is checked at the end
// of the stream.
func (d *ewfDisk) inflate(src, out []byte, want int64) error {
	br := bytes.NewReader(src)
	var zr io.ReadCloser
	if v := d.zPool.Get(); v != nil {
		zr = v.(io.ReadCloser)
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			return err
		}
	} else {
		var err error
		if zr, err = zlib.NewReader(br); err != nil {
			return err
		}
	}
	if n, err := io.ReadFull(zr, out); err != nil && (err != io.ErrUnexpectedEOF || int64(n) < want) {
		return fmt.Errorf("inflating: %w", err)
	}
	var one [1]byte
	if n, err := zr.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			return errors.New("inflates to more than a chunk")
		}
		return fmt.Errorf("inflating: %w", err)
	}
	d.zPool.Put(zr)
	return nil
}

func (d *ewfDisk) Close() error {
	return closeEach(d.segs, func(s *ewfSegment) *os.File { return s.f })
}

func (d *ewfDisk) Info() Info {
	return d.info.clone()
}

// ewfHeaderKeys names the header identifiers kept in Info().Metadata.
var ewfHeaderKeys = map[string]string{
	"a": "description", "c": "case_number", "n": "evidence_number", "e": "examiner_name",
	"t": "notes", "md": "model", "sn": "serial_number", "l": "device_label",
	"av": "acquiry_software_version", "ov": "acquiry_operating_system",
	"m": "acquiry_date", "u": "system_date", "pid": "process_identifier", "r": "compression",
}

// ewfAcquisitionKeys names the metadata keys of Info().Acquisition.
var ewfAcquisitionKeys = Acquisition{
	CaseNumber: "case_number", EvidenceNumber: "evidence_number", Examiner: "examiner_name",
	Description: "description", Notes: "notes", Date: "acquiry_date",
	Software: "acquiry_software_version", DeviceModel: "model", DeviceSerial: "serial_number",
}

// ewfHeaderValues parses the "main" category of a header (ASCII) or
// header2 (UTF-16 with BOM) section text.
func ewfHeaderValues(b []byte, utf16Text bool) map[string]string {
	if len(b) == 0 {
		return nil
	}
	text := string(b)
	if utf16Text {
		text = ewfUTF16(b)
	}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if len(lines) < 4 || strings.TrimSpace(lines[1]) != "main" {
		return nil
	}
	keys := strings.Split(lines[2], "\t")
	vals := strings.Split(lines[3], "\t")
	out := map[string]string{}
	for i, k := range keys {
		name, ok := ewfHeaderKeys[strings.TrimSpace(k)]
		if !ok || i >= len(vals) || vals[i] == "" {
			continue
		}
		v := vals[i]
		if k == "m" || k == "u" {
			v = ewfDate(v)
		}
		if k == "r" {
			switch v {
			case "n":
				v = "none"
			case "f":
				v = "fast"
			case "b":
				v = "best"
			}
		}
		out[name] = v
	}
	return out
}

// ewfDate normalises a header date: header2 holds Unix seconds (shown
// in UTC), header holds the acquiring machine's local time as
// "Y M D h m s" (shown without a zone, as written).
func ewfDate(v string) string {
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(s, 0).UTC().Format(time.RFC3339)
	}
	f := strings.Fields(v)
	if len(f) != 6 {
		return v
	}
	var n [6]int
	for i, x := range f {
		var err error
		if n[i], err = strconv.Atoi(x); err != nil {
			return v
		}
	}
	return fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", n[0], n[1], n[2], n[3], n[4], n[5])
}

func ewfUTF16(b []byte) string {
	be := len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff
	if len(b) >= 2 && ((b[0] == 0xff && b[1] == 0xfe) || be) {
		b = b[2:]
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		if be {
			u[i] = binary.BigEndian.Uint16(b[2*i:])
		} else {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
	}
	return string(utf16.Decode(u))
}

// ewfXMLValue returns the text of the first <tag>...</tag> in b.
func ewfXMLValue(b []byte, tag string) string {
	s := string(b)
	i := strings.Index(s, "<"+tag+">")
	if i < 0 {
		return ""
	}
	s = s[i+len(tag)+2:]
	j := strings.Index(s, "</"+tag+">")
	if j < 0 {
		return ""
	}
	return strings.TrimSpace(s[:j])
}

// ewfVariant names the writer family from what the sections look like
// (the format does not record it): S01-style volumes are EWF or SMART;
// EnCase-style files differ in header/header2 presence and fields.
func ewfVariant(header, header2, xheader []byte, vol *ewfVolume, d *ewfDisk) string {
	if !vol.e01 {
		if vol.smart {
			return "smart"
		}
		return "ewf"
	}
	if xheader != nil {
		return "ewfx"
	}
	chunksInTable := true
	for _, s := range d.segs[0].sections {
		if s.typ == "sectors" {
			chunksInTable = false
		}
	}
	if chunksInTable {
		return "encase1"
	}
	fields := func(b []byte, u bool) (cats string, keys string, crlf bool) {
		t := string(b)
		if u {
			t = ewfUTF16(b)
		}
		crlf = strings.Contains(t, "\r\n")
		l := strings.Split(strings.ReplaceAll(t, "\r\n", "\n"), "\n")
		if len(l) >= 3 {
			return l[0], "\t" + l[2] + "\t", crlf
		}
		return "", "", crlf
	}
	if header2 != nil {
		cats, keys, _ := fields(header2, true)
		switch {
		case cats == "1":
			return "encase4"
		case strings.Contains(keys, "\tmd\t"):
			return "encase6"
		default:
			return "encase5"
		}
	}
	cats, keys, crlf := fields(header, false)
	switch {
	case cats == "3" && strings.Contains(keys, "\tmd\t"):
		return "linen6"
	case cats == "3":
		return "linen5"
	case !crlf:
		return "ftk"
	}
	return "encase2"
}
