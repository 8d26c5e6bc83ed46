package formats

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qemuSnapshotRaw reads snapshot sel ("snapshot.name=X" or
// "snapshot.id=N") of a qcow2 image with qemu-img convert -l.
func qemuSnapshotRaw(t testing.TB, path, sel string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap.raw")
	qemuImg(t, "convert", "-f", "qcow2", "-l", sel, "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkPointInTime(t *testing.T, p PointInTime, want []byte) {
	t.Helper()
	if p.Kind == "snapshot" && p.Size < int64(len(want)) && isZero(want[p.Size:]) {
		// qemu-img convert -l reads a snapshot at the image's current
		// size; the snapshot's own size (recorded with it) is what the
		// disk was, and the rest reads as zeros in qemu too.
		want = want[:p.Size]
	}
	if p.Size != int64(len(want)) {
		t.Fatalf("%s: size %d, want %d", p.Name, p.Size, len(want))
	}
	d, err := p.Open()
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	defer d.Close()
	if _, err := d.WriteAt(make([]byte, SectorSize), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("%s: write: %v, want ErrReadOnly", p.Name, err)
	}
	checkDisk(t, d, want)
}

func TestPointsInTimeQcow2Snapshots(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	img := filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "4M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", base)
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", base, "-F", "qcow2", img)
	steps := []struct{ write, snap string }{
		{"write -P 0x21 0 64k", "before"},
		{"write -P 0x22 32k 1M", "a/b\x1bc"},
		{"write -z 512k 8k", "after"},
	}
	for _, s := range steps {
		run(t, "qemu-io", "-f", "qcow2", "-c", s.write, img)
		qemuImg(t, "snapshot", "-c", s.snap, img)
	}
	// A snapshot taken at a bigger size: the image grows after it.
	qemuImg(t, "resize", "-q", "-f", "qcow2", img, "6M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x23 5M 4096", img)
	qemuImg(t, "snapshot", "-c", "grown", img)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x24 0 4096", img)

	d := mustOpen(t, img, Options{ReadOnly: true})
	defer d.Close()
	pits, err := PointsInTime(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pits {
		names = append(names, p.Name)
	}
	wantNames := []string{"before", `a\x2fb\x1bc`, "after", "grown", "parent-1-base.qcow2"}
	if strings.Join(names, "|") != strings.Join(wantNames, "|") {
		t.Fatalf("names %q, want %q", names, wantNames)
	}
	for i, p := range pits[:4] {
		if p.Kind != "snapshot" || p.ID != fmt.Sprint(i+1) || time.Since(p.Created) > time.Hour || p.Created.After(time.Now()) {
			t.Fatalf("snapshot %+v", p)
		}
		checkPointInTime(t, p, qemuSnapshotRaw(t, img, "snapshot.id="+p.ID))
	}
	if p := pits[4]; p.Kind != "parent" || p.Path != base {
		t.Fatalf("parent %+v", p)
	} else {
		checkPointInTime(t, p, qemuRaw(t, "qcow2", base))
	}
	checkPointInTime(t, pits[0], qemuSnapshotRaw(t, img, "snapshot.name=before"))
	if p, err := FindPointInTime(d, Options{}, "a/b\x1bc"); err != nil || p.ID != "2" {
		t.Fatalf("find by label: %+v, %v", p, err)
	}
	if _, err := FindPointInTime(d, Options{}, "nope"); err == nil || !strings.Contains(err.Error(), "grown") {
		t.Fatalf("find a missing name: %v", err)
	}
}

func TestPointsInTimeChains(t *testing.T) {
	for _, c := range []struct{ format, ext string }{{"qcow2", "qcow2"}, {"vmdk", "vmdk"}, {"qed", "qed"}} {
		t.Run(c.format, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for i := 0; i < 3; i++ {
				p := filepath.Join(dir, fmt.Sprintf("level%d.%s", i, c.ext))
				args := []string{"create", "-q", "-f", c.format}
				if i > 0 {
					args = append(args, "-b", filepath.Base(paths[i-1]), "-F", c.format)
				}
				qemuImg(t, append(args, p, "3M")...)
				run(t, "qemu-io", "-f", c.format, "-c", fmt.Sprintf("write -P 0x%x %d 1M", 0x40+i, i*512*1024), p)
				paths = append(paths, p)
			}
			d := mustOpen(t, paths[2], Options{ReadOnly: true})
			defer d.Close()
			pits, err := PointsInTime(d, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pits) != 2 {
				t.Fatalf("%d points in time, want 2: %+v", len(pits), pits)
			}
			for k, p := range pits {
				level := paths[1-k]
				if want := fmt.Sprintf("parent-%d-%s", k+1, filepath.Base(level)); p.Name != want || p.Kind != "parent" {
					t.Fatalf("point in time %d: %+v, want name %s", k, p, want)
				}
				checkPointInTime(t, p, qemuRaw(t, c.format, level))
			}
		})
	}
}

func TestSafeNames(t *testing.T) {
	long := strings.Repeat("é", 200)
	pits := []PointInTime{
		{Label: "x", ID: "1"}, {Label: "x", ID: "2"}, {Label: "id-2"}, {Label: ""}, {Label: ".."},
		{Label: "a\\b"}, {Label: "\xff"}, {Label: long}, {Label: long},
	}
	nameUniquely(pits)
	seen := map[string]bool{}
	for _, p := range pits {
		if seen[p.Name] || len(p.Name) > 255 || strings.ContainsAny(p.Name, "/\x00") || p.Name == "." || p.Name == ".." || p.Name == "" {
			t.Fatalf("bad or repeated name %q in %+v", p.Name, pits)
		}
		seen[p.Name] = true
	}
	for i, want := range []string{"id-1", "id-2", "id-2-2", "snapshot", "snapshot..", `a\x5cb`, `\xff`} {
		if pits[i].Name != want {
			t.Fatalf("name %d: %q, want %q", i, pits[i].Name, want)
		}
	}
}

// A differencing VHD made by Windows: its parent level is the parent
// image as qemu reads it alone.
func TestPointsInTimeVHDSample(t *testing.T) {
	child := sampleFile(t, "go-vhd/win8-child.vhd", "win8.vhd")
	d := mustOpen(t, child, Options{ReadOnly: true})
	defer d.Close()
	pits, err := PointsInTime(d, Options{})
	if err != nil || len(pits) != 1 || pits[0].Name != "parent-1-win8.vhd" {
		t.Fatalf("points in time %+v, %v", pits, err)
	}
	checkPointInTime(t, pits[0], qemuRaw(t, "vpc", filepath.Join(filepath.Dir(child), "win8.vhd")))
}

// FuzzQcow2Snapshots: a crafted snapshot table gives errors, never a
// panic or an unbounded allocation, when listed and opened.
func FuzzQcow2Snapshots(f *testing.F) {
	dir := f.TempDir()
	img := filepath.Join(dir, "seed.qcow2")
	qemuImg(f, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, "1M")
	run(f, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5 0 8k", img)
	qemuImg(f, "snapshot", "-c", "one", img)
	run(f, "qemu-io", "-f", "qcow2", "-c", "write -P 0x6 4k 8k", img)
	qemuImg(f, "snapshot", "-c", "two", img)
	seed, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	fuzzCrafted(f, "f.qcow2", [][]byte{seed}, func(d Disk) {
		pits, _ := PointsInTime(d, Options{})
		buf := make([]byte, 16<<10)
		for _, pit := range pits {
			sd, err := pit.Open()
			if err != nil {
				continue
			}
			sd.ReadAt(buf, 0)
			sd.ReadAt(buf, max(0, sd.Size()-int64(len(buf)))/SectorSize*SectorSize)
			sd.Close()
		}
	})
}
