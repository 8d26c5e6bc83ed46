package formats

import "sort"

// forPieces runs op on each piece of the request [off, off+len(p)) below
// size, for a disk made of consecutive pieces (split raw parts, Parallels
// storages); span gives a piece's first byte on the disk and its length,
// op gets the offset inside the piece.
func forPieces[P any](pieces []P, span func(*P) (start, n int64), size int64, p []byte, off int64, op func(pc *P, b []byte, in int64) error) error {
	if rem := size - off; int64(len(p)) > rem {
		p = p[:max(rem, 0)]
	}
	i := sort.Search(len(pieces), func(i int) bool { s, n := span(&pieces[i]); return s+n > off })
	for ; len(p) > 0 && i < len(pieces); i++ {
		start, length := span(&pieces[i])
		n := min(int64(len(p)), start+length-off)
		if n > 0 {
			if err := op(&pieces[i], p[:n], off-start); err != nil {
				return err
			}
		}
		p, off = p[n:], off+n
	}
	return nil
}
