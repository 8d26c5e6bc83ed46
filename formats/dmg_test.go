package formats

import (
	"testing"
)

func TestDMGSamples(t *testing.T) {
	for _, row := range samples(t, "dmg") {
		t.Run(row.Path, func(t *testing.T) {
			p := sampleFile(t, row.Path)
			d, err := Open(p, Options{ReadOnly: true})
			if row.ExpectError() {
				if err == nil {
					d.Close()
					t.Fatalf("Open succeeded, want an error")
				}
				t.Logf("error as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer d.Close()
			if d.Size() != row.VSize {
				t.Fatalf("Size() = %d, want %d", d.Size(), row.VSize)
			}
			if got := diskMD5(t, d); got != row.MD5 {
				t.Fatalf("md5 %s, want %s (info %+v)", got, row.MD5, d.Info())
			}
			t.Logf("info: %+v", d.Info())
		})
	}
}
