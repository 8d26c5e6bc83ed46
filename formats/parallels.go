package formats

// Parallels expanding images (docs/interop/parallels.rst): a 64-byte
// little-endian header, a BAT of 32-bit cluster offsets (in sectors for
// "WithoutFreeSpace", in clusters for "WithouFreSpacExt"), then the data
// area. Read and write; new clusters are appended at the end of the data
// area. A .hdd bundle (a directory with DiskDescriptor.xml, see
// docs/interop/prl-xml.rst) opens its top snapshot image, with the
// snapshots below it as parents.

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

func init() {
	register(format{name: "parallels", order: orderHead, probe: parallelsProbe, open: parallelsOpen})
}

const (
	parallelsMagicV1   = "WithoutFreeSpace"
	parallelsMagicV2   = "WithouFreSpacExt"
	parallelsHeaderLen = 64
	parallelsInUse     = 0x746F6E59
	parallelsPageLen   = 4096 // BAT entries per cached page
	parallelsMaxBAT    = 1<<31/4 - 1
	parallelsInUseOff  = 44
	parallelsXMLName   = "DiskDescriptor.xml"
)

func parallelsProbe(pd *ProbeData) bool {
	if pd.IsDir {
		st, err := statPath(filepath.Join(pd.Path, parallelsXMLName))
		return err == nil && st.Mode().IsRegular()
	}
	h := pd.Head
	if len(h) >= parallelsHeaderLen && (string(h[:16]) == parallelsMagicV1 || string(h[:16]) == parallelsMagicV2) &&
		binary.LittleEndian.Uint32(h[16:]) == 2 {
		return true
	}
	return parallelsIsXML(h)
}

// parallelsIsXML recognises a DiskDescriptor.xml by its root element.
func parallelsIsXML(h []byte) bool {
	h = h[:min(len(h), 4096)]
	t := bytes.TrimLeft(h, " \t\r\n\xef\xbb\xbf")
	return len(t) > 0 && t[0] == '<' && bytes.Contains(h, []byte("<Parallels_disk_image"))
}

func parallelsOpen(path string, opt Options) (Disk, error) {
	st, err := statPath(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return parallelsOpenBundle(filepath.Join(path, parallelsXMLName), opt)
	}
	head := make([]byte, 4096)
	f, err := OpenImageFile(path, false)
	if err != nil {
		return nil, err
	}
	n, _ := io.ReadFull(f, head)
	f.Close()
	if n < parallelsHeaderLen || (string(head[:16]) != parallelsMagicV1 && string(head[:16]) != parallelsMagicV2) {
		if parallelsIsXML(head[:n]) {
			return parallelsOpenBundle(path, opt)
		}
	}
	d, err := parallelsOpenImage(path, opt.ReadOnly, nil)
	if err == nil {
		// An image inside a .hdd bundle may be one snapshot of several.
		if _, serr := statPath(filepath.Join(filepath.Dir(path), parallelsXMLName)); serr == nil {
			d.(*parallelsDisk).warning = "image is part of a .hdd bundle: open the bundle directory to see its snapshot chain"
		}
	}
	return d, err
}

type parallelsDisk struct {
	f           *os.File
	path        string
	readOnly    bool
	ext         bool  // "WithouFreSpacExt": BAT entries in clusters
	tracks      int64 // sectors per cluster
	clusterSize int64
	batLen      int64
	size        int64
	dataOff     int64 // sectors
	extOff      uint64
	flags       uint32
	inuse       uint32 // in_use as found at open
	warning     string
	parent      Disk

	bat      *lru[int64, []uint32]
	fileSize atomic.Int64
	mu       sync.RWMutex // guards consistency of cached BAT pages with the file

	allocMu   sync.Mutex
	dataEnd   int64 // sectors; 0 until the first allocation scans the BAT
	inuseSet  bool  // we wrote the in-use mark (allocMu)
	inuseFast atomic.Bool
	allocated atomic.Int64
}

// parallelsOpenImage opens one expanding image; parent, when not nil,
// backs its unallocated clusters and is closed with it.
func parallelsOpenImage(path string, readOnly bool, parent Disk) (Disk, error) {
	return openDisk(path, readOnly, func(f *os.File) (*parallelsDisk, error) {
		d, err := parallelsParse(f, path, readOnly)
		if err == nil {
			d.parent = parent
		}
		return d, err
	})
}

func parallelsParse(f *os.File, path string, readOnly bool) (*parallelsDisk, error) {
	h, fsize, err := readHead(f, parallelsHeaderLen, "parallels", path)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	d := &parallelsDisk{f: f, path: path, readOnly: readOnly}
	switch string(h[:16]) {
	case parallelsMagicV1:
	case parallelsMagicV2:
		d.ext = true
	default:
		return nil, corruptf("parallels", path, 0, "bad magic")
	}
	if v := le.Uint32(h[16:]); v != 2 {
		return nil, unsupportedf("parallels", path, "header version %d", v)
	}
	d.tracks = int64(le.Uint32(h[28:]))
	d.batLen = int64(le.Uint32(h[32:]))
	nbSectors := le.Uint64(h[36:])
	d.inuse = le.Uint32(h[44:])
	d.dataOff = int64(le.Uint32(h[48:]))
	d.flags = le.Uint32(h[52:])
	d.extOff = le.Uint64(h[56:])
	if !d.ext {
		nbSectors &= 0xffffffff // only the low half counts in the old format
	}
	if d.tracks == 0 || d.tracks > (1<<31-1)/513 {
		return nil, corruptf("parallels", path, 28, "cluster size of %d sectors out of range", d.tracks)
	}
	d.clusterSize = d.tracks * SectorSize
	if d.batLen > parallelsMaxBAT || parallelsHeaderLen+4*d.batLen > fsize {
		return nil, corruptf("parallels", path, 32, "BAT of %d entries does not fit in the file of %d bytes", d.batLen, fsize)
	}
	if nbSectors > 1<<53 {
		return nil, corruptf("parallels", path, 36, "disk size of %d sectors out of range", nbSectors)
	}
	d.size = int64(nbSectors) * SectorSize
	batEnd := (parallelsHeaderLen + 4*d.batLen + SectorSize - 1) / SectorSize
	if d.dataOff == 0 {
		if d.ext {
			return nil, corruptf("parallels", path, 48, "data_off is zero")
		}
		d.dataOff = batEnd
	}
	if d.dataOff < batEnd {
		return nil, corruptf("parallels", path, 48, "data area at sector %d overlaps the BAT", d.dataOff)
	}
	d.fileSize.Store(fsize)
	d.bat = newLRU[int64, []uint32](256)
	d.allocated.Store(-1)
	if !readOnly {
		if d.inuse == parallelsInUse {
			return nil, unsupportedf("parallels", path, "image was not closed correctly (in-use mark set): run `qemu-img check -r all -f parallels %s` before writing to it", path)
		}
		if d.extOff != 0 {
			return nil, unsupportedf("parallels", path, "writing an image with a format extension (dirty bitmaps)")
		}
		if d.ext && d.dataOff%d.tracks != 0 {
			return nil, corruptf("parallels", path, 48, "data_off %d not cluster aligned", d.dataOff)
		}
	}
	return d, nil
}

// entry returns BAT entry i (0 = unallocated) and the entry's file
// offset in bytes.
func (d *parallelsDisk) entry(i int64) (uint32, error) {
	if i >= d.batLen {
		return 0, nil
	}
	page := i / parallelsPageLen
	t, ok := d.bat.Get(page)
	if !ok {
		d.mu.RLock()
		t, ok = d.bat.Get(page)
		var err error
		if !ok {
			t, err = d.readBAT(page*parallelsPageLen, min(parallelsPageLen, d.batLen-page*parallelsPageLen))
			if err == nil {
				d.bat.Put(page, t)
			}
		}
		d.mu.RUnlock()
		if err != nil {
			return 0, err
		}
	}
	return t[i%parallelsPageLen], nil
}

func (d *parallelsDisk) readBAT(start, n int64) ([]uint32, error) {
	buf := make([]byte, n*4)
	if err := readFullAt(d.f, buf, parallelsHeaderLen+start*4, "parallels", d.path); err != nil {
		return nil, err
	}
	t := make([]uint32, n)
	for j := range t {
		t[j] = binary.LittleEndian.Uint32(buf[j*4:])
	}
	return t, nil
}

// clusterOff converts a BAT entry to a file offset in bytes, checking it.
func (d *parallelsDisk) clusterOff(i int64, e uint32) (int64, error) {
	sec := int64(e)
	if d.ext {
		sec *= d.tracks
	}
	off := sec * SectorSize
	if sec < d.dataOff || off >= d.fileSize.Load() {
		return 0, corruptf("parallels", d.path, parallelsHeaderLen+4*i, "BAT entry %d (%d) points outside the data area", i, e)
	}
	return off, nil
}

func (d *parallelsDisk) Size() int64 { return d.size }

func (d *parallelsDisk) ReadAt(p []byte, off int64) (int, error) {
	return readClusters(p, off, d.size, d.clusterSize, d.readData, func(pos int64, chunk []byte) (int64, error) {
		i := pos / d.clusterSize
		e, err := d.entry(i)
		if err != nil {
			return 0, err
		}
		if e == 0 {
			return -1, readParent(d.parent, chunk, pos)
		}
		co, err := d.clusterOff(i, e)
		if err != nil {
			return 0, err
		}
		return co + pos%d.clusterSize, nil
	})
}

// readData reads image data; like qemu, the part of a cluster past the end
// of the file (a truncated last cluster) reads as zeros.
func (d *parallelsDisk) readData(p []byte, off int64) error {
	n, err := d.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("parallels: %s: read at %#x: %w", d.path, off, err)
	}
	clear(p[n:])
	return nil
}

func (d *parallelsDisk) WriteAt(p []byte, off int64) (int, error) {
	prepare := func() error {
		// Refuse a write onto the header or BAT before the in-use mark
		// changes anything (overlap_parallels.go).
		if !d.inuseFast.Load() {
			if err := d.precheck(p[:min(int64(len(p)), d.size-off)], off); err != nil {
				return err
			}
		}
		return d.markInUse()
	}
	return writeUnits(p, off, d.size, d.readOnly, d.clusterSize, prepare, d.writeCluster)
}

// markInUse sets the in-use mark before the first write, so that a crash
// leaves the image flagged for a check.
func (d *parallelsDisk) markInUse() error {
	if d.inuseFast.Load() {
		return nil
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if d.inuseSet {
		return nil
	}
	if err := d.writeInUse(parallelsInUse); err != nil {
		return err
	}
	d.inuseSet = true
	d.inuseFast.Store(true)
	return nil
}

func (d *parallelsDisk) writeInUse(v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if err := d.pwrite(b[:], parallelsInUseOff); err != nil {
		return err
	}
	return syncFile(d.f, "parallels", d.path)
}

func (d *parallelsDisk) writeCluster(data []byte, pos int64) error {
	i := pos / d.clusterSize
	in := pos % d.clusterSize
	if i >= d.batLen {
		return corruptf("parallels", d.path, 32, "write at %d past the %d clusters of the BAT", pos, d.batLen)
	}
	// An allocated cluster is written in place; the entry is looked up
	// again under allocMu, as another writer may have just allocated it.
	inPlace := func(e uint32) error {
		co, err := d.dataCluster(i, e)
		if err != nil {
			return err
		}
		return d.pwrite(data, co+in)
	}
	e, err := d.entry(i)
	if err != nil {
		return err
	}
	if e != 0 {
		return inPlace(e)
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if e, err = d.entry(i); err != nil {
		return err
	}
	if e != 0 {
		return inPlace(e)
	}
	whole := int64(len(data)) == d.clusterSize
	if isZero(data) && (d.parent == nil || pos >= d.parent.Size()) {
		return nil // these sectors already read as zeros
	}
	if d.dataEnd == 0 {
		if err := d.scanDataEnd(); err != nil {
			return err
		}
	}
	buf := data
	if !whole {
		buf = make([]byte, d.clusterSize)
		if err := readParent(d.parent, buf, pos-in); err != nil {
			return err
		}
		copy(buf[in:], data)
	}
	val := d.dataEnd
	if d.ext {
		val /= d.tracks
	}
	if val > 1<<32-1 {
		return unsupportedf("parallels", d.path, "image file would exceed the BAT's 32-bit offsets")
	}
	at := d.dataEnd * SectorSize
	if err := d.pwrite(buf, at); err != nil {
		return err
	}
	if end := at + d.clusterSize; end > d.fileSize.Load() {
		d.fileSize.Store(end)
	}
	d.dataEnd += d.tracks
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(val))
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.pwrite(b[:], parallelsHeaderLen+4*i); err != nil {
		return err
	}
	page := i / parallelsPageLen
	if t, ok := d.bat.Get(page); ok {
		nt := append([]uint32(nil), t...) // readers may hold the old page
		nt[i%parallelsPageLen] = uint32(val)
		d.bat.Put(page, nt)
	}
	if a := d.allocated.Load(); a >= 0 {
		d.allocated.Store(a + d.clusterSize)
	}
	return nil
}

// scanDataEnd finds the end of the data area: past data_off and past the
// highest allocated cluster. Called with allocMu held.
func (d *parallelsDisk) scanDataEnd() error {
	end := d.dataOff
	if d.ext {
		end = (end + d.tracks - 1) / d.tracks * d.tracks
	}
	err := d.scanBAT(func(i int64, e uint32) error {
		sec := int64(e)
		if d.ext {
			sec *= d.tracks
		}
		end = max(end, sec+d.tracks)
		return nil
	})
	if err != nil {
		return err
	}
	d.dataEnd = end
	return nil
}

// scanBAT calls fn for every allocated BAT entry, reading the BAT in
// bounded pieces.
func (d *parallelsDisk) scanBAT(fn func(i int64, e uint32) error) error {
	for start := int64(0); start < d.batLen; start += parallelsPageLen {
		t, ok := d.bat.Get(start / parallelsPageLen)
		if !ok {
			var err error
			if t, err = d.readBAT(start, min(parallelsPageLen, d.batLen-start)); err != nil {
				return err
			}
		}
		for j, e := range t {
			if e != 0 {
				if err := fn(start+int64(j), e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (d *parallelsDisk) pwrite(b []byte, off int64) error {
	return writeFullAt(d.f, b, off, "parallels", d.path)
}

func (d *parallelsDisk) Map(off, length int64) (bool, int64, error) {
	return mapRuns(off, length, d.size, d.parent, func(pos, limit int64) (mapState, int64, error) {
		i := pos / d.clusterSize
		if i >= d.batLen { // past the BAT: nothing stored up to the end
			return mapBacking, limit, nil
		}
		e, err := d.entry(i)
		if err != nil {
			return 0, 0, err
		}
		step := min(d.clusterSize-pos%d.clusterSize, limit)
		if e == 0 {
			return mapBacking, step, nil
		}
		return mapData, step, nil
	})
}

func (d *parallelsDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	return syncFile(d.f, "parallels", d.path)
}

// Close makes everything durable, then restores the in-use field to
// what it was before the first write (a clean close).
func (d *parallelsDisk) Close() error {
	err := d.Flush()
	if err == nil && !d.readOnly {
		d.allocMu.Lock()
		if d.inuseSet {
			err = d.writeInUse(d.inuse)
			d.inuseSet = false
			d.inuseFast.Store(false)
		}
		d.allocMu.Unlock()
	}
	return closeChain(err, d.f, d.parent)
}

func (d *parallelsDisk) Info() Info {
	variant := parallelsMagicV1
	if d.ext {
		variant = parallelsMagicV2
	}
	info := Info{
		Format: "parallels", Variant: "expanding, " + variant, Path: d.path, Files: []string{d.path},
		Size: d.size, ClusterSize: d.clusterSize, Allocated: d.allocatedBytes(),
		ReadOnly: d.readOnly,
	}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	if d.inuse == parallelsInUse {
		info.Features = append(info.Features, "in-use")
		info.Warnings = append(info.Warnings, "image was not closed correctly (in-use mark): run qemu-img check -r all before writing to it")
	}
	if d.warning != "" {
		info.Warnings = append(info.Warnings, d.warning)
	}
	if d.extOff != 0 {
		info.Features = append(info.Features, "format extension")
	}
	if d.flags&1 != 0 {
		info.Features = append(info.Features, "empty-image flag")
	}
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}

// allocatedBytes counts allocated clusters once (a BAT scan) and keeps the
// count up to date on allocation; -1 if the BAT cannot be read.
func (d *parallelsDisk) allocatedBytes() int64 {
	if a := d.allocated.Load(); a >= 0 {
		return a
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if a := d.allocated.Load(); a >= 0 {
		return a
	}
	var n int64
	if err := d.scanBAT(func(int64, uint32) error { n++; return nil }); err != nil {
		return -1
	}
	a := min(n*d.clusterSize, d.size)
	d.allocated.Store(a)
	return a
}

// A .hdd bundle: DiskDescriptor.xml names the images of one storage and
// the snapshot tree over them.

type parallelsDescriptor struct {
	XMLName xml.Name `xml:"Parallels_disk_image"`
	Params  struct {
		DiskSize int64 `xml:"Disk_size"`
		Padding  int64 `xml:"Padding"`
	} `xml:"Disk_Parameters"`
	Storages  []parallelsStorage `xml:"StorageData>Storage"`
	Snapshots struct {
		TopGUID string `xml:"TopGUID"`
		Shots   []struct {
			GUID       string `xml:"GUID"`
			ParentGUID string `xml:"ParentGUID"`
		} `xml:"Shot"`
	} `xml:"Snapshots"`
}

// parallelsStorage is one range of the disk (sectors [Start, End)) with
// one image per snapshot.
type parallelsStorage struct {
	Start     int64 `xml:"Start"`
	End       int64 `xml:"End"`
	Blocksize int64 `xml:"Blocksize"`
	Images    []struct {
		GUID string `xml:"GUID"`
		Type string `xml:"Type"`
		File string `xml:"File"`
	} `xml:"Image"`
}

type parallelsImage struct{ typ, file string }

// images maps the storage's images by GUID (lowercase).
func (st *parallelsStorage) images() map[string]parallelsImage {
	m := map[string]parallelsImage{}
	for _, im := range st.Images {
		m[strings.ToLower(strings.TrimSpace(im.GUID))] = parallelsImage{strings.TrimSpace(im.Type), strings.TrimSpace(im.File)}
	}
	return m
}

const (
	parallelsTopGUID  = "{5fbaabe3-6958-40ff-92a7-860e329aab41}"
	parallelsRootGUID = "{00000000-0000-0000-0000-000000000000}"
	parallelsMaxXML   = 4 << 20
)

// parallelsBundle is the top snapshot image of a bundle, described as the
// bundle.
type parallelsBundle struct {
	Disk
	xmlPath string
	chain   []string // image GUIDs, top first
}

func (b *parallelsBundle) Map(off, length int64) (bool, int64, error) {
	if m, ok := b.Disk.(Mapper); ok {
		return m.Map(off, length)
	}
	return true, max(SectorSize, length), nil
}

func (b *parallelsBundle) Info() Info {
	info := b.Disk.Info()
	if info.Format != "parallels" { // a plain (raw) top image
		info.Variant = "plain"
		info.Format = "parallels"
	}
	info.Variant += ", bundle"
	top := info.Path
	info.Path = b.xmlPath
	info.Files = append([]string{b.xmlPath}, info.Files...)
	if info.Metadata == nil {
		info.Metadata = map[string]string{}
	}
	info.Metadata["top_image"] = top
	info.Metadata["snapshots"] = strings.Join(b.chain, " ")
	return info
}

func parallelsOpenBundle(xmlPath string, opt Options) (Disk, error) {
	return parallelsOpenBundleAt(xmlPath, opt, "")
}

// parallelsOpenBundleAt opens the bundle as snapshot at (a GUID) sees
// it, or at its top snapshot when at is empty.
func parallelsOpenBundleAt(xmlPath string, opt Options, at string) (Disk, error) {
	desc, err := parallelsReadDescriptor(xmlPath)
	if err != nil {
		return nil, err
	}
	chain, err := desc.chain(xmlPath, at)
	if err != nil {
		return nil, err
	}
	var disk Disk
	if len(desc.Storages) == 1 {
		disk, err = parallelsOpenStorage(xmlPath, desc.Storages[0], chain, opt)
	} else {
		disk, err = parallelsOpenSplit(xmlPath, desc.Storages, chain, opt)
	}
	if err != nil {
		return nil, fmt.Errorf("parallels: %s: %w", xmlPath, err)
	}
	return &parallelsBundle{Disk: disk, xmlPath: xmlPath, chain: chain}, nil
}

// parallelsReadDescriptor reads and decodes DiskDescriptor.xml and checks
// that it describes at least one storage and no padding.
func parallelsReadDescriptor(xmlPath string) (*parallelsDescriptor, error) {
	f, err := OpenImageFile(xmlPath, false)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, parallelsMaxXML+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("parallels: %s: %w", xmlPath, err)
	}
	if len(raw) > parallelsMaxXML {
		return nil, corruptf("parallels", xmlPath, -1, "descriptor larger than %d bytes", parallelsMaxXML)
	}
	desc := &parallelsDescriptor{}
	if err := xml.Unmarshal(raw, desc); err != nil {
		return nil, corruptf("parallels", xmlPath, -1, "descriptor: %v", err)
	}
	if desc.Params.Padding != 0 {
		return nil, unsupportedf("parallels", xmlPath, "disk padding %d", desc.Params.Padding)
	}
	if len(desc.Storages) == 0 {
		return nil, corruptf("parallels", xmlPath, -1, "descriptor names no storage")
	}
	if len(desc.Storages) > parallelsMaxStorages {
		return nil, corruptf("parallels", xmlPath, -1, "%d storages (more than %d)", len(desc.Storages), parallelsMaxStorages)
	}
	return desc, nil
}

// chain returns the snapshot chain (GUIDs) from snapshot at, or the top
// snapshot when at is empty, down to the root. Every storage of a split
// bundle holds an image for each snapshot; the first one's are checked.
func (desc *parallelsDescriptor) chain(xmlPath, at string) ([]string, error) {
	st := desc.Storages[0]
	images := st.images()
	parents := map[string]string{}
	for _, s := range desc.Snapshots.Shots {
		parents[strings.ToLower(strings.TrimSpace(s.GUID))] = strings.ToLower(strings.TrimSpace(s.ParentGUID))
	}
	top := strings.ToLower(strings.TrimSpace(desc.Snapshots.TopGUID))
	if at != "" {
		top = at
	}
	if top == "" {
		top = parallelsTopGUID
		if _, ok := images[top]; !ok && len(st.Images) == 1 {
			top = strings.ToLower(strings.TrimSpace(st.Images[0].GUID))
		}
	}
	var chain []string
	for g := top; g != parallelsRootGUID && g != ""; g = parents[g] {
		if len(chain) >= MaxChainDepth {
			return nil, corruptf("parallels", xmlPath, -1, "snapshot chain deeper than %d (a loop?)", MaxChainDepth)
		}
		if _, ok := images[g]; !ok {
			return nil, corruptf("parallels", xmlPath, -1, "snapshot %s has no image", g)
		}
		chain = append(chain, g)
		if _, ok := parents[g]; !ok && len(desc.Snapshots.Shots) > 0 {
			return nil, corruptf("parallels", xmlPath, -1, "image %s is not in the snapshot tree", g)
		}
	}
	if len(chain) == 0 {
		return nil, corruptf("parallels", xmlPath, -1, "no top snapshot image")
	}
	return chain, nil
}

// parallelsOpenStorage opens the images of one storage along chain (GUIDs,
// top first), the root first, each backing the one above it.
func parallelsOpenStorage(xmlPath string, st parallelsStorage, chain []string, opt Options) (Disk, error) {
	images := st.images()
	dir := filepath.Dir(xmlPath)
	var disk Disk
	var err error
	for k := len(chain) - 1; k >= 0; k-- {
		im, ok := images[chain[k]]
		p := im.file
		if !ok || p == "" {
			err = corruptf("parallels", xmlPath, -1, "image %s has no file", chain[k])
			break
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		ro := k > 0 || opt.ReadOnly
		var d Disk
		switch strings.ToLower(im.typ) {
		case "plain":
			if k != len(chain)-1 {
				err = corruptf("parallels", xmlPath, -1, "plain image %s is not the root", chain[k])
				break
			}
			d, err = openRaw(p, Options{ReadOnly: ro})
		case "compressed":
			d, err = parallelsOpenImage(p, ro, disk)
		default:
			err = unsupportedf("parallels", xmlPath, "image type %q", im.typ)
		}
		if err != nil {
			break
		}
		disk = d
	}
	if err != nil {
		if disk != nil {
			disk.Close()
		}
		return nil, err
	}
	return disk, nil
}

// CanWrite: an image marked in use or carrying a format extension is
// never written (see openParallels).
func (d *parallelsDisk) CanWrite() bool {
	return d.inuse != parallelsInUse && d.extOff == 0
}
