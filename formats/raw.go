package formats

import (
	"fmt"
	"os"
)

func init() {
	register(format{name: "raw", order: orderRaw, probe: probeRaw, open: openRawImage})
}

// Raw claims every regular file and block device that no other format
// claims: a plain disk image, an ISO image, a partition dump. An empty
// file, a directory, or a character device or pipe is no disk.
func probeRaw(pd *ProbeData) bool {
	return pd.Size > 0 && (pd.Mode.IsRegular() || pd.Mode&os.ModeDevice != 0 && pd.Mode&os.ModeCharDevice == 0)
}

// rawDisk is a plain file or block device read and written in place.
type rawDisk struct {
	f        *os.File
	path     string
	size     int64
	readOnly bool
	warnings []string
}

func openRaw(path string, opt Options) (Disk, error) {
	f, err := openFile(path, opt.ReadOnly)
	if err != nil {
		return nil, err
	}
	size, err := fileSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw: %s: %w", path, err)
	}
	return &rawDisk{f: f, path: path, size: size, readOnly: opt.ReadOnly}, nil
}

func (d *rawDisk) Size() int64 { return d.size }

func (d *rawDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	return readRegion(d.f, p, off, d.size, "raw", d.path)
}

func (d *rawDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off); err != nil {
		return 0, err
	}
	if d.readOnly {
		return 0, ErrReadOnly
	}
	return writeRegion(d.f, p, off, d.size, "raw", d.path)
}

func (d *rawDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	return d.f.Sync()
}

func (d *rawDisk) Close() error {
	err := d.Flush()
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (d *rawDisk) Info() Info {
	info := Info{Format: "raw", Path: d.path, Files: []string{d.path}, Size: d.size, Allocated: -1, ReadOnly: d.readOnly, Warnings: d.warnings}
	if d.readOnly {
		info.ReadOnlyReason = "opened read-only"
	}
	return info
}

// readRegion reads p at off from a region of f that holds size bytes of
// disk data starting at file offset 0; bytes past size read as zeros.
func readRegion(f *os.File, p []byte, off, size int64, format, path string) (int, error) {
	n := len(p)
	if off >= size {
		clear(p)
		return n, nil
	}
	if rem := size - off; int64(len(p)) > rem {
		clear(p[rem:])
		p = p[:rem]
	}
	if err := readFullAt(f, p, off, format, path); err != nil {
		return 0, err
	}
	return n, nil
}

// writeRegion is the write side of readRegion: bytes past size are dropped.
func writeRegion(f *os.File, p []byte, off, size int64, format, path string) (int, error) {
	n := len(p)
	if off >= size {
		return n, nil
	}
	if rem := size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	if _, err := f.WriteAt(p, off); err != nil {
		return 0, fmt.Errorf("%s: %s: write at %#x: %w", format, path, off, err)
	}
	return n, nil
}

// CanWrite: a raw image is always writable in place.
func (d *rawDisk) CanWrite() bool { return true }
