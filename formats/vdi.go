package formats

// VirtualBox Disk Image (VDI): fixed, dynamic and differencing images,
// header versions 0.2 (VirtualBox before 1.4) and 1.1 (with or without the
// LCHS extension), read and write.
//
// Layout (facts from VirtualBox VDICore.h/VDI.cpp and qemu block/vdi.c):
// a 72-byte pre-header (text, signature 0xbeda107f at 0x40, version at
// 0x44), the header, a block map of little-endian uint32 entries, then the
// data blocks, each cbBlockExtra bytes of private data followed by cbBlock
// bytes of disk data. Block map entries are the index of the block in the
// data area, or 0xFFFFFFFF (free: not stored in this image; a differencing
// image reads it from its parent) or 0xFFFFFFFE (zero: reads as zeros in
// every image, even a differencing one). A new block goes at index
// cBlocksAllocated, which the header counts.
//
// Differencing images name their parent by UUID only, so the parent is
// found by reading the headers of the VDI files near the child.

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

func init() {
	register(format{name: "vdi", order: orderHead, probe: vdiProbe, open: vdiOpen})
}

const (
	vdiSignature    = 0xbeda107f
	vdiSigOff       = 0x40
	vdiPreHeaderLen = 0x48
	vdiVersion11    = 0x00010001
	vdiVersion02    = 0x00000002 // pre-1.4 VirtualBox, header "v0"

	vdiBlockFree = 0xFFFFFFFF // not stored here: parent data, or zeros in a base image
	vdiBlockZero = 0xFFFFFFFE // reads as zeros, never from a parent

	vdiTypeNormal = 1
	vdiTypeFixed  = 2
	vdiTypeUndo   = 3
	vdiTypeDiff   = 4

	// Known bits of the header's image flags (VD_VDI_IMAGE_FLAGS_MASK >> 8):
	// zero-expand, and the fixed and diff flags VirtualBox mirrors there.
	vdiKnownFlags = 0x0001 | 0x0100 | 0x0200

	vdiV1MinHeader  = 0x180 // sizeof(VDIHEADER1)
	vdiV1PlusHeader = 0x190 // sizeof(VDIHEADER1PLUS): adds the LCHS geometry
	vdiV0End        = 0x1A4 // pre-header + VDIHEADER0; the v0 block map follows

	vdiMaxBlockSize = 256 << 20 // a writer allocates one block in memory
	vdiMaxExtra     = 256 << 20

	vdiPageEntries = 4096 // block map entries per cached page (16 KiB)
	vdiCachePages  = 256  // cached pages: 4 MiB, 1 Ti of disk at 1 MiB blocks

	vdiMaxDirEntries = 1024 // directory entries read per searched directory
	vdiMaxProbes     = 256  // files whose header is read per searched directory
)

// vdiUUID is a UUID as VirtualBox stores it (IPRT layout: the first three
// fields little-endian).
type vdiUUID [16]byte

func (u vdiUUID) IsZero() bool { return u == vdiUUID{} }

// String formats the UUID the way VirtualBox shows it (and writes it in
// .vbox files).
func (u vdiUUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(u[0:4]),
		binary.LittleEndian.Uint16(u[4:6]), binary.LittleEndian.Uint16(u[6:8]), u[8:10], u[10:16])
}

// vdiHeader is the decoded pre-header and header of any version.
type vdiHeader struct {
	fileInfo      string
	version       uint32
	headerSize    uint32 // v1 cbHeader; 0 for v0
	imageType     uint32
	flags         uint32
	comment       string
	offBlocks     int64
	offData       int64
	diskSize      uint64
	blockSize     uint32
	blockExtra    uint32
	blocks        uint32
	allocated     uint32
	uuid          vdiUUID
	modUUID       vdiUUID
	parentUUID    vdiUUID
	parentModUUID vdiUUID // v1 only
	lchs          [3]uint32
	hasLCHS       bool

	allocatedOff int64 // file offset of cBlocksAllocated
	modUUIDOff   int64 // file offset of uuidModify
}

func vdiProbe(pd *ProbeData) bool {
	return len(pd.Head) >= vdiPreHeaderLen && binary.LittleEndian.Uint32(pd.Head[vdiSigOff:]) == vdiSignature
}

func vdiCString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), "\n")
}

// vdiParseHeader decodes the header at the start of buf (at least 0x200
// bytes, or the whole file when shorter) and checks it against fileSize.
func vdiParseHeader(buf []byte, fileSize int64, path string) (*vdiHeader, error) {
	h, err := vdiDecodeHeader(buf, path)
	if err != nil {
		return nil, err
	}
	if err := h.validate(fileSize, path); err != nil {
		return nil, err
	}
	return h, nil
}

// vdiDecodeHeader decodes the pre-header and the header of its version;
// it fails only where buf does not hold one.
func vdiDecodeHeader(buf []byte, path string) (*vdiHeader, error) {
	le := binary.LittleEndian
	if len(buf) < vdiPreHeaderLen || le.Uint32(buf[vdiSigOff:]) != vdiSignature {
		return nil, corruptf("vdi", path, vdiSigOff, "no VDI signature")
	}
	h := &vdiHeader{fileInfo: vdiCString(buf[:0x40]), version: le.Uint32(buf[0x44:])}
	switch {
	case h.version>>16 == 1:
		if len(buf) < vdiPreHeaderLen+vdiV1MinHeader {
			return nil, corruptf("vdi", path, vdiPreHeaderLen, "file truncated in the header")
		}
		h.headerSize = le.Uint32(buf[0x48:])
		if h.headerSize < vdiV1MinHeader {
			return nil, corruptf("vdi", path, 0x48, "header size %d smaller than %d", h.headerSize, vdiV1MinHeader)
		}
		h.imageType = le.Uint32(buf[0x4C:])
		h.flags = le.Uint32(buf[0x50:])
		h.comment = vdiCString(buf[0x54:0x154])
		h.offBlocks = int64(le.Uint32(buf[0x154:]))
		h.offData = int64(le.Uint32(buf[0x158:]))
		h.diskSize = le.Uint64(buf[0x170:])
		h.blockSize = le.Uint32(buf[0x178:])
		h.blockExtra = le.Uint32(buf[0x17C:])
		h.blocks = le.Uint32(buf[0x180:])
		h.allocated = le.Uint32(buf[0x184:])
		copy(h.uuid[:], buf[0x188:])
		copy(h.modUUID[:], buf[0x198:])
		copy(h.parentUUID[:], buf[0x1A8:])
		copy(h.parentModUUID[:], buf[0x1B8:])
		h.allocatedOff, h.modUUIDOff = 0x184, 0x198
		if h.headerSize >= vdiV1PlusHeader && len(buf) >= vdiPreHeaderLen+vdiV1PlusHeader {
			h.hasLCHS = true
			h.lchs = [3]uint32{le.Uint32(buf[0x1C8:]), le.Uint32(buf[0x1CC:]), le.Uint32(buf[0x1D0:])}
		}
	case h.version == vdiVersion02:
		if len(buf) < vdiV0End {
			return nil, corruptf("vdi", path, vdiPreHeaderLen, "file truncated in the header")
		}
		h.imageType = le.Uint32(buf[0x48:])
		h.flags = le.Uint32(buf[0x4C:])
		h.comment = vdiCString(buf[0x50:0x150])
		h.diskSize = le.Uint64(buf[0x160:])
		h.blockSize = le.Uint32(buf[0x168:])
		h.blocks = le.Uint32(buf[0x16C:])
		h.allocated = le.Uint32(buf[0x170:])
		copy(h.uuid[:], buf[0x174:])
		copy(h.modUUID[:], buf[0x184:])
		copy(h.parentUUID[:], buf[0x194:])
		h.offBlocks = vdiV0End
		h.offData = vdiV0End + 4*int64(h.blocks)
		h.allocatedOff, h.modUUIDOff = 0x170, 0x184
	default:
		return nil, unsupportedf("vdi", path, "header version %d.%d", h.version>>16, h.version&0xffff)
	}
	return h, nil
}

// validate checks the header before any field is used: the layout of a
// v1 header, the type and flags, the geometry, the block map within a
// file of fileSize bytes.
func (h *vdiHeader) validate(fileSize int64, path string) error {
	if h.version>>16 == 1 {
		if h.offBlocks < vdiPreHeaderLen+vdiV1MinHeader {
			return corruptf("vdi", path, 0x154, "block map offset %#x inside the header", h.offBlocks)
		}
		if h.offData < h.offBlocks+4*int64(h.blocks) {
			return corruptf("vdi", path, 0x158, "data offset %#x inside the block map (%#x + %d entries)", h.offData, h.offBlocks, h.blocks)
		}
	}
	switch h.imageType {
	case vdiTypeNormal, vdiTypeFixed, vdiTypeDiff:
	case vdiTypeUndo:
		return unsupportedf("vdi", path, "undo image type (3)")
	default:
		return corruptf("vdi", path, -1, "bad image type %d", h.imageType)
	}
	if f := h.flags &^ vdiKnownFlags; f != 0 {
		return unsupportedf("vdi", path, "unknown image flags %#x", f)
	}
	bs := h.blockSize
	switch {
	case h.diskSize == 0 || h.blocks == 0:
		return corruptf("vdi", path, -1, "empty disk (size %d, %d blocks)", h.diskSize, h.blocks)
	case bs < SectorSize || bs&(bs-1) != 0:
		return corruptf("vdi", path, -1, "block size %d is not a power of two of at least %d", bs, SectorSize)
	case bs > vdiMaxBlockSize:
		return unsupportedf("vdi", path, "block size %d larger than %d", bs, vdiMaxBlockSize)
	case h.blockExtra != 0 && h.blockExtra&(h.blockExtra-1) != 0:
		return corruptf("vdi", path, -1, "block extra size %d is not a power of two", h.blockExtra)
	case h.blockExtra > vdiMaxExtra:
		return unsupportedf("vdi", path, "block extra size %d larger than %d", h.blockExtra, vdiMaxExtra)
	case h.allocated > h.blocks:
		return corruptf("vdi", path, h.allocatedOff, "%d blocks allocated of %d", h.allocated, h.blocks)
	case uint64(bs)*uint64(h.blocks) < h.diskSize:
		return corruptf("vdi", path, -1, "disk size %d larger than %d blocks of %d bytes", h.diskSize, h.blocks, bs)
	}
	if end := h.offBlocks + 4*int64(h.blocks); end > fileSize {
		return corruptf("vdi", path, h.offBlocks, "block map (%d entries) runs past the end of the file (%d bytes)", h.blocks, fileSize)
	}
	if h.imageType == vdiTypeDiff && h.parentUUID.IsZero() {
		return corruptf("vdi", path, -1, "differencing image without a parent UUID")
	}
	return nil
}

// vdiDisk is one VDI image, with its parent for differencing images.
type vdiDisk struct {
	f        *os.File
	path     string
	h        *vdiHeader
	size     int64 // virtual size in bytes (cbDisk, exact)
	sizeUp   int64 // size rounded up to a sector
	bs       int64 // block size
	shift    uint
	total    int64 // bytes per stored block: extra + block
	readOnly bool
	parent   Disk
	warnings []string

	// Block map: pages of entries loaded on demand. mapMu guards the cached
	// pages' contents and mapGen; no file I/O is done while holding it.
	mapMu  sync.RWMutex
	mapGen uint64 // bumped on every block map change
	pages  *lru[uint32, []uint32]

	// allocMu serialises block allocation (and the header fields it
	// changes); readers and writers of allocated blocks never take it.
	allocMu    sync.Mutex
	allocated  atomic.Uint32 // cBlocksAllocated
	mapChecked bool          // block map verified safe for appending
	blockBuf   []byte

	metaMu   sync.Mutex  // guards h.modUUID
	modified atomic.Bool // the modification UUID was renewed

	closeOnce sync.Once
	closeErr  error
}

func vdiOpen(path string, opt Options) (Disk, error) {
	return openDisk(path, opt.ReadOnly, func(f *os.File) (*vdiDisk, error) { return vdiOpenFile(f, path, opt) })
}

func vdiOpenFile(f *os.File, path string, opt Options) (*vdiDisk, error) {
	fsize, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("vdi: %s: %w", path, err)
	}
	buf := make([]byte, min(fsize, 0x200))
	if err := readFullAt(f, buf, 0, "vdi", path); err != nil {
		return nil, err
	}
	h, err := vdiParseHeader(buf, fsize, path)
	if err != nil {
		return nil, err
	}
	d := &vdiDisk{
		f: f, path: path, h: h,
		size:     int64(h.diskSize),
		bs:       int64(h.blockSize),
		total:    int64(h.blockExtra) + int64(h.blockSize),
		readOnly: opt.ReadOnly,
		pages:    newLRU[uint32, []uint32](vdiCachePages),
	}
	for 1<<d.shift < d.bs {
		d.shift++
	}
	d.sizeUp = (d.size + SectorSize - 1) &^ (SectorSize - 1)
	d.allocated.Store(h.allocated)
	if d.size%SectorSize != 0 {
		// VirtualBox shows the guest size rounded down, qemu rounds up; the
		// exact size loses neither the bytes nor the truth.
		d.warnings = append(d.warnings, fmt.Sprintf("disk size %d is not a multiple of %d bytes", d.size, SectorSize))
	}
	if h.version>>16 == 1 && h.version != vdiVersion11 {
		d.warnings = append(d.warnings, fmt.Sprintf("header version %d.%d (read as 1.1)", h.version>>16, h.version&0xffff))
	}
	if h.uuid.IsZero() || h.modUUID.IsZero() {
		d.warnings = append(d.warnings, "null image or modification UUID (VirtualBox refuses such images)")
	}
	if h.imageType == vdiTypeDiff {
		if err := d.openParent(opt); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// openParent finds the parent of a differencing image by UUID and opens it.
func (d *vdiDisk) openParent(opt Options) error {
	want := d.h.parentUUID
	dirs := vdiSearchDirs(d.path, opt.SearchPath)
	self, _ := statPath(d.path)
	var found, mismatch string
	var foundMod vdiUUID
	for _, dir := range dirs {
		p, mod, ok := vdiFindInDir(dir, want, d.h.parentModUUID, self)
		if !ok {
			continue
		}
		if d.h.parentModUUID.IsZero() || mod == d.h.parentModUUID {
			found, mismatch = p, ""
			break
		}
		if mismatch == "" { // keep looking for an exact match
			mismatch, foundMod = p, mod
		}
	}
	if found == "" && mismatch != "" {
		msg := fmt.Sprintf("parent %s has modification UUID {%s}, the child expects {%s} (parent changed after the child was made?)",
			mismatch, foundMod, d.h.parentModUUID)
		if opt.Strict {
			return corruptf("vdi", d.path, -1, "%s", msg)
		}
		d.warnings = append(d.warnings, msg)
		found = mismatch
	}
	if found == "" {
		return fmt.Errorf("vdi: %s: parent image {%s} not found among the VDI files in %s: %w",
			d.path, want, strings.Join(dirs, ", "), os.ErrNotExist)
	}
	parent, err := openParent(d.path, found, opt)
	if err != nil {
		return err
	}
	d.parent = parent
	return nil
}

// vdiSearchDirs lists where a differencing image's parent may be: beside
// it, the folder above (VirtualBox keeps snapshots in <VM>/Snapshots/),
// then the caller's search path.
func vdiSearchDirs(child string, extra []string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if a, err := filepath.Abs(d); err == nil {
			d = a
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	dir := filepath.Dir(child)
	add(dir)
	if a, err := filepath.Abs(dir); err == nil {
		add(filepath.Dir(a))
	}
	for _, d := range extra {
		add(d)
	}
	return dirs
}

// vdiFindInDir looks through a bounded number of files of dir for a VDI
// image whose UUID is want, by content only. It prefers one whose
// modification UUID is wantMod, and returns the path and modification
// UUID of the file chosen.
func vdiFindInDir(dir string, want, wantMod vdiUUID, self os.FileInfo) (string, vdiUUID, bool) {
	df, err := OpenImageFile(dir, false)
	if err != nil {
		return "", vdiUUID{}, false
	}
	ents, _ := df.ReadDir(vdiMaxDirEntries)
	df.Close()
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var first string
	var firstMod vdiUUID
	probes := 0
	for _, name := range names {
		if probes >= vdiMaxProbes {
			break
		}
		p := filepath.Join(dir, name)
		st, err := statPath(p)
		if err != nil || !st.Mode().IsRegular() || (self != nil && os.SameFile(st, self)) {
			continue
		}
		probes++
		uuid, mod, ok := vdiPeekUUIDs(p)
		if !ok || uuid != want {
			continue
		}
		if mod == wantMod {
			return p, mod, true
		}
		if first == "" {
			first, firstMod = p, mod
		}
	}
	return first, firstMod, first != ""
}

// vdiPeekUUIDs reads the image and modification UUIDs of a VDI file.
func vdiPeekUUIDs(path string) (uuid, mod vdiUUID, ok bool) {
	f, err := OpenImageFile(path, false)
	if err != nil {
		return uuid, mod, false
	}
	defer f.Close()
	var b [0x1C8]byte
	n, _ := io.ReadFull(f, b[:])
	le := binary.LittleEndian
	if n < vdiPreHeaderLen || le.Uint32(b[vdiSigOff:]) != vdiSignature {
		return uuid, mod, false
	}
	switch v := le.Uint32(b[0x44:]); {
	case v>>16 == 1 && n >= 0x1A8:
		copy(uuid[:], b[0x188:])
		copy(mod[:], b[0x198:])
	case v == vdiVersion02 && n >= 0x194:
		copy(uuid[:], b[0x174:])
		copy(mod[:], b[0x184:])
	default:
		return uuid, mod, false
	}
	return uuid, mod, true
}

func (d *vdiDisk) Size() int64 { return d.size }

// entry returns block map entry i (i < blocks).
func (d *vdiDisk) entry(i uint32) (uint32, error) {
	var e [1]uint32
	_, err := d.entries(i, e[:])
	return e[0], err
}

// entries copies block map entries from i on into dst, up to the end of
// i's page, and returns how many it copied.
func (d *vdiDisk) entries(i uint32, dst []uint32) (int, error) {
	pg, idx := i/vdiPageEntries, i%vdiPageEntries
	d.mapMu.RLock()
	page, ok := d.pages.Get(pg)
	gen := d.mapGen
	if ok {
		n := copy(dst, page[idx:])
		d.mapMu.RUnlock()
		return n, nil
	}
	d.mapMu.RUnlock()

	page, err := d.loadPage(pg)
	if err != nil {
		return 0, err
	}
	d.mapMu.Lock()
	if d.mapGen != gen {
		// The map changed while we read it: our copy may be stale. Reload
		// under allocMu, which every map change holds. (allocate calls us
		// with allocMu held, but then no change can happen meanwhile.)
		d.mapMu.Unlock()
		d.allocMu.Lock()
		defer d.allocMu.Unlock()
		if page, err = d.loadPage(pg); err != nil {
			return 0, err
		}
		d.mapMu.Lock()
	}
	if cached, ok := d.pages.Get(pg); ok {
		page = cached
	} else {
		d.pages.Put(pg, page)
	}
	n := copy(dst, page[idx:])
	d.mapMu.Unlock()
	return n, nil
}

// loadPage reads page pg of the block map from the file.
func (d *vdiDisk) loadPage(pg uint32) ([]uint32, error) {
	first := int64(pg) * vdiPageEntries
	n := min(int64(d.h.blocks)-first, vdiPageEntries)
	buf := make([]byte, 4*n)
	if err := readFullAt(d.f, buf, d.h.offBlocks+4*first, "vdi", d.path); err != nil {
		return nil, err
	}
	page := make([]uint32, n)
	for i := range page {
		page[i] = binary.LittleEndian.Uint32(buf[4*i:])
	}
	return page, nil
}

// setEntry writes block map entry i to the file and the cache. The caller
// holds allocMu.
func (d *vdiDisk) setEntry(i, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	off := d.h.offBlocks + 4*int64(i)
	if _, err := d.f.WriteAt(b[:], off); err != nil {
		return fmt.Errorf("vdi: %s: writing block map entry %d: %w", d.path, i, err)
	}
	d.mapMu.Lock()
	if page, ok := d.pages.Get(i / vdiPageEntries); ok {
		page[i%vdiPageEntries] = v
	}
	d.mapGen++
	d.mapMu.Unlock()
	return nil
}

func vdiAllocated(e uint32) bool { return e < vdiBlockZero }

// dataOff is the file offset of byte in of stored block ptr.
func (d *vdiDisk) dataOff(ptr uint32, in int64) int64 {
	return d.h.offData + int64(ptr)*d.total + int64(d.h.blockExtra) + in
}

func (d *vdiDisk) ReadAt(p []byte, off int64) (int, error) {
	n := len(p)
	q, err := clampReadSectors(p, off, d.size)
	if err != nil {
		return 0, err
	}
	if err := d.readRange(q, off); err != nil {
		return 0, err
	}
	clearPastEnd(q, off, d.size) // the tail of a partial last sector
	return n, nil
}

// readRange fills q (sector multiple, inside sizeUp) from off, one pread
// per run of contiguously stored blocks and one parent read per run of
// free blocks.
func (d *vdiDisk) readRange(q []byte, off int64) error {
	for len(q) > 0 {
		e, kind, run, err := d.run(off, int64(len(q)))
		if err != nil {
			return err
		}
		switch kind {
		case vdiKindData:
			in := off & (d.bs - 1)
			if err := readFullAt(d.f, q[:run], d.dataOff(e, in), "vdi", d.path); err != nil {
				return err
			}
		case vdiKindZero:
			clear(q[:run])
		case vdiKindParent:
			if err := readParent(d.parent, q[:run], off); err != nil {
				return err
			}
		}
		q = q[run:]
		off += run
	}
	return nil
}

// run looks up the block holding off and returns its entry, its kind and
// how many of the n bytes from off (n > 0) can be handled alike: blocks
// stored one after another in the file (one pread or pwrite), or blocks
// that all read as zeros or all from the parent.
func (d *vdiDisk) run(off, n int64) (e uint32, kind int, run int64, err error) {
	in := off & (d.bs - 1)
	var buf [64]uint32
	want := min((in+n+d.bs-1)>>d.shift, int64(len(buf)))
	k, err := d.entries(uint32(off>>d.shift), buf[:want])
	if err != nil {
		return 0, 0, 0, err
	}
	e = buf[0]
	kind = d.kind(e)
	run = min(d.bs-in, n)
	for j := 1; j < k && run < n; j++ {
		if kind == vdiKindData {
			if d.h.blockExtra != 0 || buf[j] != e+uint32(j) {
				break
			}
		} else if d.kind(buf[j]) != kind {
			break
		}
		run += min(d.bs, n-run)
	}
	return e, kind, run, nil
}

const (
	vdiKindData   = iota // stored in this image
	vdiKindZero          // reads as zeros
	vdiKindParent        // read from the parent
)

func (d *vdiDisk) kind(e uint32) int {
	switch {
	case vdiAllocated(e):
		return vdiKindData
	case e == vdiBlockFree && d.parent != nil:
		return vdiKindParent
	default:
		return vdiKindZero
	}
}

func (d *vdiDisk) WriteAt(p []byte, off int64) (int, error) {
	return writeUnits(p, off, d.size, d.readOnly, 0, d.markModified, d.write)
}

// write writes q at off: in place where blocks are stored, allocating
// block by block where not.
func (d *vdiDisk) write(q []byte, off int64) error {
	for len(q) > 0 {
		e, kind, run, err := d.run(off, int64(len(q)))
		if err != nil {
			return err
		}
		in := off & (d.bs - 1)
		if kind == vdiKindData {
			if err := writeFullAt(d.f, q[:run], d.dataOff(e, in), "vdi", d.path); err != nil {
				return err
			}
		} else {
			run = min(d.bs-in, int64(len(q))) // allocation goes block by block
			if err := d.allocate(uint32(off>>d.shift), in, q[:run]); err != nil {
				return err
			}
		}
		q = q[run:]
		off += run
	}
	return nil
}

// markModified gives the image a new modification UUID on its first
// write, as VirtualBox does, so children made from it can tell.
func (d *vdiDisk) markModified() error {
	if d.modified.Load() {
		return nil
	}
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if d.modified.Load() {
		return nil
	}
	var u vdiUUID
	if _, err := rand.Read(u[:]); err != nil {
		return fmt.Errorf("vdi: %s: new modification UUID: %w", d.path, err)
	}
	u[7] = u[7]&0x0f | 0x40 // version 4 (time_hi_and_version is little-endian)
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	if _, err := d.f.WriteAt(u[:], d.h.modUUIDOff); err != nil {
		return fmt.Errorf("vdi: %s: writing modification UUID: %w", d.path, err)
	}
	d.h.modUUID = u
	d.modified.Store(true)
	return nil
}

// allocate writes data at offset in of block bi, which was not stored
// when the caller looked. It follows VirtualBox's rules: an all-zero
// write to an unstored block stores nothing (a differencing image marks a
// fully overwritten free block as zero), otherwise the block is appended
// at index cBlocksAllocated with the rest of its bytes from the parent
// (free block of a differencing image) or zeros, then the header count and
// the block map entry are written.
func (d *vdiDisk) allocate(bi uint32, in int64, data []byte) error {
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	e, err := d.entry(bi)
	if err != nil {
		return err
	}
	if vdiAllocated(e) { // another writer got here first
		return writeFullAt(d.f, data, d.dataOff(e, in), "vdi", d.path)
	}
	start := int64(bi) << d.shift
	if isZero(data) {
		if d.kind(e) == vdiKindZero {
			return nil // already reads as zeros
		}
		if in == 0 && int64(len(data)) >= min(d.bs, d.size-start) {
			return d.setEntry(bi, vdiBlockZero) // free -> zero: hide the parent's data
		}
	}
	if !d.mapChecked {
		if err := d.checkMap(); err != nil {
			return err
		}
		d.mapChecked = true
	}
	idx := d.allocated.Load()
	if idx >= d.h.blocks {
		return corruptf("vdi", d.path, d.h.allocatedOff, "no free block index: %d blocks allocated of %d", idx, d.h.blocks)
	}
	if d.blockBuf == nil {
		d.blockBuf = make([]byte, d.total)
	}
	buf := d.blockBuf
	clear(buf[:d.h.blockExtra])
	body := buf[d.h.blockExtra:]
	if d.kind(e) == vdiKindParent {
		valid := min(d.bs, d.sizeUp-start)
		if _, err := d.parent.ReadAt(body[:valid], start); err != nil {
			return err
		}
		clear(body[valid:])
	} else {
		clear(body)
	}
	copy(body[in:], data)
	fileOff := d.h.offData + int64(idx)*d.total
	if _, err := d.f.WriteAt(buf, fileOff); err != nil {
		return fmt.Errorf("vdi: %s: writing new block at %#x: %w", d.path, fileOff, err)
	}
	// Header count before the map entry: a crash between them leaks a
	// block instead of letting two entries share one.
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], idx+1)
	if _, err := d.f.WriteAt(b[:], d.h.allocatedOff); err != nil {
		return fmt.Errorf("vdi: %s: writing allocated block count: %w", d.path, err)
	}
	d.allocated.Store(idx + 1)
	return d.setEntry(bi, idx)
}

// checkMap verifies, before the first allocation, that no block map entry
// points at or past cBlocksAllocated, where new blocks are appended.
// It reads the map in pages without keeping it.
func (d *vdiDisk) checkMap() error {
	limit := d.allocated.Load()
	for pg := uint32(0); int64(pg)*vdiPageEntries < int64(d.h.blocks); pg++ {
		page, err := d.loadPage(pg)
		if err != nil {
			return err
		}
		for i, e := range page {
			if vdiAllocated(e) && e >= limit {
				n := int64(pg)*vdiPageEntries + int64(i)
				return corruptf("vdi", d.path, d.h.offBlocks+4*n,
					"block map entry %d points at block %d, past the %d allocated: refusing to allocate", n, e, limit)
			}
		}
	}
	return nil
}

// Map reports runs of blocks stored somewhere in the chain.
func (d *vdiDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map offset %d length %d", ErrInvalid, off, length)
	}
	length = min(length, d.sizeUp-off)
	var alloc bool
	var n int64
	var buf [512]uint32
	var ents []uint32
	for n < length {
		pos := off + n
		if len(ents) == 0 {
			k, err := d.entries(uint32(pos>>d.shift), buf[:])
			if err != nil {
				return false, 0, err
			}
			ents = buf[:k]
		}
		e := ents[0]
		ents = ents[1:]
		seg := min(d.bs-pos&(d.bs-1), length-n)
		var a bool
		an := seg
		switch d.kind(e) {
		case vdiKindData:
			a = true
		case vdiKindParent:
			var err error
			if a, an, err = d.mapParent(pos, seg); err != nil {
				return false, 0, err
			}
		}
		if n > 0 && a != alloc {
			break
		}
		alloc = a
		n += an
		if an < seg {
			break
		}
	}
	return alloc, n, nil
}

// mapParent answers Map for seg bytes at pos, inside one free block of a
// differencing image.
func (d *vdiDisk) mapParent(pos, seg int64) (bool, int64, error) {
	psize := d.parent.Size()
	pm, ok := d.parent.(Mapper)
	switch {
	case pos >= psize:
		return false, seg, nil
	case !ok:
		return true, seg, nil // unknown: say stored
	}
	a, pn, err := pm.Map(pos, min(seg, psize-pos))
	if err != nil {
		return false, 0, err
	}
	pn = (pn + SectorSize - 1) &^ (SectorSize - 1)
	return a, max(SectorSize, min(pn, seg)), nil
}

func (d *vdiDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	return syncFile(d.f, "vdi", d.path)
}

func (d *vdiDisk) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = closeChain(d.Flush(), d.f, d.parent)
	})
	return d.closeErr
}

func (d *vdiDisk) Info() Info {
	h := d.h
	info := Info{
		Format:      "vdi",
		Path:        d.path,
		Files:       []string{d.path},
		Size:        d.size,
		ClusterSize: d.bs,
		Allocated:   int64(d.allocated.Load()) * d.bs,
		ReadOnly:    d.readOnly,
		Warnings:    append([]string(nil), d.warnings...),
	}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	switch h.imageType {
	case vdiTypeFixed:
		info.Variant = "fixed"
	case vdiTypeDiff:
		info.Variant = "differencing"
	default:
		info.Variant = "dynamic"
	}
	d.metaMu.Lock()
	mod := h.modUUID
	d.metaMu.Unlock()
	md := map[string]string{
		"uuid":              h.uuid.String(),
		"modification_uuid": mod.String(),
		"header_version":    fmt.Sprintf("%d.%d", h.version>>16, h.version&0xffff),
	}
	if !h.parentUUID.IsZero() {
		md["parent_uuid"] = h.parentUUID.String()
	}
	if !h.parentModUUID.IsZero() {
		md["parent_modification_uuid"] = h.parentModUUID.String()
	}
	if h.comment != "" {
		md["comment"] = h.comment
	}
	if h.fileInfo != "" {
		md["file_info"] = h.fileInfo
	}
	if h.hasLCHS && h.lchs[0] != 0 {
		md["lchs_geometry"] = fmt.Sprintf("%d/%d/%d", h.lchs[0], h.lchs[1], h.lchs[2])
	}
	info.Metadata = md
	if h.blockExtra != 0 {
		info.Features = append(info.Features, fmt.Sprintf("block-extra=%d", h.blockExtra))
	}
	if h.flags&1 != 0 {
		info.Features = append(info.Features, "zero-expand")
	}
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}

// CanWrite: every VDI variant vdflat opens can be written.
func (d *vdiDisk) CanWrite() bool { return true }
