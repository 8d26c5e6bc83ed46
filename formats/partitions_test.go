package formats

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// sfdiskTable partitions a raw file with sfdisk and returns what
// `sfdisk --json` reads back: the oracle for Partitions.
func sfdiskTable(t *testing.T, path, script string) []map[string]any {
	t.Helper()
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	var js struct {
		PartitionTable struct {
			Partitions []map[string]any `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(run(t, "sfdisk", "--json", path), &js); err != nil {
		t.Fatal(err)
	}
	return js.PartitionTable.Partitions
}

func TestPartitionsAgainstSfdisk(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"mbr-logical", "label: dos\nstart=64,size=1000,type=83,bootable\nstart=2048,size=20000,type=5\nstart=2100,size=3000,type=7\nstart=6000,size=4000,type=82\nstart=12000,size=2000,type=83\nstart=30000,size=1000,type=c\n"},
		{"gpt", "label: gpt\nstart=2048,size=4096,type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B,name=\"EFI system\"\nstart=6144,size=10000,type=0FC63DAF-8483-4772-8E79-3D69D8477DE4,name=\"root fs\"\nstart=20000,size=8000,type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "disk.img", make([]byte, 40000*512))
			want := sfdiskTable(t, p, tc.script)
			d := mustOpen(t, p, Options{ReadOnly: true})
			got, err := Partitions(d)
			if err != nil {
				t.Fatal(err)
			}
			// sfdisk lists the extended container too; we list what it holds.
			var wantParts []map[string]any
			for _, w := range want {
				if w["type"] != "5" {
					wantParts = append(wantParts, w)
				}
			}
			if len(got) != len(wantParts) {
				t.Fatalf("got %d partitions %+v, want %d %v", len(got), got, len(wantParts), wantParts)
			}
			for i, w := range wantParts {
				g := got[i]
				if int64(w["start"].(float64))*512 != g.Start || int64(w["size"].(float64))*512 != g.Size {
					t.Errorf("partition %d: start/size %d/%d, want %v/%v sectors", i, g.Start/512, g.Size/512, w["start"], w["size"])
				}
				if node := w["node"].(string); !strings.HasSuffix(node, "img"+strconv.Itoa(g.Number)) {
					t.Errorf("partition %d numbered %d, sfdisk calls it %s", i, g.Number, node)
				}
				if name, ok := w["name"].(string); ok && name != g.Name {
					t.Errorf("partition %d name %q, want %q", i, g.Name, name)
				}
				typ := strings.ToUpper(w["type"].(string))
				if g.Scheme == "mbr" {
					typ = "0x" + strings.Repeat("0", 2-len(typ)) + strings.ToLower(typ)
				}
				if g.Type != typ {
					t.Errorf("partition %d type %s, want %s", i, g.Type, typ)
				}
			}
		})
	}
}

func TestPartitionsNone(t *testing.T) {
	d := mustOpen(t, writeTemp(t, "blank", make([]byte, 1<<20)), Options{ReadOnly: true})
	if parts, err := Partitions(d); err != nil || len(parts) != 0 {
		t.Fatalf("blank disk: %v, %v", parts, err)
	}
}

func FuzzPartitions(f *testing.F) {
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	mbr[446+4] = 0x05
	mbr[446+8] = 1
	mbr[446+12] = 7
	f.Add(mbr)
	gpt := make([]byte, 4096)
	copy(gpt, mbr)
	gpt[446+4] = 0xee
	copy(gpt[512:], "EFI PART")
	f.Add(gpt)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 512 || len(data) > 1<<20 {
			return
		}
		data = data[:len(data)/512*512]
		p := writeTemp(t, "disk", data)
		d, err := Open(p, Options{ReadOnly: true})
		if err != nil {
			return
		}
		defer d.Close()
		Partitions(d)
	})
}
