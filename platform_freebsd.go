package main

import (
	"fmt"
	"os"
	"syscall"
)

// errnoUnknownFormat is what attaching a file of no known format fails with.
const errnoUnknownFormat = syscall.EFTYPE

// callerCwd is the working directory of the process that made a request.
// FreeBSD exposes it through procfs when mounted; otherwise relative
// targets cannot be resolved and the user must give an absolute path.
func callerCwd(pid uint32) (string, error) {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return "", fmt.Errorf("relative symlink targets need procfs on FreeBSD; use an absolute path: %w", syscall.EINVAL)
	}
	return cwd, nil
}

// callerGroups is unknown without procfs; only the primary group counts.
func callerGroups(pid uint32) []uint32 { return nil }

// diskUsage is the space a file occupies on disk.
func diskUsage(st os.FileInfo) int64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return st.Size()
}
