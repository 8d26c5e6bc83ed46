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
	"sort"
)

var _ Checker = (*vhdDisk)(nil)

const (
	vhdCheckMaxFindings = 100
	vhdCheckMaxSpans    = 16 << 20 // 384 MiB of spans: a 32 TiB image of 2 MiB blocks
)

// vhdSpan is one structure of the file, [start, end): block table
// entry id when id >= 0, else the metadata structure vhdSpanNames[-id-1].
// No string per block: a large image has millions of them.
type vhdSpan struct {
	start, end, id int64
}

// vhdSpanName names a span for a finding.
func vhdSpanName(s vhdSpan, names []string) string {
	if s.id >= 0 {
		return fmt.Sprintf("block table entry %d (block at %#x)", s.id, s.start)
	}
	return names[-s.id-1]
}

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

func (d *vhdDisk) check() ([]string, error) {
	var findings []string
	dropped := 0
	add := func(format string, a ...any) {
		if len(findings) < vhdCheckMaxFindings {
			findings = append(findings, fmt.Sprintf(format, a...))
		} else {
			dropped++
		}
	}
	fsize, err := fileSize(d.f)
	if err != nil {
		return nil, fmt.Errorf("vhd: %s: %w", d.path, err)
	}
	if fsize < vhdFooterSize {
		return []string{fmt.Sprintf("file of %d bytes is too small for a footer", fsize)}, nil
	}
	tail := make([]byte, vhdFooterSize)
	if err := readFullAt(d.f, tail, fsize-vhdFooterSize, "vhd", d.path); err != nil {
		return nil, err
	}
	tailLen := int64(vhdTailFooterLen(tail))
	footerOff := fsize - tailLen
	var ft *vhdFooter
	if tailLen == 0 {
		add("no footer at the end of the file (%#x)", fsize)
	} else {
		ft = vhdParseFooter(tail[vhdFooterSize-tailLen:])
		if sum := vhdChecksum(ft.raw[:], 64); sum != ft.checksum {
			add("footer at %#x: checksum %#08x, computed %#08x", footerOff, ft.checksum, sum)
		}
		if ft.diskType != d.diskType {
			add("footer at %#x: disk type %d, the image was opened as type %d", footerOff, ft.diskType, d.diskType)
		}
	}
	if d.diskType == vhdTypeFixed {
		if tailLen != 0 && footerOff < d.size {
			add("footer at %#x: the file holds %d bytes of data, the virtual size is %d", footerOff, footerOff, d.size)
		}
		return vhdCheckDone(findings, dropped), nil
	}

	// Dynamic and differencing images: the copy at offset 0.
	head := make([]byte, vhdFooterSize)
	if err := readFullAt(d.f, head, 0, "vhd", d.path); err != nil {
		return nil, err
	}
	switch {
	case !bytes.HasPrefix(head, vhdCookie):
		add("footer copy at offset 0 is missing")
	case vhdChecksum(head, 64) != binary.BigEndian.Uint32(head[64:]):
		add("footer copy at offset 0: checksum %#08x, computed %#08x", binary.BigEndian.Uint32(head[64:]), vhdChecksum(head, 64))
	}
	if ft != nil && bytes.HasPrefix(head, vhdCookie) && !bytes.Equal(head[:tailLen], ft.raw[:tailLen]) {
		add("footer copy at offset 0 differs from the footer at %#x", footerOff)
	}
	if ft == nil {
		// Go on with the copy the image was opened with.
		ft = d.footer
		footerOff = fsize
	}

	// The dynamic header the footer names.
	hoff := int64(ft.dataOffset)
	if ft.dataOffset > uint64(fsize) || hoff+vhdDynHeaderSize > fsize || hoff < vhdFooterSize {
		add("footer at %#x: dynamic header offset %#x is outside the file", footerOff, ft.dataOffset)
		return vhdCheckDone(findings, dropped), nil
	}
	h := make([]byte, vhdDynHeaderSize)
	if err := readFullAt(d.f, h, hoff, "vhd", d.path); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(h, vhdDynCookie) {
		add("dynamic header at %#x has no \"cxsparse\" cookie", hoff)
		return vhdCheckDone(findings, dropped), nil
	}
	be := binary.BigEndian
	if stored, sum := be.Uint32(h[36:]), vhdChecksum(h, 36); stored != sum {
		add("dynamic header at %#x: checksum %#08x, computed %#08x", hoff, stored, sum)
	}
	tableOff, maxEntries := int64(be.Uint64(h[16:])), int64(be.Uint32(h[28:]))
	bs := int64(be.Uint32(h[32:]))
	if bs != d.blockSize || tableOff != d.tableOff || maxEntries != int64(d.maxEntries) {
		add("dynamic header at %#x changed since the image was opened", hoff)
		return vhdCheckDone(findings, dropped), nil
	}

	names := []string{"the footer copy", "the dynamic header", "the block table", "the footer"}
	spans := []vhdSpan{
		{0, vhdFooterSize, -1},
		{hoff, hoff + vhdDynHeaderSize, -2},
		{tableOff, tableOff + maxEntries*4, -3},
		{footerOff, fsize, -4},
	}
	if d.diskType == vhdTypeDiff {
		for i := 0; i < 8; i++ {
			e := h[576+24*i : 600+24*i]
			n, loff := int64(be.Uint32(e[8:])), be.Uint64(e[16:])
			if be.Uint32(e[0:]) == 0 || n == 0 {
				continue
			}
			if loff > uint64(fsize) || int64(loff)+n > fsize {
				add("parent locator %d: %d bytes at %#x lie outside the file", i, n, loff)
				continue
			}
			names = append(names, fmt.Sprintf("parent locator %d", i))
			spans = append(spans, vhdSpan{int64(loff), int64(loff) + n, -int64(len(names))})
		}
	}

	// Blocks: every entry of the table, read in pieces.
	blockLen := d.bitmapSize + bs
	buf := make([]byte, 64<<10)
	for first := int64(0); first < maxEntries; first += int64(len(buf)) / 4 {
		n := min(int64(len(buf))/4, maxEntries-first)
		if err := readFullAt(d.f, buf[:n*4], tableOff+first*4, "vhd", d.path); err != nil {
			return nil, err
		}
		for i := int64(0); i < n; i++ {
			e := be.Uint32(buf[4*i:])
			if e == vhdUnallocated {
				continue
			}
			b := first + i
			start := int64(e) * SectorSize
			if b >= d.entries {
				add("block table at %#x entry %d is beyond the virtual size but allocated (block at %#x)", tableOff, b, start)
			}
			if start+blockLen > fsize {
				add("block table at %#x entry %d: block at %#x (%d bytes) runs past the end of the file (%d bytes)", tableOff, b, start, blockLen, fsize)
				continue
			}
			if len(spans) >= vhdCheckMaxSpans {
				return nil, unsupportedf("vhd", d.path, "more than %d allocated blocks to check", vhdCheckMaxSpans)
			}
			spans = append(spans, vhdSpan{start, start + blockLen, b})
		}
	}
	vhdOverlaps(spans, func(a, b vhdSpan) {
		add("%s overlaps %s", vhdSpanName(b, names), vhdSpanName(a, names))
	})
	return vhdCheckDone(findings, dropped), nil
}

// vhdOverlaps calls found(a, b) for every structure b that overlaps an
// earlier one a in file order (a: the one reaching farthest).
func vhdOverlaps(spans []vhdSpan, found func(a, b vhdSpan)) {
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	reach := -1 // the span reaching farthest so far
	for i, s := range spans {
		if s.end <= s.start {
			continue
		}
		if reach >= 0 && s.start < spans[reach].end {
			found(spans[reach], s)
		}
		if reach < 0 || s.end > spans[reach].end {
			reach = i
		}
	}
}

func vhdCheckDone(findings []string, dropped int) []string {
	if dropped > 0 {
		findings = append(findings, fmt.Sprintf("%d more findings not listed", dropped))
	}
	return findings
}
