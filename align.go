package main

import (
	"sync"
	"syscall"

	"vdflat/formats"
)

// Byte-granular I/O over sector-granular disks. FUSE requests may start
// and end anywhere; a formats.Disk only moves whole 512-byte sectors.
// Aligned requests (all of the kernel's page-cache traffic) go straight
// through with no copy; only the partial sectors at either end of an
// unaligned request use a bounce buffer.

const sector = formats.SectorSize

var sectorPool = sync.Pool{New: func() any { return new([sector]byte) }}

// readBytes reads up to len(p) bytes at off. It returns fewer bytes only
// at the end of the disk, and 0 bytes at or past the end.
func readBytes(d formats.Disk, p []byte, off int64) (int, error) {
	size := d.Size()
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= size {
		return 0, nil
	}
	if rem := size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := len(p)
	// Head: a partial first sector.
	if head := int(off % sector); head != 0 {
		c := min(sector-head, len(p))
		if err := readPartial(d, p[:c], off-int64(head), head); err != nil {
			return 0, err
		}
		p, off = p[c:], off+int64(c)
	}
	// Middle: whole sectors, read in place.
	if mid := len(p) / sector * sector; mid > 0 {
		if _, err := d.ReadAt(p[:mid], off); err != nil {
			return 0, err
		}
		p, off = p[mid:], off+int64(mid)
	}
	// Tail: a partial last sector.
	if len(p) > 0 {
		if err := readPartial(d, p, off, 0); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// readPartial fills p from the sector at sectorOff, starting at byte skip.
func readPartial(d formats.Disk, p []byte, sectorOff int64, skip int) error {
	buf := sectorPool.Get().(*[sector]byte)
	defer sectorPool.Put(buf)
	if _, err := d.ReadAt(buf[:], sectorOff); err != nil {
		return err
	}
	copy(p, buf[skip:])
	return nil
}

// writeBytes writes p at off. A disk never grows: a write at or past the
// end fails with ENOSPC, one that crosses the end is cut short there.
// Partial sectors are read, modified and written back while locks holds
// the byte range's sectors, so concurrent writes never lose each other's
// bytes.
func writeBytes(d formats.Disk, locks *rangeLock, p []byte, off int64) (int, error) {
	size := d.Size()
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= size {
		return 0, syscall.ENOSPC
	}
	if rem := size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := len(p)
	first := off / sector
	last := (off + int64(n) - 1) / sector
	locks.lock(first, last+1)
	defer locks.unlock(first, last+1)

	if head := int(off % sector); head != 0 {
		c := min(sector-head, len(p))
		if err := writePartial(d, p[:c], off-int64(head), head); err != nil {
			return 0, err
		}
		p, off = p[c:], off+int64(c)
	}
	if mid := len(p) / sector * sector; mid > 0 {
		if _, err := d.WriteAt(p[:mid], off); err != nil {
			return 0, err
		}
		p, off = p[mid:], off+int64(mid)
	}
	if len(p) > 0 {
		if err := writePartial(d, p, off, 0); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// writePartial replaces bytes skip..skip+len(p) of the sector at sectorOff.
func writePartial(d formats.Disk, p []byte, sectorOff int64, skip int) error {
	buf := sectorPool.Get().(*[sector]byte)
	defer sectorPool.Put(buf)
	if _, err := d.ReadAt(buf[:], sectorOff); err != nil {
		return err
	}
	copy(buf[skip:], p)
	_, err := d.WriteAt(buf[:], sectorOff)
	return err
}

// rangeLock serialises writes whose sector ranges overlap, so that the
// read-modify-write of a shared sector is atomic with respect to every
// other write of that sector. Writes of disjoint ranges run in parallel.
type rangeLock struct {
	mu     sync.Mutex
	cond   *sync.Cond
	active [][2]int64 // half-open sector ranges being written
}

func (l *rangeLock) lock(start, end int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	for l.overlaps(start, end) {
		l.cond.Wait()
	}
	l.active = append(l.active, [2]int64{start, end})
}

func (l *rangeLock) overlaps(start, end int64) bool {
	for _, r := range l.active {
		if start < r[1] && r[0] < end {
			return true
		}
	}
	return false
}

func (l *rangeLock) unlock(start, end int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range l.active {
		if r[0] == start && r[1] == end {
			l.active[i] = l.active[len(l.active)-1]
			l.active = l.active[:len(l.active)-1]
			break
		}
	}
	l.cond.Broadcast()
}
