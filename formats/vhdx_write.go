package formats

// VHDX writes: fixed, dynamic and differencing images.
//
// Data goes in place into blocks the BAT marks present. Any other write
// allocates: a new payload block (1 MiB aligned, at the end of the file),
// for a partial write in a differencing image a partially present block
// whose sector bitmap marks exactly the logical sectors written (a
// logical sector the write covers only in part is first filled from what
// the disk shows there), and the chunk's sector bitmap block when it has
// none yet. The order is: data (file extended first), flush, log entry
// holding the new BAT and bitmap pages, flush, the pages in place, flush;
// see vhdx_log.go. Before the first change of a session the headers get a
// new FileWriteGuid (and, before the first guest write, DataWriteGuid);
// a clean close marks the log empty again.

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// vhdxWriter is the write state of a vhdxDisk.
type vhdxWriter struct {
	readOnly bool
	reason   string // why the image stays read-only ("" when it can be written)
	logSet   bool   // the header's log GUID is set at open

	// cacheMu orders cache fills against the invalidations of a commit:
	// a reader that read a table before a commit must not cache it after.
	cacheMu  sync.Mutex
	cacheGen uint64

	failed   atomic.Pointer[error]      // a write failed half-way: no more writes this attach
	dirty    atomic.Bool                // data written since the last flush
	started  atomic.Bool                // headers renewed and BAT scanned: in-place writes need no lock
	reserved atomic.Pointer[[][2]int64] // file ranges data must never touch, sorted, disjoint

	allocMu  sync.Mutex // serialises every metadata change; fields below
	fileGUID bool       // FileWriteGuid renewed this session
	dataGUID bool       // DataWriteGuid renewed this session
	logGUID  vhdxGUID   // zero while the log is empty
	logOff   int64
	logLen   int64
	logPos   int64
	logSeq   uint64
	next     int64 // next free 1 MiB-aligned file offset; 0 until scanned

	// trace, when set (by tests), sees every change to the file before
	// it is made: 'w' write, 't' truncate (off is the size), 's' sync.
	trace func(op byte, off int64, b []byte)
}

// vhdxLogMaxPages bounds the pages of one log entry below what a 1 MiB
// log holds, so a commit always fits (the minimum log is 1 MiB).
const vhdxLogMaxPages = 200

// openWrite decides whether the image can be written and, for a
// read-write open, replays a dirty log into the file. Called at open,
// after the BAT and metadata are known.
func (d *vhdxDisk) openWrite(info *Info, opt Options) error {
	w := &d.w
	w.readOnly = opt.ReadOnly
	w.reason = d.writeBlocker()
	switch {
	case w.reason != "":
		w.readOnly = true
		info.ReadOnlyReason = w.reason
	case opt.ReadOnly:
		info.ReadOnlyReason = "opened read-only"
	}
	info.ReadOnly = w.readOnly
	if w.readOnly {
		return nil
	}
	if d.r.ov == nil && !w.logSet {
		return nil
	}
	if err := d.beginChange(false); err != nil {
		return err
	}
	if d.r.ov == nil {
		// A log GUID with no valid entry behind it (a cut before the first
		// entry was complete): nothing to replay, but the log is not
		// empty until the GUID is gone.
		return d.updateHeaders(func(h []byte) { clear(h[vhdxHdrLog : vhdxHdrLog+16]) })
	}
	if err := d.replayIntoFile(); err != nil {
		return err
	}
	for i, f := range info.Features {
		if f == "log replayed in memory" {
			info.Features[i] = "log replayed into the file"
		}
	}
	return nil
}

// writeBlocker returns why the image must not be written, or "".
// It rereads the header, region table and metadata table: anything the
// reader skipped as unknown could be damaged by a write.
func (d *vhdxDisk) writeBlocker() string {
	if d.size%d.logicalSector != 0 {
		return fmt.Sprintf("vhdx: virtual size %d is not a multiple of the logical sector size", d.size)
	}
	h := make([]byte, vhdxHeaderLen)
	var logOff, logLen int64
	var seq uint64
	found := false
	for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		if readFullAt(d.f, h, off, "vhdx", d.path) != nil {
			return "vhdx: header unreadable"
		}
		if string(h[:4]) != "head" || binary.LittleEndian.Uint32(h[4:]) != vhdxChecksum(h, 4) {
			continue
		}
		if s := binary.LittleEndian.Uint64(h[vhdxHdrSeq:]); !found || s > seq {
			found, seq = true, s
			logLen = int64(binary.LittleEndian.Uint32(h[68:]))
			logOff = int64(binary.LittleEndian.Uint64(h[72:]))
			d.w.logSet = !isZero(h[vhdxHdrLog : vhdxHdrLog+16])
		}
	}
	if !found {
		return "vhdx: no valid header"
	}
	if logOff < vhdxMiB || logOff%vhdxMiB != 0 || logLen < vhdxMiB || logLen%vhdxMiB != 0 || logOff > d.r.end()-logLen {
		return fmt.Sprintf("vhdx: log at %#x, %d bytes, cannot hold log entries", logOff, logLen)
	}
	d.w.logOff, d.w.logLen = logOff, logLen
	res := [][2]int64{{0, vhdxMiB}, {logOff, logOff + logLen}}
	rt := make([]byte, vhdxRegionLen)
	var metaOff, metaLen int64
	for _, off := range []int64{vhdxRegion1Off, vhdxRegion2Off} {
		if d.r.readAt(rt, off) != nil {
			return "vhdx: region table unreadable"
		}
		if string(rt[:4]) == "regi" && binary.LittleEndian.Uint32(rt[4:]) == vhdxChecksum(rt, 4) {
			break
		}
		if off == vhdxRegion2Off {
			return "vhdx: no valid region table"
		}
	}
	n := min(int(binary.LittleEndian.Uint32(rt[8:])), vhdxMaxEntries)
	for i := 0; i < n; i++ {
		e := rt[16+32*i:]
		var id vhdxGUID
		copy(id[:], e[:16])
		off := int64(binary.LittleEndian.Uint64(e[16:]))
		length := int64(binary.LittleEndian.Uint32(e[24:]))
		switch id {
		case vhdxRegionBAT:
		case vhdxRegionMetadata:
			metaOff, metaLen = off, length
		default:
			return fmt.Sprintf("vhdx: unknown region %s: not written", id)
		}
		res = append(res, [2]int64{off, off + length})
	}
	tbl := make([]byte, vhdxMetaTableLen)
	if metaLen < vhdxMetaTableLen || d.r.readAt(tbl, metaOff) != nil {
		return "vhdx: metadata table unreadable"
	}
	n = min(int(binary.LittleEndian.Uint16(tbl[10:])), vhdxMaxEntries)
	for i := 0; i < n; i++ {
		var id vhdxGUID
		copy(id[:], tbl[32+32*i:])
		switch id {
		case vhdxMetaFileParams, vhdxMetaDiskSize, vhdxMetaPage83, vhdxMetaLogicalSector, vhdxMetaPhysSector, vhdxMetaParentLocator:
		default:
			return fmt.Sprintf("vhdx: unknown metadata item %s: not written", id)
		}
	}
	d.w.reserve(res...)
	return ""
}

// vhdxMergeRanges sorts ranges and merges those that overlap or touch.
func vhdxMergeRanges(r [][2]int64) [][2]int64 {
	sort.Slice(r, func(i, j int) bool { return r[i][0] < r[j][0] })
	out := r[:0]
	for _, x := range r {
		if n := len(out); n > 0 && x[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

// reserve adds ranges data must never touch (copy on write: in-place
// writers read the list without a lock).
func (w *vhdxWriter) reserve(r ...[2]int64) {
	var old [][2]int64
	if p := w.reserved.Load(); p != nil {
		old = *p
	}
	m := vhdxMergeRanges(append(append([][2]int64(nil), old...), r...))
	w.reserved.Store(&m)
}

// overlaps reports whether [lo, hi) touches a reserved range.
func (w *vhdxWriter) overlaps(lo, hi int64) bool {
	r := *w.reserved.Load()
	i := sort.Search(len(r), func(i int) bool { return r[i][1] > lo })
	return i < len(r) && r[i][0] < hi
}

// CanWrite: images with nothing unknown in their tables can be written.
func (d *vhdxDisk) CanWrite() bool { return d.w.reason == "" }

func (d *vhdxDisk) pwrite(b []byte, off int64) error {
	if d.w.trace != nil {
		d.w.trace('w', off, b)
	}
	if _, err := d.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("vhdx: %s: write at %#x: %w", d.path, off, err)
	}
	return nil
}

func (d *vhdxDisk) truncate(size int64) error {
	if d.w.trace != nil {
		d.w.trace('t', size, nil)
	}
	if err := d.f.Truncate(size); err != nil {
		return fmt.Errorf("vhdx: %s: extending the file to %d bytes: %w", d.path, size, err)
	}
	return nil
}

func (d *vhdxDisk) sync() error {
	if d.w.trace != nil {
		d.w.trace('s', 0, nil)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("vhdx: %s: %w", d.path, err)
	}
	return nil
}

// cacheGen and cachePut let a reader cache a table it read only if no
// commit changed the file since it started reading.
func (d *vhdxDisk) cacheGen() uint64 {
	d.w.cacheMu.Lock()
	defer d.w.cacheMu.Unlock()
	return d.w.cacheGen
}

func (d *vhdxDisk) putBAT(piece int64, t []uint64, gen uint64) {
	d.w.cacheMu.Lock()
	if d.w.cacheGen == gen {
		d.bat.Put(piece, t)
	}
	d.w.cacheMu.Unlock()
}

func (d *vhdxDisk) putBitmap(b int64, bm []byte, gen uint64) {
	d.w.cacheMu.Lock()
	if d.w.cacheGen == gen {
		d.bitmaps.Put(b, bm)
	}
	d.w.cacheMu.Unlock()
}

// beginChange renews the header GUIDs before the first change of the
// session: FileWriteGuid before any, DataWriteGuid before the first
// guest-visible one. Called with allocMu held (or before the disk is
// shared).
func (d *vhdxDisk) beginChange(guestData bool) error {
	w := &d.w
	if w.fileGUID && (w.dataGUID || !guestData) {
		return nil
	}
	fg, err := vhdxNewGUID()
	if err != nil {
		return err
	}
	dg, err := vhdxNewGUID()
	if err != nil {
		return err
	}
	newData := guestData && !w.dataGUID
	err = d.updateHeaders(func(h []byte) {
		if !w.fileGUID {
			copy(h[vhdxHdrFileWrite:], fg[:])
		}
		if newData {
			copy(h[vhdxHdrDataWrite:], dg[:])
		}
	})
	if err != nil {
		return err
	}
	w.fileGUID = true
	w.dataGUID = w.dataGUID || newData
	if w.dataGUID && !w.started.Load() {
		if err := d.scanForWrite(); err != nil {
			return err
		}
		w.started.Store(true)
	}
	return nil
}

func (d *vhdxDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	if d.w.readOnly {
		reason := d.w.reason
		if reason == "" {
			reason = "opened read-only"
		}
		return 0, fmt.Errorf("vhdx: %s: %s: %w", d.path, reason, ErrReadOnly)
	}
	if e := d.w.failed.Load(); e != nil {
		return 0, fmt.Errorf("vhdx: %s: no more writes after an earlier failure: %w", d.path, *e)
	}
	n := len(p)
	q, _ := clampWrite(p, off, d.size, false)
	if err := d.writeAt(q, off); err != nil {
		d.w.failed.CompareAndSwap(nil, &err)
		return 0, err
	}
	return n, nil
}

// writeAt writes q in place where every block it touches allows that,
// else under allocMu with one commit for the whole request.
func (d *vhdxDisk) writeAt(q []byte, off int64) error {
	if len(q) == 0 {
		return nil
	}
	d.w.dirty.Store(true)
	if d.w.started.Load() && d.inPlaceAll(q, off) {
		return d.eachBlock(q, off, func(c []byte, b, in int64) error {
			_, fileOff, err := d.block(b)
			if err != nil {
				return err
			}
			return d.writeData(c, b, fileOff, in)
		})
	}
	d.w.allocMu.Lock()
	defer d.w.allocMu.Unlock()
	if err := d.beginChange(true); err != nil {
		return err
	}
	t := &vhdxTxn{d: d, pages: map[int64][]byte{}}
	err := d.eachBlock(q, off, func(c []byte, b, in int64) error {
		if len(t.pages) > vhdxLogMaxPages-24 {
			if err := t.commit(); err != nil {
				return err
			}
		}
		return t.writeBlock(c, b, in)
	})
	if err != nil {
		return err
	}
	return t.commit()
}

// eachBlock calls fn for the part of q in each block.
func (d *vhdxDisk) eachBlock(q []byte, off int64, fn func(c []byte, b, in int64) error) error {
	for len(q) > 0 {
		b, in := off/d.blockSize, off%d.blockSize
		c := min(int64(len(q)), d.blockSize-in)
		if err := fn(q[:c], b, in); err != nil {
			return err
		}
		q, off = q[c:], off+c
	}
	return nil
}

// inPlaceAll reports whether every block q touches already stores the
// logical sectors it covers (from the caches; allocMu not needed).
func (d *vhdxDisk) inPlaceAll(q []byte, off int64) bool {
	ok := true
	d.eachBlock(q, off, func(c []byte, b, in int64) error {
		state, _, err := d.block(b)
		switch {
		case err != nil:
			ok = false
		case state == vhdxPartiallyPresent:
			bm, err := d.bitmap(b)
			lo, hi := in/d.logicalSector, (in+int64(len(c))+d.logicalSector-1)/d.logicalSector
			ok = ok && err == nil && vhdxBitsSet(bm, lo, hi)
		default:
			ok = ok && state == vhdxFullyPresent
		}
		return nil
	})
	return ok
}

// writeData writes c at offset in of block b stored at fileOff, unless
// the block overlaps the image's own structures.
func (d *vhdxDisk) writeData(c []byte, b, fileOff, in int64) error {
	if d.w.overlaps(fileOff, fileOff+d.blockEnd(b)) {
		return corruptf("vhdx", d.path, d.batOff, "block %d at %#x overlaps the headers, log, BAT, metadata or a sector bitmap", b, fileOff)
	}
	return d.pwrite(c, fileOff+in)
}

func vhdxBitsSet(bm []byte, lo, hi int64) bool {
	for s := lo; s < hi; s++ {
		if bm[s/8]>>(s%8)&1 == 0 {
			return false
		}
	}
	return true
}

// vhdxTxn collects the metadata pages one request changes, read from
// the file and changed in memory until commit logs them.
type vhdxTxn struct {
	d      *vhdxDisk
	pages  map[int64][]byte // 4 KiB-aligned file offset -> new contents
	blocks []int64          // blocks whose bitmap changed
}

func (t *vhdxTxn) page(off int64) ([]byte, error) {
	if pg, ok := t.pages[off]; ok {
		return pg, nil
	}
	pg := make([]byte, vhdxLogSector)
	if err := readFullAt(t.d.f, pg, off, "vhdx", t.d.path); err != nil {
		return nil, err
	}
	t.pages[off] = pg
	return pg, nil
}

// entry reads BAT entry i as the file holds it (or this txn has it).
func (t *vhdxTxn) entry(i int64) (uint64, error) {
	off := t.d.batOff + 8*i
	base := off &^ (vhdxLogSector - 1)
	if pg, ok := t.pages[base]; ok {
		return binary.LittleEndian.Uint64(pg[off-base:]), nil
	}
	var b [8]byte
	if err := readFullAt(t.d.f, b[:], off, "vhdx", t.d.path); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (t *vhdxTxn) setEntry(i int64, e uint64) error {
	off := t.d.batOff + 8*i
	base := off &^ (vhdxLogSector - 1)
	pg, err := t.page(base)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(pg[off-base:], e)
	return nil
}

// alloc reserves n bytes (a multiple of 1 MiB) at the end of the file
// and extends the file over them, so they read as zeros.
func (t *vhdxTxn) alloc(n int64) (int64, error) {
	d := t.d
	off := d.w.next
	if (off+n)>>20 >= 1<<44 {
		return 0, unsupportedf("vhdx", d.path, "file would grow past what a BAT entry addresses")
	}
	if err := d.truncate(off + n); err != nil {
		return 0, err
	}
	d.w.next = off + n
	d.r.grown.Store(off + n)
	return off, nil
}

// scanForWrite reads the whole BAT once: new blocks go after everything
// the file holds, and sector bitmap blocks join the ranges data must not
// overwrite. Called with allocMu held.
func (d *vhdxDisk) scanForWrite() error {
	end := roundUp(d.r.end(), vhdxMiB)
	for _, r := range *d.w.reserved.Load() {
		end = max(end, roundUp(r[1], vhdxMiB))
	}
	var sb [][2]int64
	buf := make([]byte, vhdxMiB)
	for first := int64(0); first < d.batEntries; first += int64(len(buf)) / 8 {
		n := min(int64(len(buf))/8, d.batEntries-first)
		if err := readFullAt(d.f, buf[:n*8], d.batOff+first*8, "vhdx", d.path); err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			e := binary.LittleEndian.Uint64(buf[8*i:])
			state, off := e&7, int64(e>>20<<20)
			isSB := (first+i)%(d.chunkRatio+1) == d.chunkRatio
			switch {
			case isSB && state == vhdxFullyPresent:
				sb = append(sb, [2]int64{off, off + vhdxMiB})
				end = max(end, off+vhdxMiB)
			case !isSB && (state == vhdxFullyPresent || state == vhdxPartiallyPresent):
				end = max(end, off+d.blockSize)
			}
		}
	}
	d.w.reserve(sb...)
	d.w.next = end
	return nil
}

// writeBlock writes c at offset in of payload block b.
func (t *vhdxTxn) writeBlock(c []byte, b, in int64) error {
	d := t.d
	bi := b + b/d.chunkRatio
	e, err := t.entry(bi)
	if err != nil {
		return err
	}
	state, fileOff := int(e&7), int64(e>>20<<20)
	switch state {
	case vhdxFullyPresent:
		if fileOff < vhdxMiB || fileOff+d.blockEnd(b) > d.r.end() {
			return corruptf("vhdx", d.path, d.batOff+8*bi, "block %d at %#x lies outside the file", b, fileOff)
		}
		return d.writeData(c, b, fileOff, in)
	case vhdxPartiallyPresent:
		if !d.hasParent || fileOff < vhdxMiB || fileOff+d.blockEnd(b) > d.r.end() {
			return corruptf("vhdx", d.path, d.batOff+8*bi, "partially present block %d at %#x is invalid here", b, fileOff)
		}
		return t.writeSectors(c, b, in, fileOff, false)
	case vhdxNotPresent, vhdxUndefined, vhdxZero, vhdxUnmapped:
	default:
		return corruptf("vhdx", d.path, d.batOff+8*bi, "block %d has reserved BAT state %d", b, state)
	}
	shows := d.hasParent && state == vhdxNotPresent // the parent shows through
	if !shows && isZero(c) {
		return nil // reads as zeros already: stay sparse
	}
	off, err := t.alloc(d.blockSize)
	if err != nil {
		return err
	}
	whole := in == 0 && int64(len(c)) >= d.blockEnd(b)
	if !shows || whole {
		// The rest of the new block reads as zeros, as the disk did.
		if err := d.writeData(c, b, off, in); err != nil {
			return err
		}
		return t.setEntry(bi, uint64(off)|vhdxFullyPresent)
	}
	if err := t.setEntry(bi, uint64(off)|vhdxPartiallyPresent); err != nil {
		return err
	}
	return t.writeSectors(c, b, in, off, true)
}

// writeSectors writes c at offset in of a partially present block stored
// at fileOff and marks the logical sectors it covers in the bitmap. A
// logical sector covered in part and not yet present is first filled
// with what the disk shows there (the parent's bytes in a fresh block).
func (t *vhdxTxn) writeSectors(c []byte, b, in, fileOff int64, fresh bool) error {
	d := t.d
	ls := d.logicalSector
	end := in + int64(len(c))
	lo, hi := in/ls*ls, roundUp(end, ls)
	// A partly covered sector already present is written in place like
	// any other: filling it would race with an in-place writer there.
	var bm []byte
	if !fresh && (lo != in || hi != end) {
		var err error
		if bm, err = d.bitmap(b); err != nil {
			return err
		}
	}
	present := func(s int64) bool { return bm != nil && bm[s/8]>>(s%8)&1 != 0 }
	wlo, whi := lo, hi
	if present(lo / ls) {
		wlo = in
	}
	if present((hi - 1) / ls) {
		whi = end
	}
	buf := c
	if wlo != in || whi != end {
		buf = make([]byte, whi-wlo)
		base := b * d.blockSize
		if wlo != in {
			if _, err := d.readView(buf[:ls], base+lo, fresh); err != nil {
				return err
			}
		}
		if whi != end && (whi-ls > wlo || wlo == in) {
			if _, err := d.readView(buf[whi-wlo-ls:], base+whi-ls, fresh); err != nil {
				return err
			}
		}
		copy(buf[in-wlo:], c)
	}
	if err := d.writeData(buf, b, fileOff, wlo); err != nil {
		return err
	}
	return t.markSectors(b, fileOff, lo, hi)
}

// markSectors sets the bitmap bits of block b (stored at fileOff) for
// bytes [lo, hi) of the block, making the chunk's sector bitmap block
// when it has none; a block whose every sector is then present becomes
// fully present.
func (t *vhdxTxn) markSectors(b, fileOff, lo, hi int64) error {
	d := t.d
	ls := d.logicalSector
	chunk := b / d.chunkRatio
	si := chunk*(d.chunkRatio+1) + d.chunkRatio
	e, err := t.entry(si)
	if err != nil {
		return err
	}
	sbOff := int64(e >> 20 << 20)
	switch {
	case e&7 == vhdxFullyPresent:
		if sbOff < vhdxMiB || sbOff+vhdxMiB > d.r.end() {
			return corruptf("vhdx", d.path, d.batOff+8*si, "sector bitmap of chunk %d at %#x lies outside the file", chunk, sbOff)
		}
	case e&7 == vhdxNotPresent:
		if sbOff, err = t.alloc(vhdxMiB); err != nil {
			return err
		}
		d.w.reserve([2]int64{sbOff, sbOff + vhdxMiB})
		if err := t.setEntry(si, uint64(sbOff)|vhdxFullyPresent); err != nil {
			return err
		}
	default:
		return corruptf("vhdx", d.path, d.batOff+8*si, "sector bitmap of chunk %d has state %d", chunk, e&7)
	}
	perBlock := d.blockSize / ls / 8
	first := sbOff + (b%d.chunkRatio)*perBlock // the block's bitmap in the file
	lim := d.blockEnd(b) / ls                  // sectors the block holds
	all := true
	for pg := first &^ (vhdxLogSector - 1); pg < first+perBlock; pg += vhdxLogSector {
		page, err := t.page(pg)
		if err != nil {
			return err
		}
		for byteOff := max(pg, first); byteOff < min(pg+vhdxLogSector, first+perBlock); byteOff++ {
			bit0 := (byteOff - first) * 8
			v := &page[byteOff-pg]
			for k := int64(0); k < 8; k++ {
				if s := bit0 + k; s >= lo/ls && s < hi/ls {
					*v |= 1 << k
				}
			}
			if bit0 < lim {
				want := byte(0xff)
				if lim-bit0 < 8 {
					want = byte(1)<<(lim-bit0) - 1
				}
				all = all && *v&want == want
			}
		}
	}
	t.blocks = append(t.blocks, b)
	if all {
		return t.setEntry(b+chunk, uint64(fileOff)|vhdxFullyPresent)
	}
	return nil
}

// readView reads what the disk shows at off: through the caches, or for
// a block not allocated before this request, from the parent.
func (d *vhdxDisk) readView(p []byte, off int64, fresh bool) (int, error) {
	if fresh {
		return d.parent.ReadAt(p, off)
	}
	return d.ReadAt(p, off)
}

// commit makes the txn durable: data flushed, pages through the log, and
// the caches told.
func (t *vhdxTxn) commit() error {
	d := t.d
	if len(t.pages) == 0 {
		return nil
	}
	if err := d.sync(); err != nil {
		return err
	}
	pages := make([]vhdxLogPage, 0, len(t.pages))
	for off, pg := range t.pages {
		pages = append(pages, vhdxLogPage{off, pg})
	}
	if err := d.logPages(pages); err != nil {
		return err
	}
	d.w.cacheMu.Lock()
	d.w.cacheGen++
	for off := range t.pages {
		if off >= d.batOff && off < d.batOff+d.batEntries*8 {
			d.bat.Remove((off - d.batOff) / 8 / vhdxBATChunk)
		}
	}
	for _, b := range t.blocks {
		d.bitmaps.Remove(b)
	}
	d.w.cacheMu.Unlock()
	clear(t.pages)
	t.blocks = t.blocks[:0]
	return nil
}

func (d *vhdxDisk) Flush() error {
	if d.w.readOnly || !d.w.dirty.Swap(false) {
		return nil
	}
	return d.sync()
}

// closeWrite flushes and marks the log empty: every entry has been
// applied, so the next open has nothing to replay. After a failed write
// the last entry may be applied only in part: the log stays for replay.
func (d *vhdxDisk) closeWrite() error {
	if d.w.readOnly {
		return nil
	}
	err := d.Flush()
	d.w.allocMu.Lock()
	defer d.w.allocMu.Unlock()
	if err == nil && !d.w.logGUID.isZero() && d.w.failed.Load() == nil {
		err = d.updateHeaders(func(h []byte) { clear(h[vhdxHdrLog : vhdxHdrLog+16]) })
		d.w.logGUID = vhdxGUID{}
	}
	return err
}
