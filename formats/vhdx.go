package formats

// VHDX (Hyper-V virtual hard disk v2): fixed, dynamic and differencing
// images, 512 and 4096-byte logical sectors, block sizes of 1-256 MiB;
// writes in vhdx_write.go. A dirty metadata log is replayed in memory on a
// read-only open (the file is never written), into the file on a
// read-write one. Layout facts from MS-VHDX and libvhdi's VHDX documentation.

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
)

func init() {
	register(format{name: "vhdx", order: orderHead, probe: vhdxProbe, open: vhdxOpen})
}

const (
	vhdxMiB          = 1 << 20
	vhdxHeader1Off   = 64 << 10
	vhdxHeader2Off   = 128 << 10
	vhdxRegion1Off   = 192 << 10
	vhdxRegion2Off   = 256 << 10
	vhdxHeaderLen    = 4096
	vhdxRegionLen    = 64 << 10
	vhdxMetaTableLen = 64 << 10
	vhdxLogSector    = 4096
	vhdxMaxDiskSize  = 64 << 40    // MS-VHDX maximum virtual size
	vhdxMaxLogLen    = 128 << 20   // larger logs are refused rather than loaded
	vhdxBATChunk     = 8192        // BAT entries per cached piece (64 KiB)
	vhdxMaxEntries   = 2047        // region and metadata table limit
	vhdxChunkSectors = 1 << 23     // sectors described by one sector bitmap block
	vhdxMaxAllocScan = 1 << 17     // BAT entries Info() may scan to count allocation
	vhdxMaxMetaItem  = 1 << 20     // metadata items are tiny; the parent locator is the largest
	vhdxBitmapCache  = 64          // cached per-block sector bitmaps (at most 64 KiB each)
	vhdxBATCache     = 256         // cached BAT pieces (16 MiB at most)
	vhdxMinFileSize  = 1 * vhdxMiB // header area
)

// BAT entry states (3 low bits of an entry).
const (
	vhdxNotPresent       = 0 // payload: parent or zeros; sector bitmap: absent
	vhdxUndefined        = 1
	vhdxZero             = 2
	vhdxUnmapped         = 3
	vhdxFullyPresent     = 6 // sector bitmap blocks use 6 for SB_BLOCK_PRESENT
	vhdxPartiallyPresent = 7
)

// vhdxGUID is a GUID as stored on disk: the first three fields little-endian.
type vhdxGUID [16]byte

func (g vhdxGUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[0:]),
		binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

func (g vhdxGUID) isZero() bool { return g == vhdxGUID{} }

// vhdxParseGUID parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", with or
// without braces, into the on-disk byte order.
func vhdxParseGUID(s string) (vhdxGUID, bool) {
	var g vhdxGUID
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")
	p := strings.Split(s, "-")
	if len(p) != 5 || len(p[0]) != 8 || len(p[1]) != 4 || len(p[2]) != 4 || len(p[3]) != 4 || len(p[4]) != 12 {
		return g, false
	}
	d1, e1 := strconv.ParseUint(p[0], 16, 32)
	d2, e2 := strconv.ParseUint(p[1], 16, 16)
	d3, e3 := strconv.ParseUint(p[2], 16, 16)
	d4, e4 := strconv.ParseUint(p[3]+p[4], 16, 64)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
		return g, false
	}
	binary.LittleEndian.PutUint32(g[0:], uint32(d1))
	binary.LittleEndian.PutUint16(g[4:], uint16(d2))
	binary.LittleEndian.PutUint16(g[6:], uint16(d3))
	binary.BigEndian.PutUint64(g[8:], d4)
	return g, true
}

func vhdxMustGUID(s string) vhdxGUID {
	g, ok := vhdxParseGUID(s)
	if !ok {
		panic("vhdx: bad GUID literal " + s)
	}
	return g
}

var (
	vhdxRegionBAT      = vhdxMustGUID("2dc27766-f623-4200-9d64-115e9bfd4a08")
	vhdxRegionMetadata = vhdxMustGUID("8b7ca206-4790-4b9a-b8fe-575f050f886e")

	vhdxMetaFileParams    = vhdxMustGUID("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
	vhdxMetaDiskSize      = vhdxMustGUID("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
	vhdxMetaPage83        = vhdxMustGUID("beca12ab-b2e6-4523-93ef-c309e000c746")
	vhdxMetaLogicalSector = vhdxMustGUID("8141bf1d-a96f-4709-ba47-f233a8faab5f")
	vhdxMetaPhysSector    = vhdxMustGUID("cda348c7-445d-4471-9cc9-e9885251c556")
	vhdxMetaParentLocator = vhdxMustGUID("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")

	vhdxLocatorTypeVHDX = vhdxMustGUID("b04aefb7-d19e-4a81-b789-25b8e9445913")
)

var vhdxCRCTable = crc32.MakeTable(crc32.Castagnoli)

// vhdxChecksum is the CRC-32C of b with the 4-byte checksum field at off
// taken as zero, as every VHDX checksum is defined.
func vhdxChecksum(b []byte, off int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, vhdxCRCTable, b[:off])
	c = crc32.Update(c, vhdxCRCTable, zero[:])
	return crc32.Update(c, vhdxCRCTable, b[off+4:])
}

func vhdxProbe(pd *ProbeData) bool {
	return len(pd.Head) >= 8 && string(pd.Head[:8]) == "vhdxfile"
}

// vhdxHeader is one of the two 4 KiB headers.
type vhdxHeader struct {
	seq        uint64
	fileWrite  vhdxGUID
	dataWrite  vhdxGUID
	logGUID    vhdxGUID
	logVersion uint16
	version    uint16
	logLength  uint32
	logOffset  uint64
}

func vhdxParseHeader(b []byte) (vhdxHeader, bool) {
	var h vhdxHeader
	if string(b[:4]) != "head" || binary.LittleEndian.Uint32(b[4:]) != vhdxChecksum(b[:vhdxHeaderLen], 4) {
		return h, false
	}
	h.seq = binary.LittleEndian.Uint64(b[8:])
	copy(h.fileWrite[:], b[16:32])
	copy(h.dataWrite[:], b[32:48])
	copy(h.logGUID[:], b[48:64])
	h.logVersion = binary.LittleEndian.Uint16(b[64:])
	h.version = binary.LittleEndian.Uint16(b[66:])
	h.logLength = binary.LittleEndian.Uint32(b[68:])
	h.logOffset = binary.LittleEndian.Uint64(b[72:])
	return h, true
}

// vhdxReadHeader reads both headers and returns the current one: the
// valid one with the higher sequence number, of a version vdflat reads.
func vhdxReadHeader(f *os.File, path string) (vhdxHeader, error) {
	var hdr vhdxHeader
	found := false
	hbuf := make([]byte, vhdxHeaderLen)
	for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		if err := readFullAt(f, hbuf, off, "vhdx", path); err != nil {
			return hdr, err
		}
		if h, ok := vhdxParseHeader(hbuf); ok && (!found || h.seq > hdr.seq) {
			hdr, found = h, true
		}
	}
	if !found {
		return hdr, corruptf("vhdx", path, vhdxHeader1Off, "neither header is valid (signature or CRC-32C)")
	}
	if hdr.version != 1 {
		return hdr, unsupportedf("vhdx", path, "header version %d", hdr.version)
	}
	return hdr, nil
}

// vhdxOverlay holds the writes of a replayed log: the file as it would be
// after replay, without touching it. Each write carries its position in
// the log (ver) so later writes win where they overlap.
type vhdxOverlay struct {
	pages map[int64]vhdxPage // 4 KiB-aligned file offset -> latest contents
	keys  []int64            // sorted keys of pages
	zeros []vhdxZeroRange    // file ranges zeroed by the log
	end   int64              // file size after replay
	ver   int
}

type vhdxPage struct {
	data []byte
	ver  int
}

type vhdxZeroRange struct {
	start, end int64
	ver        int
}

// vhdxMaxZeroDescs bounds zero descriptors (each read scans them).
const vhdxMaxZeroDescs = 1 << 14

func (o *vhdxOverlay) writePage(off int64, data []byte) {
	o.ver++
	o.pages[off] = vhdxPage{data, o.ver}
	o.end = max(o.end, off+vhdxLogSector)
}

func (o *vhdxOverlay) zeroRange(start, end int64) {
	o.ver++
	o.zeros = append(o.zeros, vhdxZeroRange{start, end, o.ver})
	o.end = max(o.end, end)
}

func (o *vhdxOverlay) finish() {
	o.keys = o.keys[:0]
	for k := range o.pages {
		o.keys = append(o.keys, k)
	}
	sort.Slice(o.keys, func(i, j int) bool { return o.keys[i] < o.keys[j] })
}

// apply lays the overlay over p, which holds file bytes at off: zero
// ranges, then pages, then the zero ranges written after each page.
func (o *vhdxOverlay) apply(p []byte, off int64) {
	end := off + int64(len(p))
	for _, z := range o.zeros {
		if s, e := max(z.start, off), min(z.end, end); s < e {
			clear(p[s-off : e-off])
		}
	}
	i := sort.Search(len(o.keys), func(i int) bool { return o.keys[i]+vhdxLogSector > off })
	for ; i < len(o.keys) && o.keys[i] < end; i++ {
		k := o.keys[i]
		pg := o.pages[k]
		s, e := max(k, off), min(k+vhdxLogSector, end)
		copy(p[s-off:e-off], pg.data[s-k:e-k])
		for _, z := range o.zeros {
			if zs, ze := max(z.start, s), min(z.end, e); z.ver > pg.ver && zs < ze {
				clear(p[zs-off : ze-off])
			}
		}
	}
}

// vhdxFile reads the image file as it is after log replay.
type vhdxFile struct {
	f     *os.File
	path  string
	size  int64 // real file size
	ov    *vhdxOverlay
	grown atomic.Int64 // file size after writes extended it
}

// end is the size of the file after log replay and writes.
func (r *vhdxFile) end() int64 {
	if r.ov != nil {
		return max(r.size, r.ov.end)
	}
	return max(r.size, r.grown.Load())
}

func (r *vhdxFile) readAt(p []byte, off int64) error {
	if r.ov == nil {
		return readFullAt(r.f, p, off, "vhdx", r.path)
	}
	if off < 0 || off+int64(len(p)) > r.end() {
		return corruptf("vhdx", r.path, off, "file truncated: wanted %d bytes", len(p))
	}
	// Bytes between the real end and the replayed end were "written" by
	// the log (an extension of the file) and read as zeros until overlaid.
	n := min(int64(len(p)), max(0, r.size-off))
	if n > 0 {
		if err := readFullAt(r.f, p[:n], off, "vhdx", r.path); err != nil {
			return err
		}
	}
	clear(p[n:])
	r.ov.apply(p, off)
	return nil
}

// vhdxDisk is an open VHDX image (and its parent, for a differencing one).
type vhdxDisk struct {
	path string
	f    *os.File
	r    *vhdxFile

	size          int64
	blockSize     int64
	logicalSector int64
	chunkRatio    int64
	payloadBlocks int64
	batOff        int64
	batEntries    int64
	hasParent     bool
	parent        Disk

	bat     *lru[int64, []uint64] // BAT piece index -> entries
	bitmaps *lru[int64, []byte]   // payload block -> its part of the sector bitmap

	info      Info
	allocOnce sync.Once
	allocated int64

	w vhdxWriter // vhdx_write.go
}

func vhdxOpen(path string, opt Options) (Disk, error) {
	f, err := openFile(path, opt.ReadOnly)
	if err != nil {
		return nil, err
	}
	d, err := vhdxOpenFile(f, path, opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func vhdxOpenFile(f *os.File, path string, opt Options) (*vhdxDisk, error) {
	fsize, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %s: %w", path, err)
	}
	if fsize < vhdxMinFileSize {
		return nil, corruptf("vhdx", path, -1, "file of %d bytes is smaller than the 1 MiB header area", fsize)
	}
	d := &vhdxDisk{path: path, f: f, r: &vhdxFile{f: f, path: path, size: fsize}}
	info := Info{Format: "vhdx", Path: path, Files: []string{path}, Metadata: map[string]string{}}

	// File type identifier and creator.
	ident := make([]byte, 520)
	if err := readFullAt(f, ident, 0, "vhdx", path); err != nil {
		return nil, err
	}
	if string(ident[:8]) != "vhdxfile" {
		return nil, corruptf("vhdx", path, 0, "no \"vhdxfile\" signature")
	}
	if c := vhdxUTF16(ident[8:]); c != "" {
		info.Metadata["creator"] = c
	}

	hdr, err := vhdxReadHeader(f, path)
	if err != nil {
		return nil, err
	}
	info.Metadata["header_sequence"] = strconv.FormatUint(hdr.seq, 10)
	info.Metadata["file_write_guid"] = hdr.fileWrite.String()
	info.Metadata["data_write_guid"] = hdr.dataWrite.String()

	// A non-zero log GUID means the log may hold writes not yet applied
	// to the file: replay them in memory before reading anything else.
	if !hdr.logGUID.isZero() && hdr.logLength != 0 {
		info.Metadata["log_guid"] = hdr.logGUID.String()
		n, err := d.replayLog(hdr)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			info.Features = append(info.Features, "log replayed in memory")
			info.Metadata["log_entries_replayed"] = strconv.Itoa(n)
		} else {
			info.Warnings = append(info.Warnings, "log GUID set but the log holds no valid sequence: nothing replayed")
		}
	}

	batRegion, metaRegion, err := d.readRegions()
	if err != nil {
		return nil, err
	}
	if err := d.readMetadata(metaRegion, &info); err != nil {
		return nil, err
	}

	// BAT geometry.
	d.chunkRatio = vhdxChunkSectors * d.logicalSector / d.blockSize
	d.payloadBlocks = (d.size + d.blockSize - 1) / d.blockSize
	if d.hasParent {
		sb := (d.payloadBlocks + d.chunkRatio - 1) / d.chunkRatio
		d.batEntries = sb * (d.chunkRatio + 1)
	} else if d.payloadBlocks > 0 {
		d.batEntries = d.payloadBlocks + (d.payloadBlocks-1)/d.chunkRatio
	}
	d.batOff = batRegion[0]
	if d.batEntries*8 > batRegion[1] {
		return nil, corruptf("vhdx", path, d.batOff, "BAT region of %d bytes holds fewer than the %d entries the disk needs", batRegion[1], d.batEntries)
	}
	d.bat = newLRU[int64, []uint64](vhdxBATCache)
	d.bitmaps = newLRU[int64, []byte](vhdxBitmapCache)

	info.Size = d.size
	info.ClusterSize = d.blockSize
	info.Allocated = -1
	if d.hasParent {
		if err := d.openParent(&info, opt); err != nil {
			return nil, err
		}
	}
	if err := d.openWrite(&info, opt); err != nil {
		return nil, err
	}
	d.info = info
	return d, nil
}

// vhdxUTF16 decodes a NUL-terminated UTF-16LE string.
func vhdxUTF16(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// readRegions reads the region table (the first valid copy) and returns
// the BAT and metadata regions as {offset, length}.
func (d *vhdxDisk) readRegions() (bat, meta [2]int64, err error) {
	buf := make([]byte, vhdxRegionLen)
	var tableErr error
	for _, off := range []int64{vhdxRegion1Off, vhdxRegion2Off} {
		if err := d.r.readAt(buf, off); err != nil {
			return bat, meta, err
		}
		if string(buf[:4]) != "regi" || binary.LittleEndian.Uint32(buf[4:]) != vhdxChecksum(buf, 4) {
			tableErr = corruptf("vhdx", d.path, off, "region table signature or CRC-32C invalid")
			continue
		}
		bat, meta, err = d.parseRegions(buf, off)
		return bat, meta, err
	}
	return bat, meta, tableErr
}

func (d *vhdxDisk) parseRegions(buf []byte, tableOff int64) (bat, meta [2]int64, err error) {
	n := binary.LittleEndian.Uint32(buf[8:])
	if n > vhdxMaxEntries {
		return bat, meta, corruptf("vhdx", d.path, tableOff, "region table has %d entries (max %d)", n, vhdxMaxEntries)
	}
	var haveBAT, haveMeta bool
	for i := 0; i < int(n); i++ {
		e := buf[16+32*i:]
		var id vhdxGUID
		copy(id[:], e[:16])
		off := int64(binary.LittleEndian.Uint64(e[16:]))
		length := int64(binary.LittleEndian.Uint32(e[24:]))
		required := binary.LittleEndian.Uint32(e[28:])&1 != 0
		var dst *[2]int64
		var seen *bool
		switch id {
		case vhdxRegionBAT:
			dst, seen = &bat, &haveBAT
		case vhdxRegionMetadata:
			dst, seen = &meta, &haveMeta
		default:
			if required {
				return bat, meta, unsupportedf("vhdx", d.path, "required region %s is unknown", id)
			}
			continue
		}
		if *seen {
			return bat, meta, corruptf("vhdx", d.path, tableOff, "region %s listed twice", id)
		}
		if off < vhdxMiB || off%vhdxMiB != 0 || length <= 0 || off > d.r.end() || length > d.r.end()-off {
			return bat, meta, corruptf("vhdx", d.path, tableOff, "region %s at %#x, %d bytes, lies outside the file or is misaligned", id, off, length)
		}
		*dst, *seen = [2]int64{off, length}, true
	}
	if !haveBAT || !haveMeta {
		return bat, meta, corruptf("vhdx", d.path, tableOff, "region table lacks the BAT or the metadata region")
	}
	return bat, meta, nil
}

// readMetadata reads the metadata table and the system items it needs.
func (d *vhdxDisk) readMetadata(region [2]int64, info *Info) error {
	if region[1] < vhdxMetaTableLen {
		return corruptf("vhdx", d.path, region[0], "metadata region of %d bytes is smaller than its table", region[1])
	}
	tbl := make([]byte, vhdxMetaTableLen)
	if err := d.r.readAt(tbl, region[0]); err != nil {
		return err
	}
	if string(tbl[:8]) != "metadata" {
		return corruptf("vhdx", d.path, region[0], "no \"metadata\" signature")
	}
	n := int(binary.LittleEndian.Uint16(tbl[10:]))
	if n > vhdxMaxEntries {
		return corruptf("vhdx", d.path, region[0], "metadata table has %d entries (max %d)", n, vhdxMaxEntries)
	}
	items := map[vhdxGUID][]byte{}
	for i := 0; i < n; i++ {
		e := tbl[32+32*i:]
		var id vhdxGUID
		copy(id[:], e[:16])
		off := int64(binary.LittleEndian.Uint32(e[16:]))
		length := int64(binary.LittleEndian.Uint32(e[20:]))
		flags := binary.LittleEndian.Uint32(e[24:])
		switch id {
		case vhdxMetaFileParams, vhdxMetaDiskSize, vhdxMetaPage83, vhdxMetaLogicalSector, vhdxMetaPhysSector, vhdxMetaParentLocator:
		default:
			if flags&4 != 0 { // IsRequired
				return unsupportedf("vhdx", d.path, "required metadata item %s is unknown", id)
			}
			continue
		}
		if _, dup := items[id]; dup {
			return corruptf("vhdx", d.path, region[0], "metadata item %s listed twice", id)
		}
		if length == 0 {
			items[id] = nil
			continue
		}
		if off < vhdxMetaTableLen || length > vhdxMaxMetaItem || off+length > region[1] {
			return corruptf("vhdx", d.path, region[0], "metadata item %s at %#x, %d bytes, lies outside the metadata region", id, off, length)
		}
		b := make([]byte, length)
		if err := d.r.readAt(b, region[0]+off); err != nil {
			return err
		}
		items[id] = b
	}
	need := func(id vhdxGUID, name string, size int) ([]byte, error) {
		b, ok := items[id]
		if !ok || len(b) < size {
			return nil, corruptf("vhdx", d.path, region[0], "metadata item %q missing or too short", name)
		}
		return b, nil
	}
	fp, err := need(vhdxMetaFileParams, "file parameters", 8)
	if err != nil {
		return err
	}
	d.blockSize = int64(binary.LittleEndian.Uint32(fp))
	fpFlags := binary.LittleEndian.Uint32(fp[4:])
	if d.blockSize < vhdxMiB || d.blockSize > 256*vhdxMiB || d.blockSize&(d.blockSize-1) != 0 {
		return corruptf("vhdx", d.path, region[0], "block size %d is not a power of two between 1 and 256 MiB", d.blockSize)
	}
	d.hasParent = fpFlags&2 != 0
	vs, err := need(vhdxMetaDiskSize, "virtual disk size", 8)
	if err != nil {
		return err
	}
	size := binary.LittleEndian.Uint64(vs)
	if size == 0 || size > vhdxMaxDiskSize {
		return corruptf("vhdx", d.path, region[0], "virtual size %d outside 1 byte to 64 TiB", size)
	}
	d.size = int64(size)
	ls, err := need(vhdxMetaLogicalSector, "logical sector size", 4)
	if err != nil {
		return err
	}
	d.logicalSector = int64(binary.LittleEndian.Uint32(ls))
	if d.logicalSector != 512 && d.logicalSector != 4096 {
		return corruptf("vhdx", d.path, region[0], "logical sector size %d is neither 512 nor 4096", d.logicalSector)
	}
	info.Metadata["logical_sector_size"] = strconv.FormatInt(d.logicalSector, 10)
	if ps, ok := items[vhdxMetaPhysSector]; ok && len(ps) >= 4 {
		info.Metadata["physical_sector_size"] = strconv.FormatUint(uint64(binary.LittleEndian.Uint32(ps)), 10)
	}
	if id, ok := items[vhdxMetaPage83]; ok && len(id) >= 16 {
		info.Metadata["virtual_disk_id"] = vhdxGUID(id[:16]).String()
	}
	switch {
	case d.hasParent:
		info.Variant = "differencing"
		lb, ok := items[vhdxMetaParentLocator]
		if !ok {
			return corruptf("vhdx", d.path, region[0], "differencing disk without a parent locator")
		}
		loc, err := d.parseLocator(lb, region[0])
		if err != nil {
			return err
		}
		for k, v := range loc {
			info.Metadata["parent_"+strings.TrimPrefix(k, "parent_")] = v
		}
	case fpFlags&1 != 0: // LeaveBlocksAllocated: a fixed disk
		info.Variant = "fixed"
	default:
		info.Variant = "dynamic"
	}
	return nil
}

// parseLocator decodes the VHDX parent locator's key/value pairs.
func (d *vhdxDisk) parseLocator(b []byte, regionOff int64) (map[string]string, error) {
	if len(b) < 20 {
		return nil, corruptf("vhdx", d.path, regionOff, "parent locator of %d bytes is too short", len(b))
	}
	var typ vhdxGUID
	copy(typ[:], b[:16])
	if typ != vhdxLocatorTypeVHDX {
		return nil, unsupportedf("vhdx", d.path, "parent locator type %s", typ)
	}
	n := int(binary.LittleEndian.Uint16(b[18:]))
	if 20+12*n > len(b) {
		return nil, corruptf("vhdx", d.path, regionOff, "parent locator with %d entries overruns its %d bytes", n, len(b))
	}
	m := map[string]string{}
	for i := 0; i < n; i++ {
		e := b[20+12*i:]
		ko, vo := int64(binary.LittleEndian.Uint32(e)), int64(binary.LittleEndian.Uint32(e[4:]))
		kl, vl := int64(binary.LittleEndian.Uint16(e[8:])), int64(binary.LittleEndian.Uint16(e[10:]))
		if ko+kl > int64(len(b)) || vo+vl > int64(len(b)) {
			return nil, corruptf("vhdx", d.path, regionOff, "parent locator entry %d lies outside the locator", i)
		}
		m[vhdxUTF16(b[ko:ko+kl])] = vhdxUTF16(b[vo : vo+vl])
	}
	return m, nil
}

// vhdxWinPath turns a Windows path into a slash path: drive letters and
// \\?\ or volume prefixes are dropped, leaving the path from the root.
func vhdxWinPath(p string) string {
	p = strings.ReplaceAll(p, `\`, "/")
	if strings.HasPrefix(p, "//?/") || strings.HasPrefix(p, "//./") {
		p = p[4:]
		if strings.HasPrefix(strings.ToLower(p), "volume{") {
			if i := strings.Index(p, "/"); i >= 0 {
				p = p[i:]
			} else {
				p = "/"
			}
		}
	}
	if len(p) >= 2 && p[1] == ':' {
		p = p[2:]
	}
	return p
}

// openParent finds the parent named by the locator, opens it, and checks
// that its data write GUID is the one the child was made against.
func (d *vhdxDisk) openParent(info *Info, opt Options) error {
	md := info.Metadata
	rel, abs, vol := md["parent_relative_path"], md["parent_absolute_win32_path"], md["parent_volume_path"]
	dir := filepath.Dir(d.path)
	var cands []string
	if rel != "" {
		p := vhdxWinPath(rel)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		cands = append(cands, p)
	}
	for _, w := range []string{abs, vol} {
		if w != "" {
			cands = append(cands, filepath.Clean(vhdxWinPath(w)))
		}
	}
	for _, w := range []string{rel, abs, vol} {
		if w != "" {
			cands = append(cands, filepath.Join(dir, filepath.Base(vhdxWinPath(w))))
			break
		}
	}
	name := abs
	if name == "" {
		name = rel
	}
	if name == "" {
		name = vol
	}
	if len(cands) == 0 {
		return corruptf("vhdx", d.path, -1, "parent locator names no parent path")
	}
	found := ""
	seen := map[string]bool{}
	uniq := cands[:0]
	for _, c := range cands {
		if !seen[c] {
			seen[c] = true
			uniq = append(uniq, c)
		}
	}
	cands = uniq
	for _, c := range cands {
		if st, err := statPath(c); err == nil && !st.IsDir() {
			found = c
			break
		}
	}
	if found == "" {
		return fmt.Errorf("vhdx: %s: parent \"%s\" not found (tried %s): %w", d.path, name, strings.Join(cands, ", "), os.ErrNotExist)
	}
	// openParent resolves a relative name against the child's directory;
	// found is relative to the working directory (like d.path), so pass
	// it absolute.
	if abs, err := filepath.Abs(found); err == nil {
		found = abs
	}
	parent, err := openParent(d.path, found, opt)
	if err != nil {
		return err
	}
	pi := parent.Info()
	if pi.Format != "vhdx" {
		parent.Close()
		return corruptf("vhdx", d.path, -1, "parent %s is a %s image, not vhdx", found, pi.Format)
	}
	// MS-VHDX: parent_linkage is the parent's DataWriteGuid;
	// parent_linkage2 is an alternative value that is also valid.
	want := pi.Metadata["data_write_guid"]
	ok := false
	for _, k := range []string{"parent_linkage", "parent_linkage2"} {
		if g, good := vhdxParseGUID(md[k]); good && g.String() == want {
			ok = true
		}
	}
	if !ok {
		parent.Close()
		return corruptf("vhdx", d.path, -1, "parent %s has data write GUID %s, but the child expects parent_linkage %q", found, want, md["parent_linkage"])
	}
	// Hyper-V keeps these equal; a mismatch is readable (the parent reads
	// as zeros past its end), so it is only a warning unless Strict.
	var soft []string
	if pi.Size != d.size {
		soft = append(soft, fmt.Sprintf("parent size %d differs from the child's %d", pi.Size, d.size))
	}
	if ls := pi.Metadata["logical_sector_size"]; ls != md["logical_sector_size"] {
		soft = append(soft, fmt.Sprintf("parent logical sector size %s differs from the child's %s", ls, md["logical_sector_size"]))
	}
	if len(soft) > 0 && opt.Strict {
		parent.Close()
		return corruptf("vhdx", d.path, -1, "%s", strings.Join(soft, "; "))
	}
	info.Warnings = append(info.Warnings, soft...)
	d.parent = parent
	info.Files = append(info.Files, pi.Files...)
	info.Parent = &pi
	return nil
}

// vhdxLogEntry is a validated log entry.
type vhdxLogEntry struct {
	off, length   int64 // position in the log
	seq           uint64
	tail          int64
	flushed, last int64
}

// replayLog finds the active log sequence (MS-VHDX "log replay") and
// records its writes in an in-memory overlay. It returns the number of
// entries replayed.
func (d *vhdxDisk) replayLog(h vhdxHeader) (int, error) {
	if h.logVersion != 0 {
		return 0, unsupportedf("vhdx", d.path, "log version %d", h.logVersion)
	}
	logOff, logLen := int64(h.logOffset), int64(h.logLength)
	if logOff < vhdxMiB || logOff%vhdxMiB != 0 || logLen%vhdxMiB != 0 || logOff > d.r.size || logLen > d.r.size-logOff {
		return 0, corruptf("vhdx", d.path, vhdxHeader1Off, "log at %#x, %d bytes, is misaligned or outside the file", logOff, logLen)
	}
	if logLen > vhdxMaxLogLen {
		return 0, unsupportedf("vhdx", d.path, "log of %d bytes (at most %d replayed)", logLen, vhdxMaxLogLen)
	}
	log := make([]byte, logLen)
	if err := readFullAt(d.f, log, logOff, "vhdx", d.path); err != nil {
		return 0, err
	}
	// at copies n bytes of the circular log starting at off.
	at := func(off, n int64) []byte {
		b := make([]byte, n)
		for i := int64(0); i < n; {
			o := (off + i) % logLen
			i += int64(copy(b[i:], log[o:]))
		}
		return b
	}
	// Validate an entry at every 4 KiB position. A valid log checksums
	// each byte about once; the budget stops a crafted log whose every
	// sector claims to start a huge entry from costing quadratic time.
	entries := map[int64]*vhdxLogEntry{}
	budget := 4*logLen + 64<<20
	for off := int64(0); off < logLen; off += vhdxLogSector {
		e, cost := d.logEntryAt(log[off:off+64], off, logLen, h.logGUID, at)
		if budget -= cost; budget < 0 {
			return 0, corruptf("vhdx", d.path, logOff, "log too damaged to search")
		}
		if e != nil {
			entries[off] = e
		}
	}
	// A sequence is a run of entries each directly following the previous
	// one with the next sequence number; its last entry (head) names the
	// first (tail). The active sequence is the complete one whose head has
	// the highest sequence number.
	next := func(e *vhdxLogEntry) *vhdxLogEntry {
		n := entries[(e.off+e.length)%logLen]
		if n != nil && n.seq == e.seq+1 {
			return n
		}
		return nil
	}
	var active []*vhdxLogEntry
	for _, h := range entries {
		if next(h) != nil {
			continue // not a head
		}
		t := entries[h.tail]
		if t == nil {
			continue
		}
		seq := []*vhdxLogEntry{t}
		for e := t; e != h && len(seq) <= len(entries); {
			if e = next(e); e == nil {
				break
			}
			seq = append(seq, e)
		}
		if seq[len(seq)-1] != h || h.seq-t.seq != uint64(len(seq)-1) {
			continue
		}
		if active == nil || h.seq > active[len(active)-1].seq {
			active = seq
		}
	}
	if active == nil {
		return 0, nil
	}
	head := active[len(active)-1]
	if head.flushed > d.r.size {
		return 0, corruptf("vhdx", d.path, logOff+head.off, "log says the file held %d bytes, but it has %d (truncated)", head.flushed, d.r.size)
	}
	ov := &vhdxOverlay{pages: map[int64]vhdxPage{}, end: max(d.r.size, head.last)}
	for _, e := range active {
		b := at(e.off, e.length)
		count := int64(binary.LittleEndian.Uint32(b[24:]))
		dataOff := vhdxLogDescSectors(count) * vhdxLogSector
		for i := int64(0); i < count; i++ {
			desc := b[64+32*i:]
			fileOff := int64(binary.LittleEndian.Uint64(desc[16:]))
			if string(desc[:4]) == "zero" {
				n := int64(binary.LittleEndian.Uint64(desc[8:]))
				if len(ov.zeros) >= vhdxMaxZeroDescs {
					return 0, unsupportedf("vhdx", d.path, "log with more than %d zero descriptors", vhdxMaxZeroDescs)
				}
				ov.zeroRange(fileOff, fileOff+n)
				continue
			}
			page := make([]byte, vhdxLogSector)
			copy(page[:8], desc[8:16])
			copy(page[8:4092], b[dataOff+8:dataOff+4092])
			copy(page[4092:], desc[4:8])
			dataOff += vhdxLogSector
			ov.writePage(fileOff, page)
		}
	}
	ov.finish()
	d.r.ov = ov
	return len(active), nil
}

// vhdxLogDescSectors is the number of 4 KiB sectors holding an entry's
// 64-byte header and count 32-byte descriptors.
func vhdxLogDescSectors(count int64) int64 {
	return (64 + 32*count + vhdxLogSector - 1) / vhdxLogSector
}

// logEntryAt validates the log entry whose header is hb, at offset off of
// the log, or returns nil; cost is the number of bytes it checksummed.
func (d *vhdxDisk) logEntryAt(hb []byte, off, logLen int64, guid vhdxGUID, at func(off, n int64) []byte) (*vhdxLogEntry, int64) {
	if string(hb[:4]) != "loge" {
		return nil, 0
	}
	e := &vhdxLogEntry{off: off}
	e.length = int64(binary.LittleEndian.Uint32(hb[8:]))
	e.tail = int64(binary.LittleEndian.Uint32(hb[12:]))
	e.seq = binary.LittleEndian.Uint64(hb[16:])
	count := int64(binary.LittleEndian.Uint32(hb[24:]))
	var g vhdxGUID
	copy(g[:], hb[32:48])
	e.flushed = int64(binary.LittleEndian.Uint64(hb[48:]))
	e.last = int64(binary.LittleEndian.Uint64(hb[56:]))
	if e.length < vhdxLogSector || e.length%vhdxLogSector != 0 || e.length > logLen || e.seq == 0 || g != guid ||
		e.tail%vhdxLogSector != 0 || e.tail >= logLen || e.flushed < 0 || e.last < 0 || e.last > vhdxMaxDiskSize*2 {
		return nil, 0
	}
	descSectors := vhdxLogDescSectors(count)
	if descSectors*vhdxLogSector > e.length {
		return nil, 0
	}
	b := at(off, e.length)
	cost := e.length
	if binary.LittleEndian.Uint32(b[4:]) != vhdxChecksum(b, 4) {
		return nil, cost
	}
	data := descSectors
	for i := int64(0); i < count; i++ {
		desc := b[64+32*i:]
		fileOff := int64(binary.LittleEndian.Uint64(desc[16:]))
		if binary.LittleEndian.Uint64(desc[24:]) != e.seq || fileOff < 0 || fileOff%vhdxLogSector != 0 || fileOff > vhdxMaxDiskSize*2 {
			return nil, cost
		}
		switch string(desc[:4]) {
		case "zero":
			n := int64(binary.LittleEndian.Uint64(desc[8:]))
			if n < 0 || n%vhdxLogSector != 0 || n > vhdxMaxDiskSize*2 {
				return nil, cost
			}
		case "desc":
			if (data+1)*vhdxLogSector > e.length {
				return nil, cost
			}
			s := b[data*vhdxLogSector:]
			seq := uint64(binary.LittleEndian.Uint32(s[4:]))<<32 | uint64(binary.LittleEndian.Uint32(s[4092:]))
			if string(s[:4]) != "data" || seq != e.seq {
				return nil, cost
			}
			data++
		default:
			return nil, cost
		}
	}
	return e, cost
}

// batEntry returns BAT entry i, loading its piece of the table on demand.
func (d *vhdxDisk) batEntry(i int64) (uint64, error) {
	if i < 0 || i >= d.batEntries {
		return 0, corruptf("vhdx", d.path, d.batOff, "BAT entry %d out of range", i)
	}
	piece := i / vhdxBATChunk
	if t, ok := d.bat.Get(piece); ok {
		return t[i%vhdxBATChunk], nil
	}
	gen := d.cacheGen()
	first := piece * vhdxBATChunk
	n := min(vhdxBATChunk, d.batEntries-first)
	buf := make([]byte, n*8)
	if err := d.r.readAt(buf, d.batOff+first*8); err != nil {
		return 0, err
	}
	t := make([]uint64, n)
	for j := range t {
		t[j] = binary.LittleEndian.Uint64(buf[8*j:])
	}
	d.putBAT(piece, t, gen)
	return t[i%vhdxBATChunk], nil
}

// block returns the state and file offset of payload block b.
func (d *vhdxDisk) block(b int64) (state int, fileOff int64, err error) {
	e, err := d.batEntry(b + b/d.chunkRatio)
	if err != nil {
		return 0, 0, err
	}
	state = int(e & 7)
	fileOff = int64(e >> 20 << 20)
	switch state {
	case vhdxNotPresent, vhdxUndefined, vhdxZero, vhdxUnmapped:
	case vhdxFullyPresent, vhdxPartiallyPresent:
		if state == vhdxPartiallyPresent && !d.hasParent {
			return 0, 0, corruptf("vhdx", d.path, d.batOff, "block %d is partially present in a disk without a parent", b)
		}
		if fileOff < vhdxMiB || fileOff > d.r.end() || d.blockEnd(b) > d.r.end()-fileOff {
			return 0, 0, corruptf("vhdx", d.path, d.batOff, "block %d at file offset %#x lies outside the file", b, fileOff)
		}
	default:
		return 0, 0, corruptf("vhdx", d.path, d.batOff, "block %d has reserved BAT state %d", b, state)
	}
	return state, fileOff, nil
}

// blockEnd is how many bytes of block b hold virtual disk data (less
// than a block only for the last one).
func (d *vhdxDisk) blockEnd(b int64) int64 {
	return min(d.blockSize, roundUp(d.size, SectorSize)-b*d.blockSize)
}

// bitmap returns the sector bitmap bits of payload block b (one bit per
// logical sector, least significant bit first).
func (d *vhdxDisk) bitmap(b int64) ([]byte, error) {
	if bm, ok := d.bitmaps.Get(b); ok {
		return bm, nil
	}
	gen := d.cacheGen()
	chunk := b / d.chunkRatio
	e, err := d.batEntry(chunk*(d.chunkRatio+1) + d.chunkRatio)
	if err != nil {
		return nil, err
	}
	if e&7 != vhdxFullyPresent {
		return nil, corruptf("vhdx", d.path, d.batOff, "block %d is partially present but its sector bitmap block is absent (state %d)", b, e&7)
	}
	sbOff := int64(e >> 20 << 20)
	if sbOff < vhdxMiB || sbOff > d.r.end()-vhdxMiB {
		return nil, corruptf("vhdx", d.path, d.batOff, "sector bitmap of chunk %d at %#x lies outside the file", chunk, sbOff)
	}
	perBlock := d.blockSize / d.logicalSector / 8
	bm := make([]byte, perBlock)
	if err := d.r.readAt(bm, sbOff+(b%d.chunkRatio)*perBlock); err != nil {
		return nil, err
	}
	d.putBitmap(b, bm, gen)
	return bm, nil
}

func (d *vhdxDisk) Size() int64 { return d.size }

func (d *vhdxDisk) ReadAt(p []byte, off int64) (int, error) {
	n := len(p)
	p, err := clampReadSectors(p, off, d.size)
	if err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	for pos := off; pos < end; {
		b := pos / d.blockSize
		in := pos % d.blockSize
		cnt := min(d.blockSize-in, end-pos)
		state, fileOff, err := d.block(b)
		if err != nil {
			return 0, err
		}
		buf := p[pos-off : pos-off+cnt]
		switch state {
		case vhdxFullyPresent:
			// Extend the read over following blocks stored right after
			// this one, for one pread per contiguous run.
			for pos+cnt < end {
				s2, o2, err := d.block(b + 1)
				if err != nil || s2 != vhdxFullyPresent || o2 != fileOff+(b+1-pos/d.blockSize)*d.blockSize {
					break
				}
				b++
				cnt += min(d.blockSize, end-pos-cnt)
			}
			buf = p[pos-off : pos-off+cnt]
			if err := d.r.readAt(buf, fileOff+in); err != nil {
				return 0, err
			}
		case vhdxPartiallyPresent:
			if err := d.readPartial(buf, pos, b, fileOff); err != nil {
				return 0, err
			}
		case vhdxNotPresent:
			if err := readParent(d.parent, buf, pos); err != nil {
				return 0, err
			}
		default: // undefined, zero, unmapped
			clear(buf)
		}
		pos += cnt
	}
	clearPastEnd(p, off, d.size)
	return n, nil
}

// readPartial reads buf at disk offset pos inside partially present block
// b: sectors marked in the bitmap from the file, the others from the parent.
func (d *vhdxDisk) readPartial(buf []byte, pos, b, fileOff int64) error {
	bm, err := d.bitmap(b)
	if err != nil {
		return err
	}
	base := b * d.blockSize
	for done := int64(0); done < int64(len(buf)); {
		in := pos + done - base
		s := in / d.logicalSector
		present := bm[s/8]>>(s%8)&1 != 0
		// Extend over sectors with the same state.
		e := s + 1
		for e*d.logicalSector < in+int64(len(buf))-done && bm[e/8]>>(e%8)&1 != 0 == present {
			e++
		}
		cnt := min(e*d.logicalSector-in, int64(len(buf))-done)
		part := buf[done : done+cnt]
		if present {
			if err := d.r.readAt(part, fileOff+in); err != nil {
				return err
			}
		} else if err := readParent(d.parent, part, pos+done); err != nil {
			return err
		}
		done += cnt
	}
	return nil
}

// Map reports whether the range at off is stored in this image or its
// chain, per block (and per sector for partially present blocks).
func (d *vhdxDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= d.size || length < SectorSize {
		return false, 0, fmt.Errorf("%w: map offset %d length %d", ErrInvalid, off, length)
	}
	length = min(length, roundUp(d.size, SectorSize)-off)
	b := off / d.blockSize
	in := off % d.blockSize
	cnt := min(d.blockSize-in, length)
	state, _, err := d.block(b)
	if err != nil {
		return false, 0, err
	}
	alloc := false
	switch state {
	case vhdxFullyPresent:
		alloc = true
	case vhdxPartiallyPresent:
		bm, err := d.bitmap(b)
		if err != nil {
			return false, 0, err
		}
		s := in / d.logicalSector
		present := bm[s/8]>>(s%8)&1 != 0
		e := s + 1
		for e*d.logicalSector < in+cnt && bm[e/8]>>(e%8)&1 != 0 == present {
			e++
		}
		cnt = min(e*d.logicalSector-in, cnt)
		if present {
			return true, cnt, nil
		}
		return d.parentMap(off, cnt)
	case vhdxNotPresent:
		if d.parent != nil {
			return d.parentMap(off, cnt)
		}
	}
	// Merge following blocks of the same kind (a bounded number, so a
	// huge request stays cheap).
	for i := int64(1); i <= 64 && cnt < length; i++ {
		s2, _, err := d.block(b + i)
		if err != nil || s2 == vhdxPartiallyPresent || s2 == vhdxNotPresent && d.parent != nil || (s2 == vhdxFullyPresent) != alloc {
			break
		}
		cnt = min(cnt+d.blockSize, length)
	}
	return alloc, cnt, nil
}

func (d *vhdxDisk) parentMap(off, length int64) (bool, int64, error) {
	if m, ok := d.parent.(Mapper); ok && off < d.parent.Size() {
		a, n, err := m.Map(off, min(length, roundUp(d.parent.Size(), SectorSize)-off))
		return a, n, err
	}
	if off >= d.parent.Size() {
		return false, length, nil
	}
	return true, length, nil
}

func (d *vhdxDisk) Close() error {
	return closeChain(d.closeWrite(), d.f, d.parent)
}

func (d *vhdxDisk) Info() Info { return d.describe(true) }

// quickInfo is Info without scanning the BAT: Allocated is -1.
func (d *vhdxDisk) quickInfo() Info { return d.describe(false) }

func (d *vhdxDisk) describe(count bool) Info {
	info := d.info
	info.Allocated = -1
	if count {
		info.Allocated = d.countAllocated()
	}
	info.Features = append([]string(nil), d.info.Features...)
	info.Warnings = append([]string(nil), d.info.Warnings...)
	info.Files = append([]string(nil), d.info.Files...)
	md := make(map[string]string, len(d.info.Metadata))
	for k, v := range d.info.Metadata {
		md[k] = v
	}
	info.Metadata = md
	if d.parent != nil {
		info.Parent = parentInfo(d.parent, count)
	}
	return info
}

// countAllocated counts the virtual bytes stored in this file, scanning
// the BAT once; -1 for a BAT too large to scan on demand.
func (d *vhdxDisk) countAllocated() int64 {
	d.allocOnce.Do(func() {
		d.allocated = -1
		if d.batEntries > vhdxMaxAllocScan {
			return
		}
		var total int64
		bitmapBudget := int64(16 << 20) // bytes of sector bitmap to read at most
		for b := int64(0); b < d.payloadBlocks; b++ {
			state, _, err := d.block(b)
			if err != nil {
				return
			}
			switch state {
			case vhdxFullyPresent:
				total += min(d.blockSize, d.size-b*d.blockSize)
			case vhdxPartiallyPresent:
				if bitmapBudget -= d.blockSize / d.logicalSector / 8; bitmapBudget < 0 {
					return
				}
				bm, err := d.bitmap(b)
				if err != nil {
					return
				}
				sectors := int64(0)
				for _, c := range bm {
					sectors += int64(bits.OnesCount8(c))
				}
				total += min(sectors*d.logicalSector, d.size-b*d.blockSize)
			}
		}
		d.allocated = total
	})
	return d.allocated
}
