package formats

// QEMU copy-on-write v2/v3 images (docs/interop/qcow2.rst). The virtual
// disk is split into clusters; a two-level table (L1 -> L2) maps each
// guest cluster to a host cluster, a compressed cluster, a zero cluster or
// nothing (read from the backing file). Extended L2 entries add a 32-bit
// allocation and a 32-bit zero bitmap per cluster, one bit per subcluster.
// This file holds the header, the tables and the read path;
// qcow2_write.go holds allocation and refcounts.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

func init() {
	register(format{name: "qcow2", order: orderHead, probe: qcow2Probe, open: qcow2Open})
}

const (
	qcow2Magic = 0x514649fb // "QFI\xfb"

	qcow2IncDirty       = 1 << 0
	qcow2IncCorrupt     = 1 << 1
	qcow2IncDataFile    = 1 << 2
	qcow2IncCompression = 1 << 3
	qcow2IncExtL2       = 1 << 4
	qcow2IncKnown       = 0x1f

	qcow2CompatLazy = 1 << 0

	qcow2AutoBitmaps = 1 << 0
	qcow2AutoDataRaw = 1 << 1

	qcow2ExtEnd        = 0
	qcow2ExtBackingFmt = 0xe2792aca
	qcow2ExtFeatures   = 0x6803f857
	qcow2ExtBitmaps    = 0x23852875
	qcow2ExtCrypto     = 0x0537be77
	qcow2ExtDataFile   = 0x44415441

	qcow2Copied     = uint64(1) << 63
	qcow2Compressed = uint64(1) << 62
	qcow2ZeroFlag   = uint64(1)
	qcow2OffMask    = uint64(0x00fffffffffffe00) // bits 9-55: host offset
	qcow2L1Reserved = uint64(0x7f000000000001ff)
	qcow2L2Reserved = uint64(0x00000000000001fe) // bits 1-8 of a standard entry

	qcow2MaxL1Bytes     = 32 << 20 // qemu's QCOW_MAX_L1_SIZE
	qcow2MaxRTBytes     = 8 << 20  // qemu's QCOW_MAX_REFTABLE_SIZE
	qcow2MaxSnapshots   = 65536
	qcow2ListSnapshots  = 1000 // snapshots listed in Info().Metadata
	qcow2CacheBytes     = 32 << 20
	qcow2ZCacheBytes    = 2 << 20
	qcow2MaxBackingName = 1023
)

// qcow2Header is the fixed header; v2 images leave the v3 fields at their
// v2 meaning (no feature bits, 16-bit refcounts).
type qcow2Header struct {
	Magic           uint32
	Version         uint32
	BackingOff      uint64
	BackingLen      uint32
	ClusterBits     uint32
	Size            uint64
	CryptMethod     uint32
	L1Size          uint32
	L1Off           uint64
	RTOff           uint64
	RTClusters      uint32
	NbSnapshots     uint32
	SnapOff         uint64
	Incompat        uint64
	Compat          uint64
	Autoclear       uint64
	RefcountOrder   uint32
	HeaderLen       uint32
	CompressionType uint8
}

type qcow2Snapshot struct {
	ID, Name string
	Date     time.Time
	L1Size   uint32
}

// qcow2Disk is an open qcow2 image with its backing chain.
type qcow2Disk struct {
	path     string
	f        *os.File // the qcow2 file
	data     *os.File // guest data: f, or the external data file
	dataPath string
	extData  bool
	parent   Disk
	h        qcow2Header
	size     int64

	cb       uint  // cluster bits
	cs       int64 // cluster size
	extL2    bool
	l2bits   uint  // log2 of entries per L2 table
	scs      int64 // subcluster size (cs without extended L2)
	zstd     bool
	v3       bool
	readOnly bool
	roReason string

	features  []string
	metadata  map[string]string
	warnings  []string
	snapshots int

	// mu guards the table state: l1 and the contents of cached L2
	// tables. Readers hold it shared only while they look entries up,
	// never across data I/O.
	mu      sync.RWMutex
	l1      []uint64
	l2cache *lru[int64, []uint64]
	zcache  *lru[uint64, []byte] // decompressed clusters by L2 entry

	fileEnd atomic.Int64 // current size of f, for bounds checks

	// Write side (qcow2_write.go), all guarded by allocMu.
	allocMu  sync.Mutex
	wstarted bool
	wdone    atomic.Bool // wstarted, readable without allocMu
	next     int64       // next free host cluster at the end of f
	rt       []uint64    // refcount table, loaded on first allocation
	rtOff    int64
	rtCls    int64
	wbuf     []byte
	meta     *metaMap // metadata a data write must not touch (overlap_qcow2.go)

	allocBytes atomic.Int64 // cached Allocated, -2 when stale
	allocGen   atomic.Int64 // bumped by every allocating write
}

func qcow2Probe(pd *ProbeData) bool {
	if len(pd.Head) < 8 || binary.BigEndian.Uint32(pd.Head) != qcow2Magic {
		return false
	}
	// Version 1 shares the magic and belongs to the qcow format; versions
	// past 3 are claimed so that opening says what is unsupported.
	return binary.BigEndian.Uint32(pd.Head[4:]) >= 2
}

func qcow2Open(path string, opt Options) (Disk, error) {
	f, err := OpenImageFile(path, false)
	if err != nil {
		return nil, err
	}
	d := &qcow2Disk{path: path, f: f, data: f, readOnly: opt.ReadOnly, metadata: map[string]string{}}
	if opt.ReadOnly {
		d.roReason = "opened read-only"
	}
	if err := d.open(opt); err != nil {
		d.closeFiles()
		return nil, err
	}
	return d, nil
}

func (d *qcow2Disk) corrupt(off int64, msg string, a ...any) error {
	return corruptf("qcow2", d.path, off, msg, a...)
}

func (d *qcow2Disk) unsupported(msg string, a ...any) error {
	return unsupportedf("qcow2", d.path, msg, a...)
}

func (d *qcow2Disk) open(opt Options) error {
	fsize, err := fileSize(d.f)
	if err != nil {
		return fmt.Errorf("qcow2: %s: %w", d.path, err)
	}
	d.fileEnd.Store(fsize)
	if err := d.readHeader(fsize); err != nil {
		return err
	}
	// The first cluster holds the header, its extensions and the
	// backing file name.
	head := make([]byte, min(d.cs, fsize))
	if err := readFullAt(d.f, head, 0, "qcow2", d.path); err != nil {
		return err
	}
	featureNames, err := d.parseExtensions(head)
	if err != nil {
		return err
	}
	if err := d.checkFeatures(featureNames); err != nil {
		return err
	}
	if err := d.loadL1(fsize); err != nil {
		return err
	}
	if err := d.readSnapshots(fsize); err != nil {
		return err
	}
	if err := d.listFeatures(); err != nil {
		return err
	}
	d.l2cache = newLRU[int64, []uint64](int(max(4, qcow2CacheBytes/d.cs)))
	d.zcache = newLRU[uint64, []byte](int(max(2, qcow2ZCacheBytes/d.cs)))
	d.allocBytes.Store(-2)

	if err := d.openDataFile(); err != nil {
		return err
	}
	if err := d.openBacking(head, opt); err != nil {
		return err
	}
	if !d.readOnly {
		// Reopen read-write only now that the header allows it.
		rw, err := OpenImageFile(d.path, true)
		if err != nil {
			return err
		}
		if d.data == d.f {
			d.data = rw
		}
		d.f.Close()
		d.f = rw
	}
	return nil
}

// readHeader reads, decodes and validates the fixed header into d.h.
func (d *qcow2Disk) readHeader(fsize int64) error {
	var raw [112]byte
	if fsize < 72 {
		return d.corrupt(0, "file too small for a header (%d bytes)", fsize)
	}
	hb := raw[:min(int64(len(raw)), fsize)]
	if err := readFullAt(d.f, hb, 0, "qcow2", d.path); err != nil {
		return err
	}
	d.h = qcow2DecodeHeader(hb)
	if err := d.h.validate(d.path, len(hb)); err != nil {
		return err
	}
	d.v3 = d.h.Version == 3
	d.cb = uint(d.h.ClusterBits)
	d.cs = 1 << d.cb
	return nil
}

// qcow2DecodeHeader decodes the fixed header at the start of hb (72
// bytes at least) without judging it. A v2 header gets the v2 meaning of
// the v3 fields; a v3 header shorter than its 104 bytes leaves them zero
// (validate refuses it).
func qcow2DecodeHeader(hb []byte) qcow2Header {
	be := binary.BigEndian
	h := qcow2Header{
		Magic: be.Uint32(hb[0:]), Version: be.Uint32(hb[4:]),
		BackingOff: be.Uint64(hb[8:]), BackingLen: be.Uint32(hb[16:]),
		ClusterBits: be.Uint32(hb[20:]), Size: be.Uint64(hb[24:]),
		CryptMethod: be.Uint32(hb[32:]), L1Size: be.Uint32(hb[36:]), L1Off: be.Uint64(hb[40:]),
		RTOff: be.Uint64(hb[48:]), RTClusters: be.Uint32(hb[56:]),
		NbSnapshots: be.Uint32(hb[60:]), SnapOff: be.Uint64(hb[64:]),
	}
	switch {
	case h.Version == 2:
		h.RefcountOrder, h.HeaderLen = 4, 72
	case h.Version == 3 && len(hb) >= 104:
		h.Incompat, h.Compat, h.Autoclear = be.Uint64(hb[72:]), be.Uint64(hb[80:]), be.Uint64(hb[88:])
		h.RefcountOrder, h.HeaderLen = be.Uint32(hb[96:]), be.Uint32(hb[100:])
		if h.HeaderLen > 104 && len(hb) > 104 {
			h.CompressionType = hb[104]
		}
	}
	return h
}

// validate checks the header fields that every later step relies on; n
// is how many header bytes the file holds.
func (h *qcow2Header) validate(path string, n int) error {
	if h.Magic != qcow2Magic {
		return corruptf("qcow2", path, 0, "bad magic %#x", h.Magic)
	}
	switch h.Version {
	case 2:
	case 3:
		if n < 104 {
			return corruptf("qcow2", path, 0, "file too small for a v3 header")
		}
		if h.HeaderLen < 104 || h.HeaderLen%8 != 0 {
			return corruptf("qcow2", path, 100, "bad header length %d", h.HeaderLen)
		}
	default:
		return unsupportedf("qcow2", path, "version %d (only 2 and 3 are supported)", h.Version)
	}
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return corruptf("qcow2", path, 20, "cluster bits %d out of range 9-21", h.ClusterBits)
	}
	if int64(h.HeaderLen) > 1<<h.ClusterBits {
		return corruptf("qcow2", path, 100, "header length %d larger than a cluster", h.HeaderLen)
	}
	if h.RefcountOrder > 6 {
		return corruptf("qcow2", path, 96, "refcount order %d out of range 0-6", h.RefcountOrder)
	}
	return nil
}

// checkFeatures refuses what vdflat cannot read (encryption, unknown
// incompatible features, compression types) and sets the layout the
// incompatible features choose. names is the feature name table.
func (d *qcow2Disk) checkFeatures(names map[[2]int]string) error {
	h := &d.h
	if h.CryptMethod != 0 {
		return d.unsupported("encryption (crypt_method %d) is not supported", h.CryptMethod)
	}
	if unk := h.Incompat &^ qcow2IncKnown; unk != 0 {
		var list []string
		for bit := 0; bit < 64; bit++ {
			if unk&(1<<bit) != 0 {
				s := "incompatible feature bit " + strconv.Itoa(bit)
				if n := names[[2]int{0, bit}]; n != "" {
					s += " (" + n + ")"
				}
				list = append(list, s)
			}
		}
		return d.unsupported("%s", strings.Join(list, ", "))
	}
	d.extL2 = h.Incompat&qcow2IncExtL2 != 0
	d.scs = d.cs
	d.l2bits = d.cb - 3
	if d.extL2 {
		if d.cb < 14 {
			return d.corrupt(20, "extended L2 entries need clusters of at least 16 KiB, have %d", d.cs)
		}
		d.l2bits = d.cb - 4
		d.scs = d.cs / 32
	}
	if h.Incompat&qcow2IncCompression != 0 {
		switch h.CompressionType {
		case 0:
		case 1:
			d.zstd = true
		default:
			return d.unsupported("compression type %d", h.CompressionType)
		}
	} else if h.CompressionType != 0 {
		return d.corrupt(104, "compression type %d without the compression type feature bit", h.CompressionType)
	}
	return nil
}

// loadL1 checks the virtual size and the table offsets against qemu's
// limits and the file, and reads the L1 table.
func (d *qcow2Disk) loadL1(fsize int64) error {
	h := &d.h
	if h.Size > 1<<62 {
		return d.corrupt(24, "virtual size %d too large", h.Size)
	}
	d.size = int64(h.Size)
	perL1 := int64(1) << (d.cb + d.l2bits) // guest bytes per L1 entry
	need := (d.size + perL1 - 1) / perL1
	if int64(h.L1Size) < need {
		return d.corrupt(36, "L1 table has %d entries, the virtual size needs %d", h.L1Size, need)
	}
	if need*8 > qcow2MaxL1Bytes {
		return d.unsupported("L1 table of %d entries is larger than qemu allows", need)
	}
	if need > 0 {
		if h.L1Off%uint64(d.cs) != 0 || h.L1Off == 0 || h.L1Off > uint64(fsize) || int64(h.L1Off)+need*8 > fsize {
			return d.corrupt(40, "L1 table offset %#x (%d entries) outside the file or unaligned", h.L1Off, need)
		}
		b := make([]byte, need*8)
		if err := readFullAt(d.f, b, int64(h.L1Off), "qcow2", d.path); err != nil {
			return err
		}
		d.l1 = make([]uint64, need)
		for i := range d.l1 {
			d.l1[i] = binary.BigEndian.Uint64(b[i*8:])
		}
	}
	if h.RTOff%uint64(d.cs) != 0 || int64(h.RTClusters)*d.cs > qcow2MaxRTBytes || h.RTOff > uint64(fsize) {
		return d.corrupt(48, "refcount table at %#x (%d clusters) unaligned or too large", h.RTOff, h.RTClusters)
	}
	return nil
}

// listFeatures names the image's features for Info and makes the
// read-only decisions the dirty and corrupt bits force.
func (d *qcow2Disk) listFeatures() error {
	h := &d.h
	if d.zstd {
		d.features = append(d.features, "compression zstd")
	} else {
		d.features = append(d.features, "compression zlib")
	}
	if d.extL2 {
		d.features = append(d.features, "extended_l2")
	}
	if h.Compat&qcow2CompatLazy != 0 {
		d.features = append(d.features, "lazy_refcounts")
	}
	if h.Autoclear&qcow2AutoBitmaps != 0 {
		d.features = append(d.features, "bitmaps")
	}
	d.features = append(d.features, fmt.Sprintf("refcount_bits %d", 1<<h.RefcountOrder))
	if d.snapshots > 0 {
		d.features = append(d.features, fmt.Sprintf("snapshots %d", d.snapshots))
	}
	if h.Incompat&qcow2IncDirty != 0 {
		d.features = append(d.features, "dirty")
		if !d.readOnly {
			return d.unsupported("image is dirty (refcounts not up to date); run qemu-img check -r all before opening it read-write")
		}
	}
	if h.Incompat&qcow2IncCorrupt != 0 {
		d.features = append(d.features, "corrupt")
		d.warnings = append(d.warnings, "the image is marked corrupt; run qemu-img check -r all")
		d.readOnly = true
		d.roReason = "image is marked corrupt (qcow2 corrupt bit)"
	}
	return nil
}

// parseExtensions reads the header extensions in the first cluster and
// returns the feature name table (keyed by type and bit).
func (d *qcow2Disk) parseExtensions(head []byte) (map[[2]int]string, error) {
	names := map[[2]int]string{}
	be := binary.BigEndian
	end := int64(len(head))
	if d.h.BackingOff > uint64(d.h.HeaderLen) && d.h.BackingOff < uint64(end) {
		end = int64(d.h.BackingOff)
	}
	for off := int64(d.h.HeaderLen); off+8 <= end; {
		typ, n := be.Uint32(head[off:]), int64(be.Uint32(head[off+4:]))
		if typ == qcow2ExtEnd {
			break
		}
		body := off + 8
		if n > end-body {
			return nil, d.corrupt(off, "header extension %#x of %d bytes runs past the first cluster", typ, n)
		}
		data := head[body : body+n]
		switch typ {
		case qcow2ExtBackingFmt:
			d.metadata["backing_format"] = string(bytes.TrimRight(data, "\x00"))
		case qcow2ExtFeatures:
			for i := 0; i+48 <= len(data); i += 48 {
				names[[2]int{int(data[i]), int(data[i+1])}] = string(bytes.TrimRight(data[i+2:i+48], "\x00"))
			}
		case qcow2ExtDataFile:
			d.dataPath = string(bytes.TrimRight(data, "\x00"))
		case qcow2ExtBitmaps:
			d.metadata["bitmaps_extension"] = "present"
		case qcow2ExtCrypto:
			d.metadata["encryption_header"] = "present"
		}
		off = body + (n+7)&^7
	}
	return names, nil
}

func (d *qcow2Disk) openDataFile() error {
	if d.h.Incompat&qcow2IncDataFile == 0 {
		return nil
	}
	if d.dataPath == "" {
		return d.corrupt(-1, "external data file feature set but no data file name extension")
	}
	p := d.dataPath
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(d.path), p)
	}
	f, err := openFile(p, d.readOnly)
	if err != nil {
		return fmt.Errorf("qcow2: %s: opening external data file %q: %w", d.path, d.dataPath, err)
	}
	d.data, d.extData = f, true
	d.dataPath = p
	d.features = append(d.features, "external data file")
	if d.h.Autoclear&qcow2AutoDataRaw != 0 {
		d.features = append(d.features, "data_file_raw")
	}
	d.metadata["data_file"] = p
	return nil
}

// qcow2FormatNames maps qemu's driver names to vdflat's format names.
var qcow2FormatNames = map[string]string{"vpc": "vhd", "file": "raw", "host_device": "raw"}

func (d *qcow2Disk) openBacking(head []byte, opt Options) error {
	if d.h.BackingOff == 0 {
		return nil
	}
	n := uint64(d.h.BackingLen)
	if n == 0 || n > qcow2MaxBackingName || d.h.BackingOff+n > uint64(len(head)) {
		return d.corrupt(8, "backing file name at %#x (%d bytes) outside the first cluster or too long", d.h.BackingOff, n)
	}
	name := string(head[d.h.BackingOff : d.h.BackingOff+n])
	d.metadata["backing_file"] = name
	p, err := openParent(d.path, name, opt)
	if err != nil {
		return err
	}
	if want := d.metadata["backing_format"]; want != "" {
		if m, ok := qcow2FormatNames[want]; ok {
			want = m
		}
		if got := p.Info().Format; got != want {
			p.Close()
			return d.corrupt(-1, "backing file %q is %s, but the image names backing format %q", name, got, d.metadata["backing_format"])
		}
	}
	d.parent = p
	return nil
}

// readSnapshots lists the internal snapshots (the active state is what
// vdflat reads; snapshots are only reported).
func (d *qcow2Disk) readSnapshots(fsize int64) error {
	n := int64(d.h.NbSnapshots)
	if n == 0 {
		return nil
	}
	if n > qcow2MaxSnapshots {
		return d.corrupt(60, "%d snapshots (more than qemu allows)", n)
	}
	d.snapshots = int(n)
	off := int64(d.h.SnapOff)
	if off%8 != 0 || off <= 0 || off >= fsize {
		return d.corrupt(64, "snapshot table offset %#x outside the file", off)
	}
	be := binary.BigEndian
	var fixed [40]byte
	for i := int64(0); i < min(n, qcow2ListSnapshots); i++ {
		if err := readFullAt(d.f, fixed[:], off, "qcow2", d.path); err != nil {
			return err
		}
		idLen, nameLen := int64(be.Uint16(fixed[12:])), int64(be.Uint16(fixed[14:]))
		extra := int64(be.Uint32(fixed[36:]))
		if extra > 1<<20 {
			return d.corrupt(off, "snapshot %d: extra data of %d bytes", i, extra)
		}
		strs := make([]byte, idLen+nameLen)
		if err := readFullAt(d.f, strs, off+40+extra, "qcow2", d.path); err != nil {
			return err
		}
		s := qcow2Snapshot{
			ID: string(strs[:idLen]), Name: string(strs[idLen:]),
			Date:   time.Unix(int64(be.Uint32(fixed[16:])), int64(be.Uint32(fixed[20:]))).UTC(),
			L1Size: be.Uint32(fixed[8:]),
		}
		d.metadata["snapshot."+s.ID] = fmt.Sprintf("name=%s date=%s", s.Name, s.Date.Format(time.RFC3339))
		off += (40 + extra + idLen + nameLen + 7) &^ 7
	}
	return nil
}

func (d *qcow2Disk) closeFiles() error {
	var err error
	if d.parent != nil {
		err = d.parent.Close()
	}
	if d.data != nil && d.data != d.f {
		if e := d.data.Close(); err == nil {
			err = e
		}
	}
	if e := d.f.Close(); err == nil {
		err = e
	}
	return err
}

func (d *qcow2Disk) Size() int64 { return d.size }

func (d *qcow2Disk) Flush() error {
	if d.readOnly {
		return nil
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if !d.wstarted {
		return nil
	}
	if err := syncFile(d.f, "qcow2", d.path); err != nil {
		return err
	}
	if d.data != d.f {
		if err := syncFile(d.data, "qcow2", d.dataPath); err != nil {
			return err
		}
	}
	return nil
}

func (d *qcow2Disk) Close() error {
	err := d.Flush()
	if e := d.closeFiles(); err == nil {
		err = e
	}
	return err
}

func (d *qcow2Disk) Info() Info {
	variant := "v2"
	if d.v3 {
		variant = "v3"
	}
	if d.extL2 {
		variant += " extended_l2"
	}
	info := Info{
		Format: "qcow2", Variant: variant, Path: d.path, Files: []string{d.path},
		Size: d.size, ClusterSize: d.cs, Allocated: d.allocated(),
		ReadOnly: d.readOnly, ReadOnlyReason: d.roReason,
		Features: append([]string(nil), d.features...),
		Warnings: append([]string(nil), d.warnings...),
		Metadata: map[string]string{},
	}
	for k, v := range d.metadata {
		info.Metadata[k] = v
	}
	if d.extData {
		info.Files = append(info.Files, d.dataPath)
	}
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}

// allocated counts the guest bytes stored in this image, once, and only
// when the L2 tables are few enough to read quickly.
func (d *qcow2Disk) allocated() int64 {
	if v := d.allocBytes.Load(); v != -2 {
		return v
	}
	gen := d.allocGen.Load()
	// Cache only a count no write raced with.
	store := func(v int64) {
		if d.allocGen.Load() == gen {
			d.allocBytes.CompareAndSwap(-2, v)
		}
	}
	d.mu.RLock()
	tables := int64(0)
	for _, e := range d.l1 {
		if e&qcow2OffMask != 0 {
			tables++
		}
	}
	d.mu.RUnlock()
	if tables*d.cs > 16<<20 {
		store(-1)
		return -1
	}
	var total int64
	for off := int64(0); off < d.size; {
		alloc, n, err := d.mapLevel(off, d.size-off)
		if err != nil {
			return -1
		}
		if alloc == qcow2KindData || alloc == qcow2KindCompressed {
			total += n
		}
		off += n
	}
	store(total)
	return total
}

// Extents: what one run of guest bytes maps to.
type qcow2Kind uint8

const (
	qcow2KindHole       qcow2Kind = iota // not here: backing file, or zeros
	qcow2KindZero                        // reads as zeros
	qcow2KindData                        // host bytes in the data file
	qcow2KindCompressed                  // a compressed cluster
)

type qcow2Extent struct {
	kind qcow2Kind
	n    int64  // guest bytes
	host int64  // data: host offset of the first byte
	l2e  uint64 // compressed: the L2 entry
}

// hasHost reports whether a standard L2 entry names a host cluster. Offset
// 0 is valid only in an external data file, marked by the copied flag.
func (d *qcow2Disk) hasHost(e uint64) bool {
	return e&qcow2OffMask != 0 || d.extData && e&qcow2Copied != 0
}

// l2table returns the L2 table an L1 entry points to, from the cache or
// the file. Called with mu held (shared or exclusive).
func (d *qcow2Disk) l2table(l1i int) ([]uint64, error) {
	e := d.l1[l1i]
	off := int64(e & qcow2OffMask)
	if off == 0 {
		return nil, nil
	}
	if t, ok := d.l2cache.Get(off); ok {
		return t, nil
	}
	if e&qcow2L1Reserved != 0 || off%d.cs != 0 || off+d.cs > d.fileEnd.Load() {
		return nil, d.corrupt(int64(d.h.L1Off)+int64(l1i)*8, "L1 entry %d (%#x) invalid or outside the file", l1i, e)
	}
	b := make([]byte, d.cs)
	if err := readFullAt(d.f, b, off, "qcow2", d.path); err != nil {
		return nil, err
	}
	t := make([]uint64, d.cs/8)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(b[i*8:])
	}
	d.l2cache.Put(off, t)
	return t, nil
}

// resolve maps guest bytes [off, end) into at most len(out) extents,
// merging neighbours of the same kind (data only when host-contiguous).
// It holds mu shared while it looks, and does no data I/O. One piece on
// purpose: every read runs it, and the three levels (L1 entry, cluster,
// subcluster) share the cursor and the extent being merged.
func (d *qcow2Disk) resolve(off, end int64, out []qcow2Extent) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := 0
	add := func(k qcow2Kind, ln, host int64, l2e uint64) bool {
		if n > 0 {
			last := &out[n-1]
			if last.kind == k && k != qcow2KindCompressed && (k != qcow2KindData || last.host+last.n == host) {
				last.n += ln
				return true
			}
		}
		if n == len(out) {
			return false
		}
		out[n] = qcow2Extent{kind: k, n: ln, host: host, l2e: l2e}
		n++
		return true
	}
	perTable := int64(1) << d.l2bits
	for off < end {
		vc := off >> d.cb
		l1i := vc >> d.l2bits
		var tbl []uint64
		if l1i < int64(len(d.l1)) {
			var err error
			if tbl, err = d.l2table(int(l1i)); err != nil {
				return n, err
			}
		}
		tblEnd := min(end, (l1i+1)*perTable<<d.cb)
		if tbl == nil {
			if !add(qcow2KindHole, tblEnd-off, 0, 0) {
				return n, nil
			}
			off = tblEnd
			continue
		}
		for off < tblEnd {
			vc = off >> d.cb
			in := off & (d.cs - 1)
			clEnd := min(tblEnd, (vc+1)<<d.cb)
			l2i := vc & (perTable - 1)
			var e, bm uint64
			if d.extL2 {
				e, bm = tbl[2*l2i], tbl[2*l2i+1]
			} else {
				e = tbl[l2i]
			}
			if e&qcow2Compressed != 0 {
				if d.extData {
					return n, d.corrupt(-1, "compressed cluster %d in an image with an external data file", vc)
				}
				if !add(qcow2KindCompressed, clEnd-off, 0, e) {
					return n, nil
				}
				off = clEnd
				continue
			}
			host := int64(e & qcow2OffMask)
			if e&qcow2L2Reserved != 0 || host%d.cs != 0 {
				return n, d.corrupt(-1, "L2 entry for cluster %d (%#x) has reserved bits set or an unaligned offset", vc, e)
			}
			if !d.extL2 {
				k := qcow2KindData
				switch {
				case e&qcow2ZeroFlag != 0:
					if !d.v3 {
						return n, d.corrupt(-1, "zero cluster %d in a v2 image", vc)
					}
					k = qcow2KindZero
				case !d.hasHost(e):
					k = qcow2KindHole
				}
				if !add(k, clEnd-off, host+in, 0) {
					return n, nil
				}
				off = clEnd
				continue
			}
			for off < clEnd {
				sc := uint((off & (d.cs - 1)) / d.scs)
				scEnd := min(clEnd, (off&^(d.scs-1))+d.scs)
				alloc, zero := bm>>sc&1 != 0, bm>>(32+sc)&1 != 0
				k := qcow2KindHole
				switch {
				case alloc && zero:
					return n, d.corrupt(-1, "cluster %d subcluster %d both allocated and zero", vc, sc)
				case alloc && !d.hasHost(e):
					return n, d.corrupt(-1, "cluster %d subcluster %d allocated without a host cluster", vc, sc)
				case zero:
					k = qcow2KindZero
				case alloc:
					k = qcow2KindData
				}
				if !add(k, scEnd-off, host+(off&(d.cs-1)), 0) {
					return n, nil
				}
				off = scEnd
			}
		}
	}
	return n, nil
}

func (d *qcow2Disk) ReadAt(p []byte, off int64) (int, error) {
	n := len(p)
	p, err := clampReadSectors(p, off, d.size)
	if err != nil {
		return 0, err
	}
	if err := d.readVirt(p, off); err != nil {
		return 0, err
	}
	clearPastEnd(p, off, d.size)
	return n, nil
}

// readVirt reads guest bytes at off (both sector multiples), with no
// clipping at the virtual size.
func (d *qcow2Disk) readVirt(p []byte, off int64) error {
	// Few extents at a time, as merged runs are long: a small frame keeps
	// the read path within a request goroutine's first stack growth.
	var exts [4]qcow2Extent
	end := off + int64(len(p))
	pos := int64(0)
	for off < end {
		cnt, err := d.resolve(off, end, exts[:])
		if err != nil {
			return err
		}
		for _, e := range exts[:cnt] {
			q := p[pos : pos+e.n]
			switch e.kind {
			case qcow2KindZero:
				clear(q)
			case qcow2KindHole:
				if err := readParent(d.parent, q, off); err != nil {
					return err
				}
			case qcow2KindData:
				if err := d.readHost(q, e.host); err != nil {
					return err
				}
			case qcow2KindCompressed:
				if err := d.readCompressed(q, e.l2e, off&(d.cs-1)); err != nil {
					return err
				}
			}
			off += e.n
			pos += e.n
		}
	}
	return nil
}

// readHost reads guest data stored at host offset off of the data file.
// An external data file may be shorter than the disk (a sparse raw
// file): bytes past its end read as zeros, as in qemu.
func (d *qcow2Disk) readHost(p []byte, off int64) error {
	if !d.extData {
		return readFullAt(d.data, p, off, "qcow2", d.path)
	}
	n, err := d.data.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("qcow2: %s: read at %#x: %w", d.dataPath, off, err)
	}
	clear(p[n:])
	return nil
}

// compressedLoc decodes a compressed L2 entry: host offset and the
// number of bytes that may hold the compressed stream.
func (d *qcow2Disk) compressedLoc(e uint64) (int64, int64) {
	x := 62 - (d.cb - 8)
	off := int64(e & (1<<x - 1))
	sectors := int64((e>>x)&(1<<(d.cb-8)-1)) + 1
	return off, sectors*512 - off&511
}

var (
	qcow2InPool    sync.Pool // *[]byte compressed input buffers
	qcow2FlatePool sync.Pool // flate readers
	qcow2ZstdPool  sync.Pool // *zstd.Decoder
)

// readCompressed copies bytes from offset in of the compressed cluster
// described by e into p.
func (d *qcow2Disk) readCompressed(p []byte, e uint64, in int64) error {
	if int64(len(p)) == d.cs {
		return d.decompress(p, e)
	}
	if c, ok := d.zcache.Get(e); ok {
		copy(p, c[in:])
		return nil
	}
	c := make([]byte, d.cs)
	if err := d.decompress(c, e); err != nil {
		return err
	}
	d.zcache.Put(e, c)
	copy(p, c[in:])
	return nil
}

// decompress inflates the compressed cluster e into out (one cluster).
func (d *qcow2Disk) decompress(out []byte, e uint64) error {
	coff, clen := d.compressedLoc(e)
	fend := d.fileEnd.Load()
	if coff >= fend {
		return d.corrupt(coff, "compressed cluster outside the file")
	}
	// The last compressed cluster may end before its sector count says.
	clen = min(clen, fend-coff)
	bp, _ := qcow2InPool.Get().(*[]byte)
	if bp == nil || int64(cap(*bp)) < clen {
		b := make([]byte, max(clen, 2*d.cs))
		bp = &b
	}
	defer qcow2InPool.Put(bp)
	in := (*bp)[:clen]
	if err := readFullAt(d.f, in, coff, "qcow2", d.path); err != nil {
		return err
	}
	if d.zstd {
		return d.unzstd(out, in, coff)
	}
	r, _ := qcow2FlatePool.Get().(io.ReadCloser)
	br := bytes.NewReader(in)
	if r == nil {
		r = flate.NewReader(br)
	} else if err := r.(flate.Resetter).Reset(br, nil); err != nil {
		return err
	}
	defer qcow2FlatePool.Put(r)
	if _, err := io.ReadFull(r, out); err != nil {
		return d.corrupt(coff, "compressed cluster: deflate: %v", err)
	}
	return nil
}

func (d *qcow2Disk) unzstd(out, in []byte, coff int64) error {
	n, err := qcow2ZstdFrameLen(in)
	if err != nil {
		return d.corrupt(coff, "compressed cluster: zstd: %v", err)
	}
	dec, _ := qcow2ZstdPool.Get().(*zstd.Decoder)
	if dec == nil {
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(4<<20))
		if err != nil {
			return err
		}
	}
	defer qcow2ZstdPool.Put(dec)
	got, err := dec.DecodeAll(in[:n], out[:0])
	if err != nil {
		return d.corrupt(coff, "compressed cluster: zstd: %v", err)
	}
	if len(got) != len(out) || &got[0] != &out[0] {
		return d.corrupt(coff, "compressed cluster: zstd gave %d bytes, want %d", len(got), len(out))
	}
	return nil
}

// qcow2ZstdFrameLen finds where the first zstd frame in b ends: qemu
// stores one frame per cluster followed by unrelated bytes up to the end
// of the last sector.
func qcow2ZstdFrameLen(b []byte) (int, error) {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return 0, err
	}
	if h.Skippable {
		return 0, fmt.Errorf("skippable frame")
	}
	pos := h.HeaderSize
	for {
		if pos+3 > len(b) {
			return 0, io.ErrUnexpectedEOF
		}
		bh := uint32(b[pos]) | uint32(b[pos+1])<<8 | uint32(b[pos+2])<<16
		pos += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return 0, fmt.Errorf("reserved block type")
		}
		pos += size
		if pos > len(b) {
			return 0, io.ErrUnexpectedEOF
		}
		if bh&1 != 0 {
			break
		}
	}
	if h.HasCheckSum {
		pos += 4
	}
	if pos > len(b) {
		return 0, io.ErrUnexpectedEOF
	}
	return pos, nil
}

// mapLevel reports the kind of the run at off in this image alone.
func (d *qcow2Disk) mapLevel(off, length int64) (qcow2Kind, int64, error) {
	var ext [1]qcow2Extent
	end := min(d.size, off+length)
	cnt, err := d.resolve(off, end, ext[:])
	if err != nil || cnt == 0 {
		return qcow2KindHole, 0, fmt.Errorf("qcow2: %s: map at %d: %w", d.path, off, err)
	}
	k := ext[0].kind
	n := ext[0].n
	if k == qcow2KindCompressed {
		// Merge following compressed clusters.
		for off+n < end {
			c, err := d.resolve(off+n, end, ext[:])
			if err != nil || c == 0 || ext[0].kind != k {
				break
			}
			n += ext[0].n
		}
	}
	return k, n, nil
}

// Map implements Mapper: data and compressed clusters are allocated, zero
// clusters are not, holes are what the backing file says.
func (d *qcow2Disk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map offset %d length %d", ErrInvalid, off, length)
	}
	k, n, err := d.mapLevel(off, length)
	if err != nil {
		return false, 0, err
	}
	n = roundUp(n, SectorSize)
	switch k {
	case qcow2KindData, qcow2KindCompressed:
		return true, n, nil
	case qcow2KindZero:
		return false, n, nil
	}
	if d.parent == nil || off >= d.parent.Size() {
		return false, n, nil
	}
	if m, ok := d.parent.(Mapper); ok {
		a, pn, err := m.Map(off, n)
		if err != nil {
			return false, 0, err
		}
		return a, min(n, pn), nil
	}
	return true, min(n, roundUp(d.parent.Size()-off, SectorSize)), nil
}

// CanWrite: a dirty image must be repaired first and a corrupt one is
// never written; any other qcow2 image can be.
func (d *qcow2Disk) CanWrite() bool {
	return !slices.Contains(d.features, "dirty") && !slices.Contains(d.features, "corrupt")
}
