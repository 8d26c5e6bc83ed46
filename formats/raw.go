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
	return readRegion(d.f, p, off, d.size, "raw", d.path)
}

func (d *rawDisk) WriteAt(p []byte, off int64) (int, error) {
	return writeRegion(d.f, p, off, d.size, d.readOnly, "raw", d.path)
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

// readRegion serves a ReadAt from a region of f that holds size bytes of
// disk data starting at file offset 0; bytes past size read as zeros.
func readRegion(f *os.File, p []byte, off, size int64, format, path string) (int, error) {
	return readUnits(p, off, size, 0, func(q []byte, off int64) error {
		return readFullAt(f, q, off, format, path)
	})
}

// writeRegion is the write side of readRegion: bytes past size are dropped.
func writeRegion(f *os.File, p []byte, off, size int64, readOnly bool, format, path string) (int, error) {
	return writeUnits(p, off, size, readOnly, 0, nil, func(q []byte, off int64) error {
		return writeFullAt(f, q, off, format, path)
	})
}

// CanWrite: a raw image is always writable in place.
func (d *rawDisk) CanWrite() bool { return true }
