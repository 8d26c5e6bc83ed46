package main

import (
	"fmt"
	"os"
	"syscall"

	"vdflat/formats"
)

// atimeWarnings lists the files of info's chain whose access time
// reading may change: where uid may not open them with O_NOATIME.
func atimeWarnings(info *formats.Info, uid uint32) []string {
	var out []string
	for level := info; level != nil; level = level.Parent {
		for _, p := range level.Files {
			st, err := os.Stat(p)
			if err != nil {
				continue
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && !noatimeAllowed(sys.Uid, uid) {
				out = append(out, fmt.Sprintf("%s: reading may change its access time (%s)", p, noatimeRule))
			}
		}
	}
	return out
}
