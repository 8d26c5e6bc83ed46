package fuse

// Maximum file write size we are prepared to receive from the kernel.
//
// This number is just a guess.
const maxWrite = 128 * 1024

// kernelMaxPages: FreeBSD's fusefs does not offer FUSE_MAX_PAGES.
func kernelMaxPages() uint32 { return 0 }
