package formats

import "fmt"

// A Parallels image keeps its metadata (header and BAT) before the data
// area (data_off); a BAT entry below it points a cluster at them.

// dataCluster is clusterOff for a write: an entry inside the header or
// BAT is refused as an overlap.
func (d *parallelsDisk) dataCluster(i int64, e uint32) (int64, error) {
	sec := int64(e)
	if d.ext {
		sec *= d.tracks
	}
	if sec < d.dataOff {
		return 0, &OverlapError{Format: "parallels", Path: d.path, Off: sec * SectorSize, Len: d.clusterSize,
			What: "header and block table", MetaOff: 0, MetaLen: d.dataOff * SectorSize}
	}
	return d.clusterOff(i, e)
}

// precheck checks the clusters of a write before the first write of the
// session sets the in-use mark, so that a refused write changes nothing.
func (d *parallelsDisk) precheck(p []byte, off int64) error {
	for pos := off - off%d.clusterSize; pos < off+int64(len(p)); pos += d.clusterSize {
		i := pos / d.clusterSize
		e, err := d.entry(i)
		if err != nil {
			return err
		}
		if e != 0 {
			if _, err := d.dataCluster(i, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// overlaps lists the BAT entries that point into the header or BAT.
func (d *parallelsDisk) overlaps() ([]string, error) {
	var findings []string
	for i := int64(0); i < d.batLen; i++ {
		e, err := d.entry(i)
		if err != nil {
			return findings, err
		}
		if e == 0 {
			continue
		}
		if _, err := d.dataCluster(i, e); IsOverlap(err) && len(findings) < overlapMaxFindings {
			findings = append(findings, fmt.Sprintf("BAT entry %d: %v", i, err))
		}
	}
	return findings, nil
}

// overlaps of a bundle are those of its top image.
func (b *parallelsBundle) overlaps() ([]string, error) { return CheckOverlaps(b.Disk) }
