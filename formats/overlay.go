package formats

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Creating qcow2 overlays: an empty qcow2 v3 image whose backing file is
// another image, so writes can land in the overlay while the backing
// image is never opened for writing.

const (
	overlayClusterBits = 16
	overlayCluster     = 1 << overlayClusterBits
)

// QemuFormatName is the name qemu uses for one of our formats, or "" for
// formats qemu does not read.
func QemuFormatName(format string) string {
	switch format {
	case "raw", "qcow2", "vmdk", "vhdx", "vdi", "qed", "parallels", "dmg":
		return format
	case "vhd":
		return "vpc"
	case "qcow":
		return "qcow"
	}
	return ""
}

// CreateOverlay creates path, which must not exist, as an empty qcow2 v3
// image of size bytes backed by backing (recorded as given) of format
// backingFormat (qemu's name; "" to leave it unrecorded).
func CreateOverlay(path, backing, backingFormat string, size int64) error {
	const entriesPerL2 = overlayCluster / 8
	l1Size := (size + overlayCluster*entriesPerL2 - 1) / (overlayCluster * entriesPerL2)
	l1Clusters := (l1Size*8 + overlayCluster - 1) / overlayCluster
	if size <= 0 || l1Clusters == 0 {
		l1Clusters = 1
	}
	// Cluster 0: header; 1: refcount table; 2: refcount block; 3...: L1.
	// One refcount block of 16-bit entries covers 32768 clusters.
	clusters := 3 + l1Clusters
	if clusters > overlayCluster/2 || len(backing) > 1023 {
		return fmt.Errorf("qcow2 overlay: %s: disk of %d bytes or backing name too large", path, size)
	}
	buf := make([]byte, clusters*overlayCluster)
	be := binary.BigEndian
	h := buf[:overlayCluster]
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], overlayClusterBits)
	be.PutUint64(h[24:], uint64(size))
	be.PutUint32(h[36:], uint32(l1Size))
	be.PutUint64(h[40:], uint64(3*overlayCluster))
	be.PutUint64(h[48:], uint64(overlayCluster))
	be.PutUint32(h[56:], 1)
	be.PutUint32(h[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(h[100:], 104)
	off := 104
	if backingFormat != "" {
		be.PutUint32(h[off:], 0xe2792aca) // backing file format name
		be.PutUint32(h[off+4:], uint32(len(backingFormat)))
		copy(h[off+8:], backingFormat)
		off += 8 + (len(backingFormat)+7)/8*8
	}
	off += 8 // end of extensions: type 0, length 0
	if backing != "" {
		be.PutUint64(h[8:], uint64(off))
		be.PutUint32(h[16:], uint32(len(backing)))
		copy(h[off:], backing)
	}
	be.PutUint64(buf[overlayCluster:], uint64(2*overlayCluster))
	rb := buf[2*overlayCluster:]
	for i := int64(0); i < clusters; i++ {
		be.PutUint16(rb[2*i:], 1)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
