package formats

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parallelsSplitXML writes a descriptor whose storages cover the given
// sector ranges; files[s][k] is storage s's image of snapshot guids[k]
// (root first).
func parallelsSplitXML(ends []int64, files [][]string, guids []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version='1.0' encoding='UTF-8'?>\n<Parallels_disk_image Version=\"1.0\">\n  <Disk_Parameters>\n    <Disk_size>%d</Disk_size>\n    <Padding>0</Padding>\n  </Disk_Parameters>\n  <StorageData>\n", ends[len(ends)-1])
	start := int64(0)
	for s, end := range ends {
		fmt.Fprintf(&b, "    <Storage>\n      <Start>%d</Start>\n      <End>%d</End>\n      <Blocksize>128</Blocksize>\n", start, end)
		for k, g := range guids {
			fmt.Fprintf(&b, "      <Image>\n        <GUID>%s</GUID>\n        <Type>Compressed</Type>\n        <File>%s</File>\n      </Image>\n", g, files[s][k])
		}
		b.WriteString("    </Storage>\n")
		start = end
	}
	b.WriteString("  </StorageData>\n  <Snapshots>\n")
	for k, g := range guids {
		parent := parallelsRootGUID
		if k > 0 {
			parent = guids[k-1]
		}
		fmt.Fprintf(&b, "    <Shot>\n      <GUID>%s</GUID>\n      <ParentGUID>%s</ParentGUID>\n    </Shot>\n", g, parent)
	}
	b.WriteString("  </Snapshots>\n</Parallels_disk_image>\n")
	return b.String()
}

func TestParallelsSplit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "big.hdd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rootGUID := "{11111111-2222-3333-4444-555555555555}"
	sizes := []int64{3 << 20, 1 << 20, 2<<20 + 512*3} // the last one not cluster aligned
	var ends []int64
	var files [][]string
	var end int64
	for s, size := range sizes {
		end += size / SectorSize
		ends = append(ends, end)
		root := fmt.Sprintf("big.hdd.%d.%s.hds", s, rootGUID)
		top := fmt.Sprintf("big.hdd.%d.%s.hds", s, parallelsTopGUID)
		files = append(files, []string{root, top})
		for _, f := range []string{root, top} {
			qemuImg(t, "create", "-q", "-f", "parallels", "-o", "cluster_size=64K", filepath.Join(dir, f), strconv.FormatInt(size, 10))
		}
		// Data in every piece, in the root and (overlapping) in the top.
		run(t, "qemu-io", "-f", "parallels", "-c", fmt.Sprintf("write -P 0x%x 0 %d", 0x10+s, size-512),
			"-c", fmt.Sprintf("write -P 0x%x %d 512", 0x30+s, size-512), filepath.Join(dir, root))
		run(t, "qemu-io", "-f", "parallels", "-c", fmt.Sprintf("write -P 0x%x 65536 131072", 0x50+s), filepath.Join(dir, top))
	}
	xmlPath := filepath.Join(dir, parallelsXMLName)
	if err := os.WriteFile(xmlPath, []byte(parallelsSplitXML(ends, files, []string{rootGUID, parallelsTopGUID})), 0o644); err != nil {
		t.Fatal(err)
	}
	// The oracle: each storage read by qemu (top over root), joined.
	var want, wantRoot []byte
	for s := range sizes {
		top, root := filepath.Join(dir, files[s][1]), filepath.Join(dir, files[s][0])
		want = append(want, parallelsChainRaw(t, top, root, "parallels")...)
		wantRoot = append(wantRoot, qemuRaw(t, "parallels", root)...)
	}
	d := mustOpen(t, dir, Options{ReadOnly: true})
	if d.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", d.Size(), len(want))
	}
	checkDisk(t, d, want)
	checkConcurrentReads(t, d, want)
	info := d.Info()
	if info.Format != "parallels" || len(info.Files) != 1+len(sizes) || info.Parent == nil || len(info.Parent.Files) != len(sizes) || !strings.Contains(info.Variant, "split into 3 storages") {
		t.Fatalf("info %+v", info)
	}
	checkMap(t, d, want, nil)

	// The root snapshot of the split bundle, as the bundle saw it then.
	pits, err := PointsInTime(d, Options{})
	if err != nil || len(pits) != 1 || pits[0].Name != "parent-1-"+rootGUID || pits[0].Kind != "parent" {
		t.Fatalf("points in time %+v, %v", pits, err)
	}
	checkPointInTime(t, pits[0], wantRoot)
	d.Close()

	// Writes across storage boundaries land in each storage's top image.
	model := append([]byte(nil), want...)
	wd, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, wd, model, 40, 5)
	boundary := sizes[0] - 4096
	patch := bytes.Repeat([]byte{0xee}, 8192)
	if _, err := wd.WriteAt(patch, boundary); err != nil {
		t.Fatal(err)
	}
	copy(model[boundary:], patch)
	if err := wd.Close(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for s := range sizes {
		top, root := filepath.Join(dir, files[s][1]), filepath.Join(dir, files[s][0])
		got = append(got, parallelsChainRaw(t, top, root, "parallels")...)
		qemuCheck(t, "parallels", top)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("qemu reads the written storages differently")
	}

	// Gaps, overlaps and short images are refused.
	for name, mod := range map[string]func(string) string{
		"gap": func(x string) string {
			return strings.Replace(x, fmt.Sprintf("<Start>%d</Start>", ends[0]), fmt.Sprintf("<Start>%d</Start>", ends[0]+8), 1)
		},
		"overlap": func(x string) string {
			return strings.Replace(x, fmt.Sprintf("<Start>%d</Start>", ends[0]), fmt.Sprintf("<Start>%d</Start>", ends[0]-8), 1)
		},
		"short": func(x string) string {
			return strings.Replace(x, fmt.Sprintf("<End>%d</End>", ends[0]), fmt.Sprintf("<End>%d</End>", ends[0]+8), 1)
		},
	} {
		x := mod(parallelsSplitXML(ends, files, []string{rootGUID, parallelsTopGUID}))
		writeFile(t, xmlPath, []byte(x))
		if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
