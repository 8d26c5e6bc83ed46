package formats

// qedMetadata lists the QED file's metadata: the header clusters (with
// the backing file name), the L1 table and every L2 table.
func (d *qedDisk) qedMetadata(m *metaMap) error {
	m.addHeader(d.headerEnd)
	m.addLocked("L1 table", d.l1Off, d.tableBytes)
	d.mu.RLock()
	for _, e := range d.l1 {
		m.addLocked("L2 table", int64(e), d.tableBytes)
	}
	d.mu.RUnlock()
	return nil
}

// checkData refuses a cluster write to the file's own metadata.
func (d *qedDisk) checkData(off, n int64) error {
	return d.meta.check(off, n)
}

// overlaps lists the clusters stored on metadata.
func (d *qedDisk) overlaps() ([]string, error) {
	return overlapFindings(d.meta, func(fn func(guest, host, n int64)) error {
		for vc := int64(0); vc*d.clusterSize < d.size; vc++ {
			if vc%d.tableLen == 0 {
				d.mu.RLock()
				l2 := d.l1[vc/d.tableLen]
				d.mu.RUnlock()
				if l2 == 0 {
					vc += d.tableLen - 1
					continue
				}
			}
			_, e, err := d.lookup(vc)
			if err != nil {
				return err
			}
			if e > qedZeroCluster {
				fn(vc*d.clusterSize, int64(e), d.clusterSize)
			}
		}
		return nil
	})
}
