package main

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vdflat/formats"
)

// testImage is an image backed by an in-memory disk.
func testImage(writable bool) *image {
	return &image{path: "/mem", disk: newMemDisk(4096), size: 4096, writable: writable, perm: 0o640}
}

func TestTreeReaderWriterRules(t *testing.T) {
	f := &flatFile{img: testImage(true)}
	steps := []struct {
		op    string // "r", "w": open; "-r", "-w": release
		want  error
		notes string
	}{
		{"r", nil, "first reader"},
		{"r", nil, "second reader"},
		{"w", syscall.ETXTBSY, "writer while readers"},
		{"-r", nil, ""},
		{"-r", nil, ""},
		{"w", nil, "writer alone"},
		{"r", syscall.ETXTBSY, "reader while a writer"},
		{"w", syscall.ETXTBSY, "second writer"},
		{"-w", nil, ""},
		{"r", nil, "reader after the writer left"},
		{"r", nil, ""},
		{"r", syscall.EMLINK, "third reader over max 2"},
	}
	for i, s := range steps {
		var err error
		switch s.op {
		case "r", "w":
			err = f.open(s.op == "w", 2)
		default:
			f.release(s.op == "-w")
		}
		if !errors.Is(err, s.want) && !(err == nil && s.want == nil) {
			t.Fatalf("step %d (%s, %s): got %v, want %v", i, s.op, s.notes, err, s.want)
		}
	}
}

func TestTreeReadOnlyImage(t *testing.T) {
	f := &flatFile{img: testImage(false)}
	if err := f.open(true, 10); err != syscall.EROFS {
		t.Fatalf("write-open of a read-only image: %v, want EROFS", err)
	}
	if err := f.open(false, 10); err != nil {
		t.Fatalf("read-open of a read-only image: %v", err)
	}
	if f.mode() != 0o440 {
		t.Fatalf("mode %o, want 0440: the image file's 0640 without writing", f.mode())
	}
}

func TestTreeDetachClosesAtLastRelease(t *testing.T) {
	tr := newTree(0, 0, 10)
	flat := tr.flattened()
	img := testImage(true)
	f, err := tr.attach(flat, "disk", img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.attach(flat, "disk", img); err != syscall.EEXIST {
		t.Fatalf("second attach: %v, want EEXIST", err)
	}
	if err := f.open(false, 10); err != nil {
		t.Fatal(err)
	}
	toClose, _, err := tr.remove(flat, "disk", false)
	if err != nil || toClose != nil {
		t.Fatalf("remove with an open handle: %v, %v; want nil, nil", toClose, err)
	}
	if _, ok := tr.lookup(flat, "disk"); ok {
		t.Fatal("detached file still in the directory")
	}
	if err := f.open(false, 10); err != syscall.ENOENT {
		t.Fatalf("open after detach: %v, want ENOENT", err)
	}
	if got := f.release(false); got != img {
		t.Fatal("last release of a detached file did not hand back the image to close")
	}
	// Detaching an idle file hands the image back at once.
	tr.attach(flat, "idle", img)
	if toClose, _, _ := tr.remove(flat, "idle", false); toClose != img {
		t.Fatal("detach of an idle file did not hand back the image")
	}
}

func TestTreeDirectories(t *testing.T) {
	tr := newTree(0, 0, 10)
	root, flat := tr.root, tr.flattened()
	sub, err := tr.mkdir(flat, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.mkdir(flat, "sub"); err != syscall.EEXIST {
		t.Fatalf("mkdir twice: %v", err)
	}
	tr.attach(sub, "disk", testImage(true))
	if _, _, err := tr.remove(flat, "sub", true); err != syscall.ENOTEMPTY {
		t.Fatalf("rmdir of a non-empty dir: %v, want ENOTEMPTY", err)
	}
	if _, _, err := tr.remove(sub, "disk", true); err != syscall.ENOTDIR {
		t.Fatalf("rmdir of a file: %v, want ENOTDIR", err)
	}
	if _, _, err := tr.remove(flat, "sub", false); err != syscall.EISDIR {
		t.Fatalf("unlink of a dir: %v, want EISDIR", err)
	}
	if _, _, err := tr.remove(root, statusFileName, false); err != syscall.EPERM {
		t.Fatalf("unlink of status: %v, want EPERM", err)
	}
	if _, err := tr.rename(root, flattenedDirName, sub, "x"); err != syscall.EINVAL {
		t.Fatalf("rename of a dir into itself: %v, want EINVAL", err)
	}
	if _, err := tr.rename(sub, "disk", flat, "moved"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.lookup(flat, "moved"); !ok {
		t.Fatal("renamed file not found")
	}
	if _, _, err := tr.remove(flat, "sub", true); err != nil {
		t.Fatalf("rmdir of an empty dir: %v", err)
	}
	// Renaming over a file detaches the one replaced.
	old := testImage(true)
	tr.attach(flat, "old", old)
	if toClose, err := tr.rename(flat, "moved", flat, "old"); err != nil || toClose != old {
		t.Fatalf("rename over a file: %v, %v", toClose, err)
	}
}

func TestTreeInodesStableAndUnique(t *testing.T) {
	tr := newTree(0, 0, 10)
	flat := tr.flattened()
	seen := map[uint64]bool{tr.root.ino: true, flat.ino: true}
	for i := 0; i < 100; i++ {
		f, err := tr.attach(flat, strings.Repeat("x", i+1), testImage(true))
		if err != nil {
			t.Fatal(err)
		}
		if seen[f.ino] {
			t.Fatalf("inode %d reused", f.ino)
		}
		seen[f.ino] = true
		if n, _ := tr.lookup(flat, strings.Repeat("x", i+1)); n.inode() != f.ino {
			t.Fatal("lookup returned another inode")
		}
	}
}

// Many goroutines opening and closing: the rules hold at every moment.
func TestTreeAccountingRace(t *testing.T) {
	f := &flatFile{img: testImage(true)}
	var readers, writers atomic.Int32
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				write := (g+i)%5 == 0
				if f.open(write, 8) != nil {
					continue
				}
				if write {
					if writers.Add(1) != 1 || readers.Load() != 0 {
						bad.Add(1)
					}
					writers.Add(-1)
				} else {
					if readers.Add(1) > 8 || writers.Load() != 0 {
						bad.Add(1)
					}
					readers.Add(-1)
				}
				f.release(write)
			}
		}(g)
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d violations of the reader/writer rules", bad.Load())
	}
	if r, w := f.counts(); r != 0 || w != 0 {
		t.Fatalf("counts after all releases: %d readers, %d writers", r, w)
	}
}

func TestTreeStatusText(t *testing.T) {
	tr := newTree(0, 0, 10)
	img := testImage(true)
	img.info.Format = "raw"
	tr.attach(tr.flattened(), "disk", img)
	tr.recordError("bad", "/x/bad.vmdk", errors.New("vmdk: corrupt image"))
	s := string(tr.statusText())
	for _, want := range []string{"/FlattenedImages/disk", "raw", "4096", "/mem", "bad -> /x/bad.vmdk: vmdk: corrupt image"} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
}

// A conflicting handle released shortly after the open started lets the
// open succeed instead of failing with ETXTBSY.
func TestTreeOpenWaitsForRelease(t *testing.T) {
	f := &flatFile{img: testImage(true)}
	if err := f.open(true, 10); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.release(true)
	}()
	if err := f.openWait(false, 10, 5*time.Second); err != nil {
		t.Fatalf("open after the writer's release: %v", err)
	}
	// A handle that stays open still gives ETXTBSY after the wait.
	start := time.Now()
	if err := f.openWait(true, 10, 100*time.Millisecond); err != syscall.ETXTBSY {
		t.Fatalf("write-open while a reader stays: %v, want ETXTBSY", err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("openWait gave up before its wait")
	}
}

func TestTreePartitions(t *testing.T) {
	tr := newTree(0, 0, 10)
	f, _ := tr.attach(tr.flattened(), "disk", testImage(true))
	tr.setPartitions(f, "disk", []formats.Partition{{Number: 1, Start: 512, Size: 1024}, {Number: 5, Start: 2048, Size: 512}})
	pdir, _ := tr.lookup(tr.root, partitionsDirName)
	dd, ok := tr.lookup(pdir.(*dir), "disk")
	if !ok {
		t.Fatal("no /Partitions/disk")
	}
	p5, ok := tr.lookup(dd.(*dir), "p5")
	if !ok || p5.(*partFile).start != 2048 || p5.(*partFile).disk != f {
		t.Fatalf("p5: %+v", p5)
	}
	// A reader of a partition is a reader of the disk.
	if err := p5.(*partFile).disk.open(false, 10); err != nil {
		t.Fatal(err)
	}
	if err := f.open(true, 10); err != syscall.ETXTBSY {
		t.Fatalf("write-open of the disk while a partition is read: %v", err)
	}
	f.release(false)
	_, gone, err := tr.remove(tr.flattened(), "disk", false)
	if err != nil || len(gone) != 4 {
		t.Fatalf("detach: %d nodes gone, %v; want the file, its partition dir and 2 partitions", len(gone), err)
	}
	if _, ok := tr.lookup(pdir.(*dir), "disk"); ok {
		t.Fatal("partitions stay after detach")
	}
}

// Two attachments of files that are one file on disk (same device and
// inode) share one writer, and a base shared by two children may be
// read while either child is written.
func TestTreeOneWriterPerFile(t *testing.T) {
	tr := newTree(0, 0, 10)
	d := tr.flattened()
	top, base, other := fileID{1, 10}, fileID{1, 11}, fileID{1, 12}
	image := func(written, all []fileID) *image {
		im := testImage(true)
		im.written, im.files = written, all
		return im
	}
	a, _ := tr.attach(d, "a", image([]fileID{top}, []fileID{top, base}))
	b, _ := tr.attach(d, "b", image([]fileID{top}, []fileID{top, base})) // a under another name
	c, _ := tr.attach(d, "c", image([]fileID{other}, []fileID{other, base}))
	if err := a.open(true, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.open(true, 10); err != syscall.ETXTBSY {
		t.Fatalf("second writer of one file: %v, want ETXTBSY", err)
	}
	if err := b.open(false, 10); err != syscall.ETXTBSY {
		t.Fatalf("reader of a file being written: %v, want ETXTBSY", err)
	}
	if err := c.open(true, 10); err != nil {
		t.Fatalf("writer of another child of the same base: %v", err)
	}
	c.release(true)
	a.release(true)
	if err := b.open(false, 10); err != nil {
		t.Fatal(err)
	}
	if err := a.open(true, 10); err != syscall.ETXTBSY {
		t.Fatalf("writer while the other name reads: %v, want ETXTBSY", err)
	}
	if err := a.open(false, 10); err != nil {
		t.Fatalf("two readers through two names: %v", err)
	}
	a.release(false)
	b.release(false)
	if err := b.open(true, 10); err != nil {
		t.Fatalf("writer after every handle closed: %v", err)
	}
}
