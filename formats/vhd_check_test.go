package formats

import (
	"encoding/binary"
	"path/filepath"
	"testing"
)

func TestVHDCheckClean(t *testing.T) {
	data := patternDisk(5<<20+7*512, 41)
	cases := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"dynamic", func(t *testing.T) string { return vhdFixture(t, data, "subformat=dynamic") }},
		{"dynamic-force-size", func(t *testing.T) string { return vhdFixture(t, data, "subformat=dynamic,force_size=on") }},
		{"fixed", func(t *testing.T) string { return vhdFixture(t, data, "subformat=fixed") }},
		{"dynamic-qemu-io", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "io.vhd")
			qemuImg(t, "create", "-f", "vpc", p, "9M")
			qemuIO(t, "vpc", p, "write -P 0x11 0 3k", "write -P 0x12 6m 1m")
			return p
		}},
		{"vdflat-writes", func(t *testing.T) string {
			p := vhdFixture(t, make([]byte, 6<<20), "subformat=dynamic,force_size=on")
			model := make([]byte, 6<<20)
			w := mustOpen(t, p, Options{})
			randomWrites(t, w, model, 30, 7)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"windows-differencing", func(t *testing.T) string {
			return sampleFile(t, "go-vhd/win8-child.vhd", "win8.vhd")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			if f := checkFindings(t, tc.make(t)); len(f) != 0 {
				t.Fatalf("findings on a sound image: %q", f)
			}
		})
	}
}

// TestVHDCheckSampleChecksums: dfvfs's sample has a bad checksum in both
// footer copies (expected.tsv); the differencing child also in its
// dynamic header.
func TestVHDCheckSampleChecksums(t *testing.T) {
	p := sampleFile(t, "dfvfs/image.vhd.gz")
	f := checkFindings(t, p)
	if !hasFinding(f, "footer at 0x200a00: checksum 0xfffff683, computed 0xffffef25") || !hasFinding(f, "footer copy at offset 0: checksum") {
		t.Fatalf("image.vhd findings %q", f)
	}
	child := sampleFile(t, "dfvfs/image-differential.vhd.gz", "image.vhd.gz")
	f = checkFindings(t, child)
	if !hasFinding(f, "dynamic header at 0x200: checksum 0xfffff476, computed 0xffffe9a5") || !hasFinding(f, "parent ") {
		t.Fatalf("image-differential.vhd findings %q", f)
	}
}

func TestVHDCheckDamage(t *testing.T) {
	src := vhdFixture(t, patternDisk(5<<20, 43), "subformat=dynamic,force_size=on")
	orig := readFile(t, src)
	be := binary.BigEndian
	footer := int64(len(orig)) - 512
	hdr := int64(be.Uint64(orig[16:]))
	table := int64(be.Uint64(orig[hdr+16:]))
	bat0 := be.Uint32(orig[table:])
	if bat0 == vhdUnallocated || be.Uint32(orig[table+4:]) == vhdUnallocated {
		t.Fatal("fixture lacks blocks 0 and 1")
	}
	u32 := func(v uint32) []byte { return be.AppendUint32(nil, v) }
	cases := []struct {
		name  string
		off   int64
		bytes []byte
		want  []string
	}{
		{"footer-checksum", footer + 64, u32(be.Uint32(orig[footer+64:]) ^ 0x10), []string{"footer at 0x", ": checksum", "footer copy at offset 0 differs"}},
		{"footer-copy", 70, []byte{orig[70] ^ 0xff}, []string{"footer copy at offset 0: checksum", "footer copy at offset 0 differs from the footer"}},
		{"dynamic-header-checksum", hdr + 36, u32(be.Uint32(orig[hdr+36:]) + 1), []string{"dynamic header at 0x200: checksum"}},
		{"bat-overlap", table + 4, u32(bat0), []string{"block table entry 1 (block at", "overlaps block table entry 0"}},
		{"bat-on-table", table + 4, u32(uint32(table / 512)), []string{"block table entry 1 (block at", "overlaps the block table"}},
		{"bat-past-eof", table, u32(0x7fffff00), []string{"entry 0: block at 0xfffffe0000", "runs past the end of the file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			f, _ := damagedFindings(t, "disk.vhd", orig, tc.off, tc.bytes)
			for _, w := range tc.want {
				if !hasFinding(f, w) {
					t.Fatalf("findings %q lack %q", f, w)
				}
			}
		})
	}
}

func vhdCheckSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, opts := range []string{"subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
		b := readFile(t, vhdFixture(t, patternDisk(64<<10, 1), opts))
		out = append(out, b)
	}
	return append(out, vhdSampleBytes(t, "go-vhd/win8.vhd"))
}

func TestVHDCheckCrafted(t *testing.T) { tryVariants(t, "c.vhd", vhdCheckSeeds(t), 15, runCheck) }

func FuzzVHDCheck(f *testing.F) { fuzzCrafted(f, "f.vhd", vhdCheckSeeds(f), runCheck) }
