package formats

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

func TestCreateOverlayQemuReadsIt(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-f", "qcow2", base, "3M")
	for _, size := range []int64{3 << 20, 2 << 40} {
		ov := filepath.Join(t.TempDir(), "ov.qcow2")
		if err := CreateOverlay(ov, base, "qcow2", size); err != nil {
			t.Fatal(err)
		}
		qemuCheck(t, "qcow2", ov)
		var info []struct {
			Filename        string `json:"filename"`
			VirtualSize     int64  `json:"virtual-size"`
			BackingFilename string `json:"backing-filename"`
			BackingFormat   string `json:"backing-filename-format"`
		}
		out := qemuImg(t, "info", "--output=json", "--backing-chain", "-U", ov)
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if len(info) != 2 || info[0].VirtualSize != size || info[0].BackingFilename != base || info[0].BackingFormat != "qcow2" {
			t.Fatalf("qemu-img info: %s", out)
		}
	}
}
