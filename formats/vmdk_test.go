package formats

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vmdkFixture converts patternDisk data of size bytes to a VMDK of the
// given subformat with qemu-img and returns its path and qemu's reading
// of it (the oracle).
func vmdkFixture(t testing.TB, dir, name, subformat string, size, seed int64, opts ...string) (string, []byte) {
	t.Helper()
	raw := filepath.Join(dir, name+".raw")
	if err := os.WriteFile(raw, patternDisk(size, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".vmdk")
	o := "subformat=" + subformat
	for _, x := range opts {
		o += "," + x
	}
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", o, raw, p)
	os.Remove(raw)
	return p, qemuRaw(t, "vmdk", p)
}

// qemuIO runs qemu-io commands on a vmdk image.
func vmdkQemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "vmdk"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	run(t, "qemu-io", append(args, path)...)
}

// vmdkHashFiles returns the md5 of each file, to prove a parent unchanged.
func vmdkHashFiles(t testing.TB, paths ...string) string {
	t.Helper()
	h := md5.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func vmdkDirFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var vmdkSubformats = []string{"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"}

func TestVMDKSubformatsRead(t *testing.T) {
	// Sizes that are not multiples of the 64 KiB grain, nor of a grain table's 32 MiB.
	for i, size := range []int64{3<<20 + 7*512, 1<<20 + 512} {
		for _, sf := range vmdkSubformats {
			t.Run(fmt.Sprintf("%s-%d", sf, size), func(t *testing.T) {
				dir := t.TempDir()
				p, want := vmdkFixture(t, dir, "disk", sf, size, int64(i+1), "adapter_type=lsilogic")
				before := vmdkHashFiles(t, vmdkDirFiles(t, dir)...)
				d := mustOpen(t, p, Options{ReadOnly: true})
				checkDisk(t, d, want)
				checkConcurrentReads(t, d, want)
				info := d.Info()
				if info.Format != "vmdk" || info.Variant != sf || !info.ReadOnly {
					t.Fatalf("info %+v", info)
				}
				if strings.Contains(sf, "Sparse") || sf == "streamOptimized" {
					if info.ClusterSize != 65536 {
						t.Fatalf("cluster size %d", info.ClusterSize)
					}
				}
				if info.Metadata["CID"] == "" || info.Metadata["parentCID"] != "ffffffff" || info.Metadata["ddb.adapterType"] != "lsilogic" {
					t.Fatalf("metadata %v", info.Metadata)
				}
				if len(info.Files) < 1 || info.Files[0] != p || (strings.Contains(sf, "Flat") && len(info.Files) != 2) {
					t.Fatalf("files %v", info.Files)
				}
				vmdkCheckMap(t, d, want)
				d.Close()
				if after := vmdkHashFiles(t, vmdkDirFiles(t, dir)...); after != before {
					t.Fatal("a read-only open changed the image files")
				}
			})
		}
	}
}

// vmdkCheckMap checks that every range Map calls unallocated reads as zeros.
func vmdkCheckMap(t testing.TB, d Disk, want []byte) {
	t.Helper()
	m := d.(Mapper)
	for off := int64(0); off < d.Size(); {
		alloc, n, err := m.Map(off, d.Size()-off)
		if err != nil || n <= 0 {
			t.Fatalf("Map(%d) = %v, %d, %v", off, alloc, n, err)
		}
		if !alloc {
			end := min(off+n, int64(len(want)))
			if !allZero(want[off:end]) {
				t.Fatalf("Map says %d+%d unallocated but it holds data", off, n)
			}
		}
		off += n
	}
}

func TestVMDKSamples(t *testing.T) {
	for _, s := range samples(t, "vmdk") {
		t.Run(s.Path, func(t *testing.T) {
			p := sampleFile(t, s.Path)
			if s.ExpectError() || s.MD5 == "-" {
				_, err := Open(p, Options{ReadOnly: true})
				if err == nil || !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("open: %v, want a corrupt-image error", err)
				}
				t.Logf("%s: %v", s.Path, err)
				return
			}
			d := mustOpen(t, p, Options{ReadOnly: true})
			if d.Size() != s.VSize {
				t.Fatalf("size %d, want %d", d.Size(), s.VSize)
			}
			if d.Size() <= 64<<20 {
				if got := diskMD5(t, d); got != s.MD5 {
					t.Fatalf("md5 %s, want %s", got, s.MD5)
				}
				return
			}
			// Huge and mostly zero: compare the stored grains and samples of
			// the rest with qemu's conversion (a sparse file).
			raw := filepath.Join(t.TempDir(), "oracle.raw")
			qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
			rf, err := os.Open(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer rf.Close()
			m := d.(Mapper)
			stored := int64(0)
			for off := int64(0); off < d.Size(); {
				alloc, n, err := m.Map(off, d.Size()-off)
				if err != nil {
					t.Fatal(err)
				}
				if alloc || off%(1<<30) == 0 {
					k := min(n, 4<<20)
					if alloc {
						k = n
						stored += n
					}
					got, want := make([]byte, k), make([]byte, k)
					if _, err := d.ReadAt(got, off); err != nil {
						t.Fatal(err)
					}
					if _, err := rf.ReadAt(want, off); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("data at %d+%d differs from qemu's", off, k)
					}
				}
				off += n
			}
			// Every byte qemu wrote lies in a range Map calls stored.
			for off := int64(0); ; {
				data, err := rf.Seek(off, 3) // SEEK_DATA
				if err != nil {
					break
				}
				hole, _ := rf.Seek(data, 4) // SEEK_HOLE
				buf := make([]byte, hole-data)
				rf.ReadAt(buf, data)
				for i := 0; i < len(buf); i += 512 {
					if !allZero(buf[i:min(len(buf), i+512)]) {
						if alloc, _, _ := m.Map(data+int64(i), 512); !alloc {
							t.Fatalf("qemu has data at %d, Map says unallocated", data+int64(i))
						}
					}
				}
				off = hole
			}
			if stored == 0 {
				t.Fatal("no stored grains found")
			}
		})
	}
}

func TestVMDKSampleRenamed(t *testing.T) {
	// The embedded descriptor names "ext2.vmdk"; the file itself is the extent.
	p := sampleFile(t, "dfvfs/ext2.vmdk")
	q := filepath.Join(filepath.Dir(p), "renamed disk.img")
	if err := os.Rename(p, q); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, q, Options{ReadOnly: true})
	if got := diskMD5(t, d); got != "196066add11fb71c4c49cf1bb50d6d24" {
		t.Fatalf("md5 %s", got)
	}
}
