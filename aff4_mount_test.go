package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AFF4 reference images attach read-only and read as their oracle says:
// the striped image (second volume found beside the first) hashes to the
// md5 listed for it, read by md5sum through the mount, and the 9 EB
// sparse image attaches at once and reads its last data island.
func TestMountAFF4(t *testing.T) {
	samples, _ := filepath.Abs(filepath.Join("..", "shared", "samples", "aff4"))
	m := startMount(t)
	p := m.attach(t, filepath.Join(samples, "Base-Linear_1.aff4"), "striped")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 268435456 || st.Mode().Perm() != 0o444 {
		t.Fatalf("size %d mode %v, want 268435456 and 0444", st.Size(), st.Mode())
	}
	if out := runTool(t, "", "md5sum", p); !strings.HasPrefix(out, "dd6dbda282e27fd0d196abd95f5c3e58") {
		t.Fatalf("md5sum: %s", out)
	}
	if _, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		t.Fatal("write-open of an AFF4 image succeeded")
	}
	sparse := m.attach(t, filepath.Join(samples, "Base-ExabyteSparse.aff4"), "sparse")
	f, err := os.Open(sparse)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, 0x7fffffffffeffe00); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xff}, len(buf))) {
		t.Fatal("the last MiB island of the sparse image is not all 0xFF")
	}
}
