package formats

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qcow2CheckOracle runs `qemu-img check` and returns its output and
// whether it found the image clean.
func qcow2CheckOracle(t *testing.T, path string) (string, bool) {
	t.Helper()
	// Run in the image's directory: qemu resolves a relative data file
	// name against its working directory.
	cmd := exec.Command("qemu-img", "check", "-f", "qcow2", filepath.Base(path))
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	s := string(out)
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("qemu-img check: %v", err)
		}
	}
	clean := err == nil && strings.Contains(s, "No errors") && !strings.Contains(s, "leak")
	return s, clean
}

func TestQCOW2CheckClean(t *testing.T) {
	pattern := patternDisk(3<<20+5*512, 31)
	cases := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"writes-4k", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "a.qcow2")
			qemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=4096", p, "5M")
			qemuIO(t, "qcow2", p, "write -P 0x11 0 70k", "write -P 0x12 2m 8k", "write -z 3m 64k", "write -P 0x13 5119k 1k")
			return p
		}},
		{"v2", func(t *testing.T) string {
			return qcow2Convert(t, pattern, "compat=0.10,cluster_size=4096", false)
		}},
		{"refcount1", func(t *testing.T) string {
			return qcow2Convert(t, pattern, "refcount_bits=1,cluster_size=4096", false)
		}},
		{"refcount64-extl2", func(t *testing.T) string {
			p := qcow2Convert(t, pattern, "refcount_bits=64,extended_l2=on,cluster_size=16384", false)
			qemuIO(t, "qcow2", p, "write -P 0x21 1m 2k", "write -z 2m 1k")
			return p
		}},
		{"compressed-snapshots", func(t *testing.T) string {
			p := qcow2Convert(t, pattern, "cluster_size=4096", true)
			qemuImg(t, "snapshot", "-c", "one", p)
			qemuIO(t, "qcow2", p, "write -P 0x31 0 20k", "write -P 0x32 1m 4k")
			qemuImg(t, "snapshot", "-c", "two", p)
			qemuIO(t, "qcow2", p, "write -P 0x33 8k 8k", "write -z 2m 64k")
			return p
		}},
		{"extl2-compressed-snapshot-deleted", func(t *testing.T) string {
			p := qcow2Convert(t, pattern, "extended_l2=on,cluster_size=16384", true)
			qemuImg(t, "snapshot", "-c", "one", p)
			qemuIO(t, "qcow2", p, "write -P 0x34 4k 2k", "write -z 1m 32k")
			qemuImg(t, "snapshot", "-c", "two", p)
			qemuIO(t, "qcow2", p, "write -P 0x35 2m 8k")
			qemuImg(t, "snapshot", "-d", "one", p)
			return p
		}},
		{"prealloc-metadata-512", func(t *testing.T) string {
			return qcow2Convert(t, pattern[:1<<20], "preallocation=metadata,cluster_size=512", false)
		}},
		{"prealloc-falloc", func(t *testing.T) string {
			return qcow2Convert(t, pattern, "preallocation=falloc,cluster_size=65536", false)
		}},
		{"zstd", func(t *testing.T) string {
			return qcow2Convert(t, pattern, "compression_type=zstd,cluster_size=8192", true)
		}},
		{"bitmaps", func(t *testing.T) string {
			p := qcow2Convert(t, pattern, "cluster_size=4096", false)
			qemuImg(t, "bitmap", "--add", p, "b0")
			qemuIO(t, "qcow2", p, "write -P 0x41 0 64k", "write -P 0x42 2m 64k")
			return p
		}},
		{"backing-chain", func(t *testing.T) string {
			base := qcow2Convert(t, pattern, "cluster_size=4096", false)
			p := filepath.Join(t.TempDir(), "top.qcow2")
			qemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", base, "-F", "qcow2", p)
			qemuIO(t, "qcow2", p, "write -P 0x51 4k 4k", "write -P 0x52 1m 70k")
			return p
		}},
		{"data-file", func(t *testing.T) string {
			dir := t.TempDir()
			qcow2RunIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-o", "data_file=img.data,cluster_size=4096", "img.qcow2", "2M")
			qcow2RunIn(t, dir, "qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 70k", "-c", "write -P 0x62 1m 4k", "img.qcow2")
			return filepath.Join(dir, "img.qcow2")
		}},
		{"vdflat-writes", func(t *testing.T) string {
			p := qcow2Convert(t, pattern, "cluster_size=4096", true)
			qemuImg(t, "snapshot", "-c", "one", p)
			model := qemuRaw(t, "qcow2", p)
			w := mustOpen(t, p, Options{})
			randomWrites(t, w, model, 40, 3)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			p := tc.make(t)
			if out, clean := qcow2CheckOracle(t, p); !clean {
				t.Fatalf("qemu-img check finds the fixture unclean:\n%s", out)
			}
			if f := checkFindings(t, p); len(f) != 0 {
				t.Fatalf("findings on a clean image: %q", f)
			}
		})
	}
}

// qcow2CheckLayout finds, in a fixture, the first L2 table, its first
// data entry and the file position of that cluster's 16-bit refcount.
type qcow2CheckLayout struct {
	l2, entry, host, refPos int64
	cs                      int64
	rtBlock                 int64
}

func qcow2CheckLocate(t *testing.T, p string) qcow2CheckLayout {
	t.Helper()
	d, err := Open(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	q := d.(*qcow2Disk)
	var lay qcow2CheckLayout
	lay.cs = q.cs
	lay.l2 = int64(q.l1[0] & qcow2OffMask)
	lay.entry = int64(binary.BigEndian.Uint64(peekFile(t, p, lay.l2, 8)))
	lay.host = lay.entry & int64(qcow2OffMask)
	lay.rtBlock = int64(binary.BigEndian.Uint64(peekFile(t, p, int64(q.h.RTOff), 8)))
	if lay.host == 0 || lay.rtBlock == 0 || q.h.RefcountOrder != 4 {
		t.Fatalf("unexpected fixture layout %+v", lay)
	}
	lay.refPos = lay.rtBlock + (lay.host/lay.cs)*2
	return lay
}

func TestQCOW2CheckDamage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=4096", src, "4M")
	qemuIO(t, "qcow2", src, "write -P 0x11 0 40k", "write -P 0x12 3m 8k")
	orig := readFile(t, src)
	lay := qcow2CheckLocate(t, src)
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	cases := []struct {
		name, want string
		damage     func(t *testing.T, p string)
	}{
		{"refcount-0", "is in use but its refcount is 0", func(t *testing.T, p string) {
			pokeFile(t, p, lay.refPos, be16(0))
		}},
		{"refcount-2", "has refcount 2 but 1 reference", func(t *testing.T, p string) {
			pokeFile(t, p, lay.refPos, be16(2))
		}},
		{"leak", "is unused but has refcount 1 (leaked)", func(t *testing.T, p string) {
			// A free cluster appended to the file, counted as used.
			size := int64(len(orig))
			end := (size + lay.cs - 1) / lay.cs * lay.cs
			if err := os.Truncate(p, end+lay.cs); err != nil {
				t.Fatal(err)
			}
			pokeFile(t, p, lay.rtBlock+(end/lay.cs)*2, be16(1))
		}},
		{"l2-past-eof", "points past the end of the file", func(t *testing.T, p string) {
			pokeFile(t, p, lay.l2, be64(uint64(1<<30)|qcow2Copied))
		}},
		{"l2-unaligned", "not cluster-aligned", func(t *testing.T, p string) {
			pokeFile(t, p, lay.l2, be64(uint64(lay.host+512)|qcow2Copied))
		}},
		{"copied-clear", "copied flag is clear", func(t *testing.T, p string) {
			pokeFile(t, p, lay.l2, be64(uint64(lay.host)))
		}},
		{"lazy-refcount-crash", "marked dirty", func(t *testing.T, p string) {
			// Refcounts not updated before a crash: qemu-io aborts with
			// lazy refcounts on (the header is set dirty).
			qemuImg(t, "amend", "-o", "lazy_refcounts=on", p)
			_ = exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x78 2m 64k", "-c", "abort", p).Run()
		}},
		{"shared-cluster", "has refcount 1 but 2 reference(s)", func(t *testing.T, p string) {
			// A second guest cluster pointing at the first one's host cluster.
			pokeFile(t, p, lay.l2+8*100, be64(uint64(lay.host)|qcow2Copied))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			p := writeTemp(t, "img.qcow2", orig)
			tc.damage(t, p)
			out, clean := qcow2CheckOracle(t, p)
			if clean {
				t.Fatalf("qemu-img check finds no problem in the damaged image:\n%s", out)
			}
			f := checkFindings(t, p)
			t.Logf("findings: %q", f)
			found := false
			for _, s := range f {
				found = found || strings.Contains(s, tc.want)
			}
			if !found {
				t.Fatalf("findings %q lack %q; qemu-img check says:\n%s", f, tc.want, out)
			}
		})
	}
}

func TestQCOW2CheckBackingDamage(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=4096", base, "2M")
	qemuIO(t, "qcow2", base, "write -P 0x11 0 8k")
	lay := qcow2CheckLocate(t, base)
	top := filepath.Join(t.TempDir(), "top.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	qemuIO(t, "qcow2", top, "write -P 0x12 1m 4k")
	pokeFile(t, base, lay.refPos, []byte{0, 0})
	f := checkFindings(t, top)
	if len(f) != 1 || !strings.HasPrefix(f[0], "backing file "+base+": cluster at") || !strings.Contains(f[0], "refcount is 0") {
		t.Fatalf("findings %q", f)
	}
}

// qcow2CheckSeeds are small images with every structure Check reads:
// snapshots, compressed clusters, bitmaps, extended L2 entries.
func qcow2CheckSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, opts := range []string{"cluster_size=512", "cluster_size=1024,compat=0.10", "extended_l2=on,cluster_size=16384,compression_type=zstd"} {
		p := qcow2Convert(t, patternDisk(12<<10, 5), opts, true)
		qemuImg(t, "snapshot", "-c", "s", p)
		qemuIO(t, "qcow2", p, "write -P 0x11 2k 1k")
		if !strings.Contains(opts, "compat=0.10") {
			qemuImg(t, "bitmap", "--add", p, "b")
			qemuIO(t, "qcow2", p, "write -P 0x12 8k 1k")
		}
		b := readFile(t, p)
		out = append(out, b)
	}
	return out
}

func TestQCOW2CheckCrafted(t *testing.T) { tryVariants(t, "c.qcow2", qcow2CheckSeeds(t), 25, runCheck) }

func FuzzQCOW2Check(f *testing.F) { fuzzCrafted(f, "f.qcow2", qcow2CheckSeeds(f), runCheck) }
