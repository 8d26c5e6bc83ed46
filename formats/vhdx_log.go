package formats

// VHDX metadata log, write side: the two-header update, log entries
// (MS-VHDX 2.3) and replaying a dirty log into the file itself.
//
// Every change to the BAT or to a sector bitmap block goes through the
// log: the new 4 KiB pages are written as one log entry and flushed, then
// written to their places and flushed again. A crash before the entry is
// complete leaves its CRC wrong, so replay ignores it and the file holds
// the old pages; a crash after it replays the whole entry. Headers are
// never logged: two copies, the newer (higher sequence number) current,
// are rewritten one after the other.

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"
)

// Header fields this file changes (offsets in a 4 KiB header).
const (
	vhdxHdrSeq       = 8
	vhdxHdrFileWrite = 16
	vhdxHdrDataWrite = 32
	vhdxHdrLog       = 48
)

// vhdxNewGUID returns a random (version 4) GUID.
func vhdxNewGUID() (vhdxGUID, error) {
	var g vhdxGUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, err
	}
	g[7] = g[7]&0x0f | 0x40 // version 4 in the little-endian third field
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

// updateHeaders rewrites both headers from the current one with change
// applied: the stale copy first (sequence + 1), a flush, then the other
// (sequence + 2), a flush. A crash at any point leaves one valid header
// that is either the old or the new one.
func (d *vhdxDisk) updateHeaders(change func(h []byte)) error {
	offs := [2]int64{vhdxHeader1Off, vhdxHeader2Off}
	var bufs [2][]byte
	cur, seq := -1, uint64(0)
	for i, off := range offs {
		b := make([]byte, vhdxHeaderLen)
		if err := readFullAt(d.f, b, off, "vhdx", d.path); err != nil {
			return err
		}
		bufs[i] = b
		if string(b[:4]) == "head" && binary.LittleEndian.Uint32(b[4:]) == vhdxChecksum(b, 4) {
			if s := binary.LittleEndian.Uint64(b[vhdxHdrSeq:]); cur < 0 || s > seq {
				cur, seq = i, s
			}
		}
	}
	if cur < 0 {
		return corruptf("vhdx", d.path, vhdxHeader1Off, "neither header is valid (signature or CRC-32C)")
	}
	h := bufs[cur]
	change(h)
	for k, i := range [2]int{1 - cur, cur} {
		binary.LittleEndian.PutUint64(h[vhdxHdrSeq:], seq+1+uint64(k))
		binary.LittleEndian.PutUint32(h[4:], vhdxChecksum(h, 4))
		if err := d.pwrite(h, offs[i]); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
	}
	return nil
}

// vhdxLogPage is one 4 KiB page of the file as a log entry carries it.
type vhdxLogPage struct {
	off  int64
	data []byte
}

// vhdxEncodeLogEntry lays out a log entry: the 64-byte header and one
// 32-byte data descriptor per page in the first sectors, then a data
// sector per page holding its bytes 8..4091 between the split sequence
// number; the page's first 8 and last 4 bytes live in its descriptor.
func vhdxEncodeLogEntry(seq uint64, tail uint32, guid vhdxGUID, flushed, last int64, pages []vhdxLogPage) []byte {
	descSectors := vhdxLogDescSectors(int64(len(pages)))
	b := make([]byte, (descSectors+int64(len(pages)))*vhdxLogSector)
	copy(b, "loge")
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[12:], tail)
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(pages)))
	copy(b[32:48], guid[:])
	binary.LittleEndian.PutUint64(b[48:], uint64(flushed))
	binary.LittleEndian.PutUint64(b[56:], uint64(last))
	for i, pg := range pages {
		desc := b[64+32*i:]
		copy(desc, "desc")
		copy(desc[4:8], pg.data[vhdxLogSector-4:])
		copy(desc[8:16], pg.data[:8])
		binary.LittleEndian.PutUint64(desc[16:], uint64(pg.off))
		binary.LittleEndian.PutUint64(desc[24:], seq)
		s := b[(descSectors+int64(i))*vhdxLogSector:]
		copy(s, "data")
		binary.LittleEndian.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:vhdxLogSector-4], pg.data[8:vhdxLogSector-4])
		binary.LittleEndian.PutUint32(s[vhdxLogSector-4:], uint32(seq))
	}
	binary.LittleEndian.PutUint32(b[4:], vhdxChecksum(b, 4))
	return b
}

// logPages makes pages durable through the log and then writes them to
// their places. The data they make visible must already be flushed.
// Called with allocMu held.
func (d *vhdxDisk) logPages(pages []vhdxLogPage) error {
	w := &d.w
	if len(pages) == 0 {
		return nil
	}
	if w.logGUID.isZero() {
		g, err := vhdxNewGUID()
		if err != nil {
			return fmt.Errorf("vhdx: %s: log GUID: %w", d.path, err)
		}
		if err := d.updateHeaders(func(h []byte) { copy(h[vhdxHdrLog:], g[:]) }); err != nil {
			return err
		}
		w.logGUID, w.logSeq, w.logPos = g, 1, 0
	}
	sort.Slice(pages, func(i, j int) bool { return pages[i].off < pages[j].off })
	end := d.r.end()
	n := (vhdxLogDescSectors(int64(len(pages))) + int64(len(pages))) * vhdxLogSector
	pos := w.logPos
	if pos+n > w.logLen {
		pos = 0 // start over rather than wrap: the entry is its own tail
	}
	// Each entry is its own sequence (tail = itself): every earlier
	// entry has been applied and flushed before this one is written.
	e := vhdxEncodeLogEntry(w.logSeq, uint32(pos), w.logGUID, end, end, pages)
	if err := d.pwrite(e, w.logOff+pos); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	for _, pg := range pages {
		if err := d.pwrite(pg.data, pg.off); err != nil {
			return err
		}
	}
	if err := d.sync(); err != nil {
		return err
	}
	w.logPos = pos + n
	w.logSeq++
	return nil
}

// replayIntoFile writes the overlay of a replayed log into the file, in
// log order, extends the file to the size the log records, and marks the
// log empty. Called at a read-write open, before any other write.
func (d *vhdxDisk) replayIntoFile() error {
	ov := d.r.ov
	type op struct {
		ver  int
		page int64 // page offset, or -1 for a zero range
		z    vhdxZeroRange
	}
	var ops []op
	for off, pg := range ov.pages {
		ops = append(ops, op{ver: pg.ver, page: off})
	}
	for _, z := range ov.zeros {
		ops = append(ops, op{ver: z.ver, page: -1, z: z})
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].ver < ops[j].ver })
	fend := d.r.size
	zeros := make([]byte, vhdxMiB)
	for _, o := range ops {
		if o.page >= 0 {
			if err := d.pwrite(ov.pages[o.page].data, o.page); err != nil {
				return err
			}
			fend = max(fend, o.page+vhdxLogSector)
			continue
		}
		// Past the file's end a zeroed range is the extension below.
		for s := o.z.start; s < min(o.z.end, fend); {
			n := min(int64(len(zeros)), min(o.z.end, fend)-s)
			if err := d.pwrite(zeros[:n], s); err != nil {
				return err
			}
			s += n
		}
	}
	if ov.end > fend {
		if err := d.truncate(ov.end); err != nil {
			return err
		}
	}
	if err := d.sync(); err != nil {
		return err
	}
	if err := d.updateHeaders(func(h []byte) { clear(h[vhdxHdrLog : vhdxHdrLog+16]) }); err != nil {
		return err
	}
	d.r.grown.Store(max(fend, ov.end))
	d.r.ov = nil
	return nil
}
