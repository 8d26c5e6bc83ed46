package formats

// Metadata overlap checks. Before a data write lands in an image file,
// its host range is checked against the file's own metadata (headers,
// tables, bitmaps, descriptors, snapshot tables), in the spirit of qemu's
// qcow2 overlap check: a crafted or damaged table entry that points a
// guest cluster at metadata must fail the write, not overwrite the table.

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// OverlapError is a data write refused because its host range holds the
// image's own metadata. It wraps ErrCorrupt.
type OverlapError struct {
	Format, Path string
	Off, Len     int64  // the refused host range
	What         string // the structure it would have overwritten
	MetaOff      int64  // where that structure starts
	MetaLen      int64
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("%s: %s: data write at %#x (%d bytes) would overwrite the %s at %#x (%d bytes): write refused",
		e.Format, e.Path, e.Off, e.Len, e.What, e.MetaOff, e.MetaLen)
}

func (e *OverlapError) Unwrap() error { return ErrCorrupt }

// IsOverlap reports whether err is a write refused by an overlap check.
func IsOverlap(err error) bool {
	var oe *OverlapError
	return errors.As(err, &oe)
}

// metaRange is one host byte range of metadata.
type metaRange struct {
	off, end int64
	what     string
}

// metaMap lists the metadata ranges of one image file, sorted by
// offset. It is filled lazily by build on the first check (a read-only
// attach never pays for it) and grows through add as tables are
// allocated. Safe for concurrent use.
type metaMap struct {
	format, path string
	build        func(m *metaMap) error // fills the map; called with mu held

	mu     sync.RWMutex
	built  bool
	ranges []metaRange
	maxLen int64 // longest range, bounds the search window
}

// addLocked records [off, off+n) as the structure what; mu must be
// held. Offset 0 means "no such table" in every format's tables (the
// header is there): use addHeader for it.
func (m *metaMap) addLocked(what string, off, n int64) {
	if n <= 0 || off <= 0 {
		return
	}
	m.insert(metaRange{off: off, end: off + n, what: what})
}

// addHeader records the header, the first n bytes of the file.
func (m *metaMap) addHeader(n int64) {
	m.insert(metaRange{off: 0, end: n, what: "header"})
}

func (m *metaMap) insert(r metaRange) {
	off, n := r.off, r.end-r.off
	i := sort.Search(len(m.ranges), func(i int) bool { return m.ranges[i].off > off })
	m.ranges = append(m.ranges, metaRange{})
	copy(m.ranges[i+1:], m.ranges[i:])
	m.ranges[i] = r
	m.maxLen = max(m.maxLen, n)
}

// add records a newly allocated structure; before the map is built it
// does nothing, since build will find it.
func (m *metaMap) add(what string, off, n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.built {
		m.addLocked(what, off, n)
	}
	m.mu.Unlock()
}

// ensure builds the map once.
func (m *metaMap) ensure() error {
	m.mu.RLock()
	built := m.built
	m.mu.RUnlock()
	if built {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.built {
		return nil
	}
	m.ranges, m.maxLen = nil, 0
	if err := m.build(m); err != nil {
		return err
	}
	m.built = true
	return nil
}

// check returns an *OverlapError when [off, off+n) touches metadata.
func (m *metaMap) check(off, n int64) error {
	if m == nil || n <= 0 {
		return nil
	}
	if err := m.ensure(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r, ok := m.find(off, off+n); ok {
		return &OverlapError{Format: m.format, Path: m.path, Off: off, Len: n, What: r.what, MetaOff: r.off, MetaLen: r.end - r.off}
	}
	return nil
}

// find returns a range that intersects [off, end); mu held.
func (m *metaMap) find(off, end int64) (metaRange, bool) {
	i := sort.Search(len(m.ranges), func(i int) bool { return m.ranges[i].off > off-m.maxLen })
	for ; i < len(m.ranges) && m.ranges[i].off < end; i++ {
		if r := m.ranges[i]; r.end > off {
			return r, true
		}
	}
	return metaRange{}, false
}

// overlapFindings checks every stored data range that each reports (host
// offset, length and the guest offset it holds) against m, for verify.
func overlapFindings(m *metaMap, each func(fn func(guest, host, n int64)) error) ([]string, error) {
	if err := m.ensure(); err != nil {
		return nil, err
	}
	var findings []string
	dropped := 0
	m.mu.RLock()
	defer m.mu.RUnlock()
	err := each(func(guest, host, n int64) {
		r, ok := m.find(host, host+n)
		if !ok {
			return
		}
		if len(findings) >= overlapMaxFindings {
			dropped++
			return
		}
		findings = append(findings, fmt.Sprintf("data of guest offset %#x is stored at %#x (%d bytes), on the %s at %#x: a write there would overwrite it",
			guest, host, n, r.what, r.off))
	})
	if dropped > 0 {
		findings = append(findings, fmt.Sprintf("%d more overlapping data ranges not listed", dropped))
	}
	return findings, err
}

const overlapMaxFindings = 100

// overlapChecker is implemented by writable formats that can list every
// stored data range against their metadata.
type overlapChecker interface {
	overlaps() ([]string, error)
}

// CheckOverlaps lists the data ranges of d's top image that lie on the
// image's own metadata, where a write would destroy it. Formats without
// such metadata report none.
func CheckOverlaps(d Disk) ([]string, error) {
	if oc, ok := d.(overlapChecker); ok {
		return oc.overlaps()
	}
	return nil, nil
}
