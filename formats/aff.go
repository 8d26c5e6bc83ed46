package formats

// AFF version 1 (Advanced Forensic Format, .aff), as written by AFFLIBv3's
// affconvert/aimage. Facts from AFFLIBv3 lib/afflib.h and the files
// affconvert writes; this is an independent, read-only implementation.
//
// A file is the 8-byte header "AFF10\r\n\0" followed by segments:
//
//	"AFF\0" name_len(4) data_len(4) arg(4) name data "ATT\0" seg_len(4)
//
// with big-endian integers. Image data lives in segments named page<N>
// (seg<N> in old files) of pagesize bytes each; the arg flags say how a
// page is compressed (zlib, LZMA "alone" stream, or a run of zeros).
// Other segments hold metadata: pagesize, imagesize (a quad), sectorsize,
// md5, sha1, acquisition_* and so on.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/zlib"
	"github.com/ulikunitz/xz/lzma"
)

func init() {
	register(format{name: "aff", order: orderHead, probe: affProbe, open: affOpen})
}

var (
	affMagic     = []byte("AFF10\r\n\x00")
	affSegHead   = []byte("AFF\x00")
	affSegTail   = []byte("ATT\x00")
	affAFMMagic  = []byte("AFM10\r\n\x00")
	affAFDMember = "file_000.aff"
)

// Page arg flags (afflib.h).
const (
	affPageCompressed = 0x0001
	affPageAlgMask    = 0x00f0
	affPageAlgZlib    = 0x0000
	affPageAlgBzip    = 0x0010
	affPageAlgLZMA    = 0x0020
	affPageAlgZero    = 0x0030
	affSegQuad        = 0x0002
)

const (
	affHeadSize     = 16
	affTailSize     = 8
	affMaxNameLen   = 1024     // afflib writes at most 64
	affMaxPageSize  = 64 << 20 // afflib's default is 16 MiB
	affMaxMetaBytes = 4096     // metadata values kept in Info
	affMaxMetaCount = 256
	affMaxPages     = 1 << 40 // page numbers; pages themselves are bounded by the file
)

func affProbe(pd *ProbeData) bool {
	if pd.IsDir {
		// An AFD directory of AFF files.
		b := make([]byte, len(affMagic))
		f, err := OpenImageFile(filepath.Join(pd.Path, affAFDMember), false)
		if err != nil {
			return false
		}
		defer f.Close()
		n, _ := f.ReadAt(b, 0)
		return n == len(b) && bytes.Equal(b, affMagic)
	}
	return bytes.HasPrefix(pd.Head, affMagic) || bytes.HasPrefix(pd.Head, affAFMMagic)
}

// affPage is where one page is stored.
type affPage struct {
	file int   // index into affDisk.members
	n    int64 // page number
	seg  int64 // file offset of the segment
	off  int64 // file offset of the segment data; 0 = page not stored
	size int64 // stored data length
	arg  uint32
}

// affMember is one file of the image: the .aff itself, or one file of
// an AFD directory.
type affMember struct {
	f    *os.File
	path string
	size int64
}

type affDisk struct {
	readOnlyFormat
	path      string
	members   []affMember
	afd       bool
	size      int64
	pageSize  int64
	pages     []affPage // stored pages, sorted by number (sparse images stay small)
	cache     *lru[int64, []byte]
	bufPool   sync.Pool
	allocated int64
	info      Info
}

// affMaxMembers bounds an AFD directory (afflib names members file_%03d).
const affMaxMembers = 1000

func affOpen(path string, opt Options) (Disk, error) {
	d := &affDisk{path: path}
	paths := []string{path}
	if st, err := statPath(path); err == nil && st.IsDir() {
		// AFD: file_000.aff, file_001.aff, ... each holding some pages.
		d.afd = true
		paths = nil
		for i := 0; i < affMaxMembers; i++ {
			p := filepath.Join(path, fmt.Sprintf("file_%03d.aff", i))
			if _, err := statPath(p); err != nil {
				break
			}
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		f, err := OpenImageFile(p, false)
		if err != nil {
			d.Close()
			return nil, err
		}
		size, err := fileSize(f)
		if err != nil {
			f.Close()
			d.Close()
			return nil, fmt.Errorf("aff: %s: %w", p, err)
		}
		d.members = append(d.members, affMember{f: f, path: p, size: size})
	}
	if err := d.open(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// affState collects what the segment walk finds in every member.
type affState struct {
	meta      map[string]string
	pages     []affPage
	maxPage   int64
	imageSize int64
	warnings  []string
}

func (d *affDisk) open() error {
	st := &affState{meta: map[string]string{}, maxPage: -1, imageSize: -1}
	for i := range d.members {
		if err := d.walk(i, st); err != nil {
			return err
		}
	}
	return d.finish(st)
}

// walk indexes the segments of member mi: page locations, and metadata
// values (the first copy of each wins).
func (d *affDisk) walk(mi int, st *affState) error {
	m := &d.members[mi]
	hdr := make([]byte, len(affMagic))
	if err := readFullAt(m.f, hdr, 0, "aff", m.path); err != nil {
		return err
	}
	if bytes.Equal(hdr, affAFMMagic) {
		return unsupportedf("aff", m.path, "AFM (AFF metadata with split raw data)")
	}
	if !bytes.Equal(hdr, affMagic) {
		return corruptf("aff", m.path, 0, "no AFF10 signature")
	}
	head := make([]byte, affHeadSize+affMaxNameLen)
	off := int64(len(affMagic))
	for off < m.size {
		if off+affHeadSize+affTailSize > m.size {
			// A torn segment at the end (an interrupted write): stop.
			st.warnings = append(st.warnings, fmt.Sprintf("%s: %d trailing bytes ignored at offset %#x", m.path, m.size-off, off))
			break
		}
		n := min(int64(len(head)), m.size-off)
		if err := readFullAt(m.f, head[:n], off, "aff", m.path); err != nil {
			return err
		}
		if !bytes.Equal(head[:4], affSegHead) {
			return corruptf("aff", m.path, off, "no segment header")
		}
		nameLen := int64(binary.BigEndian.Uint32(head[4:8]))
		dataLen := int64(binary.BigEndian.Uint32(head[8:12]))
		arg := binary.BigEndian.Uint32(head[12:16])
		segLen := affHeadSize + nameLen + dataLen + affTailSize
		if nameLen > affMaxNameLen || affHeadSize+nameLen > n || off+segLen > m.size {
			return corruptf("aff", m.path, off, "segment (name %d bytes, data %d bytes) runs past the end of the file", nameLen, dataLen)
		}
		name := string(head[affHeadSize : affHeadSize+nameLen])
		_, isPage := affPageNumber(name)
		// A page's tail is checked when the page is read, saving a read
		// per page at open; a wrong length is caught at the next header.
		if !isPage {
			var tail [affTailSize]byte
			if err := readFullAt(m.f, tail[:], off+segLen-affTailSize, "aff", m.path); err != nil {
				return err
			}
			if !affTailOK(tail[:], segLen) {
				return corruptf("aff", m.path, off, "segment %q: bad tail", name)
			}
		}
		sg := affSegment{name: name, off: off, dataOff: off + affHeadSize + nameLen, dataLen: dataLen, arg: arg}
		off += segLen
		if err := d.takeSegment(mi, st, sg); err != nil {
			return err
		}
	}
	return nil
}

// affSegment is one segment found by walk.
type affSegment struct {
	name    string
	off     int64 // of the segment header
	dataOff int64
	dataLen int64
	arg     uint32
}

// takeSegment records what segment sg of member mi says: a page, the
// geometry, or a metadata value (the first copy of each wins). Features
// vdflat cannot read are refused here.
func (d *affDisk) takeSegment(mi int, st *affState, sg affSegment) error {
	m := &d.members[mi]
	name, dataOff, dataLen, arg := sg.name, sg.dataOff, sg.dataLen, sg.arg
	if name == "" {
		return nil // a deleted segment
	}
	if strings.HasSuffix(name, "/aes256") || name == "affkey_aes256" || strings.HasPrefix(name, "affkey_evp") {
		return unsupportedf("aff", m.path, "encrypted AFF (segment %q)", name)
	}
	if pn, isPage := affPageNumber(name); isPage {
		if pn >= affMaxPages {
			return corruptf("aff", m.path, dataOff, "page number %d too large", pn)
		}
		st.pages = append(st.pages, affPage{file: mi, n: pn, seg: sg.off, off: dataOff, size: dataLen, arg: arg})
		st.maxPage = max(st.maxPage, pn)
		return nil
	}
	switch name {
	case "pagesize", "segsize":
		d.pageSize = int64(arg)
		return nil
	case "imagesize":
		q, err := d.quad(m, dataOff, dataLen)
		if err != nil {
			return err
		}
		st.imageSize = q
	case "sectorsize":
		st.meta["sectorsize"] = strconv.FormatUint(uint64(arg), 10)
		return nil
	case "aff_file_type":
		switch v, _ := d.small(m, dataOff, dataLen); string(v) {
		case "AFM":
			return unsupportedf("aff", m.path, "AFM file (AFF metadata with split raw data)")
		case "AFD":
			if !d.afd {
				return unsupportedf("aff", m.path, "a member of an AFD directory: open the directory %s", filepath.Dir(m.path))
			}
			return nil
		}
	case "raw_image_file_extension", "pages_per_raw_image_file":
		return unsupportedf("aff", m.path, "AFM (AFF metadata with split raw data)")
	case "badflag", "dir":
		return nil
	}
	return d.takeMeta(m, st.meta, sg)
}

// takeMeta keeps a segment's value in meta, within bounds: hashes and the
// image GID in hex, numbers in decimal, text as it is.
func (d *affDisk) takeMeta(m *affMember, meta map[string]string, sg affSegment) error {
	name := sg.name
	if _, dup := meta[name]; dup || strings.Contains(name, "/") || len(meta) >= affMaxMetaCount || sg.dataLen > affMaxMetaBytes {
		return nil
	}
	v, err := d.small(m, sg.dataOff, sg.dataLen)
	if err != nil {
		return err
	}
	switch {
	case name == "md5" || name == "sha1" || name == "sha256" || name == "image_gid":
		meta[name] = hex.EncodeToString(v)
	case sg.arg&affSegQuad != 0 && len(v) == 8:
		meta[name] = strconv.FormatInt(affQuad(v), 10)
	case len(v) == 0:
		meta[name] = strconv.FormatUint(uint64(sg.arg), 10)
	case utf8.Valid(v):
		meta[name] = strings.TrimRight(string(v), "\x00\r\n")
	}
	return nil
}

// finish builds the page index once every member is walked.
func (d *affDisk) finish(st *affState) error {
	pages, maxPage, imageSize, warnings, meta := st.pages, st.maxPage, st.imageSize, st.warnings, st.meta
	if d.pageSize <= 0 || d.pageSize > affMaxPageSize || d.pageSize%SectorSize != 0 {
		return unsupportedf("aff", d.path, "page size %d", d.pageSize)
	}
	count := maxPage + 1
	if imageSize >= 0 {
		if imageSize/d.pageSize >= affMaxPages {
			return corruptf("aff", d.path, -1, "image size %d too large", imageSize)
		}
		count = (imageSize + d.pageSize - 1) / d.pageSize
	}
	// Sort by page number; of two copies of a page the later one wins.
	sort.SliceStable(pages, func(i, j int) bool { return pages[i].n < pages[j].n })
	for i, p := range pages {
		switch {
		case p.n >= count:
			warnings = append(warnings, fmt.Sprintf("page %d lies past the image size; ignored", p.n))
		case i+1 < len(pages) && pages[i+1].n == p.n:
		default:
			d.pages = append(d.pages, p)
			if !affIsZeroPage(p.arg) {
				d.allocated += d.pageSize
			}
		}
	}
	d.cache = newLRU[int64, []byte](max(2, int((16<<20)/d.pageSize)))
	bufSize := int(affStoredMax(d.pageSize) + affTailSize)
	d.bufPool.New = func() any { b := make([]byte, bufSize); return &b }
	if imageSize < 0 {
		// No imagesize segment (an unfinished image): the last page's
		// length ends the image, as afflib computes it.
		imageSize = 0
		if count > 0 {
			b, err := d.decode(count - 1)
			if err != nil {
				return err
			}
			imageSize = (count-1)*d.pageSize + int64(len(b))
		}
		warnings = append(warnings, "no imagesize segment; size taken from the last page")
	}
	d.size = imageSize
	d.allocated = min(d.allocated, d.size)
	variant := "aff1"
	files := make([]string, len(d.members))
	for i, m := range d.members {
		files[i] = m.path
	}
	if d.afd {
		variant = "afd"
		files = append([]string{d.path}, files...)
	}
	d.info = Info{
		Format: "aff", Variant: variant, Path: d.path, Files: files, Size: d.size,
		ClusterSize: d.pageSize, Allocated: d.allocated, ReadOnly: true,
		ReadOnlyReason: "AFF images are evidence containers; vdflat reads them only",
		Metadata:       meta, Warnings: warnings,
		Hashes: storedHashes(meta), Acquisition: acquisitionFrom(meta, affAcquisitionKeys),
	}
	return nil
}

// affAcquisitionKeys names the segments (afflib's names) that fill
// Info().Acquisition.
var affAcquisitionKeys = Acquisition{
	CaseNumber: "case_num", Examiner: "acquisition_tech", Notes: "acquisition_notes",
	Date: "acquisition_date", Software: "creator",
	DeviceModel: "device_model", DeviceSerial: "device_sn",
}

// affPageNumber parses "page<N>" and the older "seg<N>" (not page<N>_md5).
func affPageNumber(name string) (int64, bool) {
	var digits string
	switch {
	case strings.HasPrefix(name, "page"):
		digits = name[4:]
	case strings.HasPrefix(name, "seg"):
		digits = name[3:]
	default:
		return 0, false
	}
	if digits == "" || len(digits) > 18 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

func affIsZeroPage(arg uint32) bool {
	return arg&affPageCompressed != 0 && arg&affPageAlgMask == affPageAlgZero
}

// affQuad decodes afflib's 8-byte quad: the low 32 bits first, each half
// big-endian.
func affQuad(b []byte) int64 {
	return int64(uint64(binary.BigEndian.Uint32(b[4:8]))<<32 | uint64(binary.BigEndian.Uint32(b[0:4])))
}

func (d *affDisk) small(m *affMember, off, n int64) ([]byte, error) {
	if n > affMaxMetaBytes {
		return nil, corruptf("aff", m.path, off, "metadata segment of %d bytes", n)
	}
	b := make([]byte, n)
	if err := readFullAt(m.f, b, off, "aff", m.path); err != nil {
		return nil, err
	}
	return b, nil
}

func (d *affDisk) quad(m *affMember, off, n int64) (int64, error) {
	if n != 8 {
		return 0, corruptf("aff", m.path, off, "quad segment of %d bytes", n)
	}
	b, err := d.small(m, off, n)
	if err != nil {
		return 0, err
	}
	q := affQuad(b)
	if q < 0 {
		return 0, corruptf("aff", m.path, off, "negative size")
	}
	return q, nil
}

// page returns page pn's location (off 0 when it is not stored).
func (d *affDisk) page(pn int64) affPage {
	i := sort.Search(len(d.pages), func(i int) bool { return d.pages[i].n >= pn })
	if i < len(d.pages) && d.pages[i].n == pn {
		return d.pages[i]
	}
	return affPage{n: pn}
}

// affStoredMax bounds a stored page: compressed data of incompressible
// input is a little larger than the page.
func affStoredMax(pageSize int64) int64 { return pageSize + pageSize/64 + 1024 }

func affTailOK(tail []byte, segLen int64) bool {
	return bytes.Equal(tail[:4], affSegTail) && int64(binary.BigEndian.Uint32(tail[4:])) == segLen
}

// decode returns page pn's bytes (shorter than a page only at the end of
// the image, or for a short stored page). Missing pages are nil (zeros).
func (d *affDisk) decode(pn int64) ([]byte, error) {
	if b, ok := d.cache.Get(pn); ok {
		return b, nil
	}
	p := d.page(pn)
	if p.off == 0 || affIsZeroPage(p.arg) {
		return nil, nil
	}
	m := &d.members[p.file]
	if p.size > affStoredMax(d.pageSize) {
		return nil, corruptf("aff", m.path, p.off, "page %d: stored size %d exceeds the page size %d", pn, p.size, d.pageSize)
	}
	want := d.pageSize
	if d.size > 0 {
		want = min(want, d.size-pn*d.pageSize)
	}
	bp := d.bufPool.Get().(*[]byte)
	defer d.bufPool.Put(bp)
	src := (*bp)[:p.size+affTailSize]
	if err := readFullAt(m.f, src, p.off, "aff", m.path); err != nil {
		return nil, err
	}
	if !affTailOK(src[p.size:], p.off-p.seg+p.size+affTailSize) {
		return nil, corruptf("aff", m.path, p.seg, "page %d: bad segment tail", pn)
	}
	src = src[:p.size]
	var out []byte
	if p.arg&affPageCompressed == 0 {
		out = append([]byte(nil), src[:min(int64(len(src)), want)]...)
	} else {
		var r io.Reader
		var err error
		switch alg := p.arg & affPageAlgMask; alg {
		case affPageAlgZlib:
			r, err = zlib.NewReader(bytes.NewReader(src))
		case affPageAlgLZMA:
			r, err = affLZMAReader(src, d.pageSize)
		case affPageAlgBzip:
			return nil, unsupportedf("aff", m.path, "bzip2-compressed page %d", pn)
		default:
			return nil, unsupportedf("aff", m.path, "page %d: compression algorithm %#x", pn, alg)
		}
		if err != nil {
			return nil, corruptf("aff", m.path, p.off, "page %d: %v", pn, err)
		}
		out = make([]byte, want)
		n, err := io.ReadFull(r, out)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, corruptf("aff", m.path, p.off, "page %d (image offset %#x): %v", pn, pn*d.pageSize, err)
		}
		if n == len(out) {
			// Check the stream's end (zlib verifies its Adler-32 there).
			var one [1]byte
			if k, err := r.Read(one[:]); k != 0 || (err != io.EOF && err != nil) {
				if k != 0 {
					err = errors.New("inflates to more than a page")
				}
				return nil, corruptf("aff", m.path, p.off, "page %d (image offset %#x): %v", pn, pn*d.pageSize, err)
			}
		}
		out = out[:n]
	}
	d.cache.Put(pn, out)
	return out, nil
}

// affLZMAReader reads afflib's LZMA pages: the classic "alone" format
// (5 property bytes, 8-byte size). The dictionary size from the header is
// capped at the page size, which is all a page's decoder can ever use, so
// a header cannot make us allocate more.
func affLZMAReader(src []byte, pageSize int64) (io.Reader, error) {
	if len(src) < lzma.HeaderLen {
		return nil, errors.New("lzma stream shorter than its header")
	}
	h := make([]byte, lzma.HeaderLen)
	copy(h, src)
	if ds := int64(binary.LittleEndian.Uint32(h[1:5])); ds > pageSize {
		binary.LittleEndian.PutUint32(h[1:5], uint32(max(pageSize, lzma.MinDictCap)))
	}
	return lzma.ReaderConfig{DictCap: int(max(pageSize, lzma.MinDictCap))}.NewReader(io.MultiReader(bytes.NewReader(h), bytes.NewReader(src[lzma.HeaderLen:])))
}

func (d *affDisk) Size() int64 { return d.size }

func (d *affDisk) ReadAt(p []byte, off int64) (int, error) {
	return readUnits(p, off, d.size, d.pageSize, d.readPage)
}

// readPage fills q, which lies within one page, from that page.
func (d *affDisk) readPage(q []byte, off int64) error {
	b, err := d.decode(off / d.pageSize)
	if err != nil {
		return err
	}
	k := 0
	if in := off % d.pageSize; in < int64(len(b)) {
		k = copy(q, b[in:])
	}
	clear(q[k:]) // missing, zero or short pages
	return nil
}

// Map reports stored pages as allocated; missing and zero pages are holes.
func (d *affDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map %d+%d of %d", ErrInvalid, off, length, d.size)
	}
	stored := func(i int) bool { return !affIsZeroPage(d.pages[i].arg) }
	pn := off / d.pageSize
	i := sort.Search(len(d.pages), func(i int) bool { return d.pages[i].n >= pn })
	var end int64
	if i < len(d.pages) && d.pages[i].n == pn && stored(i) {
		// A run of consecutive stored pages.
		for i+1 < len(d.pages) && d.pages[i+1].n == d.pages[i].n+1 && stored(i+1) {
			i++
		}
		end = (d.pages[i].n + 1) * d.pageSize
	} else {
		// A hole up to the next stored page.
		for i < len(d.pages) && (d.pages[i].n <= pn || !stored(i)) {
			i++
		}
		end = d.size
		if i < len(d.pages) {
			end = d.pages[i].n * d.pageSize
		}
		return false, min(end, d.size, off+length) - off, nil
	}
	return true, min(end, d.size, off+length) - off, nil
}

func (d *affDisk) Close() error {
	return closeEach(d.members, func(m affMember) *os.File { return m.f })
}

func (d *affDisk) Info() Info {
	return d.info.clone()
}
