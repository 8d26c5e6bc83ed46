package main

import (
	"log"

	"bazil.org/fuse"
)

// Request sizes: with 1 MiB READ requests (FUSE_MAX_PAGES, granted by
// Linux 4.20 and later) a sequential reader costs an eighth of the
// round trips of bazil's 128 KiB. The kernel's readahead is raised to
// match, so buffered readers get requests that large too.
const (
	maxIOSize     = 1 << 20
	readaheadSize = 1 << 20
)

// serveReaders goroutines read /dev/fuse at once. Reads are served by
// the goroutine that read them, so this bounds the reads decoded at once
// (compressed formats) or waiting for the disk. Paired runs on 2 CPUs, 8
// against 2: sequential E01 1.26x, qcow2 1.35x, random 4 KiB the same;
// each idle reader costs a thread blocked in read(2) and, once used, a
// 1 MiB request buffer.
const serveReaders = 8

// logNegotiated says, with -d, what the kernel agreed to at INIT and
// what the mount's readahead is now.
func logNegotiated(conn *fuse.Conn, mountpoint string) {
	log.Printf("FUSE protocol %v: requests up to %d KiB, readahead %d KiB at INIT, now %s",
		conn.Protocol(), conn.MaxIOSize()>>10, conn.MaxReadahead()>>10, mountReadahead(mountpoint))
}

// serveInline picks the requests answered on the goroutine that read
// them from /dev/fuse: those whose handlers never wait for another
// request of this mount. Reads, stats, lookups, xattrs and a reader's
// close only touch the tree and the images. Everything else keeps a
// goroutine of its own: an open may wait for a release (releaseWait),
// a symlink attaches and invalidates, readlink waits for that
// invalidation, a writer's release reopens the image, an interrupt
// must not wait behind the request it cancels.
func serveInline(r fuse.Request) bool {
	switch r := r.(type) {
	case *fuse.ReadRequest, *fuse.GetattrRequest, *fuse.LookupRequest, *fuse.FlushRequest,
		*fuse.GetxattrRequest, *fuse.ListxattrRequest, *fuse.StatfsRequest, *fuse.ForgetRequest:
		return true
	case *fuse.ReleaseRequest:
		return r.Flags.IsReadOnly()
	}
	return false
}
