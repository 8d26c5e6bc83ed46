package main

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A VHDX attached through the mount is 0644 and takes writes of any
// offset and length through the flattened file; after detach qemu-img
// checks the image and reads exactly what was written, and the log is
// empty again.
func TestMountWriteVHDX(t *testing.T) {
	raw, orig := mbrDisk(t, 6<<20)
	m := startMount(t)
	for _, opts := range []string{"subformat=dynamic,block_size=1M", "subformat=fixed,block_size=2M"} {
		t.Run(opts, func(t *testing.T) {
			data := append([]byte(nil), orig...)
			img := filepath.Join(t.TempDir(), "disk.vhdx")
			runTool(t, "", "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", opts, raw, img)
			p := m.attach(t, img, "vhdx")
			if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
				t.Fatalf("mode %v, want 0644", st.Mode())
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(5))
			for i := 0; i < 60; i++ {
				buf := make([]byte, 1+r.Intn(300000))
				r.Read(buf)
				off := r.Int63n(int64(len(data) - len(buf)))
				if _, err := f.WriteAt(buf, off); err != nil {
					t.Fatal(err)
				}
				copy(data[off:], buf)
				if i%20 == 19 {
					if err := f.Sync(); err != nil {
						t.Fatal(err)
					}
				}
			}
			f.Close()
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("reading back through the mount: %v", err)
			}
			os.Remove(p)
			for i := 0; isOpenBy(img) && i < 100; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			runTool(t, "", "qemu-img", "check", "-f", "vhdx", img)
			out := filepath.Join(t.TempDir(), "out.raw")
			runTool(t, "", "qemu-img", "convert", "-f", "vhdx", "-O", "raw", img, out)
			if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
				t.Fatal("qemu-img reads something else than what was written through the mount")
			}
		})
	}
}
