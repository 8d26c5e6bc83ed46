package formats

// Helpers shared by the cluster-table formats (qcow, QED, Parallels, ...).

import "fmt"

// mapState is what a range of a cluster-table image holds.
type mapState int

const (
	mapZero    mapState = iota // reads as zeros, whatever a parent holds
	mapData                    // stored in this image
	mapBacking                 // not stored here: the parent's bytes, or zeros without one
)

// mapMaxSteps bounds the lookups of one Map call, so that mapping a huge
// crafted disk cluster by cluster cannot take hours; the Mapper contract
// lets a run be reported in several pieces.
const mapMaxSteps = 1 << 14

// mapRuns implements Mapper.Map for a disk of size bytes (a multiple of
// SectorSize) backed by parent (nil when none). at(pos, limit) reports the
// state at pos and how many bytes from pos, 1 to limit, share it: one
// cluster, or more when a whole table is absent.
func mapRuns(off, length, size int64, parent Disk, at func(pos, limit int64) (mapState, int64, error)) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= size {
		return false, 0, fmt.Errorf("%w: map offset %d", ErrInvalid, off)
	}
	length = max(SectorSize, min(length, size-off))
	var state bool
	var n int64
	for steps := 0; n < length && steps < mapMaxSteps; steps++ {
		pos := off + n
		st, step, err := at(pos, length-n)
		if err != nil {
			return false, 0, err
		}
		alloc := st == mapData
		if st == mapBacking && parent != nil && pos < parent.Size() {
			step = min(step, parent.Size()-pos)
			alloc = true
			if m, ok := parent.(Mapper); ok {
				var pn int64
				if alloc, pn, err = m.Map(pos, step); err != nil {
					return false, 0, err
				}
				step = min(step, pn)
			}
		}
		if n > 0 && alloc != state {
			break
		}
		state = alloc
		n += step
	}
	return state, n, nil
}
