package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// errnoUnknownFormat is what attaching a file of no known format fails with.
const errnoUnknownFormat = syscall.EMEDIUMTYPE

// callerCwd is the working directory of the process that made a request,
// against which relative symlink targets resolve.
func callerCwd(pid uint32) (string, error) {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return "", fmt.Errorf("finding the caller's working directory for a relative target: %w", err)
	}
	return cwd, nil
}

// callerGroups lists the supplementary groups of a process.
func callerGroups(pid uint32) []uint32 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			var gs []uint32
			for _, g := range strings.Fields(rest) {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					gs = append(gs, uint32(n))
				}
			}
			return gs
		}
	}
	return nil
}

// diskUsage is the space a file occupies on disk.
func diskUsage(st os.FileInfo) int64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return st.Size()
}
