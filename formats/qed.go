package formats

// QED, the QEMU Enhanced Disk format (docs/interop/qed_spec.rst): a
// little-endian header, an L1 table of L2 table offsets, L2 tables of
// data cluster offsets (0 = unallocated, 1 = zero cluster). Tables are
// table_size clusters long. Read and write; new clusters and L2 tables are
// appended at the end of the file.
//
// The need-check feature bit marks an image whose tables may be
// inconsistent after a crash. vdflat reads such images as they are (as
// qemu does for a read-only open); a read-write open first checks the
// tables and refuses the image, pointing at `qemu-img check -r all`, when
// they are inconsistent. When vdflat allocates it sets the bit first and
// clears it once the data and tables are durable (Flush, Close).

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

func init() {
	register(format{name: "qed", order: orderHead, probe: qedProbe, open: qedOpen})
}

const (
	qedMagic        = "QED\x00"
	qedHeaderLen    = 64
	qedFBacking     = 0x01
	qedFNeedCheck   = 0x02
	qedFBackingRaw  = 0x04
	qedKnownFeats   = qedFBacking | qedFNeedCheck | qedFBackingRaw
	qedZeroCluster  = 1
	qedPageLen      = 8192 // L2 entries per cached page (64 KiB)
	qedCacheBytes   = 32 << 20
	qedMaxBacking   = 4096
	qedMaxL1InMem   = 64 << 20
	qedFeaturesOff  = 16
	qedAutoclearOff = 32
)

func qedProbe(pd *ProbeData) bool {
	return len(pd.Head) >= qedHeaderLen && string(pd.Head[:4]) == qedMagic
}

type qedDisk struct {
	f        *os.File
	path     string
	readOnly bool
	size     int64

	clusterSize int64
	clusterBits uint
	tableLen    int64 // entries per table
	tableBytes  int64
	headerEnd   int64 // header_size * cluster_size
	l1Off       int64
	features    uint64 // as on disk (guarded by allocMu)
	autoclear   uint64
	backing     string
	backingRaw  bool
	parent      Disk

	mu       sync.RWMutex // guards l1 and the consistency of cached L2 pages with the file
	l1       []uint64     // only the entries that cover the virtual size
	l2       *lru[int64, []uint64]
	fileEnd  atomic.Int64 // cluster-aligned end of the used file; allocation point
	allocMu  sync.Mutex   // serialises allocating writes and header updates
	prepared atomic.Bool  // autoclear bits cleared before the first write
	dirty    bool         // we set need-check and have not cleared it yet (allocMu)
	meta     *metaMap     // metadata a cluster write must not touch (overlap_qed.go)
}

func qedOpen(path string, opt Options) (Disk, error) {
	return openDisk(path, opt.ReadOnly, func(f *os.File) (*qedDisk, error) {
		d, err := qedParse(f, path, opt.ReadOnly)
		if err == nil && d.backing != "" {
			d.parent, err = qedOpenBacking(path, d.backing, d.backingRaw, opt)
		}
		return d, err
	})
}

// qedOpenBacking opens the backing file; with the no-probe feature it is
// raw whatever its content looks like.
func qedOpenBacking(child, ref string, raw bool, opt Options) (Disk, error) {
	if !raw {
		return openParent(child, ref, opt)
	}
	p := ref
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(child), p)
	}
	d, err := openRaw(p, Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%s: opening parent %q: %w", child, ref, err)
	}
	return d, nil
}

// qedHeader is the 64-byte header.
type qedHeader struct {
	magic       string
	clusterSize int64
	tableSize   int64 // clusters per table
	headerSize  int64 // clusters
	features    uint64
	autoclear   uint64
	l1Off       uint64
	size        uint64
	backingOff  int64
	backingLen  int64
}

func qedDecodeHeader(h []byte) qedHeader {
	le := binary.LittleEndian
	return qedHeader{
		magic:       string(h[:4]),
		clusterSize: int64(le.Uint32(h[4:])), tableSize: int64(le.Uint32(h[8:])),
		headerSize: int64(le.Uint32(h[12:])), features: le.Uint64(h[16:]),
		autoclear: le.Uint64(h[32:]), l1Off: le.Uint64(h[40:]), size: le.Uint64(h[48:]),
		backingOff: int64(le.Uint32(h[56:])), backingLen: int64(le.Uint32(h[60:])),
	}
}

// validate checks every field of the header against the spec's limits
// and a file of fsize bytes, before any is used.
func (h *qedHeader) validate(fsize int64, path string) error {
	cs, ts, hs := h.clusterSize, h.tableSize, h.headerSize
	if h.magic != qedMagic {
		return corruptf("qed", path, 0, "bad magic")
	}
	if unk := h.features &^ qedKnownFeats; unk != 0 {
		return unsupportedf("qed", path, "unknown feature bits %#x", unk)
	}
	if cs < 4096 || cs > 64<<20 || cs&(cs-1) != 0 {
		return corruptf("qed", path, 4, "cluster size %d is not a power of 2 in [4 KiB, 64 MiB]", cs)
	}
	if ts < 1 || ts > 16 || ts&(ts-1) != 0 {
		return corruptf("qed", path, 8, "table size %d is not a power of 2 in [1, 16]", ts)
	}
	if hs < 1 || hs > (1<<32-1)/cs {
		return corruptf("qed", path, 12, "header size %d clusters out of range", hs)
	}
	// The maximum size is tableLen² clusters; compare without overflow.
	tableLen := ts * cs / 8
	l2Span := uint64(tableLen * cs)
	if h.size%SectorSize != 0 || h.size > 1<<62 || h.size/l2Span > uint64(tableLen) ||
		(h.size/l2Span == uint64(tableLen) && h.size%l2Span != 0) {
		return corruptf("qed", path, 48, "image size %d invalid for %d-byte clusters and %d-cluster tables", h.size, cs, ts)
	}
	end := fsize / cs * cs // qemu ignores a partial cluster at the end
	if h.l1Off%uint64(cs) != 0 || h.l1Off < uint64(hs*cs) || h.l1Off > uint64(end) || uint64(ts*cs) > uint64(end)-h.l1Off {
		return corruptf("qed", path, 40, "L1 table offset %#x invalid (file of %d bytes)", h.l1Off, fsize)
	}
	if h.features&qedFBacking != 0 && h.backingLen != 0 {
		if h.backingLen > qedMaxBacking || h.backingOff+h.backingLen > hs*cs || h.backingOff+h.backingLen > fsize {
			return corruptf("qed", path, 56, "backing file name (%d bytes at %d) outside the header", h.backingLen, h.backingOff)
		}
	}
	return nil
}

func qedParse(f *os.File, path string, readOnly bool) (*qedDisk, error) {
	hb, fsize, err := readHead(f, qedHeaderLen, "qed", path)
	if err != nil {
		return nil, err
	}
	h := qedDecodeHeader(hb)
	if err := h.validate(fsize, path); err != nil {
		return nil, err
	}
	cs := h.clusterSize
	d := &qedDisk{
		f: f, path: path, readOnly: readOnly,
		clusterSize: cs, tableBytes: h.tableSize * cs, tableLen: h.tableSize * cs / 8,
		headerEnd: h.headerSize * cs, features: h.features, autoclear: h.autoclear,
		size: int64(h.size), l1Off: int64(h.l1Off),
	}
	for d.clusterBits = 0; int64(1)<<d.clusterBits < cs; d.clusterBits++ {
	}
	d.fileEnd.Store(fsize / cs * cs)
	if h.features&qedFBacking != 0 && h.backingLen != 0 { // qemu treats an empty name as no backing file
		name := make([]byte, h.backingLen)
		if err := readFullAt(f, name, h.backingOff, "qed", path); err != nil {
			return nil, err
		}
		d.backing = string(name)
		d.backingRaw = h.features&qedFBackingRaw != 0
	}
	if err := d.loadL1(); err != nil {
		return nil, err
	}
	pageBytes := min(d.tableBytes, qedPageLen*8)
	d.l2 = newLRU[int64, []uint64](int(max(16, qedCacheBytes/pageBytes)))
	if !readOnly && h.features&qedFNeedCheck != 0 {
		// Like qemu, check the tables before writing to an image that was
		// not closed cleanly. vdflat never repairs: a consistent image
		// (leaks allowed, as the spec says) has its flag cleared on the
		// next Flush; anything else is left to qemu-img.
		if err := d.check(); err != nil {
			return nil, unsupportedf("qed", path, "image was not closed cleanly and its tables are inconsistent (%v): run `qemu-img check -r all -f qed %s` before writing to it", err, path)
		}
		d.dirty = true
	}
	d.meta = &metaMap{format: "qed", path: path, build: d.qedMetadata}
	return d, nil
}

// loadL1 reads the L1 entries that cover the virtual size: the table
// itself may be far larger than the disk needs.
func (d *qedDisk) loadL1() error {
	l2Span := d.tableLen * d.clusterSize
	n := (d.size + l2Span - 1) / l2Span
	if n*8 > qedMaxL1InMem {
		return unsupportedf("qed", d.path, "L1 table of %d entries too large", n)
	}
	buf := make([]byte, n*8)
	if err := readFullAt(d.f, buf, d.l1Off, "qed", d.path); err != nil {
		return err
	}
	d.l1 = make([]uint64, n)
	for i := range d.l1 {
		d.l1[i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	return nil
}

// check verifies that every table and data cluster offset is aligned,
// inside the file and referenced only once.
func (d *qedDisk) check() error {
	end := d.fileEnd.Load()
	nclusters := end / d.clusterSize
	used := make([]uint64, (nclusters+63)/64)
	mark := func(off uint64, n int64) error {
		if off%uint64(d.clusterSize) != 0 || off < uint64(d.headerEnd) || off > uint64(end) || uint64(n*d.clusterSize) > uint64(end)-off {
			return fmt.Errorf("offset %#x invalid", off)
		}
		for c := int64(off) / d.clusterSize; n > 0; c, n = c+1, n-1 {
			if used[c/64]&(1<<(c%64)) != 0 {
				return fmt.Errorf("cluster at %#x referenced twice", c*d.clusterSize)
			}
			used[c/64] |= 1 << (c % 64)
		}
		return nil
	}
	ts := d.tableBytes / d.clusterSize
	if err := mark(uint64(d.l1Off), ts); err != nil {
		return err
	}
	buf := make([]byte, d.pageLen()*8)
	for _, l2 := range d.l1 {
		if l2 == 0 {
			continue
		}
		if err := mark(l2, ts); err != nil {
			return fmt.Errorf("L2 table: %w", err)
		}
		for p := int64(0); p < d.tableLen; p += d.pageLen() {
			if err := readFullAt(d.f, buf, int64(l2)+p*8, "qed", d.path); err != nil {
				return err
			}
			for i := 0; i < len(buf); i += 8 {
				if e := binary.LittleEndian.Uint64(buf[i:]); e > qedZeroCluster {
					if err := mark(e, 1); err != nil {
						return fmt.Errorf("data cluster: %w", err)
					}
				}
			}
		}
	}
	return nil
}

func (d *qedDisk) pageLen() int64 { return min(d.tableLen, qedPageLen) }

// checkCluster validates a data or table offset from a table.
func (d *qedDisk) validOffset(off uint64, length int64) bool {
	end := uint64(d.fileEnd.Load())
	return off%uint64(d.clusterSize) == 0 && off >= uint64(d.headerEnd) && off <= end && uint64(length) <= end-off
}

// lookup returns the L2 table offset (0 when none) and the L2 entry of
// virtual cluster vc.
func (d *qedDisk) lookup(vc int64) (l2Off uint64, e uint64, err error) {
	l1i := vc / d.tableLen
	d.mu.RLock()
	if l1i < int64(len(d.l1)) {
		l2Off = d.l1[l1i]
	}
	d.mu.RUnlock()
	if l2Off == 0 {
		return 0, 0, nil
	}
	if !d.validOffset(l2Off, d.tableBytes) {
		return 0, 0, corruptf("qed", d.path, d.l1Off+l1i*8, "L2 table offset %#x invalid", l2Off)
	}
	l2i := vc % d.tableLen
	pl := d.pageLen()
	pageOff := int64(l2Off) + l2i/pl*pl*8
	page, ok := d.l2.Get(pageOff)
	if !ok {
		// Load under the read lock so an allocating write (which
		// updates file and cache under the write lock) cannot interleave
		// and leave a stale page in the cache.
		d.mu.RLock()
		page, ok = d.l2.Get(pageOff)
		if !ok {
			buf := make([]byte, pl*8)
			if err = readFullAt(d.f, buf, pageOff, "qed", d.path); err == nil {
				page = make([]uint64, pl)
				for i := range page {
					page[i] = binary.LittleEndian.Uint64(buf[i*8:])
				}
				d.l2.Put(pageOff, page)
			}
		}
		d.mu.RUnlock()
		if err != nil {
			return 0, 0, err
		}
	}
	e = page[l2i%pl]
	if e > qedZeroCluster && !d.validOffset(e, d.clusterSize) {
		return 0, 0, corruptf("qed", d.path, pageOff+(l2i%pl)*8, "data cluster offset %#x invalid", e)
	}
	return l2Off, e, nil
}

func (d *qedDisk) Size() int64 { return d.size }

// readData reads stored bytes of the image file.
func (d *qedDisk) readData(b []byte, off int64) error {
	return readFullAt(d.f, b, off, "qed", d.path)
}

func (d *qedDisk) ReadAt(p []byte, off int64) (int, error) {
	return readClusters(p, off, d.size, d.clusterSize, d.readData, func(pos int64, chunk []byte) (int64, error) {
		_, e, err := d.lookup(pos >> d.clusterBits)
		switch {
		case err != nil:
			return 0, err
		case e == 0:
			return -1, readParent(d.parent, chunk, pos)
		case e == qedZeroCluster:
			clear(chunk)
			return -1, nil
		}
		return int64(e) + pos&(d.clusterSize-1), nil
	})
}

func (d *qedDisk) WriteAt(p []byte, off int64) (int, error) {
	prepare := func() error { return firstWrite(&d.prepared, &d.allocMu, d.prepareWrite) }
	return writeUnits(p, off, d.size, d.readOnly, d.clusterSize, prepare, d.writeCluster)
}

// writeCluster writes data that lies inside one cluster.
func (d *qedDisk) writeCluster(data []byte, pos int64) error {
	vc := pos >> d.clusterBits
	in := pos & (d.clusterSize - 1)
	_, e, err := d.lookup(vc)
	if err != nil {
		return err
	}
	if e > qedZeroCluster {
		if err := d.checkData(int64(e)+in, int64(len(data))); err != nil {
			return err
		}
		return d.pwrite(data, int64(e)+in)
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	l2Off, e, err := d.lookup(vc) // another writer may have allocated it
	if err != nil {
		return err
	}
	if e > qedZeroCluster {
		if err := d.checkData(int64(e)+in, int64(len(data))); err != nil {
			return err
		}
		return d.pwrite(data, int64(e)+in)
	}
	whole := int64(len(data)) == d.clusterSize
	if isZero(data) {
		// Zeros over sectors that already read as zeros need nothing;
		// a whole cluster of them over a backing file becomes a zero
		// cluster.
		if e == qedZeroCluster || d.parent == nil || pos >= d.parent.Size() {
			return nil
		}
		if whole {
			return d.setEntry(vc, l2Off, qedZeroCluster)
		}
	}
	// New cluster: the backing file's bytes (zeros for a zero cluster or
	// without a backing file) with data on top, written whole.
	buf := data
	if !whole {
		buf = make([]byte, d.clusterSize)
		if e == 0 {
			if err := readParent(d.parent, buf, pos-in); err != nil {
				return err
			}
		}
		copy(buf[in:], data)
	}
	if err := d.setNeedCheck(); err != nil {
		return err
	}
	at := d.fileEnd.Load()
	if err := d.pwrite(buf, at); err != nil {
		return err
	}
	d.fileEnd.Store(at + d.clusterSize)
	return d.setEntry(vc, l2Off, uint64(at))
}

// setEntry points virtual cluster vc at val, allocating its L2 table when
// l2Off is 0. Called with allocMu held.
func (d *qedDisk) setEntry(vc int64, l2Off, val uint64) error {
	le := binary.LittleEndian
	l2i := vc % d.tableLen
	if l2Off == 0 {
		if err := d.setNeedCheck(); err != nil {
			return err
		}
		at := d.fileEnd.Load()
		table := make([]byte, d.tableBytes)
		le.PutUint64(table[l2i*8:], val)
		if err := d.pwrite(table, at); err != nil {
			return err
		}
		d.fileEnd.Store(at + d.tableBytes)
		d.meta.add("L2 table", at, d.tableBytes)
		l1i := vc / d.tableLen
		var b [8]byte
		le.PutUint64(b[:], uint64(at))
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.pwrite(b[:], d.l1Off+l1i*8); err != nil {
			return err
		}
		d.l1[l1i] = uint64(at)
		return nil
	}
	pl := d.pageLen()
	pageOff := int64(l2Off) + l2i/pl*pl*8
	var b [8]byte
	le.PutUint64(b[:], val)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.pwrite(b[:], int64(l2Off)+l2i*8); err != nil {
		return err
	}
	if page, ok := d.l2.Get(pageOff); ok {
		// Cached pages are shared with readers: replace, never modify.
		np := append([]uint64(nil), page...)
		np[l2i%pl] = val
		d.l2.Put(pageOff, np)
	}
	return nil
}

// prepareWrite clears autoclear feature bits before the first write: they
// stand for extensions vdflat does not maintain. Called with allocMu held.
func (d *qedDisk) prepareWrite() error {
	if d.prepared.Load() {
		return nil
	}
	if d.autoclear != 0 {
		var b [8]byte
		if err := d.pwrite(b[:], qedAutoclearOff); err != nil {
			return err
		}
		d.autoclear = 0
	}
	d.prepared.Store(true)
	return nil
}

// setNeedCheck marks the image as needing a check before its tables
// change, durably. Called with allocMu held.
func (d *qedDisk) setNeedCheck() error {
	if d.features&qedFNeedCheck != 0 {
		return nil
	}
	if err := d.writeFeatures(d.features | qedFNeedCheck); err != nil {
		return err
	}
	d.dirty = true
	return nil
}

func (d *qedDisk) writeFeatures(v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if err := d.pwrite(b[:], qedFeaturesOff); err != nil {
		return err
	}
	if err := syncFile(d.f, "qed", d.path); err != nil {
		return err
	}
	d.features = v
	return nil
}

func (d *qedDisk) pwrite(b []byte, off int64) error {
	return writeFullAt(d.f, b, off, "qed", d.path)
}

func (d *qedDisk) Map(off, length int64) (bool, int64, error) {
	return mapRuns(off, length, d.size, d.parent, func(pos, limit int64) (mapState, int64, error) {
		l2Off, e, err := d.lookup(pos >> d.clusterBits)
		if err != nil {
			return 0, 0, err
		}
		if l2Off == 0 { // no L2 table: its whole span is unallocated
			span := d.tableLen * d.clusterSize
			return mapBacking, min(span-pos%span, limit), nil
		}
		step := min(d.clusterSize-pos&(d.clusterSize-1), limit)
		switch e {
		case 0:
			return mapBacking, step, nil
		case qedZeroCluster:
			return mapZero, step, nil
		}
		return mapData, step, nil
	})
}

// Flush makes data and tables durable, then clears the need-check bit.
func (d *qedDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	if err := syncFile(d.f, "qed", d.path); err != nil {
		return err
	}
	if d.dirty {
		if err := d.writeFeatures(d.features &^ qedFNeedCheck); err != nil {
			return err
		}
		d.dirty = false
	}
	return nil
}

func (d *qedDisk) Close() error {
	return closeChain(d.Flush(), d.f, d.parent)
}

func (d *qedDisk) Info() Info {
	variant := "standalone"
	if d.backing != "" {
		variant = "differencing"
	}
	info := Info{
		Format: "qed", Variant: variant, Path: d.path, Files: []string{d.path},
		Size: d.size, ClusterSize: d.clusterSize, Allocated: -1,
		ReadOnly: d.readOnly,
		Metadata: map[string]string{"table_size": fmt.Sprint(d.tableBytes / d.clusterSize)},
	}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	d.allocMu.Lock()
	feats := d.features
	d.allocMu.Unlock()
	if feats&qedFNeedCheck != 0 {
		info.Features = append(info.Features, "need-check")
		if d.readOnly {
			info.Warnings = append(info.Warnings, "image was not closed cleanly (need-check flag): run qemu-img check -r all before writing to it")
		}
	}
	if d.backing != "" {
		info.Features = append(info.Features, "backing file")
		info.Metadata["backing_file"] = d.backing
		if d.backingRaw {
			info.Features = append(info.Features, "raw backing file")
		}
	}
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}

// CanWrite: QED images can be written; one that needs a check is
// examined when it is opened for writing.
func (d *qedDisk) CanWrite() bool { return true }
