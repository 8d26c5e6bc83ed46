package formats

// VHD metadata check: the footer and its copy at offset 0, the dynamic
// header's checksum, and a sweep over every structure of the file (footer
// copy, dynamic header, block table, parent locator data, blocks) that
// finds blocks outside the file and structures that overlap. The file is
// read afresh, not through what was cached at open.

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Check implements Checker. A differencing image's parent is checked
// too when it can check itself.
func (d *vhdDisk) Check() ([]string, error) {
	// Allocating writers hold allocMu while they move the footer and
	// append blocks.
	d.allocMu.Lock()
	findings, err := d.check()
	d.allocMu.Unlock()
	if err != nil {
		return findings, err
	}
	return checkParent(findings, d.parent, "parent")
}

// vhdChecker is one run of Check over the file as it is now.
type vhdChecker struct {
	findingList
	d     *vhdDisk
	fsize int64
	spans fileSpans
}

func (d *vhdDisk) check() ([]string, error) {
	fsize, err := fileSize(d.f)
	if err != nil {
		return nil, fmt.Errorf("vhd: %s: %w", d.path, err)
	}
	if fsize < vhdFooterSize {
		return []string{fmt.Sprintf("file of %d bytes is too small for a footer", fsize)}, nil
	}
	c := &vhdChecker{d: d, fsize: fsize, spans: fileSpans{entry: "block table entry"}}
	ft, footerOff, err := c.footers()
	if err != nil || ft == nil {
		return c.done(), err
	}
	// The dynamic header the footer names.
	hoff := int64(ft.dataOffset)
	if ft.dataOffset > uint64(fsize) || hoff+vhdDynHeaderSize > fsize || hoff < vhdFooterSize {
		c.addf("footer at %#x: dynamic header offset %#x is outside the file", footerOff, ft.dataOffset)
		return c.done(), nil
	}
	b := make([]byte, vhdDynHeaderSize)
	if err := readFullAt(d.f, b, hoff, "vhd", d.path); err != nil {
		return nil, err
	}
	h := vhdDecodeDynHeader(b)
	if !h.cookieOK {
		c.addf("dynamic header at %#x has no \"cxsparse\" cookie", hoff)
		return c.done(), nil
	}
	if h.checksum != h.computed {
		c.addf("dynamic header at %#x: checksum %#08x, computed %#08x", hoff, h.checksum, h.computed)
	}
	if h.blockSize != d.blockSize || int64(h.tableOff) != d.tableOff || h.maxEntries != d.maxEntries {
		c.addf("dynamic header at %#x changed since the image was opened", hoff)
		return c.done(), nil
	}
	c.spans.add(0, vhdFooterSize, "the footer copy")
	c.spans.add(hoff, vhdDynHeaderSize, "the dynamic header")
	c.spans.add(d.tableOff, int64(d.maxEntries)*4, "the block table")
	c.spans.add(footerOff, fsize-footerOff, "the footer")
	if d.diskType == vhdTypeDiff {
		c.locators(h)
	}
	if err := c.blocks(); err != nil {
		return nil, err
	}
	c.spans.overlaps(&c.findingList)
	return c.done(), nil
}

// footers checks the footer at the end and, for dynamic images, its copy
// at offset 0. It returns the footer to go on with (nil when the image is
// fixed: nothing more to check) and where it lies.
func (c *vhdChecker) footers() (ft *vhdFooter, footerOff int64, err error) {
	d, fsize := c.d, c.fsize
	tail := make([]byte, vhdFooterSize)
	if err := readFullAt(d.f, tail, fsize-vhdFooterSize, "vhd", d.path); err != nil {
		return nil, 0, err
	}
	tailLen := int64(vhdTailFooterLen(tail))
	footerOff = fsize - tailLen
	if tailLen == 0 {
		c.addf("no footer at the end of the file (%#x)", fsize)
	} else {
		ft = vhdParseFooter(tail[vhdFooterSize-tailLen:])
		if sum := vhdChecksum(ft.raw[:], 64); sum != ft.checksum {
			c.addf("footer at %#x: checksum %#08x, computed %#08x", footerOff, ft.checksum, sum)
		}
		if ft.diskType != d.diskType {
			c.addf("footer at %#x: disk type %d, the image was opened as type %d", footerOff, ft.diskType, d.diskType)
		}
	}
	if d.diskType == vhdTypeFixed {
		if tailLen != 0 && footerOff < d.size {
			c.addf("footer at %#x: the file holds %d bytes of data, the virtual size is %d", footerOff, footerOff, d.size)
		}
		return nil, 0, nil
	}

	// Dynamic and differencing images: the copy at offset 0.
	head := make([]byte, vhdFooterSize)
	if err := readFullAt(d.f, head, 0, "vhd", d.path); err != nil {
		return nil, 0, err
	}
	switch {
	case !bytes.HasPrefix(head, vhdCookie):
		c.addf("footer copy at offset 0 is missing")
	case vhdChecksum(head, 64) != binary.BigEndian.Uint32(head[64:]):
		c.addf("footer copy at offset 0: checksum %#08x, computed %#08x", binary.BigEndian.Uint32(head[64:]), vhdChecksum(head, 64))
	}
	if ft != nil && bytes.HasPrefix(head, vhdCookie) && !bytes.Equal(head[:tailLen], ft.raw[:tailLen]) {
		c.addf("footer copy at offset 0 differs from the footer at %#x", footerOff)
	}
	if ft == nil {
		// Go on with the copy the image was opened with.
		return d.footer, fsize, nil
	}
	return ft, footerOff, nil
}

// locators records the parent locators' data, which must lie in the file.
func (c *vhdChecker) locators(h *vhdDynHeader) {
	for i, e := range h.locators {
		if !e.used || e.n == 0 {
			continue
		}
		if e.off > uint64(c.fsize) || int64(e.off)+e.n > c.fsize {
			c.addf("parent locator %d: %d bytes at %#x lie outside the file", i, e.n, e.off)
			continue
		}
		c.spans.add(int64(e.off), e.n, "parent locator %d", i)
	}
}

// blocks reads every entry of the block table, in pieces, and records
// each allocated block, which must lie in the file.
func (c *vhdChecker) blocks() error {
	d, fsize := c.d, c.fsize
	tableOff, maxEntries := d.tableOff, int64(d.maxEntries)
	blockLen := d.bitmapSize + d.blockSize
	buf := make([]byte, 64<<10)
	for first := int64(0); first < maxEntries; first += int64(len(buf)) / 4 {
		n := min(int64(len(buf))/4, maxEntries-first)
		if err := readFullAt(d.f, buf[:n*4], tableOff+first*4, "vhd", d.path); err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			e := binary.BigEndian.Uint32(buf[4*i:])
			if e == vhdUnallocated {
				continue
			}
			b := first + i
			start := int64(e) * SectorSize
			if b >= d.entries {
				c.addf("block table at %#x entry %d is beyond the virtual size but allocated (block at %#x)", tableOff, b, start)
			}
			if start+blockLen > fsize {
				c.addf("block table at %#x entry %d: block at %#x (%d bytes) runs past the end of the file (%d bytes)", tableOff, b, start, blockLen, fsize)
				continue
			}
			if !c.spans.addBlock(start, blockLen, b) {
				return unsupportedf("vhd", d.path, "more than %d allocated blocks to check", maxCheckSpans)
			}
		}
	}
	return nil
}
