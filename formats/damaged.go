package formats

// One rule for damaged input: a file that carries a format's magic but
// whose header fails that format's checks is refused as corrupt, naming
// the field and its offset; it is never served as a raw disk. Such files
// are claimed here, after every real format and before raw.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
)

const orderDamaged = orderRaw - 1

func init() {
	register(format{name: "damaged", order: orderDamaged, probe: damagedProbe, open: damagedOpen})
}

// damagedProbe claims a file that carries a magic no format accepted.
func damagedProbe(pd *ProbeData) bool {
	return !pd.IsDir && damagedReason(pd) != nil
}

func damagedOpen(path string, opt Options) (Disk, error) {
	pd, err := readProbe(path)
	if err != nil {
		return nil, err
	}
	if err := damagedReason(pd); err != nil {
		return nil, err
	}
	// The file changed between probe and open: probe it again.
	return nil, corruptf("image", path, -1, "file changed while it was being opened")
}

// damagedReason names the magic found and the header field that failed,
// or returns nil when the file carries no known magic.
func damagedReason(pd *ProbeData) error {
	h, t, path := pd.Head, pd.Tail, pd.Path
	be, le := binary.BigEndian, binary.LittleEndian
	switch {
	case len(h) >= 4 && string(h[:4]) == qcow1Magic:
		if len(h) < 8 {
			return corruptf("qcow2", path, 0, "file of %d bytes ends inside the header", pd.Size)
		}
		if v := be.Uint32(h[4:]); v == 0 {
			return corruptf("qcow2", path, 4, "version %d", v)
		}
		return corruptf("qcow", path, 0, "file of %d bytes ends inside the %d-byte header", pd.Size, qcow1HeaderLen)
	case len(h) >= 4 && string(h[:4]) == qedMagic:
		return corruptf("qed", path, 0, "file of %d bytes ends inside the %d-byte header", pd.Size, qedHeaderLen)
	case bytes.HasPrefix(h, vhdCookie):
		return corruptf("vhd", path, pd.Size-vhdFooterSize, "no footer at the end of the file (only its copy at offset 0)")
	case bytes.HasPrefix(h, []byte("# Disk DescriptorFile")):
		return corruptf("vmdk", path, 0, "descriptor file of %d bytes that lists no valid extent", pd.Size)
	case len(h) >= 16 && (string(h[:16]) == parallelsMagicV1 || string(h[:16]) == parallelsMagicV2):
		if len(h) < parallelsHeaderLen {
			return corruptf("parallels", path, 0, "file of %d bytes ends inside the %d-byte header", pd.Size, parallelsHeaderLen)
		}
		return corruptf("parallels", path, 16, "header version %d (want 2)", le.Uint32(h[16:]))
	}
	if i := bytes.LastIndex(t[max(0, len(t)-dmgKolySearch):], []byte("koly")); i >= 0 {
		i += max(0, len(t)-dmgKolySearch)
		off := pd.Size - int64(len(t)) + int64(i)
		k := t[i:]
		switch {
		case len(k) >= 8 && be.Uint32(k[4:]) != 4:
			return corruptf("dmg", path, off+4, "koly trailer version %d (want 4)", be.Uint32(k[4:]))
		case len(k) >= 12 && be.Uint32(k[8:]) != dmgKolySize:
			return corruptf("dmg", path, off+8, "koly trailer size %d (want %d)", be.Uint32(k[8:]), dmgKolySize)
		}
		return corruptf("dmg", path, off, "koly trailer cut short (%d of %d bytes)", len(k), dmgKolySize)
	}
	return nil
}

// formatExtensions are file name extensions that name an image format.
var formatExtensions = []string{".vhd", ".vhdx", ".vmdk", ".vdi", ".qcow2", ".qcow", ".qed", ".hdd", ".hds", ".dmg", ".e01", ".ex01", ".l01", ".aff", ".afd", ".afm", ".aff4"}

// extensionWarning is the warning for a file attached as raw although its
// name says it is an image of some format: its footer, trailer or
// descriptor may be gone.
func extensionWarning(path string) []string {
	ext := strings.ToLower(filepath.Ext(path))
	for _, e := range formatExtensions {
		if ext == e {
			return []string{fmt.Sprintf("the name says %s, but no format recognises the content (a missing footer, trailer or descriptor?): served as a raw disk", strings.TrimPrefix(e, "."))}
		}
	}
	return nil
}

// rawTooSmall refuses a raw disk smaller than one sector: no disk is.
func rawTooSmall(path string, size int64) error {
	if size < SectorSize {
		return corruptf("raw", path, -1, "file of %d bytes is smaller than one %d-byte sector: not a disk", size, SectorSize)
	}
	return nil
}

// openRawImage opens a file that no format claims as a raw disk: one
// smaller than a sector is refused, and a name that says otherwise is
// warned about. (Raw parts of other formats, such as the plain image of
// a Parallels bundle, are opened with openRaw.)
func openRawImage(path string, opt Options) (Disk, error) {
	d, err := openRaw(path, opt)
	if err != nil {
		return nil, err
	}
	r := d.(*rawDisk)
	if err := rawTooSmall(path, r.size); err != nil {
		r.f.Close()
		return nil, err
	}
	r.warnings = extensionWarning(path)
	return r, nil
}

// missing describes the part of flat extent x its file lacks: the same
// sentence is an attach warning (and so a verify finding) and the error
// of every read or write that reaches it.
func (x *vmdkExtent) missing() error {
	return corruptf("vmdk", x.path, x.flatOff+x.flatHave, "flat extent %q holds %d bytes, the descriptor needs %d: bytes %d to %d of the disk are missing and read as I/O errors",
		x.line.name, x.flatHave, x.size, x.start+x.flatHave, x.start+x.size)
}

// checkFlat refuses I/O at extent offsets [off, off+n) that reach past
// what the flat extent's file holds.
func (x *vmdkExtent) checkFlat(off, n int64) error {
	if off+n > x.flatHave {
		return x.missing()
	}
	return nil
}

// PartitionWarnings flags partition entries that run past the end of a
// disk of size bytes: a truncated image, or a damaged table.
func PartitionWarnings(parts []Partition, size int64) []string {
	var w []string
	for _, p := range parts {
		if p.Start+p.Size > size {
			w = append(w, fmt.Sprintf("partition %d (%s) at bytes %d to %d runs past the end of the %d-byte disk", p.Number, p.Scheme, p.Start, p.Start+p.Size, size))
		}
	}
	return w
}
