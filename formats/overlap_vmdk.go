package formats

// vmdkMetadata lists a sparse extent's metadata: the header, the
// embedded descriptor, both grain directories and every grain table.
func (s *vmdkSparse) vmdkMetadata(m *metaMap) error {
	hdr := int64(512)
	if s.kind == vmdkCOWD {
		hdr = 2048
	}
	m.addHeader(hdr)
	m.addLocked("embedded descriptor", s.descOff, s.descSize)
	gdBytes := s.gdEntries * s.entrySize
	m.addLocked("grain directory", s.gdOff, gdBytes)
	m.addLocked("redundant grain directory", s.rgdOff, gdBytes)
	for gti := int64(0); gti < s.gdEntries; gti++ {
		gt, rgt, err := s.gtOffsets(gti)
		if err != nil {
			return err
		}
		m.addLocked("grain table", gt, s.gtBytes())
		m.addLocked("redundant grain table", rgt, s.gtBytes())
	}
	return nil
}

// checkData refuses a grain write to the extent's own metadata.
func (s *vmdkSparse) checkData(off, n int64) error {
	return s.meta.check(off, n)
}

// overlaps lists the grains of every sparse extent stored on metadata.
func (d *vmdkDisk) overlaps() ([]string, error) {
	var findings []string
	for _, x := range d.ext {
		if x.sp == nil {
			continue
		}
		s := x.sp
		f, err := overlapFindings(s.meta, func(fn func(guest, host, n int64)) error {
			for g := int64(0); g*s.grainSize < s.capacity; g += s.gtEntries {
				gt, _, err := s.gtOffsets(g / s.gtEntries)
				if err != nil || gt == 0 {
					if err != nil {
						return err
					}
					continue
				}
				for i := g; i < g+s.gtEntries && i*s.grainSize < s.capacity; i++ {
					st, off, err := s.lookup(i)
					if err != nil {
						return err
					}
					if st == vmdkData {
						fn(x.start+i*s.grainSize, off, s.grainSize)
					}
				}
			}
			return nil
		})
		for _, s := range f {
			findings = append(findings, "extent "+x.path+": "+s)
		}
		if err != nil {
			return findings, err
		}
	}
	return findings, nil
}

// precheck runs the overlap checks of a write at off before the first
// write of the session changes the descriptor's CID, so that a refused
// write leaves the image untouched.
func (d *vmdkDisk) precheck(p []byte, off int64) error {
	for end := off + int64(len(p)); off < end; {
		x := d.find(off)
		m := min(end-off, x.start+x.size-off)
		for xo := off - x.start; x.sp != nil && xo < off-x.start+m; {
			s := x.sp
			in := xo % s.grainSize
			n := min(s.grainSize-in, off-x.start+m-xo)
			st, foff, err := s.lookup(xo / s.grainSize)
			if err != nil {
				return err
			}
			if st == vmdkData {
				if err := s.checkData(foff+in, n); err != nil {
					return err
				}
			}
			xo += n
		}
		off += m
	}
	return nil
}
