package main

import (
	"fmt"
	"log"

	"vdflat/formats"
)

// A data write that would have overwritten the image's own metadata
// (formats.OverlapError) means the image's tables are damaged: writing
// on could destroy it. The image stays attached, read-only until it is
// attached again, and says why in the log and the status file.

// refuseWrites marks the image read-only for the rest of this attach.
func (im *image) refuseWrites(err error) {
	if im.refused.CompareAndSwap(nil, &err) {
		log.Printf("%s: %v; the image is read-only until it is attached again (run `vdflat verify` on it)", im.path, err)
	}
}

// refusal is the error every write returns once writes were refused.
func (im *image) refusal() error {
	if p := im.refused.Load(); p != nil {
		return fmt.Errorf("read-only since an earlier write was refused (%v): %w", *p, formats.ErrReadOnly)
	}
	return nil
}

// isWritable reports whether a write-open may succeed now.
func (im *image) isWritable() bool { return im.writable && im.refused.Load() == nil }

// liveWarnings are the attach warnings plus a refusal of writes.
func (im *image) liveWarnings() []string {
	w := im.warnings
	if p := im.refused.Load(); p != nil {
		w = append(w[:len(w):len(w)], fmt.Sprintf("writes refused, read-only until attached again: %v", *p))
	}
	return w
}

// trustFindings lists, for verify, the data ranges of d stored on d's
// own metadata and the partition entries that run past its end.
func trustFindings(d formats.Disk) []finding {
	found, err := formats.CheckOverlaps(d)
	if parts, _ := formats.Partitions(d); parts != nil {
		found = append(found, formats.PartitionWarnings(parts, d.Size())...)
	}
	var out []finding
	for _, f := range found {
		out = append(out, finding{-1, f})
	}
	if err != nil {
		out = append(out, finding{-1, "metadata overlap check: " + err.Error()})
	}
	return out
}
