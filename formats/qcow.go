package formats

// qcow version 1, the original QEMU copy-on-write format (block/qcow.c).
// Read-only: a big-endian 48-byte header, a one-level L1 table of L2 table
// offsets, L2 tables of cluster offsets. Bit 63 of an L2 entry marks a
// cluster compressed with raw deflate; its compressed size sits in the
// cluster_bits bits below bit 63. AES-encrypted images are refused.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/flate"
)

func init() {
	register(format{name: "qcow", order: orderHead, probe: qcow1Probe, open: qcow1Open})
}

const (
	qcow1Magic       = "QFI\xfb"
	qcow1HeaderLen   = 48
	qcow1Compressed  = uint64(1) << 63
	qcow1L1PageLen   = 4096 // L1 entries per cached page
	qcow1MaxBacking  = 1023 // qemu's limit for the backing file name
	qcow1L2CacheLen  = 64
	qcow1ZipCacheLen = 32
)

// qcow1Probe claims version 1 only; version 2 and 3 are qcow2.
func qcow1Probe(pd *ProbeData) bool {
	h := pd.Head
	return len(h) >= qcow1HeaderLen && string(h[:4]) == qcow1Magic && binary.BigEndian.Uint32(h[4:8]) == 1
}

type qcow1Disk struct {
	readOnlyFormat
	f           *os.File
	path        string
	fileSize    int64
	size        int64
	clusterBits uint
	l2Bits      uint
	clusterSize int64
	l1Off       int64
	l1Len       int64
	offMask     uint64 // compressed cluster offset mask
	backing     string
	parent      Disk

	l1  *lru[int64, []uint64] // page index -> L1 entries
	l2  *lru[int64, []uint64] // table offset -> L2 table
	zip *lru[int64, []byte]   // compressed cluster offset -> cluster data
}

func qcow1Open(path string, opt Options) (Disk, error) {
	// qcow v1 is read-only in vdflat whatever the options say.
	return openDisk(path, true, func(f *os.File) (*qcow1Disk, error) {
		d, err := qcow1Parse(f, path)
		if err == nil && d.backing != "" {
			d.parent, err = openParent(path, d.backing, opt)
		}
		return d, err
	})
}

func qcow1Parse(f *os.File, path string) (*qcow1Disk, error) {
	h, fsize, err := readHead(f, qcow1HeaderLen, "qcow", path)
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if string(h[:4]) != qcow1Magic {
		return nil, corruptf("qcow", path, 0, "bad magic")
	}
	if v := be.Uint32(h[4:]); v != 1 {
		return nil, unsupportedf("qcow", path, "version %d (only version 1 is qcow; 2 and 3 are qcow2)", v)
	}
	backOff := be.Uint64(h[8:])
	backLen := be.Uint32(h[16:])
	size := be.Uint64(h[24:])
	cb := uint(h[32])
	l2b := uint(h[33])
	crypt := be.Uint32(h[36:])
	l1Off := be.Uint64(h[40:])
	if crypt != 0 {
		return nil, unsupportedf("qcow", path, "encryption (crypt_method %d)", crypt)
	}
	if cb < 9 || cb > 16 {
		return nil, corruptf("qcow", path, 32, "cluster_bits %d outside 9..16", cb)
	}
	if l2b < 6 || l2b > 13 {
		return nil, corruptf("qcow", path, 33, "l2_bits %d outside 6..13", l2b)
	}
	if size <= 1 || size > 1<<62 {
		return nil, corruptf("qcow", path, 24, "virtual size %d out of range", size)
	}
	d := &qcow1Disk{
		f: f, path: path, fileSize: fsize,
		// qemu counts whole sectors only.
		size:        int64(size) / SectorSize * SectorSize,
		clusterBits: cb, l2Bits: l2b, clusterSize: 1 << cb,
		offMask: uint64(1)<<(63-cb) - 1,
	}
	span := int64(1) << (cb + l2b)
	d.l1Len = (int64(size) + span - 1) / span
	if l1Off > uint64(fsize) || uint64(d.l1Len)*8 > uint64(fsize)-l1Off {
		return nil, corruptf("qcow", path, 40, "L1 table (%d entries at %#x) outside the file of %d bytes", d.l1Len, l1Off, fsize)
	}
	d.l1Off = int64(l1Off)
	if backOff != 0 && backLen != 0 { // qemu treats an empty name as no backing file
		if backLen > qcow1MaxBacking || backOff > uint64(fsize) || uint64(backLen) > uint64(fsize)-backOff {
			return nil, corruptf("qcow", path, 8, "backing file name (%d bytes at %#x) invalid", backLen, backOff)
		}
		name := make([]byte, backLen)
		if err := readFullAt(f, name, int64(backOff), "qcow", path); err != nil {
			return nil, err
		}
		d.backing = strings.TrimRight(string(name), "\x00")
	}
	d.l1 = newLRU[int64, []uint64](256)
	d.l2 = newLRU[int64, []uint64](qcow1L2CacheLen)
	d.zip = newLRU[int64, []byte](qcow1ZipCacheLen)
	return d, nil
}

// readTable reads n big-endian 64-bit entries at off.
func (d *qcow1Disk) readTable(off, n int64) ([]uint64, error) {
	buf := make([]byte, n*8)
	if err := readFullAt(d.f, buf, off, "qcow", d.path); err != nil {
		return nil, err
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return t, nil
}

// entry returns the L2 entry of virtual cluster vc (0 = unallocated).
func (d *qcow1Disk) entry(vc int64) (uint64, error) {
	l2, err := d.l2Table(vc >> d.l2Bits)
	if l2 == nil {
		return 0, err
	}
	return l2[vc&(int64(1)<<d.l2Bits-1)], nil
}

// l2Table returns L2 table l1i, nil when it is not allocated.
func (d *qcow1Disk) l2Table(l1i int64) ([]uint64, error) {
	if l1i >= d.l1Len {
		return nil, nil
	}
	page := l1i / qcow1L1PageLen
	l1, ok := d.l1.Get(page)
	if !ok {
		start := page * qcow1L1PageLen
		var err error
		if l1, err = d.readTable(d.l1Off+start*8, min(qcow1L1PageLen, d.l1Len-start)); err != nil {
			return nil, err
		}
		d.l1.Put(page, l1)
	}
	l2Off := l1[l1i%qcow1L1PageLen]
	if l2Off == 0 {
		return nil, nil
	}
	l2Len := int64(1) << d.l2Bits
	l2, ok := d.l2.Get(int64(l2Off))
	if !ok {
		if l2Off > uint64(d.fileSize) || uint64(l2Len*8) > uint64(d.fileSize)-l2Off {
			return nil, corruptf("qcow", d.path, d.l1Off+l1i*8, "L2 table offset %#x outside the file", l2Off)
		}
		var err error
		if l2, err = d.readTable(int64(l2Off), l2Len); err != nil {
			return nil, err
		}
		d.l2.Put(int64(l2Off), l2)
	}
	return l2, nil
}

func (d *qcow1Disk) Size() int64 { return d.size }

// readData reads stored bytes of the image file.
func (d *qcow1Disk) readData(b []byte, off int64) error {
	return readFullAt(d.f, b, off, "qcow", d.path)
}

func (d *qcow1Disk) ReadAt(p []byte, off int64) (int, error) {
	return readClusters(p, off, d.size, d.clusterSize, d.readData, func(pos int64, chunk []byte) (int64, error) {
		vc := pos >> d.clusterBits
		in := pos & (d.clusterSize - 1)
		e, err := d.entry(vc)
		switch {
		case err != nil:
			return 0, err
		case e == 0:
			return -1, readParent(d.parent, chunk, pos)
		case e&qcow1Compressed != 0:
			data, err := d.cluster(e)
			if err != nil {
				return 0, err
			}
			copy(chunk, data[in:])
			return -1, nil
		case e%SectorSize != 0:
			return 0, corruptf("qcow", d.path, -1, "cluster %d at unaligned offset %#x", vc, e)
		case e > uint64(d.fileSize):
			return 0, corruptf("qcow", d.path, -1, "cluster %d at %#x past the end of the file", vc, e)
		}
		return int64(e) + in, nil
	})
}

// cluster returns the decompressed data of a compressed L2 entry.
func (d *qcow1Disk) cluster(e uint64) ([]byte, error) {
	coff := e & d.offMask
	if data, ok := d.zip.Get(int64(coff)); ok {
		return data, nil
	}
	csize := (e >> (63 - d.clusterBits)) & uint64(d.clusterSize-1)
	if csize == 0 || coff > uint64(d.fileSize) || csize > uint64(d.fileSize)-coff {
		return nil, corruptf("qcow", d.path, int64(coff), "compressed cluster of %d bytes outside the file", csize)
	}
	src := make([]byte, csize)
	if err := readFullAt(d.f, src, int64(coff), "qcow", d.path); err != nil {
		return nil, err
	}
	data := make([]byte, d.clusterSize)
	zr := flate.NewReader(bytes.NewReader(src))
	_, err := io.ReadFull(zr, data)
	zr.Close()
	if err != nil {
		return nil, corruptf("qcow", d.path, int64(coff), "compressed cluster: %v", err)
	}
	d.zip.Put(int64(coff), data)
	return data, nil
}

func (d *qcow1Disk) Map(off, length int64) (bool, int64, error) {
	return mapRuns(off, length, d.size, d.parent, func(pos, limit int64) (mapState, int64, error) {
		vc := pos >> d.clusterBits
		l2, err := d.l2Table(vc >> d.l2Bits)
		if err != nil {
			return 0, 0, err
		}
		if l2 == nil { // no L2 table: its whole span is unallocated
			span := d.clusterSize << d.l2Bits
			return mapBacking, min(span-pos&(span-1), limit), nil
		}
		step := min(d.clusterSize-pos&(d.clusterSize-1), limit)
		if l2[vc&(int64(1)<<d.l2Bits-1)] == 0 {
			return mapBacking, step, nil
		}
		return mapData, step, nil
	})
}

func (d *qcow1Disk) Close() error {
	return closeChain(nil, d.f, d.parent)
}

func (d *qcow1Disk) Info() Info {
	info := Info{
		Format: "qcow", Variant: "v1", Path: d.path, Files: []string{d.path},
		Size: d.size, ClusterSize: d.clusterSize, Allocated: -1,
		ReadOnly: true, ReadOnlyReason: "qcow version 1 is read-only in vdflat",
		Metadata: map[string]string{"l2_bits": fmt.Sprint(d.l2Bits)},
	}
	if d.backing != "" {
		info.Features = append(info.Features, "backing file")
		info.Metadata["backing_file"] = d.backing
	}
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}
