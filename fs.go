package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
	"bazil.org/fuse/fuseutil"

	"vdflat/formats"
)

// filesys serves a tree through bazil.org/fuse. The tree's types stay
// free of FUSE; the wrappers here are created once per tree node and
// reused, because the FUSE server identifies nodes by pointer.
type filesys struct {
	t          *tree
	server     *fusefs.Server
	attachOpts formats.Options
	readOnly   bool   // --read-only: no image is ever opened for writing
	overlayDir string // --overlay: writes go to DIR/NAME.qcow2, never to images
	adminUID   uint32 // besides root, the only user who may change the tree
	guard      mountGuard

	mu    sync.Mutex
	nodes map[node]fusefs.Node
}

// newFilesys serves t; the server is set once the mount exists.
func newFilesys(t *tree, attachOpts formats.Options, readOnly bool, overlayDir string, adminUID uint32) *filesys {
	fsys := &filesys{t: t, attachOpts: attachOpts, readOnly: readOnly, overlayDir: overlayDir, adminUID: adminUID, nodes: map[node]fusefs.Node{}}
	fsys.attachOpts.CheckPath = func(p string) error { return fsys.guard.check(p) }
	return fsys
}

// guardMount tells the file system where it is about to be mounted, so
// that no path inside is ever looked up (see mountGuard). Called before
// mounting: the mount point's own symlinks are resolved while that is
// still safe.
func (fsys *filesys) guardMount(mountpoint string) error {
	dir, err := filepath.EvalSymlinks(mountpoint)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	fsys.guard.dir = dir
	return nil
}

var (
	_ fusefs.FS                 = (*filesys)(nil)
	_ fusefs.NodeStringLookuper = (*fsDir)(nil)
	_ fusefs.HandleReadDirAller = (*fsDir)(nil)
	_ fusefs.NodeSymlinker      = (*fsDir)(nil)
	_ fusefs.NodeMkdirer        = (*fsDir)(nil)
	_ fusefs.NodeRemover        = (*fsDir)(nil)
	_ fusefs.NodeRenamer        = (*fsDir)(nil)
	_ fusefs.NodeOpener         = (*fsFile)(nil)
	_ fusefs.NodeSetattrer      = (*fsFile)(nil)
	_ fusefs.NodeGetxattrer     = (*fsFile)(nil)
	_ fusefs.NodeListxattrer    = (*fsFile)(nil)
	_ fusefs.NodeFsyncer        = (*fsFile)(nil)
	_ fusefs.HandleReader       = (*fileHandle)(nil)
	_ fusefs.HandleWriter       = (*fileHandle)(nil)
	_ fusefs.HandleFlusher      = (*fileHandle)(nil)
	_ fusefs.HandleReleaser     = (*fileHandle)(nil)
	_ fusefs.NodeOpener         = (*fsStatus)(nil)
	_ fusefs.NodeReadlinker     = (*fsAttaching)(nil)
	_ fusefs.HandleReader       = (*statusHandle)(nil)
)

func (fsys *filesys) Root() (fusefs.Node, error) { return fsys.wrap(fsys.t.root), nil }

// wrap returns the one FUSE node of a tree node.
func (fsys *filesys) wrap(n node) fusefs.Node {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if w, ok := fsys.nodes[n]; ok {
		return w
	}
	var w fusefs.Node
	switch n := n.(type) {
	case *dir:
		w = &fsDir{fsys, n}
	case *flatFile:
		w = &fsFile{fsys: fsys, f: n, ino: n.ino, size: n.img.Size()}
	case *partFile:
		w = &fsFile{fsys: fsys, f: n.disk, ino: n.ino, start: n.start, size: n.size}
	case *statusFile:
		w = &fsStatus{fsys, n}
	}
	fsys.nodes[n] = w
	return w
}

// unwrap forgets the FUSE nodes of tree nodes that left the tree. The
// kernel may keep using them; they just cannot be looked up again.
func (fsys *filesys) unwrap(nodes ...node) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	for _, n := range nodes {
		delete(fsys.nodes, n)
	}
}

// showPartitions (re)reads the partition table of an attached disk and
// shows its partitions under /Partitions/NAME.
func (fsys *filesys) showPartitions(f *flatFile, name string) {
	parts, err := f.img.partitions()
	if err != nil {
		log.Printf("%s: reading the partition table: %v", f.img.path, err)
	}
	d, stale, gone := fsys.t.setPartitions(f, name, parts)
	fsys.unwrap(gone...)
	if len(stale) > 0 {
		fsys.invalidate(d, stale...)
	}
}

// invalidate drops the kernel's cached entries for names in directory d,
// in the background: the kernel may be waiting for the reply of the
// request that made them stale.
func (fsys *filesys) invalidate(d node, names ...string) {
	if fsys.server == nil {
		return // not serving yet: nothing is cached
	}
	dn := fsys.wrap(d)
	go func() {
		for _, name := range names {
			if err := fsys.server.InvalidateEntry(dn, name); err != nil && err != fuse.ErrNotCached {
				log.Printf("invalidating %s: %v", name, err)
			}
		}
	}()
}

// toErrno is the one place where Go errors become errno values. (bazil's
// own mapping turns wrapped errors and *os.PathError into EIO.)
func toErrno(err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	switch {
	case errors.As(err, &en):
		return fuse.Errno(en)
	case errors.Is(err, fs.ErrNotExist):
		return fuse.Errno(syscall.ENOENT)
	case errors.Is(err, fs.ErrPermission):
		return fuse.Errno(syscall.EACCES)
	case errors.Is(err, formats.ErrUnknownFormat):
		return fuse.Errno(errnoUnknownFormat)
	case errors.Is(err, formats.ErrUnsupported):
		return fuse.Errno(syscall.ENOTSUP)
	case errors.Is(err, formats.ErrReadOnly):
		return fuse.Errno(syscall.EROFS)
	case errors.Is(err, formats.ErrInvalid):
		return fuse.Errno(syscall.EINVAL)
	}
	return fuse.Errno(syscall.EIO)
}

// mayModify allows changes to the tree only to root, the mounting user
// and the owner given with -o uid=.
func (fsys *filesys) mayModify(h fuse.Header) error {
	if h.Uid == 0 || h.Uid == fsys.adminUID || h.Uid == fsys.t.uid {
		return nil
	}
	return fuse.Errno(syscall.EACCES)
}

// mayInspect allows the status file and the xattrs, which name image
// paths, only to root and the mounting user.
func (fsys *filesys) mayInspect(h fuse.Header) bool {
	return h.Uid == 0 || h.Uid == fsys.adminUID
}

func (fsys *filesys) fillAttr(a *fuse.Attr, ino uint64, mode os.FileMode) {
	a.Inode = ino
	a.Mode = mode
	a.Uid, a.Gid = fsys.t.uid, fsys.t.gid
	a.BlockSize = 4096
}

// ---- directories ----

type fsDir struct {
	fsys *filesys
	d    *dir
}

func (n *fsDir) Attr(ctx context.Context, a *fuse.Attr) error {
	mode := os.FileMode(0o755)
	if n.fsys.t.isReadOnlyDir(n.d) {
		mode = 0o555
	}
	n.fsys.fillAttr(a, n.d.ino, os.ModeDir|mode)
	a.Nlink = 2
	mt := n.fsys.t.dirMtime(n.d)
	a.Mtime, a.Ctime = mt, mt
	return nil
}

func (n *fsDir) Lookup(ctx context.Context, name string) (fusefs.Node, error) {
	c, ok := n.fsys.t.lookup(n.d, name)
	if !ok {
		return nil, fuse.ENOENT
	}
	return n.fsys.wrap(c), nil
}

func (n *fsDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	ents := n.fsys.t.list(n.d)
	out := make([]fuse.Dirent, 0, len(ents))
	for _, e := range ents {
		typ := fuse.DT_File
		if _, ok := e.node.(*dir); ok {
			typ = fuse.DT_Dir
		}
		out = append(out, fuse.Dirent{Inode: e.node.inode(), Name: e.name, Type: typ})
	}
	return out, nil
}

func (n *fsDir) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (fusefs.Node, error) {
	if err := n.fsys.mayModify(req.Header); err != nil {
		return nil, err
	}
	d, err := n.fsys.t.mkdir(n.d, req.Name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.fsys.wrap(d), nil
}

func (n *fsDir) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	if err := n.fsys.mayModify(req.Header); err != nil {
		return err
	}
	old, _ := n.fsys.t.lookup(n.d, req.Name)
	f, isFlat := old.(*flatFile)
	var pname, sname string
	if isFlat {
		pname, _ = n.fsys.t.partitionDirName(f)
		sname, _ = n.fsys.t.snapshotDirName(f)
	}
	img, gone, err := n.fsys.t.remove(n.d, req.Name, req.Dir)
	if err != nil {
		return toErrno(err)
	}
	n.fsys.unwrap(gone...)
	if isFlat {
		log.Printf("detached %s (%s)", req.Name, f.img.path)
		if pd, ok := n.fsys.t.lookup(n.fsys.t.root, partitionsDirName); ok && pname != "" {
			n.fsys.invalidate(pd, pname)
		}
		n.fsys.forgetSnapshots(sname)
	}
	n.fsys.closeImage(img)
	return nil
}

func (n *fsDir) Rename(ctx context.Context, req *fuse.RenameRequest, newDir fusefs.Node) error {
	if err := n.fsys.mayModify(req.Header); err != nil {
		return err
	}
	nd, ok := newDir.(*fsDir)
	if !ok {
		return fuse.Errno(syscall.EXDEV)
	}
	replaced, _ := n.fsys.t.lookup(nd.d, req.NewName)
	img, err := n.fsys.t.rename(n.d, req.OldName, nd.d, req.NewName)
	if err != nil {
		return toErrno(err)
	}
	if img != nil {
		n.fsys.unwrap(replaced)
	}
	n.fsys.closeImage(img)
	return nil
}

// closeImage closes a detached image, logging (not failing) on error:
// the caller's operation already succeeded.
func (fsys *filesys) closeImage(img *image) {
	if img == nil {
		return
	}
	if err := img.Close(); err != nil {
		log.Printf("closing %s: %v", img.path, err)
	}
}

// Symlink attaches an image: "ln -s TARGET NAME" makes NAME a regular
// file holding TARGET's flattened disk.
func (n *fsDir) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (fusefs.Node, error) {
	if err := n.fsys.mayModify(req.Header); err != nil {
		return nil, err
	}
	if err := n.fsys.t.available(n.d, req.NewName); err != nil {
		return nil, toErrno(err)
	}
	target := req.Target
	if !filepath.IsAbs(target) {
		cwd, err := callerCwd(req.Header.Pid)
		if err != nil {
			n.fsys.attachFailed(req.NewName, target, err)
			return nil, toErrno(err)
		}
		target = filepath.Join(cwd, target)
	}
	target = filepath.Clean(target)
	f, err := n.fsys.attachAs(callerOf(req.Header), n.d, req.NewName, target)
	if err != nil {
		return nil, toErrno(err)
	}
	// The kernel insists that the node answering a symlink request is a
	// symlink (else EIO after the entry exists). Answer with a symlink
	// node, then drop the kernel's entry so the next lookup finds the
	// regular file. The invalidation waits in the kernel until this
	// request's reply has been processed.
	stand := &fsAttaching{fsys: n.fsys, parent: n.d, name: req.NewName, f: f, invalidated: make(chan struct{})}
	go func() {
		defer close(stand.invalidated)
		if err := n.fsys.server.InvalidateEntry(n, req.NewName); err != nil && err != fuse.ErrNotCached {
			log.Printf("invalidating %s after attach: %v", req.NewName, err)
		}
	}()
	return stand, nil
}

// callerOf is the process a request comes from.
func callerOf(h fuse.Header) caller { return caller{uid: h.Uid, gid: h.Gid, pid: h.Pid} }

// attach attaches target for the daemon itself (images named on the
// command line).
func (fsys *filesys) attach(d *dir, name, target string) (*flatFile, error) {
	return fsys.attachAs(daemon(), d, name, target)
}

// attachAs opens target with c's rights and adds it to d as name;
// failures are logged with the full reason and kept for the status file.
func (fsys *filesys) attachAs(c caller, d *dir, name, target string) (*flatFile, error) {
	var img *image
	err := asCaller(c, fsys.guard, func() error {
		if err := fsys.guard.check(target); err != nil {
			return err
		}
		st, err := os.Stat(target)
		if err != nil {
			return err
		}
		if st.IsDir() && !isBundleDir(target) {
			return &os.PathError{Op: "attach", Path: target, Err: syscall.EISDIR}
		}
		var overlay string
		if fsys.overlayDir != "" {
			overlay = filepath.Join(fsys.overlayDir, name+".qcow2")
		}
		img, err = openImage(target, fsys.attachOpts, fsys.readOnly, overlay, c.uid)
		return err
	})
	if err == nil {
		img.owner, img.guard = c, fsys.guard
	}
	if err != nil {
		fsys.attachFailed(name, target, err)
		return nil, err
	}
	f, err := fsys.t.attach(d, name, img)
	if err != nil {
		img.Close()
		fsys.attachFailed(name, target, err)
		return nil, err
	}
	info := img.Info()
	mode := "read-write on demand"
	if !img.writable {
		mode = "read-only"
	} else if img.overlay != "" {
		mode = "writes go to " + img.overlay
	}
	log.Printf("attached %s: %s (%s, %d bytes, %s)", name, target, strings.TrimSpace(info.Format+" "+info.Variant), img.Size(), mode)
	for _, w := range append(info.Warnings, img.warnings...) {
		log.Printf("attached %s: warning: %s", name, w)
	}
	fsys.showPartitions(f, name)
	fsys.showSnapshots(f, name)
	return f, nil
}

// isBundleDir reports whether a directory is an image in its own right
// (a Parallels .hdd bundle) rather than a mistake.
func isBundleDir(p string) bool {
	_, err := formats.Detect(p)
	return err == nil
}

func (fsys *filesys) attachFailed(name, target string, err error) {
	log.Printf("attach %s -> %s failed: %v", name, target, err)
	fsys.t.recordError(name, target, err)
}

// fsAttaching is the symlink-typed stand-in returned by Symlink. Until
// the kernel has dropped it, a process that follows it (the caller of
// ln, right after ln returned) is sent back to the same name, which by
// then resolves to the regular file.
type fsAttaching struct {
	fsys        *filesys
	parent      *dir
	name        string
	f           *flatFile
	invalidated chan struct{}
}

func (n *fsAttaching) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeSymlink | 0o777
	a.Size = uint64(len(n.name))
	a.Valid = 0
	return nil
}

func (n *fsAttaching) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	select {
	case <-n.invalidated:
	case <-time.After(5 * time.Second):
	}
	if cur, ok := n.fsys.t.lookup(n.parent, n.name); !ok || cur != node(n.f) {
		return "", fuse.ENOENT
	}
	return n.name, nil
}

// ---- flattened files and partitions ----

// releaseWait is how long an open waits for a conflicting handle whose
// close may still be on its way from the kernel.
const releaseWait = time.Second

// fsFile is a flattened disk, or a window onto one of its partitions;
// either way the disk's reader/writer accounting applies.
type fsFile struct {
	fsys        *filesys
	f           *flatFile
	ino         uint64
	start, size int64 // the window: the whole disk, or a partition

	cacheMu    sync.Mutex
	cachedGen  uint64 // the disk's writeCount when the kernel's page cache of this file was last (re)filled
	cacheValid bool
}

// keepCache tells whether the kernel may keep this file's cached pages
// at an open: yes unless a writer (of this file, the disk or any of its
// partitions) has closed since the cache was filled.
func (n *fsFile) keepCache(write bool) bool {
	gen := n.f.writeCount()
	n.cacheMu.Lock()
	defer n.cacheMu.Unlock()
	keep := n.cacheValid && n.cachedGen == gen && !write
	n.cachedGen, n.cacheValid = gen, !write
	return keep
}

func (n *fsFile) Attr(ctx context.Context, a *fuse.Attr) error {
	n.fsys.fillAttr(a, n.ino, os.FileMode(n.f.mode()))
	img := n.f.img
	a.Uid, a.Gid, _ = img.owners()
	mtime, blocks := img.attrs()
	a.Size = uint64(n.size)
	if n.size == img.Size() {
		a.Blocks = uint64(blocks)
	} else {
		a.Blocks = uint64(n.size / 512)
	}
	a.Mtime, a.Ctime, a.Atime = mtime, mtime, mtime
	a.Valid = time.Second // mtime and allocation change while writing
	return nil
}

func (n *fsFile) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fusefs.Handle, error) {
	acc := req.Flags & fuse.OpenAccessModeMask
	if acc == fuse.OpenAccessModeMask || req.Flags&fuse.OpenAppend != 0 {
		return nil, fuse.Errno(syscall.EINVAL)
	}
	write := acc != fuse.OpenReadOnly
	if err := n.f.openWait(write, n.fsys.t.maxReaders, releaseWait); err != nil {
		return nil, toErrno(err)
	}
	if write {
		if err := n.f.img.beginWrite(callerOf(req.Header)); err != nil {
			n.fsys.closeImage(n.f.release(true))
			if !errors.Is(err, syscall.EROFS) {
				log.Printf("%s: opening for writing: %v", n.f.img.path, err)
				name, _ := n.fsys.t.partitionDirName(n.f)
				n.fsys.t.recordError(name, n.f.img.path, fmt.Errorf("opening for writing: %w", err))
			}
			return nil, toErrno(err)
		}
	}
	if err := n.f.img.useDisk(); err != nil {
		n.fsys.closeImage(n.f.release(write))
		log.Printf("%s: %v", n.f.img.path, err)
		return nil, toErrno(err)
	}
	if n.keepCache(write) {
		// Read-mostly disks are read again and again (mmls, then fls,
		// then icat): keeping the page cache saves all those requests.
		resp.Flags |= fuse.OpenKeepCache
	}
	return &fileHandle{fsys: n.fsys, f: n.f, write: write, start: n.start, size: n.size}, nil
}

func (n *fsFile) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Mode() || req.Valid.Uid() || req.Valid.Gid() {
		return fuse.Errno(syscall.EPERM)
	}
	if req.Valid.Size() && int64(req.Size) != n.size {
		// Without a handle and to size 0, this is open(O_TRUNC): a disk
		// is not truncated, and `dd of=` or `cp` must not lose it. Any
		// other size change is refused, as a block device would.
		if req.Valid.Handle() || req.Size != 0 {
			return fuse.Errno(syscall.EINVAL)
		}
	}
	// Time changes (touch, cp -p) are accepted and ignored: the times
	// shown are the image file's.
	return n.Attr(ctx, &resp.Attr)
}

func (n *fsFile) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return toErrno(n.f.img.Flush())
}

const (
	xattrImage  = "user.vdflat.image"
	xattrFormat = "user.vdflat.format"
)

func (n *fsFile) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if !n.fsys.mayInspect(req.Header) {
		return fuse.ErrNoXattr
	}
	switch req.Name {
	case xattrImage:
		resp.Xattr = []byte(n.f.img.path)
	case xattrFormat:
		info := n.f.img.Info()
		v := info.Format
		if info.Variant != "" {
			v += "/" + info.Variant
		}
		resp.Xattr = []byte(v)
	default:
		return fuse.ErrNoXattr
	}
	return nil
}

func (n *fsFile) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	if !n.fsys.mayInspect(req.Header) {
		return nil
	}
	resp.Append(xattrImage, xattrFormat)
	return nil
}

type fileHandle struct {
	fsys        *filesys
	f           *flatFile
	write       bool
	start, size int64
}

func (h *fileHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	if req.Offset >= h.size {
		return nil
	}
	// resp.Data is room for req.Size bytes inside the request's own buffer
	// (ReadRequest.DataBuffer): read into it, so the reply needs no copy.
	buf := resp.Data[:min(int64(req.Size), h.size-req.Offset)]
	n, err := h.f.img.ReadAt(buf, h.start+req.Offset)
	if err != nil {
		return h.readFailed(err)
	}
	resp.Data = buf[:n]
	return nil
}

// readFailed logs and maps a read error. The read path keeps such cold
// code in functions of its own, and its frames small: a request served on
// a goroutine of its own starts with a 2 KiB stack, and a read that fits
// in 4 KiB is spared a second stack copy (random 4 KiB reads of qcow2,
// pinned: 1.2x; bench/RESULTS.md). Reads served inline run on the
// long-lived reader goroutines, whose stacks have grown already.
func (h *fileHandle) readFailed(err error) error {
	log.Printf("%s: %v", h.f.img.path, err)
	return toErrno(err)
}

func (h *fileHandle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	p := req.Data
	if len(p) > 0 && req.Offset >= h.size {
		return fuse.Errno(syscall.ENOSPC)
	}
	if rem := h.size - req.Offset; int64(len(p)) > rem {
		p = p[:rem] // a write crossing the end is cut short there
	}
	n, err := h.f.img.WriteAt(p, h.start+req.Offset)
	if err != nil {
		if !errors.Is(err, syscall.ENOSPC) {
			log.Printf("%s: %v", h.f.img.path, err)
		}
		return toErrno(err)
	}
	resp.Size = n
	return nil
}

func (h *fileHandle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	if !h.write {
		return nil
	}
	if err := h.f.img.Flush(); err != nil {
		log.Printf("%s: flush: %v", h.f.img.path, err)
		return toErrno(err)
	}
	return nil
}

func (h *fileHandle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	if h.write {
		// Still counted as the writer, so nobody opens the disk while
		// it goes back to read-only.
		if err := h.f.img.endWrite(); err != nil {
			log.Printf("%s: closing after writing: %v", h.f.img.path, err)
		}
		// The writer may have run fdisk: show the table as it is now.
		if name, ok := h.fsys.t.partitionDirName(h.f); ok {
			h.fsys.showPartitions(h.f, name)
		}
	}
	h.f.img.unuseDisk()
	if img := h.f.release(h.write); img != nil {
		if err := img.Close(); err != nil {
			log.Printf("closing %s: %v", img.path, err)
		}
	}
	return nil
}

// ---- status file ----

type fsStatus struct {
	fsys *filesys
	s    *statusFile
}

func (n *fsStatus) Attr(ctx context.Context, a *fuse.Attr) error {
	// The status file names every image: only root and the mounting
	// user may read it, whoever the tree's directories show as owner.
	n.fsys.fillAttr(a, n.s.ino, 0o400)
	a.Uid = n.fsys.adminUID
	a.Size = uint64(len(n.fsys.t.statusText()))
	a.Mtime = time.Now()
	a.Valid = 0
	return nil
}

func (n *fsStatus) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fusefs.Handle, error) {
	if !req.Flags.IsReadOnly() || !n.fsys.mayInspect(req.Header) {
		return nil, fuse.Errno(syscall.EACCES)
	}
	// Content changes from one open to the next and differs from the
	// size getattr reported a moment ago: bypass the page cache.
	resp.Flags |= fuse.OpenDirectIO
	return &statusHandle{data: n.fsys.t.statusText()}, nil
}

type statusHandle struct{ data []byte }

func (h *statusHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	fuseutil.HandleRead(req, resp, h.data)
	return nil
}
