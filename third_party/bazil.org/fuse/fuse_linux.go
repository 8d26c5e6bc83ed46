package fuse

import (
	"os"
	"strconv"
	"strings"
)

// Maximum file write size we are prepared to receive from the kernel.
//
// Linux 4.2.0 has been observed to cap this value at 128kB
// (FUSE_MAX_PAGES_PER_REQ=32, 4kB pages).
const maxWrite = 128 * 1024

// kernelMaxPages is the most pages the kernel allows in one request
// when FUSE_MAX_PAGES is negotiated: the max_pages_limit sysctl where
// the kernel has it (Linux 6.13), else FUSE_MAX_MAX_PAGES, 256.
func kernelMaxPages() uint32 {
	b, err := os.ReadFile("/proc/sys/fs/fuse/max_pages_limit")
	if err != nil {
		return 256
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == 0 {
		return 256
	}
	return uint32(n)
}
