package main

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"vdflat/formats"
)

// The in-memory tree of a mount: directories, flattened-image files and
// the status file, with stable inode numbers and the reader/writer rules
// of each flattened file. Nothing here knows about FUSE, so every rule is
// testable without a mount; fs.go wraps these types in FUSE nodes.

// node is anything in the tree.
type node interface{ inode() uint64 }

const (
	flattenedDirName  = "FlattenedImages"
	partitionsDirName = "Partitions"
	statusFileName    = "status"
	maxRecentErrors   = 32
)

// tree guards the directory structure with one mutex that is never held
// across image I/O or image opening.
type tree struct {
	uid, gid   uint32
	maxReaders int
	started    time.Time
	version    string // the program's, shown in the status file

	open openFiles // handles by file identity, across attachments

	mu      sync.Mutex
	nextIno uint64
	root    *dir
	parts   map[*flatFile]*dir // each disk's directory under /Partitions
	snaps   snapshotDirs       // /Snapshots and each disk's directory there
	errs    []attachError      // most recent last
}

type dir struct {
	ino     uint64
	mtime   time.Time
	entries map[string]node // guarded by tree.mu
}

type statusFile struct{ ino uint64 }

// partFile is a window onto one partition of an attached disk. It shares
// the disk's reader/writer accounting: a writer of a partition is a
// writer of the disk.
type partFile struct {
	ino         uint64
	disk        *flatFile
	start, size int64
}

// flatFile is an attached image seen as a regular file.
type flatFile struct {
	ino      uint64
	img      *image
	attached time.Time
	handles  *openFiles // the tree's, or nil (tests of one file)

	mu       sync.Mutex // guards the fields below, never held across I/O
	readers  int
	writers  int
	detached bool          // unlinked; the image closes at the last release
	released chan struct{} // closed (and replaced) at every release
	writes   uint64        // counts writers' releases, so page caches know when they went stale
}

type attachError struct {
	when         time.Time
	name, target string
	err          error
}

func (d *dir) inode() uint64        { return d.ino }
func (s *statusFile) inode() uint64 { return s.ino }
func (f *flatFile) inode() uint64   { return f.ino }
func (p *partFile) inode() uint64   { return p.ino }

// newTree makes the tree every mount starts with: / holding the status
// file and empty FlattenedImages and Partitions directories.
func newTree(uid, gid uint32, maxReaders int) *tree {
	now := time.Now()
	t := &tree{uid: uid, gid: gid, maxReaders: maxReaders, started: now, nextIno: 1, parts: map[*flatFile]*dir{}}
	t.root = t.newDir()
	t.root.entries[statusFileName] = &statusFile{ino: t.allocIno()}
	t.root.entries[flattenedDirName] = t.newDir()
	t.root.entries[partitionsDirName] = t.newDir()
	t.root.entries[snapshotsDirName] = t.snaps.init(t)
	return t
}

// setPartitions shows disk f's partitions as files pN in the directory
// /Partitions/NAME, made on first use and kept (emptied if need be) until
// the disk is detached, so the kernel's cached entry for it stays valid.
// It returns that directory (nil if none), the names whose files were
// replaced (stale in the kernel's cache) and the nodes that left the tree.
func (t *tree) setPartitions(f *flatFile, name string, parts []formats.Partition) (*dir, []string, []node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok := t.parts[f]
	if !ok {
		pdir, isDir := t.root.entries[partitionsDirName].(*dir)
		if !isDir || len(parts) == 0 {
			return nil, nil, nil
		}
		if _, taken := pdir.entries[name]; taken {
			name = fmt.Sprintf("%s-%d", name, f.ino)
		}
		d = t.newDir()
		pdir.entries[name] = d
		pdir.mtime = time.Now()
		t.parts[f] = d
	}
	var stale []string
	var gone []node
	for name, n := range d.entries {
		stale = append(stale, name)
		gone = append(gone, n)
	}
	clear(d.entries)
	for _, p := range parts {
		d.entries[fmt.Sprintf("p%d", p.Number)] = &partFile{ino: t.allocIno(), disk: f, start: p.Start, size: p.Size}
	}
	d.mtime = time.Now()
	return d, stale, gone
}

// partitionDirName is the name of disk f's directory under /Partitions,
// or the disk's own name when it has none yet, and whether f is attached.
func (t *tree) partitionDirName(f *flatFile) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.parts[f]; ok {
		if pdir, ok := t.root.entries[partitionsDirName].(*dir); ok {
			for name, n := range pdir.entries {
				if n == node(d) {
					return name, true
				}
			}
		}
	}
	var found string
	var walk func(d *dir) bool
	walk = func(d *dir) bool {
		for name, n := range d.entries {
			if n == node(f) {
				found = name
				return true
			}
			if sub, ok := n.(*dir); ok && walk(sub) {
				return true
			}
		}
		return false
	}
	return found, walk(t.root)
}

// dropPartitionsLocked removes disk f's partition directory, if any, and
// returns the removed nodes. Called with mu held.
func (t *tree) dropPartitionsLocked(f *flatFile) []node {
	d, ok := t.parts[f]
	if !ok {
		return nil
	}
	delete(t.parts, f)
	gone := []node{d}
	for _, n := range d.entries {
		gone = append(gone, n)
	}
	if pdir, ok := t.root.entries[partitionsDirName].(*dir); ok {
		for name, n := range pdir.entries {
			if n == node(d) {
				delete(pdir.entries, name)
				pdir.mtime = time.Now()
			}
		}
	}
	return gone
}

func (t *tree) allocIno() uint64 {
	ino := t.nextIno
	t.nextIno++
	return ino
}

func (t *tree) newDir() *dir {
	return &dir{ino: t.allocIno(), mtime: time.Now(), entries: map[string]node{}}
}

// flattened returns the FlattenedImages directory, or nil if renamed away.
func (t *tree) flattened() *dir {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, _ := t.root.entries[flattenedDirName].(*dir)
	return d
}

func (t *tree) lookup(d *dir, name string) (node, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := d.entries[name]
	return n, ok
}

type dirEntry struct {
	name string
	node node
}

// list returns d's entries sorted by name.
func (t *tree) list(d *dir) []dirEntry {
	t.mu.Lock()
	ents := make([]dirEntry, 0, len(d.entries))
	for name, n := range d.entries {
		ents = append(ents, dirEntry{name, n})
	}
	t.mu.Unlock()
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	return ents
}

func (t *tree) dirMtime(d *dir) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return d.mtime
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return syscall.EINVAL
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return syscall.EINVAL
		}
	}
	return nil
}

func (t *tree) mkdir(d *dir, name string) (*dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.snaps.readOnly(d) {
		return nil, syscall.EROFS
	}
	if _, ok := d.entries[name]; ok {
		return nil, syscall.EEXIST
	}
	nd := t.newDir()
	d.entries[name] = nd
	d.mtime = time.Now()
	return nd, nil
}

// available reports EEXIST early, before an expensive image open.
func (t *tree) available(d *dir, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if t.isReadOnlyDir(d) {
		return syscall.EROFS
	}
	if _, ok := t.lookup(d, name); ok {
		return syscall.EEXIST
	}
	return nil
}

// attach adds an opened image as name in d.
func (t *tree) attach(d *dir, name string, img *image) (*flatFile, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.snaps.readOnly(d) {
		return nil, syscall.EROFS
	}
	if _, ok := d.entries[name]; ok {
		return nil, syscall.EEXIST
	}
	f := &flatFile{ino: t.allocIno(), img: img, attached: time.Now(), handles: &t.open}
	d.entries[name] = f
	d.mtime = time.Now()
	return f, nil
}

// remove unlinks (isDir false) or rmdirs (isDir true) name in d. It
// returns an image the caller must close, outside any lock, when a
// detached file had no open handles, and every node that left the tree.
func (t *tree) remove(d *dir, name string, isDir bool) (*image, []node, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := d.entries[name]
	if !ok {
		return nil, nil, syscall.ENOENT
	}
	if sub, isDir := n.(*dir); t.snaps.readOnly(d) || isDir && t.snaps.readOnly(sub) {
		return nil, nil, syscall.EROFS
	}
	switch n := n.(type) {
	case *dir:
		if !isDir {
			return nil, nil, syscall.EISDIR
		}
		if n == t.root {
			return nil, nil, syscall.EBUSY
		}
		if len(n.entries) > 0 {
			return nil, nil, syscall.ENOTEMPTY
		}
	case *statusFile:
		return nil, nil, syscall.EPERM
	default:
		if isDir {
			return nil, nil, syscall.ENOTDIR
		}
	}
	delete(d.entries, name)
	d.mtime = time.Now()
	gone := []node{n}
	if f, ok := n.(*flatFile); ok {
		gone = append(gone, t.dropPartitionsLocked(f)...)
		gone = append(gone, t.dropSnapshotsLocked(f)...)
		return f.detach(), gone, nil
	}
	return nil, gone, nil
}

// rename moves od/oname to nd/nname with rename(2) semantics: a file
// replaces a file, a directory replaces an empty directory. It returns a
// replaced image the caller must close.
func (t *tree) rename(od *dir, oname string, nd *dir, nname string) (*image, error) {
	if err := checkName(nname); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := od.entries[oname]
	if !ok {
		return nil, syscall.ENOENT
	}
	if _, ok := n.(*statusFile); ok {
		return nil, syscall.EPERM
	}
	if sub, isDir := n.(*dir); t.snaps.readOnly(od) || t.snaps.readOnly(nd) || isDir && t.snaps.readOnly(sub) {
		return nil, syscall.EROFS
	}
	if od == nd && oname == nname {
		return nil, nil
	}
	if moved, ok := n.(*dir); ok && (moved == nd || t.contains(moved, nd)) {
		return nil, syscall.EINVAL // a directory into itself
	}
	var closeImg *image
	if old, ok := nd.entries[nname]; ok {
		switch old := old.(type) {
		case *statusFile:
			return nil, syscall.EPERM
		case *dir:
			if _, isDir := n.(*dir); !isDir {
				return nil, syscall.EISDIR
			}
			if len(old.entries) > 0 {
				return nil, syscall.ENOTEMPTY
			}
		case *flatFile:
			if _, isDir := n.(*dir); isDir {
				return nil, syscall.ENOTDIR
			}
			closeImg = old.detach()
			t.dropPartitionsLocked(old)
			t.dropSnapshotsLocked(old)
		}
	}
	delete(od.entries, oname)
	nd.entries[nname] = n
	now := time.Now()
	od.mtime, nd.mtime = now, now
	return closeImg, nil
}

// contains reports whether sub is somewhere below d. Called with mu held.
func (t *tree) contains(d, sub *dir) bool {
	for _, n := range d.entries {
		if c, ok := n.(*dir); ok && (c == sub || t.contains(c, sub)) {
			return true
		}
	}
	return false
}

// detach marks f unlinked and returns its image if nothing has it open.
func (f *flatFile) detach() *image {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
	if f.readers == 0 && f.writers == 0 {
		return f.img
	}
	return nil
}

// open applies the reader/writer rules: one writer and nobody else, or
// any number of readers up to max. A write-open of an image that cannot
// be written fails with EROFS.
func (f *flatFile) open(write bool, max int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.detached:
		return syscall.ENOENT
	case write && !f.img.isWritable():
		return syscall.EROFS
	case write && (f.readers > 0 || f.writers > 0):
		return syscall.ETXTBSY
	case !write && f.writers > 0:
		return syscall.ETXTBSY
	case !write && f.readers >= max:
		return syscall.EMLINK
	}
	if err := f.handles.acquire(f.img, write); err != nil {
		return err
	}
	if write {
		f.writers++
	} else {
		f.readers++
	}
	return nil
}

// openWait is open, but a conflict with another handle is given up to
// wait to go away. close(2) returns before the kernel tells the daemon
// that a file was released, so without this a "dd of=disk; cmp disk"
// could fail with ETXTBSY for a handle that is already closed.
func (f *flatFile) openWait(write bool, max int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		if f.released == nil {
			f.released = make(chan struct{})
		}
		ch := f.released
		f.mu.Unlock()
		err := f.open(write, max)
		left := time.Until(deadline)
		if err != syscall.ETXTBSY || left <= 0 {
			return err
		}
		select {
		case <-ch:
		case <-time.After(left):
		}
	}
}

// release undoes one open. It returns the image when the caller must
// close it: the file was detached and this was its last handle.
func (f *flatFile) release(write bool) *image {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handles.release(f.img, write)
	if write {
		f.writers--
		f.writes++
	} else {
		f.readers--
	}
	if f.released != nil {
		close(f.released)
		f.released = nil
	}
	if f.detached && f.readers == 0 && f.writers == 0 {
		return f.img
	}
	return nil
}

// writeCount is the number of writers' releases so far.
func (f *flatFile) writeCount() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *flatFile) counts() (readers, writers int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readers, f.writers
}

// mode is the image file's permissions, without execute bits, and
// without write bits where the image cannot be written: with
// allow_other, the kernel then grants exactly the access the image file
// grants.
func (f *flatFile) mode() uint32 {
	_, _, perm := f.img.owners()
	perm &= 0o666
	if !f.img.isWritable() {
		perm &= 0o444
	}
	return perm
}

// attachedFiles walks the tree and returns every flattened file by path.
func (t *tree) attachedFiles() map[string]*flatFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]*flatFile{}
	var walk func(d *dir, prefix string)
	walk = func(d *dir, prefix string) {
		for name, n := range d.entries {
			switch n := n.(type) {
			case *dir:
				walk(n, path.Join(prefix, name))
			case *flatFile:
				out[path.Join(prefix, name)] = n
			}
		}
	}
	walk(t.root, "/")
	return out
}

// detachAll empties the tree of images (at unmount) and returns every
// image that must be closed, open handles or not.
func (t *tree) detachAll() []*image {
	files := t.attachedFiles()
	imgs := make([]*image, 0, len(files))
	for _, f := range files {
		f.detach()
		imgs = append(imgs, f.img)
	}
	return imgs
}

func (t *tree) recordError(name, target string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs = append(t.errs, attachError{time.Now(), name, target, err})
	if len(t.errs) > maxRecentErrors {
		t.errs = t.errs[len(t.errs)-maxRecentErrors:]
	}
}

// statusText renders the status file: attached images and recent errors.
func (t *tree) statusText() []byte {
	var b bytes.Buffer
	files := t.attachedFiles()
	names := make([]string, 0, len(files))
	for n, f := range files {
		if f.img.lazy == nil { // points in time are listed by info, not here
			names = append(names, n)
		}
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "vdflat %s, up since %s, %d image(s) attached\n\n", t.version, t.started.Format(time.RFC3339), len(names))
	if len(names) > 0 {
		w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tFORMAT\tSIZE\tBYTES\tMODE\tREADERS\tWRITERS\tIMAGE")
		for _, n := range names {
			f := files[n]
			info := f.img.Info()
			r, wr := f.counts()
			format := info.Format
			if info.Variant != "" {
				format += "/" + info.Variant
			}
			mode := "rw"
			if !f.img.isWritable() {
				mode = "ro"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", escapeText(n), format, humanize.IBytes(uint64(f.img.Size())), f.img.Size(), mode, r, wr, escapeText(f.img.path))
			for p := info.Parent; p != nil; p = p.Parent {
				fmt.Fprintf(w, "\t  parent\t%s\t\t\t\t\t%s\n", p.Format, escapeText(p.Path))
			}
		}
		w.Flush()
		for _, n := range names {
			for _, warn := range append(files[n].img.Info().Warnings, files[n].img.liveWarnings()...) {
				fmt.Fprintf(&b, "warning: %s: %s\n", escapeText(n), escapeText(warn))
			}
		}
	}
	t.mu.Lock()
	errs := append([]attachError(nil), t.errs...)
	t.mu.Unlock()
	if len(errs) > 0 {
		fmt.Fprintf(&b, "\nrecent errors (newest last):\n")
		for _, e := range errs {
			fmt.Fprintf(&b, "%s  %s -> %s: %s\n", e.when.Format(time.RFC3339), escapeText(e.name), escapeText(e.target), escapeText(e.err.Error()))
		}
	}
	return b.Bytes()
}

// fileID identifies a file whatever its name: two attachments of one
// image, under two names or through two paths, share their fileIDs.
type fileID struct{ dev, ino uint64 }

// openFiles counts the handles open on each file, across every
// attachment of the tree: one writer per file, and no writer while
// anyone reads it.
type openFiles struct {
	mu      sync.Mutex
	readers map[fileID]int // handles reading the file (writers read too)
	writers map[fileID]int
}

// acquire counts one handle on img's files, or fails with ETXTBSY: a
// writer needs the files it writes unused by any other handle, a reader
// needs every file of its chain unwritten.
func (o *openFiles) acquire(img *image, write bool) error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.readers == nil {
		o.readers, o.writers = map[fileID]int{}, map[fileID]int{}
	}
	for _, id := range img.files {
		if o.writers[id] > 0 {
			return syscall.ETXTBSY
		}
	}
	if write {
		for _, id := range img.written {
			if o.readers[id] > 0 {
				return syscall.ETXTBSY
			}
		}
		for _, id := range img.written {
			o.writers[id]++
		}
	}
	for _, id := range img.files {
		o.readers[id]++
	}
	return nil
}

// release undoes one acquire.
func (o *openFiles) release(img *image, write bool) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if write {
		for _, id := range img.written {
			if o.writers[id]--; o.writers[id] <= 0 {
				delete(o.writers, id)
			}
		}
	}
	for _, id := range img.files {
		if o.readers[id]--; o.readers[id] <= 0 {
			delete(o.readers, id)
		}
	}
}
