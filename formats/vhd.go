package formats

// VHD (Microsoft Virtual PC / Virtual Server / Hyper-V "vpc"): fixed,
// dynamic and differencing images, read and write.
//
// Layout (Microsoft "Virtual Hard Disk Image Format Specification", all
// fields big-endian):
//   - a 512-byte footer ("conectix") at the end of every image; dynamic and
//     differencing images keep a copy of it at offset 0. Very old images
//     have a 511-byte footer.
//   - fixed: the disk data, then the footer.
//   - dynamic/differencing: a 1024-byte dynamic header ("cxsparse") at the
//     footer's data offset, a block allocation table (BAT, one uint32
//     sector number per block, 0xFFFFFFFF = not allocated), and blocks,
//     each a sector bitmap (one bit per sector, most significant bit
//     first, padded to whole sectors) followed by the block's data.
//     Appending a block overwrites the footer, which moves to the new end.
//   - differencing: sectors whose bitmap bit is clear, and whole
//     unallocated blocks, come from the parent, found through the parent
//     locators and the parent name of the dynamic header and checked by
//     its UUID.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

func init() {
	// orderTail: a fixed VHD is recognised by its trailer only, and its
	// first sector is the guest's, so formats with a magic number at the
	// start go first. Dynamic images have "conectix" at offset 0, which no
	// head format claims, so they lose nothing by probing here.
	register(format{name: "vhd", order: orderTail, probe: vhdProbe, open: vhdOpen})
}

const (
	vhdFooterSize    = 512
	vhdDynHeaderSize = 1024

	vhdTypeFixed   = 2
	vhdTypeDynamic = 3
	vhdTypeDiff    = 4

	vhdUnallocated = 0xFFFFFFFF
	vhdBATPage     = 1024 // BAT entries per cached piece (4 KiB)

	vhdMaxBlockSize  = 1 << 30
	vhdMaxLocatorLen = 64 << 10 // a UTF-16 path of 32 Ki characters
	vhdMaxSize       = 1 << 50  // far beyond the 2040 GiB the format allows
)

var (
	vhdCookie    = []byte("conectix")
	vhdDynCookie = []byte("cxsparse")
	// vhdEpoch is the origin of VHD timestamps.
	vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// vhdProbe claims a file with a dynamic footer copy at offset 0 or a
// footer in the last 512 (or, for old images, 511) bytes.
func vhdProbe(pd *ProbeData) bool {
	if pd.IsDir {
		return false
	}
	if len(pd.Head) >= vhdFooterSize && bytes.HasPrefix(pd.Head, vhdCookie) {
		if t := binary.BigEndian.Uint32(pd.Head[60:]); t != vhdTypeFixed {
			return true
		}
	}
	return vhdTailFooterLen(pd.Tail) != 0
}

// vhdTailFooterLen reports the length of the footer at the end of tail
// (512, 511 for old images) or 0 when there is none.
func vhdTailFooterLen(tail []byte) int {
	for _, n := range []int{vhdFooterSize, vhdFooterSize - 1} {
		if len(tail) >= n && bytes.HasPrefix(tail[len(tail)-n:], vhdCookie) {
			return n
		}
	}
	return 0
}

// vhdFooter is the parsed hard disk footer. raw keeps the 512 bytes so
// that a moved footer is written back unchanged (checksum recomputed).
type vhdFooter struct {
	raw        [vhdFooterSize]byte
	version    uint32
	dataOffset uint64
	timestamp  uint32
	creatorApp string // 4 bytes, as stored
	creatorVer uint32
	creatorOS  string
	origSize   uint64
	curSize    uint64
	cyls       uint16
	heads      uint8
	spt        uint8
	diskType   uint32
	checksum   uint32
	uuid       [16]byte
	savedState uint8
}

func vhdParseFooter(b []byte) *vhdFooter {
	f := &vhdFooter{}
	copy(f.raw[:], b) // a 511-byte footer leaves the last reserved byte 0
	r := f.raw[:]
	be := binary.BigEndian
	f.version = be.Uint32(r[12:])
	f.dataOffset = be.Uint64(r[16:])
	f.timestamp = be.Uint32(r[24:])
	f.creatorApp = string(r[28:32])
	f.creatorVer = be.Uint32(r[32:])
	f.creatorOS = string(r[36:40])
	f.origSize = be.Uint64(r[40:])
	f.curSize = be.Uint64(r[48:])
	f.cyls = be.Uint16(r[56:])
	f.heads = r[58]
	f.spt = r[59]
	f.diskType = be.Uint32(r[60:])
	f.checksum = be.Uint32(r[64:])
	copy(f.uuid[:], r[68:84])
	f.savedState = r[84]
	return f
}

// vhdChecksum is the one's complement of the byte sum of b, the 4 bytes
// at skip (the stored checksum) excluded.
func vhdChecksum(b []byte, skip int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < skip || i >= skip+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}

// footerOK reports whether the footer's checksum is right.
func (f *vhdFooter) footerOK() bool { return vhdChecksum(f.raw[:], 64) == f.checksum }

// bytes returns the footer as written back: the original bytes with a
// correct checksum.
func (f *vhdFooter) bytes() []byte {
	b := f.raw
	binary.BigEndian.PutUint32(b[64:], vhdChecksum(b[:], 64))
	return b[:]
}

// virtualSize applies the rule real readers use. Virtual PC (and qemu's
// old images) size the disk by its CHS geometry; Hyper-V, Disk2vhd,
// XenServer, XenConverter, qemu's force_size images and VirtualBox use
// current_size. The maximum geometry means "too big for CHS": use
// current_size then too (qemu block/vpc.c, iotest 146; VirtualBox VHD.cpp
// reads current_size for its own images).
func (f *vhdFooter) virtualSize() (size int64, rule string) {
	switch f.creatorApp {
	case "win ", "qem2", "d2v ", "d2v\x00", "CTXS", "tap\x00", "vbox":
		return int64(f.curSize), "current_size"
	}
	chs := int64(f.cyls) * int64(f.heads) * int64(f.spt)
	if chs == 65535*16*255 || chs == 0 {
		return int64(f.curSize), "current_size"
	}
	return chs * SectorSize, "chs"
}

// vhdLocator is one parent locator entry of the dynamic header.
type vhdLocator struct {
	code string // "W2ku", "W2ru", "MacX", ...
	path string // decoded, as stored (Windows separators kept)
}

// vhdDisk is an open VHD image.
type vhdDisk struct {
	f        *os.File
	path     string
	readOnly bool
	footer   *vhdFooter
	diskType uint32
	size     int64 // virtual size, whole sectors
	sizeRule string
	warnings []string

	// fixed
	tailLen int64 // footer length at the end of the file (0: none)

	// dynamic and differencing
	fileSize   int64 // at open
	hasHead    bool  // a footer copy at offset 0
	headRaw    [vhdFooterSize]byte
	tableOff   int64
	maxEntries uint32
	entries    int64 // BAT entries in use: ceil(size / blockSize)
	blockSize  int64
	bitmapSize int64
	parentName string
	parentUUID [16]byte
	locators   []vhdLocator
	parent     Disk

	// mu guards gen, which counts metadata updates so that a reader that
	// loaded a table piece from the file while a writer changed it does
	// not cache a stale copy. Cached pieces are never modified in place.
	mu      sync.Mutex
	gen     uint64
	bat     *lru[int64, *[vhdBATPage]uint32]
	bitmaps *lru[int64, []byte]

	// allocMu serialises allocation and bitmap updates (writers only).
	allocMu    sync.Mutex
	nextFree   int64 // where the next block goes (the footer's place); 0 = not yet computed
	headSynced bool
	allocBytes int64 // virtual bytes in allocated blocks; -1 = not yet counted
}

func vhdOpen(path string, opt Options) (Disk, error) {
	return openDisk(path, opt.ReadOnly, func(f *os.File) (*vhdDisk, error) { return vhdLoad(f, path, opt) })
}

func (d *vhdDisk) corrupt(off int64, msg string, a ...any) error {
	return corruptf("vhd", d.path, off, msg, a...)
}

func (d *vhdDisk) warnf(msg string, a ...any) {
	d.warnings = append(d.warnings, fmt.Sprintf(msg, a...))
}

func vhdLoad(f *os.File, path string, opt Options) (*vhdDisk, error) {
	d := &vhdDisk{f: f, path: path, readOnly: opt.ReadOnly, allocBytes: -1}
	size, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("vhd: %s: %w", path, err)
	}
	d.fileSize = size
	if err := d.readFooter(opt); err != nil {
		return nil, err
	}
	ft := d.footer
	d.diskType = ft.diskType
	vsize, rule := ft.virtualSize()
	d.sizeRule = rule
	if vsize < 0 || vsize > vhdMaxSize {
		return nil, d.corrupt(-1, "virtual size %d out of range", uint64(vsize))
	}
	// Readers count whole sectors (qemu truncates the same way).
	d.size = vsize / SectorSize * SectorSize
	switch ft.diskType {
	case vhdTypeFixed:
		if d.tailLen == 0 {
			return nil, d.corrupt(-1, "fixed image without a footer at the end")
		}
		if d.size > d.fileSize-d.tailLen {
			return nil, d.corrupt(-1, "fixed image holds %d bytes of data, virtual size is %d", d.fileSize-d.tailLen, d.size)
		}
		return d, nil
	case vhdTypeDynamic, vhdTypeDiff:
		if err := d.readDynHeader(opt); err != nil {
			return nil, err
		}
		if ft.diskType == vhdTypeDiff {
			if err := d.openParent(opt); err != nil {
				return nil, err
			}
		}
		return d, nil
	default:
		return nil, unsupportedf("vhd", path, "disk type %d (only fixed 2, dynamic 3 and differencing 4 exist)", ft.diskType)
	}
}

// readFooter picks the footer: for dynamic images the copy at offset 0
// (as qemu), for fixed images the one at the end; a copy with a good
// checksum wins over one with a bad checksum, which is tolerated (libvhdi
// reads such images; some tools wrote bad checksums) unless opt.Strict.
func (d *vhdDisk) readFooter(opt Options) error {
	var cands []*vhdFooter
	if d.fileSize >= vhdFooterSize {
		if err := readFullAt(d.f, d.headRaw[:], 0, "vhd", d.path); err != nil {
			return err
		}
		if bytes.HasPrefix(d.headRaw[:], vhdCookie) {
			if ft := vhdParseFooter(d.headRaw[:]); ft.diskType != vhdTypeFixed {
				d.hasHead = true
				cands = append(cands, ft)
			}
		}
	}
	tail := make([]byte, min(d.fileSize, vhdFooterSize))
	if err := readFullAt(d.f, tail, d.fileSize-int64(len(tail)), "vhd", d.path); err != nil {
		return err
	}
	if n := vhdTailFooterLen(tail); n != 0 {
		d.tailLen = int64(n)
		cands = append(cands, vhdParseFooter(tail[len(tail)-n:]))
	}
	if len(cands) == 0 {
		return d.corrupt(-1, "no footer (\"conectix\") at offset 0 or at the end of the file")
	}
	pick := cands[0]
	if len(cands) == 2 && cands[1].diskType == vhdTypeFixed && cands[1].footerOK() {
		// A valid fixed footer at the end wins over guest data at offset
		// 0 that merely looks like a dynamic footer.
		d.hasHead = false
		cands = cands[1:]
		pick = cands[0]
	}
	for _, c := range cands {
		if c.footerOK() {
			pick = c
			break
		}
	}
	if !pick.footerOK() {
		msg := fmt.Sprintf("footer checksum mismatch: stored %#08x, computed %#08x", pick.checksum, vhdChecksum(pick.raw[:], 64))
		if opt.Strict {
			return d.corrupt(-1, "%s", msg)
		}
		d.warnf("%s (tolerated)", msg)
	}
	if len(cands) == 2 && cands[0].diskType != cands[1].diskType {
		d.warnf("footer copies at offset 0 and at the end differ")
	}
	if pick.version>>16 != 1 {
		d.warnf("footer format version %#08x (expected 0x00010000)", pick.version)
	}
	d.footer = pick
	return nil
}

// vhdDynHeader is the decoded dynamic disk header.
type vhdDynHeader struct {
	cookieOK   bool
	tableOff   uint64
	version    uint32
	maxEntries uint32
	blockSize  int64
	checksum   uint32 // as stored
	computed   uint32 // over the header read
	parentUUID [16]byte
	parentName string
	locators   [8]vhdLocatorEntry
}

// vhdLocatorEntry is one parent locator slot of the dynamic header.
type vhdLocatorEntry struct {
	code string // platform code, 4 bytes as stored
	used bool   // a non-zero code
	n    int64  // data length
	off  uint64 // data offset in the file
}

func vhdDecodeDynHeader(h []byte) *vhdDynHeader {
	be := binary.BigEndian
	dh := &vhdDynHeader{
		cookieOK:   bytes.HasPrefix(h, vhdDynCookie),
		tableOff:   be.Uint64(h[16:]),
		version:    be.Uint32(h[24:]),
		maxEntries: be.Uint32(h[28:]),
		blockSize:  int64(be.Uint32(h[32:])),
		checksum:   be.Uint32(h[36:]),
		computed:   vhdChecksum(h, 36),
		parentName: vhdUTF16(h[64:576], binary.BigEndian),
	}
	copy(dh.parentUUID[:], h[40:56])
	for i := range dh.locators {
		e := h[576+24*i : 600+24*i]
		dh.locators[i] = vhdLocatorEntry{code: string(e[0:4]), used: be.Uint32(e[0:]) != 0, n: int64(be.Uint32(e[8:])), off: be.Uint64(e[16:])}
	}
	return dh
}

// validate checks the header found at hoff of a file of fileSize bytes
// against a virtual size of size bytes: the BAT must cover it and lie in
// the file. A bad checksum or version is a warning, unless strict.
func (h *vhdDynHeader) validate(hoff, fileSize, size int64, strict bool, path string) (warnings []string, err error) {
	if !h.cookieOK {
		return nil, corruptf("vhd", path, hoff, "no dynamic header (\"cxsparse\")")
	}
	if h.checksum != h.computed {
		msg := fmt.Sprintf("dynamic header checksum mismatch: stored %#08x, computed %#08x", h.checksum, h.computed)
		if strict {
			return nil, corruptf("vhd", path, hoff, "%s", msg)
		}
		warnings = append(warnings, msg+" (tolerated)")
	}
	if h.version>>16 != 1 {
		warnings = append(warnings, fmt.Sprintf("dynamic header version %#08x (expected 0x00010000)", h.version))
	}
	bs := h.blockSize
	if bs < SectorSize || bs > vhdMaxBlockSize || bs%SectorSize != 0 {
		return nil, corruptf("vhd", path, hoff+32, "block size %d not a multiple of 512 between 512 and 1 GiB", bs)
	}
	entries := (size + bs - 1) / bs
	if int64(h.maxEntries) < entries {
		return nil, corruptf("vhd", path, hoff+28, "block table has %d entries, virtual size %d needs %d", h.maxEntries, size, entries)
	}
	// The whole table must be in the file, as every writer puts it (this
	// bounds max_table_entries by the file size); only the entries the
	// virtual size needs are ever read, in pieces.
	if h.tableOff > uint64(fileSize) || h.tableOff+uint64(h.maxEntries)*4 > uint64(fileSize) {
		return nil, corruptf("vhd", path, hoff+16, "block table of %d entries (%d bytes, %d needed for the virtual size) at %#x runs past the end of the file (%d bytes)",
			h.maxEntries, uint64(h.maxEntries)*4, entries, h.tableOff, fileSize)
	}
	return warnings, nil
}

// readDynHeader reads the dynamic header and checks the BAT geometry.
func (d *vhdDisk) readDynHeader(opt Options) error {
	off := d.footer.dataOffset
	if off > uint64(d.fileSize) || off+vhdDynHeaderSize > uint64(d.fileSize) || off < vhdFooterSize && d.hasHead {
		return d.corrupt(-1, "dynamic header (%d bytes at %#x) runs past the end of the file (%d bytes)", vhdDynHeaderSize, off, d.fileSize)
	}
	hoff := int64(off)
	b := make([]byte, vhdDynHeaderSize)
	if err := readFullAt(d.f, b, hoff, "vhd", d.path); err != nil {
		return err
	}
	h := vhdDecodeDynHeader(b)
	warnings, err := h.validate(hoff, d.fileSize, d.size, opt.Strict, d.path)
	if err != nil {
		return err
	}
	d.warnings = append(d.warnings, warnings...)
	d.maxEntries = h.maxEntries
	d.blockSize = h.blockSize
	d.bitmapSize = roundUp((h.blockSize/SectorSize+7)/8, SectorSize) // at least one sector
	d.entries = (d.size + h.blockSize - 1) / h.blockSize
	d.tableOff = int64(h.tableOff)
	d.bat = newLRU[int64, *[vhdBATPage]uint32](4096) // up to 16 MiB: a whole 2 TiB disk
	d.bitmaps = newLRU[int64, []byte](int(max(64, (16<<20)/d.bitmapSize)))

	if d.footer.diskType != vhdTypeDiff {
		return nil
	}
	d.parentUUID = h.parentUUID
	d.parentName = h.parentName
	return d.readLocators(h)
}

// readLocators reads the parent locators a differencing image records;
// one that points outside the file is skipped with a warning.
func (d *vhdDisk) readLocators(h *vhdDynHeader) error {
	for i, e := range h.locators {
		if !e.used || e.n == 0 {
			continue
		}
		if e.n > vhdMaxLocatorLen || e.off > uint64(d.fileSize) || e.off+uint64(e.n) > uint64(d.fileSize) {
			d.warnf("parent locator %d (%q): %d bytes at %#x outside the file; ignored", i, e.code, e.n, e.off)
			continue
		}
		buf := make([]byte, e.n)
		if err := readFullAt(d.f, buf, int64(e.off), "vhd", d.path); err != nil {
			return err
		}
		var p string
		switch e.code {
		case "W2ku", "W2ru":
			p = vhdUTF16(buf, binary.LittleEndian)
		case "Wi2k", "Wi2r": // deprecated: ANSI
			p = strings.TrimRight(string(buf), "\x00")
		case "MacX": // file URL, UTF-8
			s := strings.TrimRight(string(buf), "\x00")
			if u, err := url.Parse(s); err == nil && u.Scheme == "file" {
				p = u.Path
			} else {
				p = s
			}
		default: // "Mac " is an alias record: not a path
			continue
		}
		if p != "" {
			d.locators = append(d.locators, vhdLocator{e.code, p})
		}
	}
	return nil
}

// vhdUTF16 decodes a NUL-terminated UTF-16 string.
func vhdUTF16(b []byte, order binary.ByteOrder) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := order.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// vhdWinPath turns a stored path into a slash-separated one and says
// whether it can be used as a path here: relative paths and POSIX
// absolute paths can; Windows absolute paths (drive letters, UNC) only
// give a base name.
func vhdWinPath(p string, relative bool) (conv string, usable bool) {
	s := strings.ReplaceAll(p, `\`, "/")
	winAbs := len(s) >= 2 && s[1] == ':' || strings.HasPrefix(s, "//")
	if relative && !winAbs && !strings.HasPrefix(s, "/") {
		return s, true
	}
	if !winAbs && strings.HasPrefix(s, "/") {
		return s, true
	}
	return s, false
}

// vhdBase is the last element of a Windows or POSIX path.
func vhdBase(p string) string {
	s := strings.ReplaceAll(p, `\`, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) >= 2 && s[1] == ':' { // "C:name"
		s = s[2:]
	}
	return s
}

// parentCandidates lists where the parent may be, best first: relative
// locators (resolved against the child's directory), absolute paths that
// make sense here, then the parent's base name in the child's directory
// and in the search path.
func (d *vhdDisk) parentCandidates(searchPath []string) []string {
	var rel, abs, base []string
	for _, l := range d.locators {
		s, usable := vhdWinPath(l.path, l.code == "W2ru" || l.code == "Wi2r")
		switch {
		case usable && !strings.HasPrefix(s, "/"):
			rel = append(rel, s)
		case usable:
			abs = append(abs, s)
		}
		base = append(base, vhdBase(l.path))
	}
	if d.parentName != "" {
		if s, usable := vhdWinPath(d.parentName, true); usable {
			if strings.HasPrefix(s, "/") {
				abs = append(abs, s)
			} else {
				rel = append(rel, s)
			}
		}
		base = append(base, vhdBase(d.parentName))
	}
	var elsewhere []string
	for _, dir := range searchPath {
		if dir, err := filepath.Abs(dir); err == nil {
			for _, b := range base {
				if b != "" {
					elsewhere = append(elsewhere, filepath.Join(dir, b))
				}
			}
		}
	}
	base = append(base, elsewhere...)
	var out []string
	seen := map[string]bool{}
	for _, c := range append(append(rel, abs...), base...) {
		if c == "" || c == "." || c == ".." {
			continue
		}
		full := c
		if !filepath.IsAbs(full) {
			full = filepath.Join(filepath.Dir(d.path), c)
		}
		if !seen[full] {
			seen[full] = true
			out = append(out, c)
		}
	}
	return out
}

// openParent finds, opens and checks the parent of a differencing image.
func (d *vhdDisk) openParent(opt Options) error {
	cands := d.parentCandidates(opt.SearchPath)
	if len(cands) == 0 {
		return d.corrupt(-1, "differencing image names no parent (no locators, no parent name)")
	}
	var firstErr error
	var tried []string
	for _, c := range cands {
		full := c
		if !filepath.IsAbs(full) {
			full = filepath.Join(filepath.Dir(d.path), c)
		}
		tried = append(tried, full)
		// Only regular files: a crafted locator must not make us read a
		// FIFO or a device.
		if st, err := statPath(full); err != nil || !st.Mode().IsRegular() {
			continue
		}
		// Look at the candidate's UUID before opening its whole chain, so
		// that wrong candidates cost one read each, never a chain each.
		if err := d.peekParent(full); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		p, err := openParent(d.path, c, opt)
		if err == nil {
			err = d.checkParent(p, full)
			if err != nil {
				p.Close()
			}
		}
		if err != nil {
			return err
		}
		d.parent = p
		return nil
	}
	if firstErr != nil {
		return firstErr
	}
	want := d.parentName
	if len(d.locators) > 0 {
		want = d.locators[0].path
	}
	var locs []string
	for _, l := range d.locators {
		locs = append(locs, fmt.Sprintf("%s %q", l.code, l.path))
	}
	return fmt.Errorf("vhd: %s: missing parent %q (parent name %q; locators: %s; looked for %s): %w",
		d.path, vhdBase(want), d.parentName, strings.Join(locs, ", "), strings.Join(tried, ", "), fs.ErrNotExist)
}

// peekParent reads the footer of a candidate parent and compares its
// UUID with the one the child records.
func (d *vhdDisk) peekParent(full string) error {
	f, err := OpenImageFile(full, false)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	var ft *vhdFooter
	buf := make([]byte, vhdFooterSize)
	if size >= vhdFooterSize {
		if _, err := f.ReadAt(buf, 0); err == nil && bytes.HasPrefix(buf, vhdCookie) {
			ft = vhdParseFooter(buf)
		} else if _, err := f.ReadAt(buf, size-vhdFooterSize); err == nil && bytes.HasPrefix(buf, vhdCookie) {
			ft = vhdParseFooter(buf)
		} else if _, err := f.ReadAt(buf[:vhdFooterSize-1], size-vhdFooterSize+1); err == nil && bytes.HasPrefix(buf, vhdCookie) {
			ft = vhdParseFooter(buf[:vhdFooterSize-1])
		}
	}
	if ft == nil {
		return d.corrupt(-1, "parent %s is not a VHD image", full)
	}
	if d.parentUUID != ([16]byte{}) && ft.uuid != d.parentUUID {
		return d.corrupt(-1, "parent %s has UUID %s, the child expects %s", full, vhdUUID(ft.uuid), vhdUUID(d.parentUUID))
	}
	return nil
}

// checkParent compares the parent's UUID with the one the child records.
func (d *vhdDisk) checkParent(p Disk, full string) error {
	// A VHD's parent is a VHD: the UUID it records is a VHD footer's.
	pv, ok := p.(*vhdDisk)
	if !ok {
		return d.corrupt(-1, "parent %s is a %s image, not a VHD", full, p.Info().Format)
	}
	if d.parentUUID == ([16]byte{}) {
		d.warnf("no parent UUID recorded; parent %s not checked", full)
		return nil
	}
	if pv.footer.uuid != d.parentUUID {
		return d.corrupt(-1, "parent %s has UUID %s, the child expects %s", full, vhdUUID(pv.footer.uuid), vhdUUID(d.parentUUID))
	}
	if pv.size != d.size {
		// Hyper-V can expand a child; what the parent lacks reads as zeros.
		d.warnf("parent %s is %d bytes, this image %d", full, pv.size, d.size)
	}
	return nil
}

// vhdUUID formats the 16 bytes as stored.
func vhdUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (d *vhdDisk) Size() int64 { return d.size }

// batEntry returns the BAT entry of block b, loading its 4 KiB piece of
// the table on demand.
func (d *vhdDisk) batEntry(b int64) (uint32, error) {
	pi := b / vhdBATPage
	if pg, ok := d.bat.Get(pi); ok {
		return pg[b%vhdBATPage], nil
	}
	d.mu.Lock()
	g := d.gen
	d.mu.Unlock()
	pg := new([vhdBATPage]uint32)
	first := pi * vhdBATPage
	n := min(vhdBATPage, d.entries-first)
	buf := make([]byte, n*4)
	if err := readFullAt(d.f, buf, d.tableOff+first*4, "vhd", d.path); err != nil {
		return 0, err
	}
	for i := range pg {
		pg[i] = vhdUnallocated
	}
	for i := int64(0); i < n; i++ {
		pg[i] = binary.BigEndian.Uint32(buf[4*i:])
	}
	d.mu.Lock()
	if d.gen == g {
		d.bat.Put(pi, pg)
	}
	d.mu.Unlock()
	return pg[b%vhdBATPage], nil
}

// blockBytes is how much of the disk block b holds: the last block may
// reach past the end, and a table may have entries past it.
func (d *vhdDisk) blockBytes(b int64) int64 {
	return max(0, min(d.blockSize, d.size-b*d.blockSize))
}

// blockOffset returns the file offset of block b's bitmap for a BAT entry.
func (d *vhdDisk) blockOffset(e uint32) int64 { return int64(e) * SectorSize }

// bitmap returns block b's sector bitmap (never to be modified).
func (d *vhdDisk) bitmap(b int64, boff int64) ([]byte, error) {
	if bm, ok := d.bitmaps.Get(b); ok {
		return bm, nil
	}
	d.mu.Lock()
	g := d.gen
	d.mu.Unlock()
	bm := make([]byte, d.bitmapSize)
	if err := readFullAt(d.f, bm, boff, "vhd", d.path); err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.gen == g {
		d.bitmaps.Put(b, bm)
	}
	d.mu.Unlock()
	return bm, nil
}

func vhdBit(bm []byte, s int64) bool { return bm[s>>3]&(0x80>>(s&7)) != 0 }

// bitRun returns the length of the run of sectors from s (at most n)
// whose bits all equal that of s.
func vhdBitRun(bm []byte, s, n int64) (set bool, run int64) {
	set = vhdBit(bm, s)
	run = 1
	for run < n {
		i := s + run
		if i&7 == 0 && run+8 <= n { // whole bytes at once
			if c := bm[i>>3]; set && c == 0xFF || !set && c == 0 {
				run += 8
				continue
			}
		}
		if vhdBit(bm, i) != set {
			break
		}
		run++
	}
	return set, run
}

func (d *vhdDisk) ReadAt(p []byte, off int64) (int, error) {
	if d.diskType == vhdTypeFixed {
		return readRegion(d.f, p, off, d.size, "vhd", d.path)
	}
	return readUnits(p, off, d.size, d.blockSize, func(q []byte, off int64) error {
		return d.readBlock(q, off/d.blockSize, off%d.blockSize, off)
	})
}

// readBlock reads q at offset in of block b (disk offset off). The
// sector bitmap is honoured in dynamic images too, as the specification,
// VirtualBox and libvhdi do (qemu ignores it there; images it writes
// have every bit set, so both readings agree on them).
func (d *vhdDisk) readBlock(q []byte, b, in, off int64) error {
	e, err := d.batEntry(b)
	if err != nil {
		return err
	}
	if e == vhdUnallocated {
		return readParent(d.parent, q, off)
	}
	boff := d.blockOffset(e)
	bm, err := d.bitmap(b, boff)
	if err != nil {
		return err
	}
	s, ns := in/SectorSize, int64(len(q))/SectorSize
	for i := int64(0); i < ns; {
		set, run := vhdBitRun(bm, s+i, ns-i)
		seg := q[i*SectorSize : (i+run)*SectorSize]
		if set {
			if err := readFullAt(d.f, seg, boff+d.bitmapSize+(s+i)*SectorSize, "vhd", d.path); err != nil {
				return err
			}
		} else if err := readParent(d.parent, seg, off+i*SectorSize); err != nil {
			return err
		}
		i += run
	}
	return nil
}

func (d *vhdDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.diskType == vhdTypeFixed {
		return writeRegion(d.f, p, off, d.size, d.readOnly, "vhd", d.path)
	}
	return writeUnits(p, off, d.size, d.readOnly, d.blockSize, nil, func(q []byte, off int64) error {
		return d.writeBlock(q, off/d.blockSize, off%d.blockSize)
	})
}

// writeBlock writes q at offset in of block b. Data goes to the file
// before the bitmap bits and the BAT entry that make it visible, so a
// concurrent reader sees either the old or the new data.
func (d *vhdDisk) writeBlock(q []byte, b, in int64) error {
	s, ns := in/SectorSize, int64(len(q))/SectorSize
	// Fast path, no lock: an allocated block whose bits are all set.
	e, err := d.batEntry(b)
	if err != nil {
		return err
	}
	if e == vhdUnallocated && d.diskType == vhdTypeDynamic && isZero(q) {
		return nil // reads as zeros already: keep the image sparse
	}
	if e != vhdUnallocated {
		bm, err := d.bitmap(b, d.blockOffset(e))
		if err != nil {
			return err
		}
		if set, run := vhdBitRun(bm, s, ns); set && run == ns {
			if err := d.checkWritable(b, d.blockOffset(e)); err != nil {
				return err
			}
			return d.writeData(q, d.blockOffset(e)+d.bitmapSize+in)
		}
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	// Under allocMu the cached metadata is current: every change to it is
	// made under this lock, file first.
	if e, err = d.batEntry(b); err != nil {
		return err
	}
	if e == vhdUnallocated {
		if d.diskType == vhdTypeDynamic && isZero(q) {
			return nil // reads as zeros already: keep the image sparse
		}
		return d.allocate(q, b, in)
	}
	boff := d.blockOffset(e)
	if err := d.checkWritable(b, boff); err != nil {
		return err
	}
	bm, err := d.bitmap(b, boff)
	if err != nil {
		return err
	}
	if err := d.writeData(q, boff+d.bitmapSize+in); err != nil {
		return err
	}
	if set, run := vhdBitRun(bm, s, ns); set && run == ns {
		return nil
	}
	nb := append([]byte(nil), bm...)
	vhdSetBits(nb, s, ns)
	// Write back only the bitmap sectors that changed.
	first := s / 8 / SectorSize * SectorSize
	last := roundUp((s+ns+7)/8, SectorSize)
	if _, err := d.f.WriteAt(nb[first:last], boff+first); err != nil {
		return fmt.Errorf("vhd: %s: writing block %d bitmap: %w", d.path, b, err)
	}
	d.mu.Lock()
	d.bitmaps.Put(b, nb)
	d.gen++
	d.mu.Unlock()
	return nil
}

// checkWritable refuses to write a block that a damaged BAT entry places
// over the footer copy, the dynamic header or the BAT itself.
func (d *vhdDisk) checkWritable(b, boff int64) error {
	end := boff + d.bitmapSize + d.blockSize
	hdr := int64(d.footer.dataOffset)
	over := func(lo, hi int64) bool { return boff < hi && lo < end }
	for _, r := range []metaRange{{0, vhdFooterSize, "footer copy"}, {hdr, hdr + vhdDynHeaderSize, "dynamic header"},
		{d.tableOff, d.tableOff + int64(d.maxEntries)*4, "block table"}} {
		if over(r.off, r.end) {
			return &OverlapError{Format: "vhd", Path: d.path, Off: boff, Len: end - boff, What: r.what, MetaOff: r.off, MetaLen: r.end - r.off}
		}
	}
	return nil
}

func vhdSetBits(bm []byte, s, n int64) {
	for i := s; i < s+n; i++ {
		bm[i>>3] |= 0x80 >> (i & 7)
	}
}

func (d *vhdDisk) writeData(q []byte, foff int64) error {
	return writeFullAt(d.f, q, foff, "vhd", d.path)
}

// allocate appends block b where the footer is, with q written at offset
// in. The footer moves first (so a crash leaves a valid image with an
// unused block), then the bitmap and data, then the BAT entry. A dynamic
// image's new block gets all bits set (its unwritten data is a hole that
// reads as zeros, as qemu does); a differencing image's block only the
// written sectors' bits, so the parent still shows through elsewhere.
// Called with allocMu held.
func (d *vhdDisk) allocate(q []byte, b, in int64) error {
	if d.nextFree == 0 {
		if err := d.findFree(); err != nil {
			return err
		}
	}
	boff := d.nextFree
	if boff/SectorSize >= vhdUnallocated {
		return unsupportedf("vhd", d.path, "image would grow past the 2 TiB a block table entry can address")
	}
	end := boff + d.bitmapSize + d.blockSize
	ft := d.footer.bytes()
	if _, err := d.f.WriteAt(ft, end); err != nil {
		return fmt.Errorf("vhd: %s: moving the footer: %w", d.path, err)
	}
	if d.hasHead && !d.headSynced {
		// The copy at offset 0 matches the moved footer (checksum too).
		if !bytes.Equal(d.headRaw[:], ft) {
			if _, err := d.f.WriteAt(ft, 0); err != nil {
				return fmt.Errorf("vhd: %s: writing the footer copy: %w", d.path, err)
			}
		}
		d.headSynced = true
	}
	bm := make([]byte, d.bitmapSize)
	s, ns := in/SectorSize, int64(len(q))/SectorSize
	if d.diskType == vhdTypeDiff {
		vhdSetBits(bm, s, ns)
	} else {
		for i := range bm {
			bm[i] = 0xFF
		}
	}
	if _, err := d.f.WriteAt(bm, boff); err != nil {
		return fmt.Errorf("vhd: %s: writing block %d bitmap: %w", d.path, b, err)
	}
	if err := d.writeData(q, boff+d.bitmapSize+in); err != nil {
		return err
	}
	e := uint32(boff / SectorSize)
	var eb [4]byte
	binary.BigEndian.PutUint32(eb[:], e)
	if _, err := d.f.WriteAt(eb[:], d.tableOff+4*b); err != nil {
		return fmt.Errorf("vhd: %s: writing block table entry %d: %w", d.path, b, err)
	}
	d.nextFree = end
	if d.allocBytes >= 0 {
		d.allocBytes += d.blockBytes(b)
	}
	pi := b / vhdBATPage
	d.mu.Lock()
	if pg, ok := d.bat.Get(pi); ok {
		np := *pg
		np[b%vhdBATPage] = e
		d.bat.Put(pi, &np)
	}
	d.bitmaps.Put(b, bm)
	d.gen++
	d.mu.Unlock()
	return nil
}

// findFree computes where the next block goes: where the footer is, but
// never over the tables or a block (a damaged image may have blocks past
// its footer). Called with allocMu held, on the first allocation only.
func (d *vhdDisk) findFree() error {
	size, err := fileSize(d.f)
	if err != nil {
		return fmt.Errorf("vhd: %s: %w", d.path, err)
	}
	free := roundUp(size, SectorSize)
	if d.tailLen != 0 && size >= d.tailLen {
		free = roundUp(size-d.tailLen, SectorSize)
	}
	free = max(free, int64(d.footer.dataOffset)+vhdDynHeaderSize)
	free = max(free, d.tableOff+int64(d.maxEntries)*4)
	err = d.scanBAT(func(_ int64, e uint32) {
		free = max(free, d.blockOffset(e)+d.bitmapSize+d.blockSize)
	})
	if err != nil {
		return err
	}
	d.nextFree = roundUp(free, SectorSize)
	return nil
}

// scanBAT calls fn for every allocated entry, reading the table from the
// file in bounded pieces.
func (d *vhdDisk) scanBAT(fn func(b int64, e uint32)) error {
	buf := make([]byte, 64<<10)
	for first := int64(0); first < d.entries; first += int64(len(buf)) / 4 {
		n := min(int64(len(buf))/4, d.entries-first)
		if err := readFullAt(d.f, buf[:n*4], d.tableOff+first*4, "vhd", d.path); err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			if e := binary.BigEndian.Uint32(buf[4*i:]); e != vhdUnallocated {
				fn(first+i, e)
			}
		}
	}
	return nil
}

// Map reports allocation: a fixed image stores everything; a dynamic one
// what its bitmaps mark; a differencing one that plus its parent's.
func (d *vhdDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map %d bytes at %d", ErrInvalid, length, off)
	}
	lim := min(length, roundUp(d.size-off, SectorSize))
	if d.diskType == vhdTypeFixed {
		return true, lim, nil
	}
	b, in := off/d.blockSize, off%d.blockSize
	lim = min(lim, d.blockSize-in)
	e, err := d.batEntry(b)
	if err != nil {
		return false, 0, err
	}
	if e == vhdUnallocated {
		return d.mapBelow(off, lim)
	}
	bm, err := d.bitmap(b, d.blockOffset(e))
	if err != nil {
		return false, 0, err
	}
	set, run := vhdBitRun(bm, in/SectorSize, max(1, lim/SectorSize))
	n := min(lim, run*SectorSize)
	if set {
		return true, n, nil
	}
	return d.mapBelow(off, n)
}

func (d *vhdDisk) mapBelow(off, n int64) (bool, int64, error) {
	if d.parent == nil || off >= d.parent.Size() {
		return false, n, nil
	}
	if m, ok := d.parent.(Mapper); ok {
		a, pn, err := m.Map(off, n)
		return a, min(pn, n), err
	}
	return true, n, nil
}

func (d *vhdDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	return syncFile(d.f, "vhd", d.path)
}

func (d *vhdDisk) Close() error {
	return closeChain(d.Flush(), d.f, d.parent)
}

func (d *vhdDisk) Info() Info { return d.info(true) }

// quickInfo is Info without scanning the BAT: Allocated is known only once
// counted.
func (d *vhdDisk) quickInfo() Info { return d.info(false) }

func (d *vhdDisk) info(count bool) Info {
	ft := d.footer
	info := Info{
		Format:    "vhd",
		Path:      d.path,
		Files:     []string{d.path},
		Size:      d.size,
		Allocated: -1,
		ReadOnly:  d.readOnly,
		Warnings:  append([]string(nil), d.warnings...),
		Metadata: map[string]string{
			"creator_app":     vhdPrintable(ft.creatorApp),
			"creator_version": fmt.Sprintf("%d.%d", ft.creatorVer>>16, ft.creatorVer&0xFFFF),
			"creator_host_os": vhdPrintable(ft.creatorOS),
			"uuid":            vhdUUID(ft.uuid),
			"timestamp":       vhdEpoch.Add(time.Duration(ft.timestamp) * time.Second).Format(time.RFC3339),
			"current_size":    strconv.FormatUint(ft.curSize, 10),
			"original_size":   strconv.FormatUint(ft.origSize, 10),
			"geometry":        fmt.Sprintf("%d/%d/%d", ft.cyls, ft.heads, ft.spt),
			"size_from":       d.sizeRule,
		},
	}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	if ft.savedState != 0 {
		info.Features = append(info.Features, "saved_state")
	}
	switch d.diskType {
	case vhdTypeFixed:
		info.Variant = "fixed"
		info.Allocated = d.size
		return info
	case vhdTypeDynamic:
		info.Variant = "dynamic"
	case vhdTypeDiff:
		info.Variant = "differencing"
		info.Metadata["parent_name"] = d.parentName
		info.Metadata["parent_uuid"] = vhdUUID(d.parentUUID)
		for _, l := range d.locators {
			info.Metadata["parent_locator_"+vhdPrintable(l.code)] = l.path
		}
		if d.parent != nil {
			info.Parent = parentInfo(d.parent, count)
		}
	}
	info.ClusterSize = d.blockSize
	d.allocMu.Lock()
	if d.allocBytes < 0 && count {
		var n int64
		if d.scanBAT(func(b int64, _ uint32) { n += d.blockBytes(b) }) == nil {
			d.allocBytes = n
		}
	}
	info.Allocated = d.allocBytes
	d.allocMu.Unlock()
	return info
}

// vhdPrintable shows a 4-byte tag with NULs and control bytes escaped.
func vhdPrintable(s string) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	return strings.ReplaceAll(q, `\x00`, `\0`)
}

// CanWrite: every VHD variant vdflat opens can be written.
func (d *vhdDisk) CanWrite() bool { return true }
