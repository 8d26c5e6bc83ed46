package formats

import (
	"errors"
	"os"
	"syscall"
)

// OpenImageFile opens a file of an image, read-only unless write, with
// O_NOATIME where the kernel allows it (the file's owner, or
// CAP_FOWNER), so that reading evidence leaves its access time alone.
// Elsewhere the kernel refuses the flag with EPERM and the file is
// opened without it.
func OpenImageFile(path string, write bool) (*os.File, error) {
	if err := guardPath(path); err != nil {
		return nil, err
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	if noatime != 0 {
		f, err := os.OpenFile(path, flag|noatime, 0)
		if !errors.Is(err, syscall.EPERM) {
			return f, err
		}
	}
	return os.OpenFile(path, flag, 0)
}
