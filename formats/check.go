package formats

// What every format's Check shares: a bounded list of findings, and the
// sweep that finds structures of a file overlapping each other.

import (
	"fmt"
	"sort"
)

const (
	maxFindings   = 100      // findings one Check lists; the rest are counted
	maxCheckSpans = 16 << 20 // 384 MiB of spans: a 32 TiB image of 2 MiB blocks
)

// findingList collects what a Check finds: at most maxFindings sentences,
// then a count of those left out.
type findingList struct {
	list    []string
	dropped int
}

func (f *findingList) addf(format string, a ...any) {
	if len(f.list) < maxFindings {
		f.list = append(f.list, fmt.Sprintf(format, a...))
	} else {
		f.dropped++
	}
}

// done returns the findings, with a last one counting those left out.
func (f *findingList) done() []string {
	if f.dropped > 0 {
		f.list = append(f.list, fmt.Sprintf("%d more findings not listed", f.dropped))
		f.dropped = 0
	}
	return f.list
}

// fileSpan is one structure of a file, [start, end): a block table's
// entry id when id >= 0, else the named structure names[-id-1]. No string
// per block: a large image has millions of them.
type fileSpan struct {
	start, end, id int64
}

// fileSpans lists the structures of a file for the overlap sweep.
type fileSpans struct {
	entry string // how a table entry is named: "block table entry", "BAT entry"
	names []string
	spans []fileSpan
}

// add records a named structure of length bytes at start.
func (s *fileSpans) add(start, length int64, format string, a ...any) {
	s.names = append(s.names, fmt.Sprintf(format, a...))
	s.spans = append(s.spans, fileSpan{start, start + length, -int64(len(s.names))})
}

// addBlock records the block of table entry id; false when maxCheckSpans
// are recorded already.
func (s *fileSpans) addBlock(start, length, id int64) bool {
	if len(s.spans) >= maxCheckSpans {
		return false
	}
	s.spans = append(s.spans, fileSpan{start, start + length, id})
	return true
}

func (s *fileSpans) name(sp fileSpan) string {
	if sp.id >= 0 {
		return fmt.Sprintf("%s %d (block at %#x)", s.entry, sp.id, sp.start)
	}
	return s.names[-sp.id-1]
}

// overlaps adds a finding for every structure that overlaps an earlier
// one in file order (the one reaching farthest).
func (s *fileSpans) overlaps(f *findingList) {
	sort.SliceStable(s.spans, func(i, j int) bool { return s.spans[i].start < s.spans[j].start })
	reach := -1 // the span reaching farthest so far
	for i, sp := range s.spans {
		if sp.end <= sp.start {
			continue
		}
		if reach >= 0 && sp.start < s.spans[reach].end {
			f.addf("%s overlaps %s", s.name(sp), s.name(s.spans[reach]))
		}
		if reach < 0 || sp.end > s.spans[reach].end {
			reach = i
		}
	}
}
