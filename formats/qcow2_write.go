package formats

// qcow2 writes: cluster and L2 table allocation at the end of the file,
// refcount updates (new refcount blocks, refcount table growth) and
// copy-on-write from the backing file, compressed clusters, zero clusters
// and shared (snapshot) clusters.
//
// Every allocation writes in the order data, refcount, L2 entry, L1
// entry, so a process that dies between two writes leaves at worst leaked
// clusters, never a table that points at garbage. Freed clusters are
// never reused while the image is open: a concurrent reader that looked
// up an old mapping can still read it.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

func (d *qcow2Disk) WriteAt(p []byte, off int64) (int, error) {
	prepare := func() error { return firstWrite(&d.wdone, &d.allocMu, d.startWrite) }
	n, err := writeUnits(p, off, d.size, d.readOnly, d.cs, prepare, d.writeCluster)
	if d.readOnly && errors.Is(err, ErrReadOnly) {
		return 0, fmt.Errorf("qcow2: %s: %s: %w", d.path, d.roReason, err)
	}
	return n, err
}

// startWrite runs before the first modification: it clears the
// autoclear bits vdflat does not maintain (bitmaps, unknown ones) as the
// specification requires, and loads the refcount table. Called with
// allocMu held.
func (d *qcow2Disk) startWrite() error {
	if d.wstarted {
		return nil
	}
	if d.v3 && d.h.Autoclear&^qcow2AutoDataRaw != 0 {
		ac := d.h.Autoclear & qcow2AutoDataRaw
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], ac)
		if err := d.pwrite(b[:], 88); err != nil {
			return err
		}
		d.h.Autoclear = ac
	}
	fend := d.fileEnd.Load()
	d.rtOff = int64(d.h.RTOff)
	d.rtCls = int64(d.h.RTClusters)
	if d.rtOff == 0 || d.rtOff+d.rtCls*d.cs > fend {
		return d.corrupt(48, "refcount table at %#x (%d clusters) outside the file", d.rtOff, d.rtCls)
	}
	b := make([]byte, d.rtCls*d.cs)
	if err := readFullAt(d.f, b, d.rtOff, "qcow2", d.path); err != nil {
		return err
	}
	d.rt = make([]uint64, len(b)/8)
	for i := range d.rt {
		d.rt[i] = binary.BigEndian.Uint64(b[i*8:])
	}
	d.next = roundUp(fend, d.cs)
	d.wbuf = make([]byte, d.cs)
	if err := d.startMeta(); err != nil {
		return err
	}
	d.wstarted = true
	d.wdone.Store(true)
	return nil
}

func (d *qcow2Disk) pwrite(b []byte, off int64) error {
	return writeFullAt(d.f, b, off, "qcow2", d.path)
}

// entry returns the L2 entry (and subcluster bitmap) of guest cluster vc.
func (d *qcow2Disk) entry(vc int64) (e, bm uint64, err error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	l1i := vc >> d.l2bits
	if l1i >= int64(len(d.l1)) {
		return 0, 0, nil
	}
	t, err := d.l2table(int(l1i))
	if t == nil || err != nil {
		return 0, 0, err
	}
	i := vc & (1<<d.l2bits - 1)
	if d.extL2 {
		return t[2*i], t[2*i+1], nil
	}
	return t[i], 0, nil
}

// inPlace reports the host offset of the cluster when bytes [in, in+n)
// of it can be overwritten where they are: an allocated cluster owned by
// this image alone (refcount 1), not compressed, not a zero cluster, and
// with extended L2 every touched subcluster already allocated.
func (d *qcow2Disk) inPlace(e, bm uint64, in, n int64) (int64, bool) {
	host := int64(e & qcow2OffMask)
	if !d.hasHost(e) || e&qcow2Compressed != 0 || (e&qcow2Copied == 0 && !d.extData) {
		return 0, false
	}
	if !d.extL2 {
		return host, e&qcow2ZeroFlag == 0 || !d.v3
	}
	mask := d.subMask(in, n)
	return host, bm&mask == mask
}

// subMask has the allocation bits of the subclusters that bytes
// [in, in+n) of a cluster touch.
func (d *qcow2Disk) subMask(in, n int64) uint64 {
	s0, s1 := uint(in/d.scs), uint((in+n-1)/d.scs)
	return (uint64(1)<<(s1+1) - 1) &^ (uint64(1)<<s0 - 1)
}

func (d *qcow2Disk) writeData(p []byte, host int64) error {
	if err := d.checkData(host, int64(len(p))); err != nil {
		return err
	}
	return writeFullAt(d.data, p, host, "qcow2", d.path)
}

// writeCluster writes p (within one cluster) at guest offset off.
func (d *qcow2Disk) writeCluster(p []byte, off int64) error {
	vc, in := off>>d.cb, off&(d.cs-1)
	e, bm, err := d.entry(vc)
	if err != nil {
		return err
	}
	if host, ok := d.inPlace(e, bm, in, int64(len(p))); ok {
		return d.writeData(p, host+in)
	}
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	// Look again: another writer may have allocated it meanwhile.
	if e, bm, err = d.entry(vc); err != nil {
		return err
	}
	if host, ok := d.inPlace(e, bm, in, int64(len(p))); ok {
		return d.writeData(p, host+in)
	}
	defer func() { d.allocGen.Add(1); d.allocBytes.Store(-2) }()
	return d.allocWrite(p, off, e, bm)
}

// allocCluster reserves n clusters at the end of the qcow2 file. It skips
// clusters past the end that already have a refcount (left by a process
// that died after counting a cluster and before writing it).
func (d *qcow2Disk) allocCluster(n int64) (int64, error) {
	for c := int64(0); c < n; {
		rc, err := d.refGet(d.next + c*d.cs)
		if err != nil {
			return 0, err
		}
		if rc != 0 {
			d.next += (c + 1) * d.cs
			c = 0
			continue
		}
		c++
	}
	off := d.next
	d.next += n * d.cs
	if d.next > d.fileEnd.Load() {
		d.fileEnd.Store(d.next)
	}
	return off, nil
}

// refGet reads the refcount of the host cluster at host.
func (d *qcow2Disk) refGet(host int64) (uint64, error) {
	cl := host >> d.cb
	idx := cl / d.refPerBlock()
	if idx >= int64(len(d.rt)) {
		return 0, nil
	}
	blk := int64(d.rt[idx] &^ 511)
	if blk == 0 {
		return 0, nil
	}
	if blk%d.cs != 0 || blk+d.cs > d.fileEnd.Load() {
		return 0, d.corrupt(d.rtOff+idx*8, "refcount block %d at %#x invalid", idx, blk)
	}
	bits := d.refBits()
	i := cl % d.refPerBlock()
	pos := blk + i*bits/8
	nb := max(1, bits/8)
	var b [8]byte
	if err := readFullAt(d.f, b[:nb], pos, "qcow2", d.path); err != nil {
		return 0, err
	}
	return qcow2RefAdjust(b[:nb], bits, i, 0)
}

// allocWrite writes p at guest offset off into a cluster that needs
// (part of) a new allocation. Called with allocMu held.
func (d *qcow2Disk) allocWrite(p []byte, off int64, e, bm uint64) error {
	vc, in := off>>d.cb, off&(d.cs-1)
	guest := vc << d.cb
	l2off, err := d.ensureL2(int(vc >> d.l2bits))
	if err != nil {
		return err
	}
	host := int64(e & qcow2OffMask)
	compressed := e&qcow2Compressed != 0
	shared := !compressed && host != 0 && e&qcow2Copied == 0 && !d.extData

	// The host region [rs, re) of the cluster that gets written.
	rs, re := int64(0), d.cs
	newHost, alloc := host, compressed || !d.hasHost(e)
	var newBM uint64
	switch {
	case compressed || shared || alloc && !d.extL2:
		alloc = true
		newBM = 0xffffffff
	case d.extL2:
		// Allocate just the touched subclusters; others keep their state.
		mask := d.subMask(in, int64(len(p)))
		rs, re = in/d.scs*d.scs, (in+int64(len(p))-1)/d.scs*d.scs+d.scs
		// An edge subcluster that is already allocated is written in
		// place, not rewritten whole: an in-place writer (who does not
		// take allocMu) may be writing its other sectors right now.
		if bm&d.subMask(in, 1) != 0 {
			rs = in
		}
		if end := in + int64(len(p)); bm&d.subMask(end-1, 1) != 0 {
			re = end
		}
		newBM = (bm | mask) &^ (mask << 32)
	}
	// Standard entry with the zero flag and a host cluster of its own:
	// reuse that cluster (newHost == host), rewriting it whole.
	if alloc {
		if d.extData {
			newHost = guest // qemu maps guest to the same offset in a data file
		} else {
			if newHost, err = d.allocCluster(1); err != nil {
				return err
			}
		}
	}

	buf := d.wbuf[:re-rs]
	if err := d.surround(buf, p, guest+rs, in-rs); err != nil {
		return err
	}
	if err := d.writeData(buf, newHost+rs); err != nil {
		return err
	}
	if alloc && !d.extData {
		if err := d.refUpdate(newHost, 1); err != nil {
			return err
		}
	}
	newE := uint64(newHost) | qcow2Copied
	if err := d.setL2(l2off, vc&(1<<d.l2bits-1), newE, newBM); err != nil {
		return err
	}
	// Drop this image's reference to what the cluster used to be.
	switch {
	case compressed:
		coff, clen := d.compressedLoc(e)
		for c := coff >> d.cb; c <= (coff+clen-1)>>d.cb; c++ {
			if err := d.refUpdate(c<<d.cb, -1); err != nil {
				return err
			}
		}
	case shared:
		return d.refUpdate(host, -1)
	}
	return nil
}

// surround fills buf, the guest range at pos that is rewritten, with p at
// in and around it the old contents from the current mapping: backing
// file, zeros, a compressed or a shared cluster.
func (d *qcow2Disk) surround(buf, p []byte, pos, in int64) error {
	if in > 0 {
		if err := d.readVirt(buf[:in], pos); err != nil {
			return err
		}
	}
	end := in + int64(len(p))
	if tail := roundUp(end, SectorSize); tail < int64(len(buf)) {
		if err := d.readVirt(buf[tail:], pos+tail); err != nil {
			return err
		}
		clear(buf[end:tail]) // past the virtual size
	} else {
		clear(buf[end:])
	}
	copy(buf[in:], p)
	return nil
}

// ensureL2 returns the offset of a writable (refcount 1) L2 table for L1
// index l1i, allocating an empty one or copying a table shared with a
// snapshot. Called with allocMu held (so l1 does not change under it).
func (d *qcow2Disk) ensureL2(l1i int) (int64, error) {
	l1e := d.l1[l1i]
	old := int64(l1e & qcow2OffMask)
	if old != 0 && l1e&qcow2Copied != 0 {
		return old, nil
	}
	t := make([]uint64, d.cs/8)
	if old != 0 {
		d.mu.RLock()
		ot, err := d.l2table(l1i)
		if err == nil {
			copy(t, ot)
		}
		d.mu.RUnlock()
		if err != nil {
			return 0, err
		}
	}
	b := make([]byte, d.cs)
	for i, v := range t {
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
	off, err := d.allocCluster(1)
	if err != nil {
		return 0, err
	}
	if err := d.pwrite(b, off); err != nil {
		return 0, err
	}
	if err := d.refUpdate(off, 1); err != nil {
		return 0, err
	}
	d.meta.add("L2 table", off, d.cs)
	ne := uint64(off) | qcow2Copied
	var eb [8]byte
	binary.BigEndian.PutUint64(eb[:], ne)
	if err := d.pwrite(eb[:], int64(d.h.L1Off)+int64(l1i)*8); err != nil {
		return 0, err
	}
	d.mu.Lock()
	d.l1[l1i] = ne
	d.l2cache.Put(off, t)
	d.mu.Unlock()
	if old != 0 {
		if err := d.refUpdate(old, -1); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// setL2 writes entry i of the L2 table at l2off, on disk first, then in
// the cached copy.
func (d *qcow2Disk) setL2(l2off, i int64, e, bm uint64) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], e)
	binary.BigEndian.PutUint64(b[8:], bm)
	n, pos := 8, l2off+i*8
	if d.extL2 {
		n, pos = 16, l2off+i*16
	}
	if err := d.pwrite(b[:n], pos); err != nil {
		return err
	}
	d.mu.Lock()
	if t, ok := d.l2cache.Get(l2off); ok {
		if d.extL2 {
			t[2*i], t[2*i+1] = e, bm
		} else {
			t[i] = e
		}
	}
	d.mu.Unlock()
	return nil
}

// refBits is the width of one refcount; refPerBlock how many fit in one
// refcount block.
func (d *qcow2Disk) refBits() int64     { return 1 << d.h.RefcountOrder }
func (d *qcow2Disk) refPerBlock() int64 { return d.cs * 8 / d.refBits() }

// refUpdate adds delta to the refcount of the host cluster at host.
// Called with allocMu held.
func (d *qcow2Disk) refUpdate(host, delta int64) error {
	cl := host >> d.cb
	idx := cl / d.refPerBlock()
	if idx >= int64(len(d.rt)) {
		if delta < 0 {
			return d.corrupt(host, "freeing cluster without a refcount block")
		}
		if err := d.growRT(idx); err != nil {
			return err
		}
	}
	blk := int64(d.rt[idx] &^ 511)
	if blk == 0 {
		if delta < 0 {
			return d.corrupt(host, "freeing cluster without a refcount block")
		}
		var err error
		if blk, err = d.allocRefBlock(idx); err != nil {
			return err
		}
	}
	if blk%d.cs != 0 || blk+d.cs > d.fileEnd.Load() {
		return d.corrupt(d.rtOff+idx*8, "refcount block %d at %#x invalid", idx, blk)
	}
	bits := d.refBits()
	i := cl % d.refPerBlock()
	pos := blk + i*bits/8
	nb := max(1, bits/8)
	var b [8]byte
	if err := readFullAt(d.f, b[:nb], pos, "qcow2", d.path); err != nil {
		return err
	}
	if _, err := qcow2RefAdjust(b[:nb], bits, i, delta); err != nil {
		return d.corrupt(pos, "refcount of cluster at %#x: %v", host, err)
	}
	return d.pwrite(b[:nb], pos)
}

// qcow2RefAdjust adds delta to refcount i stored in b (the bytes that
// hold it): big-endian for widths of 8 bits and more, least significant
// bits first within a byte for narrower ones.
func qcow2RefAdjust(b []byte, bits, i, delta int64) (uint64, error) {
	var v uint64
	var shift uint
	if bits >= 8 {
		for _, c := range b {
			v = v<<8 | uint64(c)
		}
	} else {
		shift = uint(i * bits % 8)
		v = uint64(b[0]>>shift) & (1<<bits - 1)
	}
	maxv := uint64(1)<<bits - 1
	if bits == 64 {
		maxv = ^uint64(0)
	}
	switch {
	case delta < 0 && v < uint64(-delta):
		return 0, fmt.Errorf("refcount %d would drop below zero", v)
	case delta > 0 && maxv-v < uint64(delta):
		return 0, fmt.Errorf("refcount %d would overflow %d bits", v, bits)
	}
	v = uint64(int64(v) + delta)
	if bits >= 8 {
		x := v
		for j := len(b) - 1; j >= 0; j-- {
			b[j] = byte(x)
			x >>= 8
		}
	} else {
		m := byte(1<<bits-1) << shift
		b[0] = b[0]&^m | byte(v)<<shift
	}
	return v, nil
}

// allocRefBlock creates refcount block idx at the end of the file. If it
// covers itself it holds its own refcount; otherwise its refcount is set
// before the table points at it, so a crash leaks it at worst.
func (d *qcow2Disk) allocRefBlock(idx int64) (int64, error) {
	off, err := d.allocCluster(1)
	if err != nil {
		return 0, err
	}
	b := make([]byte, d.cs)
	self := (off>>d.cb)/d.refPerBlock() == idx
	if self {
		i := (off >> d.cb) % d.refPerBlock()
		bits := d.refBits()
		nb := max(1, bits/8)
		pos := i * bits / 8
		if _, err := qcow2RefAdjust(b[pos:pos+nb], bits, i, 1); err != nil {
			return 0, err
		}
	}
	if err := d.pwrite(b, off); err != nil {
		return 0, err
	}
	if !self {
		if err := d.refUpdate(off, 1); err != nil {
			return 0, err
		}
	}
	var eb [8]byte
	binary.BigEndian.PutUint64(eb[:], uint64(off))
	if err := d.pwrite(eb[:], d.rtOff+idx*8); err != nil {
		return 0, err
	}
	d.rt[idx] = uint64(off)
	d.meta.add("refcount block", off, d.cs)
	return off, nil
}

// growRT moves the refcount table to a bigger one at the end of the file
// that has room for entry idx. The new table is complete on disk before
// the header points at it; the old one is freed after.
func (d *qcow2Disk) growRT(idx int64) error {
	if d.rtOff == 0 {
		return d.corrupt(48, "no refcount table")
	}
	perCl := d.cs / 8
	entries := roundUp(max(2*int64(len(d.rt)), idx+1+perCl), perCl)
	if entries*8 > qcow2MaxRTBytes {
		return d.unsupported("refcount table would grow beyond %d bytes", qcow2MaxRTBytes)
	}
	cls := entries * 8 / d.cs
	off, err := d.allocCluster(cls)
	if err != nil {
		return err
	}
	oldOff, oldCls := d.rtOff, d.rtCls
	nrt := make([]uint64, entries)
	copy(nrt, d.rt)
	// From here on new refcount blocks are recorded in the new table
	// (in memory and at its place on disk); the header still names the
	// old one, which stays consistent.
	d.rt, d.rtOff, d.rtCls = nrt, off, cls
	d.meta.add("refcount table", off, cls*d.cs)
	for c := int64(0); c < cls; c++ {
		cl := (off + c*d.cs) >> d.cb
		if cl/d.refPerBlock() >= int64(len(d.rt)) {
			return d.corrupt(-1, "refcount table growth: table does not cover itself")
		}
		if err := d.refUpdate(off+c*d.cs, 1); err != nil {
			return err
		}
	}
	b := make([]byte, entries*8)
	for i, v := range d.rt {
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
	if err := d.pwrite(b, off); err != nil {
		return err
	}
	if err := syncFile(d.f, "qcow2", d.path); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(off))
	binary.BigEndian.PutUint32(hb[8:], uint32(cls))
	if err := d.pwrite(hb[:], 48); err != nil {
		return err
	}
	d.h.RTOff, d.h.RTClusters = uint64(off), uint32(cls)
	for c := int64(0); c < oldCls; c++ {
		if err := d.refUpdate(oldOff+c*d.cs, -1); err != nil {
			return err
		}
	}
	return nil
}
