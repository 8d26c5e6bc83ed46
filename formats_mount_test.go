package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One real mount per format: make an image with the format's own tools,
// attach it, compare the flattened file with the oracle's raw output,
// detach.
func TestMountFormats(t *testing.T) {
	m := startMount(t)
	for _, c := range formatCases(t) {
		t.Run(c.name, func(t *testing.T) {
			img, oracle := c.make(t, t.TempDir())
			p := m.attach(t, img, c.name)
			runTool(t, "", "cmp", oracle, p)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// formatCase makes one image of a format in dir with the format's own
// tools, and the oracle's raw flattening of it.
type formatCase struct {
	name string
	make func(t *testing.T, dir string) (image, oracle string)
}

// formatCases lists one case per format, all made from one raw disk.
func formatCases(t *testing.T) []formatCase {
	raw, _ := mbrDisk(t, 6<<20+3*512) // not a multiple of any cluster size
	// Zero runs, so sparse formats have holes.
	exec.Command("dd", "if=/dev/zero", "of="+raw, "bs=64k", "seek=20", "count=30", "conv=notrunc").Run()
	samples, _ := filepath.Abs(filepath.Join("..", "shared", "samples"))
	qemu := func(format string, opts ...string) func(t *testing.T, dir string) (string, string) {
		return func(t *testing.T, dir string) (string, string) {
			img := filepath.Join(dir, "disk."+format)
			args := append([]string{"convert", "-f", "raw", "-O", format}, opts...)
			runTool(t, "", "qemu-img", append(args, raw, img)...)
			out := filepath.Join(dir, "oracle.raw")
			runTool(t, "", "qemu-img", "convert", "-f", format, "-O", "raw", img, out)
			return img, out
		}
	}
	return []formatCase{
		{"qcow2", qemu("qcow2")},
		{"qcow2-zlib", qemu("qcow2", "-c")},
		{"qcow", qemu("qcow")},
		{"qed", qemu("qed")},
		{"vdi", qemu("vdi")},
		{"vmdk", qemu("vmdk")},
		{"vmdk-stream", qemu("vmdk", "-o", "subformat=streamOptimized")},
		{"vhd", qemu("vpc", "-o", "force_size=on")},
		{"vhdx", qemu("vhdx")},
		{"parallels", qemu("parallels")},
		{"ewf", func(t *testing.T, dir string) (string, string) {
			runTool(t, "", "ewfacquire", "-u", "-t", filepath.Join(dir, "disk"), "-c", "deflate:fast", "-S", "1MiB", raw)
			runTool(t, "", "ewfexport", "-u", "-f", "raw", "-t", filepath.Join(dir, "oracle"), filepath.Join(dir, "disk.E01"))
			return filepath.Join(dir, "disk.E01"), filepath.Join(dir, "oracle.raw")
		}},
		{"aff", func(t *testing.T, dir string) (string, string) {
			img, out := filepath.Join(dir, "disk.aff"), filepath.Join(dir, "oracle.raw")
			// afflib guesses its input's type from the name: give it .raw.
			in := filepath.Join(dir, "in.raw")
			runTool(t, "", "cp", raw, in)
			runTool(t, "", "affconvert", "-o", img, in)
			b, err := exec.Command("affcat", img).Output()
			if err != nil {
				t.Fatalf("affcat: %v", err)
			}
			os.WriteFile(out, b, 0o644)
			return img, out
		}},
		{"dmg", func(t *testing.T, dir string) (string, string) {
			out := filepath.Join(dir, "oracle.raw")
			img := filepath.Join(samples, "udif", "compression-zlib.dmg")
			runTool(t, "", "dmg2img", "-i", img, "-o", out)
			return img, out
		}},
		{"split", func(t *testing.T, dir string) (string, string) {
			runTool(t, dir, "split", "-d", "-a", "3", "--numeric-suffixes=1", "-b", "1M", raw, "disk.")
			return filepath.Join(dir, "disk.001"), raw
		}},
	}
}

// Attach failures map to the errno the behaviour table names, and the
// status file says why.
func TestMountFormatErrors(t *testing.T) {
	dir := t.TempDir()
	m := startMount(t)
	// A corrupt image: a qcow2 header whose L1 table lies past the end.
	bad := filepath.Join(dir, "bad.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", bad, "1G")
	os.Truncate(bad, 1024)
	wantErrno(t, "corrupt qcow2", os.Symlink(bad, filepath.Join(m.flat, "bad")), syscall.EIO)
	// An unsupported feature: encryption (qemu's AES format: LUKS key
	// derivation takes seconds).
	enc := filepath.Join(dir, "enc.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", "--object", "secret,id=s0,data=pw",
		"-o", "encrypt.format=aes,encrypt.key-secret=s0", enc, "16M")
	wantErrno(t, "encrypted qcow2", os.Symlink(enc, filepath.Join(m.flat, "enc")), syscall.ENOTSUP)
	// A missing parent.
	base := filepath.Join(dir, "base.qcow2")
	child := filepath.Join(dir, "child.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", base, "16M")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", child)
	os.Remove(base)
	wantErrno(t, "missing parent", os.Symlink(child, filepath.Join(m.flat, "child")), syscall.ENOENT)
	status, _ := os.ReadFile(filepath.Join(m.dir, "status"))
	for _, want := range []string{"bad -> " + bad, "enc -> " + enc, "child -> " + child, "base.qcow2"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
}

// st_blocks is what the image stores. A VHD counts it by scanning its
// whole block table, which attach leaves for later so that a 2 TiB image
// attaches as fast as a small one: the count shows up while it is served.
func TestMountAllocation(t *testing.T) {
	raw, _ := mbrDisk(t, 9<<20+3*512)
	// Two whole 2 MiB blocks of zeros, which qemu leaves unallocated.
	runTool(t, "", "dd", "if=/dev/zero", "of="+raw, "bs=1M", "seek=2", "count=4", "conv=notrunc", "status=none")
	img := filepath.Join(t.TempDir(), "disk.vhd")
	runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", raw, img)
	var runs []struct {
		Length int64
		Data   bool
	}
	if err := json.Unmarshal([]byte(runTool(t, "", "qemu-img", "map", "--output=json", "-f", "vpc", img)), &runs); err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, r := range runs {
		if r.Data {
			stored += r.Length
		}
	}
	want := (stored + 511) / 512
	m := startMount(t)
	p := m.attach(t, img, "disk")
	var got int64
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if got = st.Blocks; got == want {
			return
		}
	}
	t.Fatalf("st_blocks %d, want %d (qemu-img map: %d bytes of data)", got, want, stored)
}
