package formats

import "encoding/binary"

// qcow2Metadata builds the map of the qcow2 file's metadata a data write
// must not touch: header, active L1 table and its L2 tables, refcount
// table and blocks, snapshot table and the snapshots' L1 tables. (As in
// qemu, the L2 tables of inactive snapshots are not listed: their
// clusters are shared and never written in place.) Called from
// startWrite with allocMu held, so rt and l1 are stable.
func (d *qcow2Disk) qcow2Metadata(m *metaMap) error {
	m.addHeader(d.cs)
	m.addLocked("L1 table", int64(d.h.L1Off), int64(d.h.L1Size)*8)
	m.addLocked("refcount table", d.rtOff, d.rtCls*d.cs)
	for _, e := range d.rt {
		if off := int64(e & qcow2OffMask); off != 0 {
			m.addLocked("refcount block", off, d.cs)
		}
	}
	d.mu.RLock()
	for _, e := range d.l1 {
		if off := int64(e & qcow2OffMask); off != 0 {
			m.addLocked("L2 table", off, d.cs)
		}
	}
	d.mu.RUnlock()
	off := int64(d.h.SnapOff)
	fend := d.fileEnd.Load()
	var fixed [40]byte
	be := binary.BigEndian
	for i := int64(0); i < int64(d.h.NbSnapshots) && i < qcow2MaxSnapshots && off > 0 && off < fend; i++ {
		if err := readFullAt(d.f, fixed[:], off, "qcow2", d.path); err != nil {
			return err
		}
		extra := int64(be.Uint32(fixed[36:]))
		if extra > 1<<20 {
			return d.corrupt(off, "snapshot %d: extra data of %d bytes", i, extra)
		}
		n := (40 + extra + int64(be.Uint16(fixed[12:])) + int64(be.Uint16(fixed[14:])) + 7) &^ 7
		m.addLocked("snapshot table", off, n)
		m.addLocked("snapshot L1 table", int64(be.Uint64(fixed[0:])), int64(be.Uint32(fixed[8:]))*8)
		off += n
	}
	return nil
}

// checkData refuses a data write to the qcow2 file's own metadata. An
// external data file holds no metadata.
func (d *qcow2Disk) checkData(host, n int64) error {
	if d.extData {
		return nil
	}
	return d.meta.check(host, n)
}

// startMeta builds the metadata map before the first write.
func (d *qcow2Disk) startMeta() error {
	d.meta = &metaMap{format: "qcow2", path: d.path, build: d.qcow2Metadata}
	return d.meta.ensure()
}

// overlap reports a cluster that holds guest data and metadata at once
// (found by Check): a write of that data would overwrite the metadata.
func (c *qcow2Checker) overlap(cl int64, use uint8) {
	data := func(u uint8) bool { return u == qcow2UseData || u == qcow2UseCompressed }
	first := c.use[cl]
	if data(first) == data(use) {
		return
	}
	meta := first
	if data(first) {
		meta = use
	}
	c.addf("cluster at %#x holds both %s and %s: a data write there would overwrite the %s",
		cl<<c.d.cb, qcow2UseNames[first], qcow2UseNames[use], qcow2UseNames[meta])
}
