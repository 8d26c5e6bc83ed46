package formats

// AFF4 Maps: ranges of the image mapped onto image streams or symbolic
// streams (Standard section 4).

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

type aff4MapEntry struct {
	off, length, toff int64
	target            int32
}

// aff4Target is what a map entry reads from: an image stream, or a
// symbolic stream (one repeated byte, or a string repeated within every
// MiB).
type aff4Target struct {
	iri        string
	stream     *aff4Stream
	fill       byte
	pattern    string // repeated-string streams (UnknownData, UnreadableData)
	unreadable bool
}

func (t *aff4Target) zero() bool { return t.stream == nil && t.pattern == "" && t.fill == 0 }

// aff4Symbolic returns the symbolic stream named iri (ok false when iri
// is not one).
func aff4Symbolic(iri string) aff4Target {
	t, _ := aff4SymbolicOK(iri)
	return t
}

func aff4SymbolicOK(iri string) (aff4Target, bool) {
	local, ok := strings.CutPrefix(iri, aff4NS)
	if !ok {
		return aff4Target{}, false
	}
	switch local {
	case "Zero":
		return aff4Target{iri: iri}, true
	case "UnknownData":
		return aff4Target{iri: iri, pattern: "UNKNOWN"}, true
	case "UnreadableData":
		return aff4Target{iri: iri, pattern: "UNREADABLEDATA", unreadable: true}, true
	case "FFDevice": // c-aff4's older name for SymbolicStreamFF
		return aff4Target{iri: iri, fill: 0xff}, true
	}
	if hx, ok := strings.CutPrefix(local, "SymbolicStream"); ok && len(hx) == 2 {
		if b, err := strconv.ParseUint(hx, 16, 8); err == nil {
			return aff4Target{iri: iri, fill: byte(b)}, true
		}
	}
	return aff4Target{}, false
}

// readSymbolic fills p with the symbolic stream's bytes at off: one
// period written, then copied over itself in doubling steps.
func (t *aff4Target) readSymbolic(p []byte, off int64) {
	if t.pattern == "" {
		if t.fill == 0 {
			clear(p)
			return
		}
		if len(p) > 0 {
			p[0] = t.fill
		}
		for n := 1; n < len(p); n *= 2 {
			copy(p[n:], p[:n])
		}
		return
	}
	for len(p) > 0 {
		in := off % aff4RepeatBlock
		q := p[:min(int64(len(p)), aff4RepeatBlock-in)]
		start := int(in % int64(len(t.pattern)))
		n := copy(q, t.pattern[start:])
		n += copy(q[n:], t.pattern[:start])
		for ; n < len(q); n *= 2 {
			copy(q[n:], q[:n])
		}
		p, off = p[len(q):], off+int64(len(q))
	}
}

type aff4Map struct {
	iri     string
	vol     *aff4Volume
	size    int64
	entries []aff4MapEntry // sorted, not overlapping
	targets []aff4Target
	gap     aff4Target // what unmapped ranges read
}

// loadMap reads the map named iri from volume v, opening the image
// streams it depends on.
func (d *aff4Image) loadMap(v *aff4Volume, iri string, opt Options) (*aff4Map, error) {
	g := v.graph
	m := &aff4Map{iri: iri, vol: v, gap: aff4Symbolic(aff4NS + "Zero")}
	n, ok, err := g.int(iri, aff4NS+"size")
	if err != nil || !ok {
		return nil, corruptf("aff4", v.path, -1, "map %s: no valid aff4:size", iri)
	}
	m.size = n
	if gi := g.iri(iri, aff4NS+"mapGapDefaultStream"); gi != "" {
		t, ok := aff4SymbolicOK(gi)
		if !ok {
			return nil, unsupportedf("aff4", v.path, "map %s: gap stream %s", iri, gi)
		}
		m.gap = t
	}
	base := v.segmentName(iri)
	idx, err := v.segment(base+"/idx", aff4MaxIdxBytes)
	if err != nil {
		return nil, err
	}
	raw, err := v.segment(base+"/map", aff4MaxMapEntries*aff4MapEntrySize)
	if err != nil {
		return nil, err
	}
	if err := m.parse(idx, raw); err != nil {
		return nil, corruptf("aff4", v.path, -1, "map %s: %v", iri, err)
	}
	used := make([]bool, len(m.targets))
	for _, e := range m.entries {
		used[e.target] = true
	}
	for i := range m.targets {
		t := &m.targets[i]
		if sym, ok := aff4SymbolicOK(t.iri); ok {
			*t = sym
			continue
		}
		if !used[i] {
			continue
		}
		if t.stream, err = d.stream(t.iri, opt); err != nil {
			return nil, err
		}
	}
	for _, e := range m.entries {
		if s := m.targets[e.target].stream; s != nil && e.toff > s.size-e.length {
			return nil, corruptf("aff4", v.path, -1, "map %s: %d bytes at %d of image stream %s, which holds %d", iri, e.length, e.toff, s.iri, s.size)
		}
	}
	return m, nil
}

// parse decodes the idx and map segments: the target IRIs, then the
// entries, which must lie inside the image and not overlap.
func (m *aff4Map) parse(idx, raw []byte) error {
	for _, line := range strings.Split(strings.TrimRight(string(idx), "\n"), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || strings.ContainsAny(line, " <>\"\x00") {
			return fmt.Errorf("bad target %q in idx", line)
		}
		m.targets = append(m.targets, aff4Target{iri: line})
	}
	if len(raw)%aff4MapEntrySize != 0 {
		return fmt.Errorf("map segment of %d bytes is not a whole number of entries", len(raw))
	}
	m.entries = make([]aff4MapEntry, 0, len(raw)/aff4MapEntrySize)
	for b := raw; len(b) > 0; b = b[aff4MapEntrySize:] {
		off, l, toff := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
		t := binary.LittleEndian.Uint32(b[24:])
		if l == 0 {
			continue
		}
		if off > math.MaxInt64 || l > math.MaxInt64-off || toff > math.MaxInt64-l || int(t) >= len(m.targets) {
			return fmt.Errorf("entry %d: %d bytes at %d -> %d of target %d out of range", len(m.entries), l, off, toff, t)
		}
		if int64(off+l) > m.size {
			return fmt.Errorf("entry %d: %d bytes at %d run past the image size %d", len(m.entries), l, off, m.size)
		}
		m.entries = append(m.entries, aff4MapEntry{int64(off), int64(l), int64(toff), int32(t)})
	}
	sort.SliceStable(m.entries, func(i, j int) bool { return m.entries[i].off < m.entries[j].off })
	for i := 1; i < len(m.entries); i++ {
		if p := m.entries[i-1]; p.off+p.length > m.entries[i].off {
			return fmt.Errorf("entries at %d and %d overlap", p.off, m.entries[i].off)
		}
	}
	return nil
}

// at returns what the image reads at off and for how many bytes (at most
// limit) it stays so.
func (m *aff4Map) at(off, limit int64) (*aff4Target, int64) {
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].off+m.entries[i].length > off })
	if i < len(m.entries) && m.entries[i].off <= off {
		e := &m.entries[i]
		return &m.targets[e.target], min(limit, e.off+e.length-off)
	}
	end := m.size
	if i < len(m.entries) {
		end = m.entries[i].off
	}
	return &m.gap, min(limit, end-off)
}

// readAt fills p (inside the image) from the map's targets.
func (m *aff4Map) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].off+m.entries[i].length > off })
		var t *aff4Target
		var n, toff int64
		if i < len(m.entries) && m.entries[i].off <= off {
			e := &m.entries[i]
			t, n, toff = &m.targets[e.target], e.off+e.length-off, e.toff+off-e.off
		} else {
			end := m.size
			if i < len(m.entries) {
				end = m.entries[i].off
			}
			t, n, toff = &m.gap, end-off, off
		}
		n = min(n, int64(len(p)))
		if t.stream != nil {
			if err := t.stream.readAt(p[:n], toff); err != nil {
				return err
			}
		} else {
			t.readSymbolic(p[:n], toff)
		}
		p, off = p[n:], off+n
	}
	return nil
}

// storedBytes counts the image bytes stored in image streams.
func (m *aff4Map) storedBytes() int64 {
	var n int64
	for _, e := range m.entries {
		if m.targets[e.target].stream != nil {
			n += e.length
		}
	}
	return n
}

// unreadable lists the ranges that read as aff4:UnreadableData, at most
// limit of them, and their total count.
func (m *aff4Map) unreadable(limit int) (ranges [][2]int64, count int) {
	add := func(off, n int64) {
		if k := len(ranges); k > 0 && ranges[k-1][0]+ranges[k-1][1] == off {
			ranges[k-1][1] += n
			return
		}
		count++
		if len(ranges) < limit {
			ranges = append(ranges, [2]int64{off, n})
		}
	}
	pos := int64(0)
	for _, e := range m.entries {
		if e.off > pos && m.gap.unreadable {
			add(pos, e.off-pos)
		}
		if m.targets[e.target].unreadable {
			add(e.off, e.length)
		}
		pos = e.off + e.length
	}
	if pos < m.size && m.gap.unreadable {
		add(pos, m.size-pos)
	}
	return ranges, count
}

func (m *aff4Map) unreadableBytes() int64 {
	var n int64
	rs, _ := m.unreadable(math.MaxInt)
	for _, r := range rs {
		n += r[1]
	}
	return n
}
