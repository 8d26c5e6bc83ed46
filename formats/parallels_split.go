package formats

// A Parallels bundle split into several storages (docs/interop/prl-xml.rst):
// DiskDescriptor.xml lists consecutive sector ranges [Start, End), each
// stored in its own images (one per snapshot, the same snapshot GUIDs in
// every storage). Parallels Desktop writes large disks this way. The
// storages joined in order are the disk.

import (
	"errors"
	"fmt"
	"sort"
)

// parallelsMaxStorages bounds the descriptor's storage list.
const parallelsMaxStorages = 1 << 16

type parallelsPiece struct {
	Disk
	start, size int64 // bytes of the joined disk
}

type parallelsSplit struct {
	xmlPath string
	pieces  []parallelsPiece
	size    int64
}

var _ Mapper = (*parallelsSplit)(nil)

// parallelsOpenSplit opens every storage along chain and joins them. The
// ranges must start at sector 0 and follow each other without gaps, and
// each storage's images must cover their range.
func parallelsOpenSplit(xmlPath string, storages []parallelsStorage, chain []string, opt Options) (Disk, error) {
	d := &parallelsSplit{xmlPath: xmlPath}
	for i, st := range storages {
		if st.Start != d.size/SectorSize || st.End <= st.Start || st.End > 1<<53 {
			d.Close()
			return nil, corruptf("parallels", xmlPath, -1, "storage %d covers sectors [%d, %d), want a range starting at %d", i, st.Start, st.End, d.size/SectorSize)
		}
		disk, err := parallelsOpenStorage(xmlPath, st, chain, opt)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("storage %d: %w", i, err)
		}
		size := (st.End - st.Start) * SectorSize
		if disk.Size() < size {
			disk.Close()
			d.Close()
			return nil, corruptf("parallels", xmlPath, -1, "storage %d: image of %d bytes is smaller than its range of %d bytes", i, disk.Size(), size)
		}
		d.pieces = append(d.pieces, parallelsPiece{Disk: disk, start: d.size, size: size})
		d.size += size
	}
	return d, nil
}

func (d *parallelsSplit) Size() int64 { return d.size }

// each runs op on the pieces of [off, off+len(p)) below Size, with the
// offset inside each piece.
func (d *parallelsSplit) each(p []byte, off int64, op func(pc *parallelsPiece, b []byte, in int64) error) error {
	return forPieces(d.pieces, func(pc *parallelsPiece) (int64, int64) { return pc.start, pc.size }, d.size, p, off, op)
}

func (d *parallelsSplit) ReadAt(p []byte, off int64) (int, error) {
	q, err := clampRead(p, off, d.size)
	if err != nil {
		return 0, err
	}
	err = d.each(q, off, func(pc *parallelsPiece, b []byte, in int64) error {
		_, err := pc.ReadAt(b, in)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *parallelsSplit) WriteAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	err := d.each(p, off, func(pc *parallelsPiece, b []byte, in int64) error {
		_, err := pc.WriteAt(b, in)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *parallelsSplit) Map(off, length int64) (bool, int64, error) {
	i := sort.Search(len(d.pieces), func(i int) bool { return d.pieces[i].start+d.pieces[i].size > off })
	if i == len(d.pieces) {
		return false, max(length, SectorSize), nil
	}
	pc := &d.pieces[i]
	in := off - pc.start
	length = min(length, pc.size-in)
	m, ok := pc.Disk.(Mapper)
	if !ok {
		return true, length, nil
	}
	alloc, n, err := m.Map(in, length)
	return alloc, min(n, length), err
}

func (d *parallelsSplit) Flush() error {
	var errs []error
	for _, pc := range d.pieces {
		errs = append(errs, pc.Flush())
	}
	return errors.Join(errs...)
}

func (d *parallelsSplit) Close() error {
	var errs []error
	for _, pc := range d.pieces {
		errs = append(errs, pc.Close())
	}
	return errors.Join(errs...)
}

// Info describes the first storage's images, with every storage's files
// and allocation, level by level down the snapshot chain.
func (d *parallelsSplit) Info() Info {
	infos := make([]Info, len(d.pieces))
	for i, pc := range d.pieces {
		infos[i] = pc.Info()
	}
	info := parallelsJoinInfo(infos, d.size)
	info.Variant += fmt.Sprintf(", split into %d storages", len(d.pieces))
	return info
}

// parallelsJoinInfo joins the Info of one chain level across storages.
func parallelsJoinInfo(infos []Info, size int64) Info {
	info := infos[0].clone()
	info.Size = size
	parents := []Info{}
	for k, pi := range infos {
		if k > 0 {
			info.Files = append(info.Files, pi.Files...)
			if info.Allocated >= 0 && pi.Allocated >= 0 {
				info.Allocated += pi.Allocated
			} else {
				info.Allocated = -1
			}
			info.ReadOnly = info.ReadOnly || pi.ReadOnly
		}
		if pi.Parent != nil {
			parents = append(parents, *pi.Parent)
		}
	}
	if len(parents) == len(infos) {
		p := parallelsJoinInfo(parents, size)
		info.Parent = &p
	}
	return info
}

// CanWrite: writable when every storage's top image is.
func (d *parallelsSplit) CanWrite() bool {
	for _, pc := range d.pieces {
		if !CanWrite(pc.Disk) {
			return false
		}
	}
	return true
}
