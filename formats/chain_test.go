package formats

import (
	"crypto/sha256"
	"path/filepath"
	"strconv"
	"testing"
)

// Backing chains three deep that mix formats: every level written by
// qemu-io, the whole read against qemu-img convert, then a write through
// the top that must not change any lower level.
func TestChainsMixingFormats(t *testing.T) {
	for _, chain := range [][]struct{ ext, qemuFmt string }{
		{{"vmdk", "vmdk"}, {"qcow2", "qcow2"}, {"qed", "qed"}},
		{{"vhd", "vpc"}, {"qed", "qed"}, {"qcow2", "qcow2"}},
		{{"vdi", "vdi"}, {"qcow2", "qcow2"}, {"qcow2", "qcow2"}},
	} {
		name := chain[0].ext + "-" + chain[1].ext + "-" + chain[2].ext
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			const size = 5<<20 + 3*512
			var paths []string
			for i, lvl := range chain {
				p := filepath.Join(dir, "level"+string(rune('0'+i))+"."+lvl.ext)
				if i == 0 {
					raw := writeTemp(t, "base.raw", patternDisk(size, 11))
					args := []string{"convert", "-f", "raw", "-O", lvl.qemuFmt}
					if lvl.qemuFmt == "vpc" {
						args = append(args, "-o", "force_size=on")
					}
					qemuImg(t, append(args, raw, p)...)
				} else {
					prev := chain[i-1]
					qemuImg(t, "create", "-f", lvl.qemuFmt, "-b", filepath.Base(paths[i-1]), "-F", prev.qemuFmt, p)
					pattern := []string{"", "0x35", "0xc5"}[i]
					write := "write -P " + pattern + " " + strconv.Itoa(i<<20) + " 300k"
					run(t, "qemu-io", "-f", lvl.qemuFmt, "-c", write, "-c", "write -z 64k 64k", p)
				}
				paths = append(paths, p)
			}
			top, topFmt := paths[2], chain[2].qemuFmt
			want := qemuRaw(t, topFmt, top)
			d := mustOpen(t, top, Options{})
			checkDisk(t, d, want)
			checkConcurrentReads(t, d, want)
			for p := d.Info().Parent; p != nil; p = p.Parent {
				if p.Path == "" {
					t.Fatal("chain level without a path in Info")
				}
			}
			sums := map[string][32]byte{}
			for _, p := range paths[:2] {
				b := readFile(t, p)
				sums[p] = sha256.Sum256(b)
			}
			randomWrites(t, d, want, 40, 5)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if got := qemuRaw(t, topFmt, top); string(got) != string(want) {
				t.Fatal("qemu reads something else than what was written through the top of the chain")
			}
			qemuCheck(t, topFmt, top)
			for _, p := range paths[:2] {
				b := readFile(t, p)
				if sha256.Sum256(b) != sums[p] {
					t.Fatalf("writing the top changed %s", filepath.Base(p))
				}
			}
		})
	}
}
