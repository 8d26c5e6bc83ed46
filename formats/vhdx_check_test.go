package formats

import (
	"encoding/binary"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// vhdxCheckFixture makes a VHDX of 7 MiB with qemu-img and writes to it
// with qemu-io (data, a partial block, zeros).
func vhdxCheckFixture(t *testing.T, opts string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "io.vhdx")
	qemuImg(t, "create", "-f", "vhdx", "-o", opts+",log_size=1M", p, "7M")
	qemuIO(t, "vhdx", p, "write -P 0x11 0 3k", "write -P 0x12 1m 20k", "write -P 0x13 5m 1500k", "write -z 2m 1m")
	return p
}

func TestVHDXCheckClean(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"dynamic-1M", func(t *testing.T) string { return vhdxCheckFixture(t, "subformat=dynamic,block_size=1M") }},
		{"fixed-2M", func(t *testing.T) string { return vhdxCheckFixture(t, "subformat=fixed,block_size=2M") }},
		{"dynamic-8M-no-zero-state", func(t *testing.T) string {
			return vhdxCheckFixture(t, "subformat=dynamic,block_size=8M,block_state_zero=off")
		}},
		{"differencing", func(t *testing.T) string {
			p, _ := vhdxDiffFixture(t, 512, vhdxStdLocator)
			return p
		}},
		// A log still to replay is not an inconsistency.
		{"sample-dirty-log", func(t *testing.T) string {
			return sampleFile(t, "qemu-iotests/iotest-dirtylog-10G-4M.vhdx.bz2")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			p := tc.make(t)
			if f := checkFindings(t, p); len(f) != 0 {
				t.Fatalf("findings on a sound image: %q", f)
			}
			// qemu agrees where it can: it has no differencing VHDX and
			// opens an image with a dirty log only to repair it.
			if !strings.HasPrefix(tc.name, "differencing") && !strings.HasPrefix(tc.name, "sample-dirty") {
				if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", p).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors") {
					t.Fatalf("qemu-img check: %v\n%s", err, out)
				}
			}
		})
	}
}

func TestVHDXCheckDamage(t *testing.T) {
	src := vhdxCheckFixture(t, "subformat=dynamic,block_size=1M")
	orig := readFile(t, src)
	le := binary.LittleEndian
	// The BAT and the metadata table, from region table 1.
	var batOff, metaOff int64
	rt := orig[vhdxRegion1Off:]
	for i := 0; i < int(le.Uint32(rt[8:])); i++ {
		e := rt[16+32*i:]
		switch vhdxGUID(e[:16]) {
		case vhdxRegionBAT:
			batOff = int64(le.Uint64(e[16:]))
		case vhdxRegionMetadata:
			metaOff = int64(le.Uint64(e[16:]))
		}
	}
	bat0 := le.Uint64(orig[batOff:])
	if batOff == 0 || metaOff == 0 || bat0&7 != vhdxFullyPresent || le.Uint64(orig[batOff+8:])&7 != vhdxFullyPresent {
		t.Fatal("unexpected fixture layout")
	}
	// Metadata entries of the logical and physical sector sizes.
	var logical, physical int64
	mt := orig[metaOff:]
	for i := 0; i < int(le.Uint16(mt[10:])); i++ {
		e := mt[32+32*i:]
		switch vhdxGUID(e[:16]) {
		case vhdxMetaLogicalSector:
			logical = metaOff + 32 + 32*int64(i)
		case vhdxMetaPhysSector:
			physical = metaOff + 32 + 32*int64(i)
		}
	}
	u64 := func(v uint64) []byte { return le.AppendUint64(nil, v) }
	cases := []struct {
		name   string
		off    int64
		bytes  []byte
		want   string
		oracle bool // qemu-img check reports it too
	}{
		{"header1-crc", vhdxHeader1Off + 200, []byte{1}, "header 1 at 0x10000: CRC-32C", false},
		{"header2-signature", vhdxHeader2Off, []byte("xxxx"), "header 2 at 0x20000 has no \"head\" signature", false},
		{"region2-crc", vhdxRegion2Off + 1000, []byte{1}, "region table 2 at 0x40000: CRC-32C", false},
		// qemu-img check 7.2 does not look for overlapping blocks.
		{"bat-overlap", batOff + 8, u64(bat0), "overlaps BAT entry 0 (block at", false},
		{"bat-past-eof", batOff, u64(1<<40 | vhdxFullyPresent), "entry 0: payload block 0 at 0x10000000000 (1048576 bytes) lies outside the file", true},
		{"bat-state", batOff, u64(bat0&^7 | 4), "entry 0: payload block 0 has invalid state 4", false},
		{"metadata-overlap", physical + 16, append([]byte(nil), orig[logical+16:logical+20]...), "metadata item physical sector size overlaps metadata item logical sector size", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most time goes to qemu processes
			f, p := damagedFindings(t, "disk.vhdx", orig, tc.off, tc.bytes)
			if !hasFinding(f, tc.want) {
				t.Fatalf("findings %q lack %q", f, tc.want)
			}
			if tc.oracle {
				if out, err := exec.Command("qemu-img", "check", "-f", "vhdx", p).CombinedOutput(); err == nil {
					t.Fatalf("qemu-img check finds the damaged image clean:\n%s", out)
				}
			}
		})
	}
}

// vhdxCheckSeed is a small built dynamic image (fuzz-encoded: its
// zero pages cost nothing).
func vhdxCheckSeed() []byte {
	r := rand.New(rand.NewSource(1))
	im := &vhdxTestImage{size: 3<<20 + 512, blockSize: 1 << 20, sector: 512, dataWrite: vhdxTestGUID(r),
		blocks: map[int64]vhdxTestBlock{0: {state: 6, data: make([]byte, 1<<20)}, 1: {state: 6, data: make([]byte, 1<<20)}, 2: {state: 2}}}
	copy(im.blocks[0].data, "some data")
	return im.build()
}

func TestVHDXCheckCrafted(t *testing.T) {
	img := vhdxCheckSeed()
	r := rand.New(rand.NewSource(3))
	// Flip bits in the headers, region tables, and the first metadata
	// and BAT pages (where the builder puts them).
	for i := 0; i < 15; i++ {
		c := append([]byte(nil), img...)
		for j := 0; j < 1+r.Intn(4); j++ {
			var pos int
			switch r.Intn(3) {
			case 0:
				pos = 64<<10 + r.Intn(256<<10)
			default:
				pos = 1<<20 + r.Intn(min(len(c)-1<<20, 4<<20))
			}
			c[pos] ^= byte(1 << r.Intn(8))
		}
		tryCrafted(t, "c.vhdx", c, runCheck)
	}
}

func FuzzVHDXCheck(f *testing.F) {
	f.Add(vhdxFuzzEncode(vhdxCheckSeed()))
	f.Fuzz(func(t *testing.T, data []byte) {
		tryCrafted(t, "f.vhdx", vhdxFuzzDecode(data), runCheck)
	})
}
