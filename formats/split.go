package formats

// Split raw: one raw disk cut into consecutive parts named NAME.000 (or
// .001, .00), NAME.001, ... or NAME.aa, NAME.ab, ... as `split` and
// imaging tools write them. The set has no magic: it is recognised by
// the first part's name and the existence of the second part, and only
// after every format with a magic number declined the file (orderSplit).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func init() {
	register(format{name: "split", order: orderSplit, probe: splitProbe, open: splitOpen})
}

// splitMaxParts bounds the set (GNU split's numeric suffixes of width 5
// give 100000 parts).
const splitMaxParts = 1 << 20

// splitSuffix returns the suffix after the last dot and whether it is one
// kind split writes: only digits, or only lowercase letters, at least two.
func splitSuffix(path string) (stem, suffix string, digits, ok bool) {
	base := filepath.Base(path)
	i := strings.LastIndexByte(base, '.')
	if i <= 0 || len(base)-i-1 < 2 {
		return "", "", false, false
	}
	suffix = base[i+1:]
	stem = path[:len(path)-len(suffix)]
	digits = strings.Trim(suffix, "0123456789") == ""
	letters := strings.Trim(suffix, "abcdefghijklmnopqrstuvwxyz") == ""
	return stem, suffix, digits, digits || letters
}

// splitNext returns the names the part after suffix may have: the
// same-width successor, and GNU split's widened one (after "yz" comes
// "zaaa", after "89" comes "9000" when the suffix length was not fixed).
func splitNext(suffix string, digits bool) []string {
	lo, hi := byte('a'), byte('z')
	if digits {
		lo, hi = '0', '9'
	}
	lead := func(b []byte) int { // length of the leading run of hi
		n := 0
		for n < len(b) && b[n] == hi {
			n++
		}
		return n
	}
	b := []byte(suffix)
	before := lead(b)
	i := len(b) - 1
	for ; i >= 0; i-- {
		if b[i] < hi {
			b[i]++
			break
		}
		b[i] = lo
	}
	if i < 0 {
		return nil // every position rolled over: no successor
	}
	out := []string{string(b)}
	if lead(b) > before {
		out = append(out, string(b)+string([]byte{lo, lo}))
	}
	return out
}

// splitIsFirst reports whether path names the first part of a set whose
// second part exists beside it.
func splitIsFirst(path string) bool {
	stem, suffix, digits, ok := splitSuffix(path)
	if !ok {
		return false
	}
	first := strings.Trim(suffix, "0a") == ""
	if !first && digits && strings.TrimLeft(suffix, "0") == "1" {
		// .001 starts a set unless a .000 exists (then it is the second part).
		zero := strings.Repeat("0", len(suffix))
		if _, err := lstatPath(stem + zero); err != nil {
			first = true
		}
	}
	if !first {
		return false
	}
	for _, n := range splitNext(suffix, digits) {
		if st, err := statPath(stem + n); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// splitFirst returns the name under which path starts a set: path itself,
// or the target of a symlink with another name.
func splitFirst(path string) (string, bool) {
	if splitIsFirst(path) {
		return path, true
	}
	if r, err := evalSymlinksPath(path); err == nil && r != path && splitIsFirst(r) {
		return r, true
	}
	return "", false
}

func splitProbe(pd *ProbeData) bool {
	if pd.IsDir {
		return false
	}
	_, ok := splitFirst(pd.Path)
	return ok
}

type splitPart struct {
	f     *os.File
	path  string
	start int64 // disk offset of the part's first byte
	size  int64
}

type splitDisk struct {
	path     string
	parts    []splitPart
	size     int64
	readOnly bool
}

func splitOpen(path string, opt Options) (Disk, error) {
	first, ok := splitFirst(path)
	if !ok {
		return nil, fmt.Errorf("split: %s: not the first part of a split raw set: %w", path, ErrUnknownFormat)
	}
	stem, suffix, digits, _ := splitSuffix(first)
	d := &splitDisk{path: path, readOnly: opt.ReadOnly}
	name := first
	for {
		if len(d.parts) >= splitMaxParts {
			d.Close()
			return nil, corruptf("split", path, -1, "more than %d parts", splitMaxParts)
		}
		f, err := openFile(name, opt.ReadOnly)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("split: %s: part %d: %w", path, len(d.parts)+1, err)
		}
		size, err := fileSize(f)
		if err != nil {
			f.Close()
			d.Close()
			return nil, fmt.Errorf("split: %s: %w", name, err)
		}
		d.parts = append(d.parts, splitPart{f: f, path: name, start: d.size, size: size})
		d.size += size
		next := ""
		for _, n := range splitNext(suffix, digits) {
			if st, err := statPath(stem + n); err == nil && st.Mode().IsRegular() {
				next = n
				break
			}
		}
		if next == "" {
			break
		}
		suffix, name = next, stem+next
	}
	return d, nil
}

func (d *splitDisk) Size() int64 { return d.size }

// do runs op on each part piece of the request [off, off+len(p)) that
// lies below Size.
func (d *splitDisk) do(p []byte, off int64, op func(part *splitPart, p []byte, off int64) error) error {
	return forPieces(d.parts, func(pt *splitPart) (int64, int64) { return pt.start, pt.size }, d.size, p, off, op)
}

func (d *splitDisk) ReadAt(p []byte, off int64) (int, error) {
	return readUnits(p, off, d.size, 0, func(q []byte, off int64) error {
		return d.do(q, off, func(part *splitPart, b []byte, in int64) error {
			return readFullAt(part.f, b, in, "split", part.path)
		})
	})
}

func (d *splitDisk) WriteAt(p []byte, off int64) (int, error) {
	return writeUnits(p, off, d.size, d.readOnly, 0, nil, func(q []byte, off int64) error {
		return d.do(q, off, func(part *splitPart, b []byte, in int64) error {
			return writeFullAt(part.f, b, in, "split", part.path)
		})
	})
}

func (d *splitDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	var errs []error
	for _, p := range d.parts {
		if err := p.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("split: %s: %w", p.path, err))
		}
	}
	return errors.Join(errs...)
}

func (d *splitDisk) Close() error {
	err := d.Flush()
	for _, p := range d.parts {
		if cerr := p.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (d *splitDisk) Info() Info {
	files := make([]string, len(d.parts))
	for i, p := range d.parts {
		files[i] = p.path
	}
	files[0] = d.path // the name it was opened by (maybe a symlink)
	info := Info{Format: "raw", Variant: "split", Path: d.path, Files: files, Size: d.size,
		Allocated: -1, ReadOnly: d.readOnly}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	return info
}

// CanWrite: split raw sets are written in place.
func (d *splitDisk) CanWrite() bool { return true }
