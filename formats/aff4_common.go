package formats

// Helpers every read-only, multi-file format needs (AFF, EWF and AFF4
// each spell them out); candidates for common.go.

import "os"

// readOnlyDisk supplies WriteAt and Flush to a read-only format's disk.
type readOnlyDisk struct{}

func (readOnlyDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	return 0, ErrReadOnly
}

func (readOnlyDisk) Flush() error { return nil }

// closeFiles closes every file and returns the first error.
func closeFiles(files []*os.File) error {
	var err error
	for _, f := range files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
