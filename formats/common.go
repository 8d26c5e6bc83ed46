package formats

// Rules shared by every format, kept here once: what a request past the
// end does, what a hole reads as, how sizes round, what a read-only format
// answers to a write. A format calls these and never another format's
// helpers.

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

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

// clampRead checks a ReadAt request on a disk of size bytes and returns
// the part of p inside the disk (empty when none) after clearing the part
// past the end, which reads as zeros.
func clampRead(p []byte, off, size int64) ([]byte, error) {
	if err := checkIO(p, off); err != nil {
		return nil, err
	}
	return cutRead(p, off, size), nil
}

// readUnits serves a ReadAt on a disk of size bytes: after clampRead it
// hands read the request in pieces that each stay within one unit of
// unitSize bytes (a page, a chunk, a block), or whole when unitSize is 0.
// It returns len(p), or 0 and the first error.
func readUnits(p []byte, off, size, unitSize int64, read func(q []byte, off int64) error) (int, error) {
	q, err := clampRead(p, off, size)
	if err == nil {
		err = eachUnit(q, off, unitSize, read)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// eachUnit calls fn for the pieces of p (at off) that each stay within
// one unit of unitSize bytes, or once for all of p when unitSize is 0.
func eachUnit(p []byte, off, unitSize int64, fn func(q []byte, off int64) error) error {
	for len(p) > 0 {
		k := int64(len(p))
		if unitSize > 0 {
			k = min(k, unitSize-off%unitSize)
		}
		if err := fn(p[:k], off); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// clampReadSectors is clampRead for formats that read whole sectors: the
// part returned ends with the sector holding the disk's last byte, and
// the caller clears what lies past size with clearPastEnd once it is read.
func clampReadSectors(p []byte, off, size int64) ([]byte, error) {
	return clampRead(p, off, roundUp(size, SectorSize))
}

// clearPastEnd clears the bytes of p (read at off) that lie past size.
func clearPastEnd(p []byte, off, size int64) {
	if tail := size - off; tail < int64(len(p)) {
		clear(p[max(tail, 0):])
	}
}

// firstWrite runs start, which readies an image for its first write and
// sets done, under mu, unless done is set already: later writes pay one
// atomic load.
func firstWrite(done *atomic.Bool, mu *sync.Mutex, start func() error) error {
	if done.Load() {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	return start()
}

// cutRead clears the part of p (at off) past size and returns the rest.
func cutRead(p []byte, off, size int64) []byte {
	if off >= size {
		clear(p)
		return p[:0]
	}
	if rem := size - off; int64(len(p)) > rem {
		clear(p[rem:])
		p = p[:rem]
	}
	return p
}

// clampWrite checks a WriteAt request on a disk of size bytes and returns
// the part of p inside the disk (empty when none): bytes past the end are
// ignored.
func clampWrite(p []byte, off, size int64, readOnly bool) ([]byte, error) {
	if err := checkIO(p, off); err != nil {
		return nil, err
	}
	if readOnly {
		return nil, ErrReadOnly
	}
	if off >= size {
		return p[:0], nil
	}
	if rem := size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	return p, nil
}

// writeUnits serves a WriteAt on a disk of size bytes: it checks and
// clamps the request, runs prepare (nil for none: the header update of a
// first write) when anything is left to write, then hands write the rest
// in pieces that each stay within one unit of unitSize bytes (a cluster,
// a block), or whole when unitSize is 0. It returns len(p), or 0 and the
// first error.
func writeUnits(p []byte, off, size int64, readOnly bool, unitSize int64,
	prepare func() error, write func(q []byte, off int64) error) (int, error) {
	n := len(p)
	p, err := clampWrite(p, off, size, readOnly)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return n, nil
	}
	if prepare != nil {
		err = prepare()
	}
	if err == nil {
		err = eachUnit(p, off, unitSize, write)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// readParent fills p with what a level that does not hold the range at
// off shows: the parent's bytes, or zeros where there is no parent or the
// parent is shorter (qemu's rule for backing files, and every
// differencing format's).
func readParent(parent Disk, p []byte, off int64) error {
	if parent == nil {
		clear(p)
		return nil
	}
	if p = cutRead(p, off, roundUp(parent.Size(), SectorSize)); len(p) == 0 {
		return nil
	}
	_, err := parent.ReadAt(p, off)
	return err
}

// readOnlyFormat gives a format that vdflat never writes its WriteAt and
// Flush: a valid write is refused with ErrReadOnly, there is nothing to
// flush.
type readOnlyFormat struct{}

func (readOnlyFormat) WriteAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	return 0, ErrReadOnly
}

func (readOnlyFormat) Flush() error { return nil }

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// readClusters serves a ReadAt on a disk of size bytes, filling p (at
// virtual offset off) cluster by cluster after clampRead. lookup returns
// the file offset holding the bytes of chunk (the part of one cluster at
// pos), or -1 after filling chunk itself (zeros, a parent's data, a
// decompressed cluster). Chunks stored one after another in the file are
// read with one call of read.
func readClusters(p []byte, off, size, clusterSize int64, read func(b []byte, fileOff int64) error,
	lookup func(pos int64, chunk []byte) (int64, error)) (int, error) {
	n := len(p)
	p, err := clampRead(p, off, size)
	if err != nil {
		return 0, err
	}
	runStart, runOff := 0, int64(-1) // pending run: p[runStart:done] at file offset runOff
	for done := 0; done < len(p); {
		pos := off + int64(done)
		chunk := p[done:min(len(p), done+int(clusterSize-pos%clusterSize))]
		fo, err := lookup(pos, chunk)
		if err != nil {
			return 0, err
		}
		if fo < 0 || runOff < 0 || runOff+int64(done-runStart) != fo {
			if runOff >= 0 {
				if err := read(p[runStart:done], runOff); err != nil {
					return 0, err
				}
			}
			runStart, runOff = done, fo
		}
		done += len(chunk)
	}
	if runOff >= 0 {
		if err := read(p[runStart:], runOff); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// openDisk opens the file of an image (read-only when readOnly) and hands
// it to load, closing it again when load fails.
func openDisk[D Disk](path string, readOnly bool, load func(f *os.File) (D, error)) (Disk, error) {
	f, err := openFile(path, readOnly)
	if err != nil {
		return nil, err
	}
	d, err := load(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// IsZero reports whether b holds only zero bytes (flatten writes such
// ranges as holes).
func IsZero(b []byte) bool { return isZero(b) }

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// closeChain closes an image's file, then its parent (when not nil), and
// returns err or else the first error of those closes.
func closeChain(err error, f *os.File, parent Disk) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if parent != nil {
		if perr := parent.Close(); err == nil {
			err = perr
		}
	}
	return err
}

// checkParent appends the findings of parent's own Check (when it has
// one) to findings, each prefixed with label and the parent's path.
func checkParent(findings []string, parent Disk, label string) ([]string, error) {
	ck, ok := parent.(Checker)
	if !ok {
		return findings, nil
	}
	pf, err := ck.Check()
	for _, s := range pf {
		findings = append(findings, fmt.Sprintf("%s %s: %s", label, parent.Info().Path, s))
	}
	return findings, err
}

// hashAlgorithms are the canonical names of Info.Hashes.
var hashAlgorithms = []string{"md5", "sha1", "sha256"}

// storedHashes picks the digests of the whole disk out of an evidence
// container's metadata, where both EWF and AFF keep them under their
// canonical names; nil when there are none.
func storedHashes(meta map[string]string) map[string]string {
	var hashes map[string]string
	for _, algo := range hashAlgorithms {
		if v := meta[algo]; v != "" {
			if hashes == nil {
				hashes = map[string]string{}
			}
			hashes[algo] = strings.ToLower(v)
		}
	}
	return hashes
}

// acquisitionFrom reads an Acquisition out of a format's metadata: each
// field of keys names the metadata key that field comes from ("" when the
// format has none). It is nil when the image records none of them.
func acquisitionFrom(meta map[string]string, keys Acquisition) *Acquisition {
	var a Acquisition
	fields := []struct {
		dst *string
		key string
	}{
		{&a.CaseNumber, keys.CaseNumber}, {&a.EvidenceNumber, keys.EvidenceNumber},
		{&a.Examiner, keys.Examiner}, {&a.Description, keys.Description},
		{&a.Notes, keys.Notes}, {&a.Date, keys.Date}, {&a.Software, keys.Software},
		{&a.DeviceModel, keys.DeviceModel}, {&a.DeviceSerial, keys.DeviceSerial},
	}
	found := false
	for _, f := range fields {
		if v := meta[f.key]; f.key != "" && v != "" {
			*f.dst, found = v, true
		}
	}
	if !found {
		return nil
	}
	return &a
}

// closeEach closes the file of every item and returns the first error.
func closeEach[T any](items []T, file func(T) *os.File) error {
	var err error
	for _, it := range items {
		if cerr := file(it).Close(); err == nil {
			err = cerr
		}
	}
	return err
}
