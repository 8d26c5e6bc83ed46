package formats

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The path guard is asked before every lookup of a file an image names:
// an extent under a refused directory is never looked at, even through
// a symlink beside the image, and the refusal is Open's error.
func TestPathGuard(t *testing.T) {
	dir := t.TempDir()
	fenced := filepath.Join(dir, "fenced")
	if err := os.Mkdir(fenced, 0o755); err != nil {
		t.Fatal(err)
	}
	extent := filepath.Join(fenced, "flat.img")
	writeFile(t, extent, make([]byte, 1<<20))
	var asked []string
	SetPathGuard(func(p string) error {
		asked = append(asked, p)
		if p == fenced || strings.HasPrefix(p, fenced+"/") {
			return &os.PathError{Op: "guard", Path: p, Err: syscall.ELOOP}
		}
		return nil
	})
	t.Cleanup(func() { SetPathGuard(nil) })

	desc := filepath.Join(dir, "desc.vmdk")
	text := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
		"RW 2048 FLAT \"" + extent + "\" 0\n\nddb.virtualHWVersion = \"4\"\n"
	writeFile(t, desc, []byte(text))
	if _, err := Open(desc, Options{ReadOnly: true}); !errors.Is(err, syscall.ELOOP) {
		t.Fatalf("extent inside the fence: %v, want ELOOP", err)
	}
	found := false
	for _, p := range asked {
		found = found || p == extent
	}
	if !found {
		t.Fatalf("the guard was not asked about the extent; asked %q", asked)
	}
	// Unfenced, the same descriptor opens.
	SetPathGuard(nil)
	d := mustOpen(t, desc, Options{ReadOnly: true})
	d.Close()
}
