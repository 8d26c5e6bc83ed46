package formats

// qcow2 metadata check, after `qemu-img check`: every host cluster's
// expected reference count is computed from the structures that use it
// (header, active and snapshot L1 tables, L2 tables, data and compressed
// clusters, refcount table and blocks, snapshot table, persistent
// bitmaps) and compared with the refcounts stored in the file, one
// refcount block at a time. Counters exist only for the clusters of the
// file (two bytes and a role byte each), so memory is bounded by the
// file size.

import (
	"encoding/binary"
	"fmt"
	"sort"
)

const (
	qcow2CheckMaxClusters = 64 << 20 // 192 MiB of counters at most
	qcow2MaxBitmapDir     = 64 << 20 // qemu's QCOW2_MAX_BITMAP_DIRECTORY_SIZE
	qcow2MaxBitmapTable   = 1 << 28  // bytes of one bitmap table
)

// What a cluster is used for, for messages; the first use found wins.
const (
	qcow2UseNone uint8 = iota
	qcow2UseHeader
	qcow2UseL1
	qcow2UseL2
	qcow2UseRefTable
	qcow2UseRefBlock
	qcow2UseData
	qcow2UseCompressed
	qcow2UseSnapTable
	qcow2UseBitmap
)

var qcow2UseNames = [...]string{"unused", "header", "L1 table", "L2 table", "refcount table",
	"refcount block", "data", "compressed data", "snapshot table", "bitmap"}

type qcow2Checker struct {
	d      *qcow2Disk
	fsize  int64
	n      int64 // clusters in the file (the last one may be partial)
	refs   []uint16
	over   map[int64]uint64 // references beyond 0xffff
	use    []uint8
	l2refs map[int64]uint64 // L2 table offset -> L1 entries naming it
	findingList
	refDiffs int
	l1Budget int64 // bytes of snapshot L1 tables still to read
}

// expected is the number of references counted for cluster cl.
func (c *qcow2Checker) expected(cl int64) uint64 {
	v := uint64(c.refs[cl])
	if v == 0xffff {
		v += c.over[cl]
	}
	return v
}

// count adds delta references to every cluster that bytes [off,
// off+length) touch, and reports a range that reaches a cluster past the
// end of the file (qemu's "exceeding the end of the file by one cluster
// or more"). It returns false in that case.
func (c *qcow2Checker) count(off, length int64, use uint8, delta uint64, what string) bool {
	if length <= 0 {
		return true
	}
	cb := c.d.cb
	first, last := off>>cb, (off+length-1)>>cb
	ok := off >= 0 && last < c.n
	if !ok {
		c.addf("%s at %#x (%d bytes) runs past the end of the file (%d bytes)", what, off, length, c.fsize)
		if off < 0 {
			return false
		}
	}
	// Count what lies inside the file even so.
	for cl := first; cl <= min(last, c.n-1); cl++ {
		c.inc(cl, use, delta)
	}
	return ok
}

func (c *qcow2Checker) inc(cl int64, use uint8, delta uint64) {
	if c.use[cl] == qcow2UseNone {
		c.use[cl] = use
	} else {
		c.overlap(cl, use)
	}
	v := uint64(c.refs[cl]) + delta
	if v < 0xffff {
		c.refs[cl] = uint16(v)
		return
	}
	if c.refs[cl] == 0xffff {
		c.over[cl] += delta
		return
	}
	c.refs[cl] = 0xffff
	c.over[cl] += v - 0xffff
}

// Check implements Checker like `qemu-img check`: reference counts
// (corruptions and leaks), table entries that are unaligned, have
// reserved bits set or point past the end of the file, and copied flags
// that disagree with the reference count. A backing file that can check
// itself is checked too.
func (d *qcow2Disk) Check() ([]string, error) {
	// Allocating writers hold allocMu; in-place writes change no metadata.
	d.allocMu.Lock()
	findings, err := d.check()
	d.allocMu.Unlock()
	if err != nil {
		return findings, err
	}
	return checkParent(findings, d.parent, "backing file")
}

func (d *qcow2Disk) check() ([]string, error) {
	fsize, err := fileSize(d.f)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %s: %w", d.path, err)
	}
	n := (fsize + d.cs - 1) >> d.cb
	if n > qcow2CheckMaxClusters {
		return nil, d.unsupported("checking a file of %d clusters (at most %d are checked)", n, qcow2CheckMaxClusters)
	}
	c := &qcow2Checker{d: d, fsize: fsize, n: n, refs: make([]uint16, n), use: make([]uint8, n),
		over: map[int64]uint64{}, l2refs: map[int64]uint64{}}
	h := d.h

	c.count(0, d.cs, qcow2UseHeader, 1, "header")

	// Active L1 table: all l1_size entries, as qemu walks them.
	active, err := c.l1Table(int64(h.L1Off), int64(h.L1Size), "active L1 table")
	if err != nil {
		return c.list, err
	}
	if err := c.snapshots(); err != nil {
		return c.list, err
	}
	rt, err := c.refTable()
	if err != nil {
		return c.list, err
	}
	if err := c.bitmaps(); err != nil {
		return c.list, err
	}

	// Each distinct L2 table once, its clusters counted once per L1
	// entry that names it (snapshots share tables).
	offs := make([]int64, 0, len(c.l2refs))
	for off := range c.l2refs {
		offs = append(offs, off)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	buf := make([]byte, d.cs)
	for _, off := range offs {
		if err := readFullAt(d.f, buf, off, "qcow2", d.path); err != nil {
			return c.list, err
		}
		c.l2Table(buf, off, c.l2refs[off])
	}

	if err := c.copiedFlags(active, buf); err != nil {
		return c.list, err
	}
	if err := c.compare(rt, buf); err != nil {
		return c.list, err
	}
	findings := c.done()
	if c.refDiffs > 0 && h.Incompat&qcow2IncDirty != 0 {
		// Always listed: it explains the others.
		findings = append(findings, "the image is marked dirty (lazy refcounts), which explains refcount differences; qemu-img check -r all repairs them")
	}
	return findings, nil
}

// l1Table counts an L1 table and the L2 tables it names, and returns
// its entries (nil when the table itself is unusable).
func (c *qcow2Checker) l1Table(off, entries int64, what string) ([]uint64, error) {
	d := c.d
	if entries == 0 {
		return nil, nil
	}
	if entries*8 > qcow2MaxL1Bytes {
		c.addf("%s at %#x has %d entries, more than qemu allows", what, off, entries)
		return nil, nil
	}
	if off <= 0 || off%d.cs != 0 {
		c.addf("%s at %#x is not cluster-aligned", what, off)
		return nil, nil
	}
	if !c.count(off, entries*8, qcow2UseL1, 1, what) {
		return nil, nil
	}
	if off+entries*8 > c.fsize {
		c.addf("%s at %#x runs past the end of the file", what, off)
		return nil, nil
	}
	b := make([]byte, entries*8)
	if err := readFullAt(d.f, b, off, "qcow2", d.path); err != nil {
		return nil, err
	}
	l1 := make([]uint64, entries)
	for i := range l1 {
		e := binary.BigEndian.Uint64(b[i*8:])
		l1[i] = e
		l2 := int64(e & qcow2OffMask)
		if e&qcow2L1Reserved != 0 {
			c.addf("%s at %#x entry %d (%#x) has reserved bits set", what, off, i, e)
		}
		switch {
		case l2 == 0:
		case l2%d.cs != 0:
			c.addf("%s at %#x entry %d: L2 table offset %#x is not cluster-aligned", what, off, i, l2)
			l1[i] = 0
		case l2+d.cs > c.fsize:
			c.addf("%s at %#x entry %d: L2 table offset %#x points past the end of the file", what, off, i, l2)
			l1[i] = 0
		default:
			c.count(l2, d.cs, qcow2UseL2, 1, "L2 table")
			c.l2refs[l2]++
		}
	}
	return l1, nil
}

// l2Table checks the entries of the L2 table in b (at off) and counts
// the clusters they use, refs times each.
func (c *qcow2Checker) l2Table(b []byte, off int64, refs uint64) {
	d := c.d
	step := 8
	if d.extL2 {
		step = 16
	}
	for j := 0; j+step <= len(b); j += step {
		e := binary.BigEndian.Uint64(b[j:])
		var bm uint64
		if d.extL2 {
			bm = binary.BigEndian.Uint64(b[j+8:])
		}
		where := fmt.Sprintf("L2 table at %#x entry %d", off, j/step)
		if e&qcow2Compressed != 0 {
			switch {
			case d.extData:
				c.addf("%s: compressed cluster in an image with an external data file", where)
				continue
			case e&qcow2Copied != 0:
				c.addf("%s: compressed cluster has the copied flag set", where)
			}
			if bm != 0 {
				c.addf("%s: compressed cluster has a non-zero subcluster bitmap %#x", where, bm)
			}
			coff, clen := d.compressedLoc(e)
			c.count(coff, clen, qcow2UseCompressed, refs, where+": compressed cluster")
			continue
		}
		host := int64(e & qcow2OffMask)
		if e&qcow2L2Reserved != 0 {
			c.addf("%s (%#x) has reserved bits set", where, e)
		}
		if e&qcow2ZeroFlag != 0 && !d.v3 {
			c.addf("%s: zero cluster in a v2 image", where)
		}
		if host%d.cs != 0 {
			c.addf("%s: data cluster offset %#x is not cluster-aligned", where, host)
			continue
		}
		if d.extL2 {
			alloc, zero := uint32(bm), uint32(bm>>32)
			if alloc&zero != 0 {
				c.addf("%s: subclusters %#x both allocated and zero", where, alloc&zero)
			}
			if alloc != 0 && !d.hasHost(e) {
				c.addf("%s: subclusters allocated without a host cluster", where)
			}
		}
		// External data files keep their own space: no refcounts.
		if host == 0 || d.extData {
			continue
		}
		if host>>d.cb >= c.n {
			c.addf("%s: data cluster offset %#x points past the end of the file", where, host)
			continue
		}
		c.count(host, d.cs, qcow2UseData, refs, where)
	}
}

// snapshots counts the snapshot table and every snapshot's L1 table.
func (c *qcow2Checker) snapshots() error {
	d := c.d
	nb := int64(d.h.NbSnapshots)
	if nb == 0 {
		return nil
	}
	off := int64(d.h.SnapOff)
	if off%d.cs != 0 || off <= 0 || off >= c.fsize {
		c.addf("snapshot table at %#x is unaligned or outside the file", off)
		return nil
	}
	be := binary.BigEndian
	pos := off
	var fixed [40]byte
	// Every snapshot has its own L1 table in the file: together they
	// cannot be larger than the file. This stops a crafted table whose
	// snapshots all name one huge L1 table.
	c.l1Budget = c.fsize
	for i := int64(0); i < nb; i++ {
		if pos+40 > c.fsize {
			c.addf("snapshot table at %#x: entry %d runs past the end of the file", off, i)
			break
		}
		if err := readFullAt(d.f, fixed[:], pos, "qcow2", d.path); err != nil {
			return err
		}
		l1off, l1n := int64(be.Uint64(fixed[0:])), int64(be.Uint32(fixed[8:]))
		idLen, nameLen := int64(be.Uint16(fixed[12:])), int64(be.Uint16(fixed[14:]))
		extra := int64(be.Uint32(fixed[36:]))
		if extra > 1<<20 {
			c.addf("snapshot table at %#x: entry %d has %d bytes of extra data", off, i, extra)
			break
		}
		if c.l1Budget -= l1n * 8; c.l1Budget < 0 {
			c.addf("snapshot table at %#x: the snapshots' L1 tables are larger than the file", off)
			break
		}
		if _, err := c.l1Table(l1off, l1n, fmt.Sprintf("snapshot %d L1 table", i)); err != nil {
			return err
		}
		pos += (40 + extra + idLen + nameLen + 7) &^ 7
	}
	c.count(off, pos-off, qcow2UseSnapTable, 1, "snapshot table")
	return nil
}

// refTable counts the refcount table and its blocks, and returns the
// table with unusable entries cleared.
func (c *qcow2Checker) refTable() ([]uint64, error) {
	d := c.d
	off, cls := int64(d.h.RTOff), int64(d.h.RTClusters)
	if off <= 0 || off%d.cs != 0 || cls == 0 {
		c.addf("refcount table at %#x (%d clusters) is unaligned or empty", off, cls)
		return nil, nil
	}
	if !c.count(off, cls*d.cs, qcow2UseRefTable, 1, "refcount table") {
		return nil, nil
	}
	if off+cls*d.cs > c.fsize {
		c.addf("refcount table at %#x runs past the end of the file", off)
		return nil, nil
	}
	b := make([]byte, cls*d.cs)
	if err := readFullAt(d.f, b, off, "qcow2", d.path); err != nil {
		return nil, err
	}
	rt := make([]uint64, len(b)/8)
	for i := range rt {
		e := binary.BigEndian.Uint64(b[i*8:])
		blk := int64(e &^ 511)
		switch {
		case e == 0:
			continue
		case e&511 != 0:
			c.addf("refcount table entry %d (%#x) has reserved bits set", i, e)
		}
		switch {
		case blk%d.cs != 0:
			c.addf("refcount table entry %d: refcount block offset %#x is not cluster-aligned", i, blk)
		case blk+d.cs > c.fsize:
			c.addf("refcount table entry %d: refcount block offset %#x points past the end of the file", i, blk)
		default:
			c.count(blk, d.cs, qcow2UseRefBlock, 1, "refcount block")
			rt[i] = uint64(blk)
		}
	}
	return rt, nil
}

// bitmaps counts the persistent dirty bitmaps' directory, tables and
// data clusters; like qemu, only when the autoclear bit says they are
// valid.
func (c *qcow2Checker) bitmaps() error {
	d := c.d
	if d.h.Autoclear&qcow2AutoBitmaps == 0 {
		return nil
	}
	head := make([]byte, min(d.cs, c.fsize))
	if err := readFullAt(d.f, head, 0, "qcow2", d.path); err != nil {
		return err
	}
	be := binary.BigEndian
	var ext []byte
	for off := int64(d.h.HeaderLen); off+8 <= int64(len(head)); {
		typ, n := be.Uint32(head[off:]), int64(be.Uint32(head[off+4:]))
		if typ == qcow2ExtEnd || n > int64(len(head))-off-8 {
			break
		}
		if typ == qcow2ExtBitmaps {
			ext = head[off+8 : off+8+n]
			break
		}
		off += 8 + (n+7)&^7
	}
	if len(ext) < 24 {
		return nil
	}
	nb := int64(be.Uint32(ext[0:]))
	dirSize, dirOff := int64(be.Uint64(ext[8:])), int64(be.Uint64(ext[16:]))
	if dirSize < 0 || dirSize > qcow2MaxBitmapDir || dirOff <= 0 || dirOff%d.cs != 0 || dirOff > c.fsize || dirSize > c.fsize-dirOff {
		c.addf("bitmap directory at %#x (%d bytes) is unaligned, too large or outside the file", dirOff, dirSize)
		return nil
	}
	c.count(dirOff, dirSize, qcow2UseBitmap, 1, "bitmap directory")
	dir := make([]byte, dirSize)
	if err := readFullAt(d.f, dir, dirOff, "qcow2", d.path); err != nil {
		return err
	}
	pos := int64(0)
	for i := int64(0); i < nb; i++ {
		if pos+24 > dirSize {
			c.addf("bitmap directory at %#x: entry %d runs past its end", dirOff, i)
			return nil
		}
		e := dir[pos:]
		tOff, tN := int64(be.Uint64(e[0:])), int64(be.Uint32(e[8:]))
		// Layout: table offset (8), table size (4), flags (4), type (1),
		// granularity bits (1), name size (2), extra data size (4).
		nameLen, extra := int64(be.Uint16(e[18:])), int64(be.Uint32(e[20:]))
		pos += (24 + extra + nameLen + 7) &^ 7
		what := fmt.Sprintf("bitmap %d table", i)
		if tN == 0 {
			continue
		}
		if tOff <= 0 || tOff%d.cs != 0 || tN*8 > qcow2MaxBitmapTable {
			c.addf("%s at %#x (%d entries) is unaligned or too large", what, tOff, tN)
			continue
		}
		if !c.count(tOff, tN*8, qcow2UseBitmap, 1, what) || tOff+tN*8 > c.fsize {
			continue
		}
		tb := make([]byte, tN*8)
		if err := readFullAt(d.f, tb, tOff, "qcow2", d.path); err != nil {
			return err
		}
		for j := int64(0); j < tN; j++ {
			off := int64(be.Uint64(tb[j*8:]) & qcow2OffMask)
			if off == 0 {
				continue
			}
			if off%d.cs != 0 {
				c.addf("%s at %#x entry %d: offset %#x is not cluster-aligned", what, tOff, j, off)
				continue
			}
			c.count(off, d.cs, qcow2UseBitmap, 1, what+" data cluster")
		}
	}
	return nil
}

// copiedFlags checks the copied flag (refcount exactly one) of the
// active L1 table's entries and of the data entries of its L2 tables,
// against the expected reference counts.
func (c *qcow2Checker) copiedFlags(l1 []uint64, buf []byte) error {
	d := c.d
	step := 8
	if d.extL2 {
		step = 16
	}
	seen := map[int64]bool{}
	for i, e := range l1 {
		l2 := int64(e & qcow2OffMask)
		if l2 == 0 {
			continue
		}
		refs := c.expected(l2 >> d.cb)
		if copied := e&qcow2Copied != 0; copied != (refs == 1) {
			c.addf("active L1 table at %#x entry %d: L2 table at %#x has %d reference(s) but the copied flag is %s", d.h.L1Off, i, l2, refs, qcow2OnOff(copied))
		}
		if d.extData || seen[l2] {
			continue
		}
		seen[l2] = true
		if err := readFullAt(d.f, buf, l2, "qcow2", d.path); err != nil {
			return err
		}
		for j := 0; j+step <= len(buf); j += step {
			e := binary.BigEndian.Uint64(buf[j:])
			host := int64(e & qcow2OffMask)
			if e&qcow2Compressed != 0 || host == 0 || host%d.cs != 0 || host>>d.cb >= c.n {
				continue
			}
			refs := c.expected(host >> d.cb)
			if copied := e&qcow2Copied != 0; copied != (refs == 1) {
				c.addf("L2 table at %#x entry %d: data cluster at %#x has %d reference(s) but the copied flag is %s", l2, j/step, host, refs, qcow2OnOff(copied))
			}
		}
	}
	return nil
}

func qcow2OnOff(b bool) string {
	if b {
		return "set"
	}
	return "clear"
}

// compare reads the stored refcounts one refcount block at a time and
// compares them with the expected counts of the file's clusters.
func (c *qcow2Checker) compare(rt []uint64, buf []byte) error {
	d := c.d
	bits := d.refBits()
	per := d.refPerBlock()
	zero := make([]byte, len(buf))
	for idx := int64(0); idx*per < c.n; idx++ {
		blk := zero
		if idx < int64(len(rt)) && rt[idx] != 0 {
			if err := readFullAt(d.f, buf, int64(rt[idx]), "qcow2", d.path); err != nil {
				return err
			}
			blk = buf
		}
		end := min(c.n, (idx+1)*per)
		for cl := idx * per; cl < end; cl++ {
			want := c.expected(cl)
			got := qcow2RefAt(blk, bits, cl-idx*per)
			if got == want {
				continue
			}
			c.refDiffs++
			at := cl << d.cb
			switch {
			case want == 0:
				c.addf("cluster at %#x is unused but has refcount %d (leaked)", at, got)
			case got == 0:
				c.addf("cluster at %#x (%s) is in use but its refcount is 0", at, qcow2UseNames[c.use[cl]])
			default:
				c.addf("cluster at %#x (%s) has refcount %d but %d reference(s)", at, qcow2UseNames[c.use[cl]], got, want)
			}
		}
	}
	return nil
}

// qcow2RefAt decodes refcount i of a refcount block (see qcow2RefAdjust).
func qcow2RefAt(blk []byte, bits, i int64) uint64 {
	if bits >= 8 {
		var v uint64
		for _, b := range blk[i*bits/8 : (i+1)*bits/8] {
			v = v<<8 | uint64(b)
		}
		return v
	}
	return uint64(blk[i*bits/8]>>uint(i*bits%8)) & (1<<bits - 1)
}
