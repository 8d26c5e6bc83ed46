package formats

// qcow2 internal snapshots as points in time: each snapshot table entry
// keeps its own L1 table (sharing clusters with the active state through
// refcounts), so reading a snapshot is reading the image through that L1
// table instead of the header's.

import (
	"encoding/binary"
	"fmt"
	"time"
)

// qcow2SnapEntry is the fixed part of a snapshot table entry.
type qcow2SnapEntry struct {
	L1Off      uint64
	L1Size     uint32
	IDLen      uint16
	NameLen    uint16
	DateSec    uint32
	DateNsec   uint32
	VMClockNs  uint64
	VMStateLen uint32
	ExtraLen   uint32
}

type qcow2PIT struct {
	id, name string
	date     time.Time
	l1Off    int64
	l1Size   int64
	size     int64 // virtual size when the snapshot was taken
}

// snapshotTable reads up to qcow2ListSnapshots entries of the snapshot
// table, checking each against the file.
func (d *qcow2Disk) snapshotTable() ([]qcow2PIT, error) {
	n := min(int64(d.h.NbSnapshots), qcow2ListSnapshots)
	off := int64(d.h.SnapOff)
	fsize := d.fileEnd.Load()
	var out []qcow2PIT
	for i := int64(0); i < n; i++ {
		var raw [40]byte
		if err := readFullAt(d.f, raw[:], off, "qcow2", d.path); err != nil {
			return nil, err
		}
		var e qcow2SnapEntry
		if _, err := binary.Decode(raw[:], binary.BigEndian, &e); err != nil {
			return nil, d.corrupt(off, "snapshot %d: %v", i, err)
		}
		if e.ExtraLen > 1<<20 {
			return nil, d.corrupt(off, "snapshot %d: extra data of %d bytes", i, e.ExtraLen)
		}
		var extra [16]byte
		el := min(int64(e.ExtraLen), 16)
		if err := readFullAt(d.f, extra[:el], off+40, "qcow2", d.path); err != nil {
			return nil, err
		}
		strs := make([]byte, int(e.IDLen)+int(e.NameLen))
		if err := readFullAt(d.f, strs, off+40+int64(e.ExtraLen), "qcow2", d.path); err != nil {
			return nil, err
		}
		s := qcow2PIT{
			id: string(strs[:e.IDLen]), name: string(strs[e.IDLen:]),
			date:  time.Unix(int64(e.DateSec), int64(e.DateNsec)).UTC(),
			l1Off: int64(e.L1Off), l1Size: int64(e.L1Size), size: d.size,
		}
		if el >= 16 { // disk size at the snapshot (v3, or written by qemu since 1.1)
			s.size = int64(binary.BigEndian.Uint64(extra[8:]))
		}
		if s.size < 0 || s.size > 1<<62 || s.l1Size*8 > qcow2MaxL1Bytes ||
			s.l1Off%d.cs != 0 || s.l1Off < 0 || s.l1Off+s.l1Size*8 > fsize {
			return nil, d.corrupt(off, "snapshot %q: L1 table at %#x (%d entries) or size %d out of range", s.id, s.l1Off, s.l1Size, s.size)
		}
		out = append(out, s)
		off += (40 + int64(e.ExtraLen) + int64(e.IDLen) + int64(e.NameLen) + 7) &^ 7
	}
	return out, nil
}

// pointsInTime lists the internal snapshots, oldest first as stored.
func (d *qcow2Disk) pointsInTime(opt Options) ([]PointInTime, error) {
	if d.h.NbSnapshots == 0 {
		return nil, nil
	}
	snaps, err := d.snapshotTable()
	if err != nil {
		return nil, err
	}
	files := []string{d.path}
	if d.extData {
		files = append(files, d.dataPath)
	}
	if d.parent != nil {
		pi, _ := QuickInfo(d.parent)
		files = append(files, chainFiles(&pi)...)
	}
	out := make([]PointInTime, 0, len(snaps))
	for _, s := range snaps {
		s := s
		out = append(out, PointInTime{
			Label: s.name, ID: s.id, Kind: "snapshot", Created: s.date, Size: s.size,
			Path: d.path, Files: files,
			Open: func() (Disk, error) { return qcow2OpenSnapshot(d.path, s, opt) },
		})
	}
	return out, nil
}

// qcow2OpenSnapshot opens path read-only as snapshot s saw it.
func qcow2OpenSnapshot(path string, s qcow2PIT, opt Options) (Disk, error) {
	opt.ReadOnly = true
	disk, err := qcow2Open(path, opt)
	if err != nil {
		return nil, err
	}
	d := disk.(*qcow2Disk)
	perL1 := int64(1) << (d.cb + d.l2bits)
	need := min(s.l1Size, (s.size+perL1-1)/perL1)
	b := make([]byte, need*8)
	if err := readFullAt(d.f, b, s.l1Off, "qcow2", path); err != nil {
		d.Close()
		return nil, err
	}
	l1 := make([]uint64, need)
	for i := range l1 {
		l1[i] = binary.BigEndian.Uint64(b[i*8:])
	}
	d.mu.Lock()
	d.l1, d.size = l1, s.size
	d.mu.Unlock()
	d.roReason = "a snapshot is read-only"
	d.metadata["snapshot"] = fmt.Sprintf("id=%s name=%s date=%s", s.id, s.name, s.date.Format(time.RFC3339))
	return d, nil
}
