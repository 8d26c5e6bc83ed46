package formats

// VHDX metadata check: both header copies and both region table copies
// (signature and CRC-32C; a bad copy is a finding even when the other
// one serves), the metadata table, and every BAT entry (valid state,
// reserved bits clear, blocks inside the file). Then a sweep over all
// structures (header area, log, regions, payload and sector bitmap
// blocks) finds overlaps. Regions, metadata and the BAT are read as they
// are after log replay; a log that still needs replay is the normal
// state of an image that was not closed cleanly, not a finding.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

var vhdxMetaNames = map[vhdxGUID]string{
	vhdxMetaFileParams:    "file parameters",
	vhdxMetaDiskSize:      "virtual disk size",
	vhdxMetaPage83:        "page 83 data",
	vhdxMetaLogicalSector: "logical sector size",
	vhdxMetaPhysSector:    "physical sector size",
	vhdxMetaParentLocator: "parent locator",
}

type vhdxChecker struct {
	findingList
	d     *vhdxDisk
	end   int64 // file size after log replay
	spans fileSpans
}

// Check implements Checker. A differencing disk's parent is checked too.
func (d *vhdxDisk) Check() ([]string, error) {
	findings, err := d.check()
	if err != nil {
		return findings, err
	}
	return checkParent(findings, d.parent, "parent")
}

func (d *vhdxDisk) check() ([]string, error) {
	c := &vhdxChecker{d: d, end: d.r.end(), spans: fileSpans{entry: "BAT entry"}}
	c.spans.add(0, vhdxMiB, "the header area")
	if err := c.headers(); err != nil {
		return c.list, err
	}
	meta, err := c.regions()
	if err != nil {
		return c.list, err
	}
	if meta[1] > 0 {
		if err := c.metadata(meta); err != nil {
			return c.list, err
		}
	}
	if err := c.bat(); err != nil {
		return c.list, err
	}
	c.spans.overlaps(&c.findingList)
	return c.done(), nil
}

// headers checks both header copies as they are in the file (the log
// never writes them) and records the current header's log.
func (c *vhdxChecker) headers() error {
	d := c.d
	var cur vhdxHeader
	found := false
	buf := make([]byte, vhdxHeaderLen)
	for i, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		if err := readFullAt(d.f, buf, off, "vhdx", d.path); err != nil {
			return err
		}
		if string(buf[:4]) != "head" {
			c.addf("header %d at %#x has no \"head\" signature", i+1, off)
			continue
		}
		if stored, sum := binary.LittleEndian.Uint32(buf[4:]), vhdxChecksum(buf, 4); stored != sum {
			c.addf("header %d at %#x: CRC-32C %#08x, computed %#08x", i+1, off, stored, sum)
			continue
		}
		h, _ := vhdxParseHeader(buf)
		if h.version != 1 {
			c.addf("header %d at %#x: version %d (expected 1)", i+1, off, h.version)
		}
		lo, ll := int64(h.logOffset), int64(h.logLength)
		if ll != 0 && (h.logOffset > uint64(c.end) || lo < vhdxMiB || lo%vhdxMiB != 0 || ll%vhdxMiB != 0 || ll > c.end-lo) {
			c.addf("header %d at %#x: log at %#x (%d bytes) is misaligned or outside the file", i+1, off, h.logOffset, ll)
			continue
		}
		if !found || h.seq > cur.seq {
			cur, found = h, true
		}
	}
	if found && cur.logLength != 0 {
		c.spans.add(int64(cur.logOffset), int64(cur.logLength), "the log")
	}
	return nil
}

// regions checks both region table copies and records the regions of
// the first valid one; it returns the metadata region.
func (c *vhdxChecker) regions() ([2]int64, error) {
	d := c.d
	var meta [2]int64
	var tables [2][]byte
	for i, off := range []int64{vhdxRegion1Off, vhdxRegion2Off} {
		buf := make([]byte, vhdxRegionLen)
		if err := d.r.readAt(buf, off); err != nil {
			return meta, err
		}
		if string(buf[:4]) != "regi" {
			c.addf("region table %d at %#x has no \"regi\" signature", i+1, off)
			continue
		}
		if stored, sum := binary.LittleEndian.Uint32(buf[4:]), vhdxChecksum(buf, 4); stored != sum {
			c.addf("region table %d at %#x: CRC-32C %#08x, computed %#08x", i+1, off, stored, sum)
			continue
		}
		tables[i] = buf
	}
	if tables[0] != nil && tables[1] != nil && !bytes.Equal(tables[0], tables[1]) {
		c.addf("region tables at %#x and %#x differ", vhdxRegion1Off, vhdxRegion2Off)
	}
	tbl, tblOff := tables[0], int64(vhdxRegion1Off)
	if tbl == nil {
		tbl, tblOff = tables[1], vhdxRegion2Off
	}
	if tbl == nil {
		return meta, nil
	}
	n := int64(binary.LittleEndian.Uint32(tbl[8:]))
	if n > vhdxMaxEntries {
		c.addf("region table at %#x has %d entries (at most %d)", tblOff, n, vhdxMaxEntries)
		return meta, nil
	}
	seen := map[vhdxGUID]bool{}
	for i := int64(0); i < n; i++ {
		e := tbl[16+32*i:]
		var id vhdxGUID
		copy(id[:], e[:16])
		off, length := int64(binary.LittleEndian.Uint64(e[16:])), int64(binary.LittleEndian.Uint32(e[24:]))
		name := "region " + id.String()
		switch id {
		case vhdxRegionBAT:
			name = "the BAT region"
		case vhdxRegionMetadata:
			name = "the metadata region"
		}
		if seen[id] {
			c.addf("region table at %#x lists %s twice", tblOff, name)
			continue
		}
		seen[id] = true
		if off < vhdxMiB || off%vhdxMiB != 0 || length == 0 || length%vhdxMiB != 0 {
			c.addf("region table at %#x: %s at %#x (%d bytes) is not MiB-aligned", tblOff, name, off, length)
		}
		if off < 0 || off > c.end || length > c.end-off {
			c.addf("region table at %#x: %s at %#x (%d bytes) runs past the end of the file", tblOff, name, off, length)
			continue
		}
		c.spans.add(off, length, "%s", name)
		if id == vhdxRegionMetadata {
			meta = [2]int64{off, length}
		}
	}
	return meta, nil
}

// metadata checks the metadata table: signature, entry count, items
// inside the region, not listed twice, not overlapping.
func (c *vhdxChecker) metadata(region [2]int64) error {
	d := c.d
	if region[1] < vhdxMetaTableLen {
		c.addf("metadata region at %#x is smaller than its table", region[0])
		return nil
	}
	tbl := make([]byte, vhdxMetaTableLen)
	if err := d.r.readAt(tbl, region[0]); err != nil {
		return err
	}
	if string(tbl[:8]) != "metadata" {
		c.addf("metadata table at %#x has no \"metadata\" signature", region[0])
		return nil
	}
	n := int64(binary.LittleEndian.Uint16(tbl[10:]))
	if n > vhdxMaxEntries {
		c.addf("metadata table at %#x has %d entries (at most %d)", region[0], n, vhdxMaxEntries)
		return nil
	}
	type item struct {
		start, end int64
		name       string
	}
	var items []item
	seen := map[vhdxGUID]bool{}
	for i := int64(0); i < n; i++ {
		e := tbl[32+32*i:]
		var id vhdxGUID
		copy(id[:], e[:16])
		off, length := int64(binary.LittleEndian.Uint32(e[16:])), int64(binary.LittleEndian.Uint32(e[20:]))
		name, ok := vhdxMetaNames[id]
		if !ok {
			name = id.String()
		}
		name = "metadata item " + name
		if seen[id] {
			c.addf("metadata table at %#x lists %s twice", region[0], name)
			continue
		}
		seen[id] = true
		if length == 0 {
			continue
		}
		if off < vhdxMetaTableLen || off+length > region[1] {
			c.addf("metadata table at %#x: %s at region offset %#x (%d bytes) lies outside the metadata region", region[0], name, off, length)
			continue
		}
		items = append(items, item{off, off + length, name})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].start < items[j].start })
	for i := 1; i < len(items); i++ {
		if items[i].start < items[i-1].end {
			c.addf("metadata table at %#x: %s overlaps %s", region[0], items[i].name, items[i-1].name)
		}
	}
	return nil
}

// bat checks every BAT entry: payload entries and, every chunk ratio
// entries, the chunk's sector bitmap entry.
func (c *vhdxChecker) bat() error {
	d := c.d
	ratio := d.chunkRatio
	partial := false // the current chunk has partially present blocks
	buf := make([]byte, 64<<10)
	for first := int64(0); first < d.batEntries; first += int64(len(buf)) / 8 {
		n := min(int64(len(buf))/8, d.batEntries-first)
		if err := d.r.readAt(buf[:n*8], d.batOff+first*8); err != nil {
			return err
		}
		for k := int64(0); k < n; k++ {
			i := first + k
			e := binary.LittleEndian.Uint64(buf[8*k:])
			state := e & 7
			off := int64(e >> 20 << 20)
			if e&0xffff8 != 0 {
				c.addf("BAT at %#x entry %d (%#x) has reserved bits set", d.batOff, i, e)
			}
			if i%(ratio+1) == ratio { // sector bitmap entry of chunk i/(ratio+1)
				chunk := i / (ratio + 1)
				switch {
				case state == vhdxFullyPresent && !d.hasParent:
					c.addf("BAT at %#x entry %d: sector bitmap block of chunk %d present in a disk without a parent", d.batOff, i, chunk)
				case state == vhdxNotPresent && partial:
					c.addf("BAT at %#x entry %d: chunk %d has partially present blocks but no sector bitmap block", d.batOff, i, chunk)
				case state != vhdxNotPresent && state != vhdxFullyPresent:
					c.addf("BAT at %#x entry %d: sector bitmap block of chunk %d has invalid state %d", d.batOff, i, chunk, state)
				}
				partial = false
				if state == vhdxFullyPresent {
					c.block(i, off, vhdxMiB, "sector bitmap block")
				}
				continue
			}
			b := i - i/(ratio+1)
			length := d.blockSize
			if b < d.payloadBlocks {
				length = d.blockEnd(b)
			} else if state == vhdxFullyPresent || state == vhdxPartiallyPresent {
				c.addf("BAT at %#x entry %d: payload block %d lies beyond the virtual size but is present", d.batOff, i, b)
			}
			switch state {
			case vhdxNotPresent, vhdxUndefined, vhdxZero, vhdxUnmapped:
			case vhdxPartiallyPresent:
				if !d.hasParent {
					c.addf("BAT at %#x entry %d: payload block %d is partially present in a disk without a parent", d.batOff, i, b)
				}
				partial = true
				c.block(i, off, length, fmt.Sprintf("payload block %d", b))
			case vhdxFullyPresent:
				c.block(i, off, length, fmt.Sprintf("payload block %d", b))
			default:
				c.addf("BAT at %#x entry %d: payload block %d has invalid state %d", d.batOff, i, b, state)
			}
		}
	}
	return nil
}

// block checks that a block lies inside the file and records it.
func (c *vhdxChecker) block(i, off, length int64, what string) {
	if off < vhdxMiB || off > c.end || length > c.end-off {
		c.addf("BAT at %#x entry %d: %s at %#x (%d bytes) lies outside the file (%d bytes)", c.d.batOff, i, what, off, length, c.end)
		return
	}
	c.spans.addBlock(off, length, i) // past maxCheckSpans, blocks go unchecked for overlaps
}
