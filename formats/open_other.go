//go:build !linux

package formats

// noatime is 0 where there is no O_NOATIME (FreeBSD).
const noatime = 0
