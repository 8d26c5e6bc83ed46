package main

// /Snapshots/NAME holds one read-only flattened file per point in time of
// the disk attached as NAME (qcow2 internal snapshots, lower chain
// levels). Each is an image of its own for the reader rules and the
// accounting of open files, but its disk is opened only while a handle
// is open, with the rights of whoever attached NAME: attaching stays
// fast and an unread point in time holds no file open.

import (
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

const snapshotsDirName = "Snapshots"

// errNotOpen is what a point in time's disk answers before its first
// open (no handle reads it then).
var errNotOpen = errors.New("point in time not open")

// snapshotDirs tracks /Snapshots and each disk's directory in it, all
// read-only to users. Guarded by tree.mu.
type snapshotDirs struct {
	top   *dir
	disks map[*flatFile]snapshotDir
}

type snapshotDir struct {
	name string
	d    *dir
}

// init makes the /Snapshots directory.
func (s *snapshotDirs) init(t *tree) *dir {
	s.top = t.newDir()
	s.disks = map[*flatFile]snapshotDir{}
	return s.top
}

// readOnly reports whether d is /Snapshots or one of its directories.
// Called with tree.mu held.
func (s *snapshotDirs) readOnly(d *dir) bool {
	if d == s.top {
		return true
	}
	for _, sd := range s.disks {
		if sd.d == d {
			return true
		}
	}
	return false
}

// isReadOnlyDir is readOnly for callers without tree.mu.
func (t *tree) isReadOnlyDir(d *dir) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snaps.readOnly(d)
}

// lazyDisk opens a point in time's disk for its first handle and closes
// it after its last.
type lazyDisk struct {
	open  func() (formats.Disk, error)
	mu    sync.Mutex // held while opening: only this point in time waits
	users int
}

// snapshotImage is the image of point in time p of img. Nothing is
// opened here.
func snapshotImage(img *image, p formats.PointInTime) *image {
	uid, gid, perm := img.owners()
	mtime, _ := img.attrs()
	if !p.Created.IsZero() {
		mtime = p.Created
	}
	im := &image{
		path: p.Path, opts: img.opts, size: p.Size, owner: img.owner, guard: img.guard,
		files: img.files, // a reader of any level keeps writers of the chain away
		uid:   uid, gid: gid, perm: perm, mtime: mtime, blocks: (p.Size + 511) / 512,
		disk: brokenDisk{size: p.Size, err: errNotOpen},
		lazy: &lazyDisk{open: p.Open},
	}
	im.info = formats.Info{Format: p.Kind, Variant: p.Label, Path: p.Path, Files: p.Files, Size: p.Size,
		Allocated: -1, ReadOnly: true, ReadOnlyReason: "a point in time is read-only"}
	im.info.Metadata = map[string]string{}
	if p.ID != "" {
		im.info.Metadata["id"] = p.ID
	}
	if !p.Created.IsZero() {
		im.info.Metadata["date"] = p.Created.Format(time.RFC3339)
	}
	return im
}

// useDisk opens the disk of a point in time for one more handle; other
// images have theirs open already.
func (im *image) useDisk() error {
	l := im.lazy
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users == 0 {
		var d formats.Disk
		err := asCaller(im.owner, im.guard, func() error {
			var err error
			d, err = l.open()
			return err
		})
		if err != nil {
			return fmt.Errorf("opening point in time %s: %w", im.info.Variant, err)
		}
		if d.Size() != im.size {
			d.Close()
			return fmt.Errorf("opening point in time %s: size %d, listed as %d: %w", im.info.Variant, d.Size(), im.size, formats.ErrCorrupt)
		}
		im.mu.Lock()
		im.disk = d
		im.mu.Unlock()
	}
	l.users++
	return nil
}

// unuseDisk undoes one useDisk: the last handle's release closes the disk.
func (im *image) unuseDisk() {
	l := im.lazy
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users--; l.users > 0 {
		return
	}
	im.mu.Lock()
	d := im.disk
	im.disk = brokenDisk{size: im.size, err: errNotOpen}
	im.mu.Unlock()
	if err := d.Close(); err != nil {
		log.Printf("closing point in time %s of %s: %v", im.info.Variant, im.path, err)
	}
}

// showSnapshots lists the points in time of disk f, attached as name,
// in /Snapshots/NAME (NAME-INODE if the name is taken there).
func (fsys *filesys) showSnapshots(f *flatFile, name string) {
	img := f.img
	img.mu.RLock()
	pits, err := formats.PointsInTime(img.disk, img.opts)
	img.mu.RUnlock()
	if err != nil {
		log.Printf("%s: listing snapshots: %v", img.path, err)
		fsys.t.recordError(name, img.path, fmt.Errorf("listing snapshots: %w", err))
	}
	if len(pits) == 0 {
		return
	}
	t := fsys.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, taken := t.snaps.top.entries[name]; taken {
		name = fmt.Sprintf("%s-%d", name, f.ino)
	}
	d := t.newDir()
	for _, p := range pits {
		d.entries[p.Name] = &flatFile{ino: t.allocIno(), img: snapshotImage(img, p), attached: time.Now(), handles: &t.open}
	}
	t.snaps.top.entries[name] = d
	t.snaps.top.mtime = time.Now()
	t.snaps.disks[f] = snapshotDir{name, d}
}

// snapshotDirName is the name of disk f's directory in /Snapshots.
func (t *tree) snapshotDirName(f *flatFile) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sd, ok := t.snaps.disks[f]
	return sd.name, ok
}

// dropSnapshotsLocked removes disk f's directory from /Snapshots and
// detaches its files; a file still open closes at its last release, an
// unopened one holds nothing. It returns the nodes that left the tree.
// Called with tree.mu held.
func (t *tree) dropSnapshotsLocked(f *flatFile) []node {
	sd, ok := t.snaps.disks[f]
	if !ok {
		return nil
	}
	delete(t.snaps.disks, f)
	delete(t.snaps.top.entries, sd.name)
	t.snaps.top.mtime = time.Now()
	gone := []node{sd.d}
	for _, n := range sd.d.entries {
		if sf, ok := n.(*flatFile); ok {
			sf.detach()
		}
		gone = append(gone, n)
	}
	return gone
}

// forgetSnapshots drops the kernel's entry for a detached disk's
// directory in /Snapshots.
func (fsys *filesys) forgetSnapshots(name string) {
	if name == "" {
		return
	}
	fsys.invalidate(fsys.t.snaps.top, name)
}

// snapshotFlag picks a point in time for flatten and verify.
var snapshotFlag = &cli.StringFlag{Name: "snapshot", Usage: "work on point in time `NAME` (as info lists it, or a qcow2 snapshot's name or id) instead of the current state"}

// openImageArg opens path for a command, or with --snapshot one of its
// points in time.
func openImageArg(c *cli.Context, path string) (formats.Disk, error) {
	opts := imageOptions(c)
	d, err := formats.Open(path, opts)
	name := c.String("snapshot")
	if err != nil || name == "" {
		return d, err
	}
	defer d.Close()
	p, err := formats.FindPointInTime(d, opts, name)
	if err != nil {
		return nil, err
	}
	return p.Open()
}

// snapshotReport is one point in time as info shows it.
type snapshotReport struct {
	Name    string    `json:"name"` // the file name in /Snapshots/DISK, and --snapshot's NAME
	Kind    string    `json:"kind"` // "snapshot" or "parent"
	Label   string    `json:"label"`
	ID      string    `json:"id,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Size    int64     `json:"virtual_size"`
	Path    string    `json:"path"`
}

func snapshotReports(d formats.Disk, opts formats.Options) []snapshotReport {
	pits, err := formats.PointsInTime(d, opts)
	if err != nil {
		return []snapshotReport{{Name: "?", Kind: "error", Label: err.Error()}}
	}
	out := []snapshotReport{}
	for _, p := range pits {
		out = append(out, snapshotReport{p.Name, p.Kind, p.Label, p.ID, p.Created, p.Size, p.Path})
	}
	return out
}

func printSnapshots(w io.Writer, reps []snapshotReport) {
	for _, s := range reps {
		v := s.Kind
		if s.ID != "" && s.Kind == "snapshot" {
			v += " id " + s.ID
		}
		if !s.Created.IsZero() {
			v += ", " + s.Created.Format(time.RFC3339)
		}
		if s.Kind == "error" {
			v = s.Label
		} else {
			v += ", " + sizeString(s.Size)
		}
		fmt.Fprintf(w, "%s:\t%s\n", escapeText("point in time "+s.Name), escapeText(v))
	}
}
