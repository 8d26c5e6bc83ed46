package formats

import (
	"bytes"
	"fmt"
	"testing"
)

// TestEWFOddMediaSize: ewfacquire of a source whose size is not a
// multiple of 512 counts only whole sectors but stores the last chunk
// whole, its checksum (or zlib stream) covering the odd size. vdflat
// reads such images exactly as ewfexport does (the counted sectors), for
// several chunk sizes, compressed and not, a single chunk or many.
func TestEWFOddMediaSize(t *testing.T) {
	for _, size := range []int{1000, 100001, 3<<20 + 7*512 + 333} {
		for _, spc := range []string{"16", "64", "256"} {
			for _, comp := range []string{"none", "deflate:fast"} {
				t.Run(fmt.Sprintf("%d-%s-%s", size, spc, comp), func(t *testing.T) {
					data := patternDisk(int64(size+511)/512*512, int64(size))[:size]
					first := ewfAcquire(t, t.TempDir(), "odd", data, "-b", spc, "-c", comp)
					want := ewfExport(t, first)
					if len(want) != size/512*512 || !bytes.Equal(want, data[:len(want)]) {
						t.Fatalf("ewfexport wrote %d bytes, want the first %d of the source", len(want), size/512*512)
					}
					d := mustOpen(t, first, Options{ReadOnly: true})
					if d.Size() != int64(len(want)) {
						t.Fatalf("size %d, want %d", d.Size(), len(want))
					}
					checkDisk(t, d, want)
				})
			}
		}
	}
}
