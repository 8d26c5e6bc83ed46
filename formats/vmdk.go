package formats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// VMware VMDK: a text descriptor (standalone, or embedded in a hosted
// sparse extent) listing extents (FLAT/VMFS raw files, ZERO, hosted
// sparse "KDMV", ESX "COWD" sparse, ESXi seSparse), with an optional
// parent named by parentFileNameHint and checked through parentCID.

func init() {
	register(format{name: "vmdk", order: orderHead, probe: vmdkProbe, open: vmdkOpen})
}

func vmdkProbe(pd *ProbeData) bool {
	if pd.IsDir {
		return false
	}
	h := pd.Head
	if len(h) >= 4 && (string(h[:4]) == "KDMV" || string(h[:4]) == "COWD") {
		return true
	}
	if len(h) >= 8 && binary.LittleEndian.Uint64(h) == vmdkSEConstMagic {
		return true
	}
	return pd.Size <= vmdkMaxDescriptor && vmdkProbeDescriptor(h)
}

type vmdkExtent struct {
	start, size int64 // virtual bytes
	line        vmdkExtentLine
	path        string
	f           *os.File // nil for ZERO
	flatOff     int64    // FLAT: file offset of the extent's first byte
	flatHave    int64    // FLAT: bytes of the extent the file holds (damaged.go)
	sp          *vmdkSparse
}

type vmdkDisk struct {
	canWrite bool // the variant and extents allow writing, whatever the open mode

	path     string
	size     int64
	ext      []*vmdkExtent
	files    map[string]*os.File
	names    []string // every file, path first
	parent   Disk
	readOnly bool
	roReason string
	variant  string
	warnings []string

	desc        *vmdkDescriptor
	descFile    *os.File
	descOff     int64 // embedded descriptor: file offset; -1 for a standalone file
	descCap     int64 // embedded descriptor: bytes reserved for it
	cidMu       sync.Mutex
	cidDone     atomic.Bool
	cid, parCID string
}

func vmdkOpen(path string, opt Options) (Disk, error) {
	d := &vmdkDisk{path: path, files: map[string]*os.File{}, descOff: -1}
	if err := d.open(opt); err != nil {
		d.closeAll()
		return nil, err
	}
	return d, nil
}

// file opens (once) a file of the image, read-only for now.
func (d *vmdkDisk) file(p string) (*os.File, error) {
	if f, ok := d.files[p]; ok {
		return f, nil
	}
	f, err := OpenImageFile(p, false)
	if err != nil {
		return nil, err
	}
	d.files[p] = f
	d.names = append(d.names, p)
	return f, nil
}

func (d *vmdkDisk) open(opt Options) error {
	f, err := d.file(d.path)
	if err != nil {
		return err
	}
	size, err := fileSize(f)
	if err != nil {
		return fmt.Errorf("vmdk: %s: %w", d.path, err)
	}
	head := make([]byte, min(size, 512))
	if err := readFullAt(f, head, 0, "vmdk", d.path); err != nil {
		return err
	}
	var magic string
	if len(head) >= 4 {
		magic = string(head[:4])
	}
	switch {
	case magic == "KDMV":
		if err := d.openMonolithic(f, size, head); err != nil {
			return err
		}
	case magic == "COWD" || (len(head) >= 8 && binary.LittleEndian.Uint64(head) == vmdkSEConstMagic):
		return unsupportedf("vmdk", d.path, "a vmfsSparse/seSparse extent has no descriptor of its own: open the descriptor file that names it")
	default:
		if size > vmdkMaxDescriptor {
			return corruptf("vmdk", d.path, -1, "descriptor file of %d bytes is too large", size)
		}
		text := make([]byte, size)
		if err := readFullAt(f, text, 0, "vmdk", d.path); err != nil {
			return err
		}
		if d.desc, err = vmdkParseDescriptor(vmdkDescriptorText(text), d.path); err != nil {
			return err
		}
		d.descFile = f
		if err := d.openExtents(); err != nil {
			return err
		}
	}
	d.variant = d.desc.get("createType")
	d.cid, d.parCID = d.desc.get("CID"), d.desc.get("parentCID")
	for _, x := range d.ext {
		d.size = x.start + x.size
	}
	if err := d.openParent(opt); err != nil {
		return err
	}
	return d.decideWritable(opt)
}

// openMonolithic opens a hosted sparse file with its embedded descriptor.
// The file is the single extent whatever name the descriptor gives it
// (a renamed file still names its old self).
func (d *vmdkDisk) openMonolithic(f *os.File, size int64, head []byte) error {
	if len(head) < 512 {
		return corruptf("vmdk", d.path, 0, "file truncated: %d bytes, no room for a sparse header", size)
	}
	// A damaged descriptor is reported before a truncated file: it says
	// what the file was meant to be.
	sp, herr := vmdkOpenHosted(f, d.path, size, head)
	var trunc *vmdkTruncated
	if herr != nil && !errors.As(herr, &trunc) {
		return herr
	}
	le := binary.LittleEndian
	descOff, descSize := le.Uint64(head[28:]), le.Uint64(head[36:])
	if descOff == 0 || descSize == 0 {
		return corruptf("vmdk", d.path, 28, "sparse extent without an embedded descriptor (an extent of a split image? open its descriptor file)")
	}
	if descOff >= uint64(size)/512 || descSize > vmdkMaxDescriptor/512 {
		return corruptf("vmdk", d.path, 28, "embedded descriptor at sector %d (%d sectors) is not inside the %d-byte file", descOff, descSize, size)
	}
	text := make([]byte, min(int64(descSize)*512, size-int64(descOff)*512))
	if err := readFullAt(f, text, int64(descOff)*512, "vmdk", d.path); err != nil {
		return err
	}
	text = vmdkDescriptorText(text)
	if len(strings.TrimSpace(string(text))) == 0 {
		return corruptf("vmdk", d.path, int64(descOff)*512, "no valid embedded descriptor: the descriptor area is empty (an extent of a split image? open its descriptor file)")
	}
	var err error
	d.desc, err = vmdkParseDescriptor(text, d.path)
	if err != nil {
		var fe *FormatError
		msg := err.Error()
		if errors.As(err, &fe) {
			msg = fe.Msg
		}
		return corruptf("vmdk", d.path, int64(descOff)*512, "no valid embedded descriptor (%s)", msg)
	}
	if herr != nil {
		return herr
	}
	d.descFile, d.descOff, d.descCap = f, int64(descOff)*512, int64(descSize)*512
	x := &vmdkExtent{size: sp.capacity, path: d.path, f: f, sp: sp, line: vmdkExtentLine{access: "RW", typ: "SPARSE"}}
	if len(d.desc.extents) > 0 {
		x.line.access = d.desc.extents[0].access
	}
	d.ext = []*vmdkExtent{x}
	return nil
}

func (d *vmdkDisk) openExtents() error {
	if len(d.desc.extents) == 0 {
		return corruptf("vmdk", d.path, -1, "descriptor lists no extents")
	}
	dir := filepath.Dir(d.path)
	var pos int64
	for _, e := range d.desc.extents {
		x := &vmdkExtent{start: pos, size: e.sectors * 512, line: e}
		pos += x.size
		if pos > vmdkMaxSectors*512 {
			return corruptf("vmdk", d.path, -1, "extents add up to more than %d sectors", int64(vmdkMaxSectors))
		}
		d.ext = append(d.ext, x)
		if e.typ == "ZERO" {
			continue
		}
		x.path = e.name
		if !filepath.IsAbs(x.path) {
			x.path = filepath.Join(dir, x.path)
		}
		switch e.typ {
		case "FLAT", "VMFS", "VMFSRDM", "VMFSRAW", "VMFSPASSTHROUGHRAWDEVICEMAP", "VMFSRAWDEVICEMAP", "SPARSE", "VMFSSPARSE", "SESPARSE":
		default:
			return unsupportedf("vmdk", d.path, "extent type %s (%q)", e.typ, e.name)
		}
		if _, seen := d.files[x.path]; seen && (e.typ == "SPARSE" || e.typ == "VMFSSPARSE" || e.typ == "SESPARSE") {
			// Two extents allocating in one file would overwrite each other.
			return corruptf("vmdk", d.path, -1, "sparse extent file %q is listed twice", e.name)
		}
		f, err := d.file(x.path)
		if err != nil {
			return fmt.Errorf("vmdk: %s: extent %q: %w", d.path, e.name, err)
		}
		x.f = f
		size, err := fileSize(f)
		if err != nil {
			return fmt.Errorf("vmdk: %s: %w", x.path, err)
		}
		switch e.typ {
		case "SPARSE", "VMFSSPARSE":
			head := make([]byte, min(size, 512))
			if err := readFullAt(f, head, 0, "vmdk", x.path); err != nil {
				return err
			}
			switch {
			case len(head) == 512 && string(head[:4]) == "KDMV":
				x.sp, err = vmdkOpenHosted(f, x.path, size, head)
			case len(head) >= 4 && string(head[:4]) == "COWD":
				x.sp, err = vmdkOpenCOWD(f, x.path, size)
			default:
				err = corruptf("vmdk", x.path, 0, "sparse extent has no KDMV or COWD header")
			}
		case "SESPARSE":
			x.sp, err = vmdkOpenSESparse(f, x.path, size)
		default:
			x.flatOff = e.offset * 512
			x.flatHave = min(x.size, max(0, size-x.flatOff))
			if x.flatHave < x.size {
				d.warnings = append(d.warnings, x.missing().Error())
			}
		}
		if err != nil {
			return err
		}
		if x.sp != nil && x.sp.capacity != x.size {
			d.warnings = append(d.warnings, fmt.Sprintf("extent %q: header capacity %d bytes, descriptor %d", e.name, x.sp.capacity, x.size))
		}
	}
	return nil
}

func (d *vmdkDisk) openParent(opt Options) error {
	hint := d.desc.get("parentFileNameHint")
	if hint == "" {
		if v, err := strconv.ParseUint(d.parCID, 16, 32); err == nil && v != 0xffffffff {
			d.warnings = append(d.warnings, fmt.Sprintf("parentCID=%s but no parentFileNameHint: unallocated grains read as zeros", d.parCID))
		}
		return nil
	}
	p, err := openParent(d.path, hint, opt)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		// A hint written on another host (C:\VMs\base.vmdk): try its base
		// name beside the child.
		if i := strings.LastIndexAny(hint, `/\`); i >= 0 && i+1 < len(hint) {
			if p2, err2 := openParent(d.path, hint[i+1:], opt); err2 == nil {
				p, err = p2, nil
			}
		}
	}
	if err != nil {
		return err
	}
	d.parent = p
	pi := p.Info()
	if pi.Format != "vmdk" {
		d.warnings = append(d.warnings, fmt.Sprintf("parent %q is %s, not vmdk: parentCID not checked", hint, pi.Format))
		return nil
	}
	want, err1 := strconv.ParseUint(d.parCID, 16, 32)
	got, err2 := strconv.ParseUint(pi.Metadata["CID"], 16, 32)
	if err1 != nil || err2 != nil || want != got {
		msg := fmt.Sprintf("parent CID mismatch: parentCID=%s, parent %q has CID=%s (the parent changed after this child was made)", d.parCID, hint, pi.Metadata["CID"])
		if opt.Strict {
			return corruptf("vmdk", d.path, -1, "%s", msg)
		}
		d.warnings = append(d.warnings, msg)
	}
	return nil
}

// decideWritable settles read-only state and, for a writable open,
// reopens every file read-write.
func (d *vmdkDisk) decideWritable(opt Options) error {
	reason := ""
	for _, x := range d.ext {
		switch {
		case reason != "":
		case x.line.access != "RW":
			reason = fmt.Sprintf("extent %q is %s", x.line.name, x.line.access)
		case x.line.typ == "ZERO":
			reason = "a ZERO extent cannot store data"
		case x.sp != nil:
			reason = x.sp.readOnlyReason()
		}
	}
	d.canWrite = reason == ""
	if opt.ReadOnly {
		reason = "opened read-only"
	}
	if reason != "" {
		d.readOnly, d.roReason = true, reason
		return nil
	}
	for name, old := range d.files {
		f, err := OpenImageFile(name, true)
		if err != nil {
			return fmt.Errorf("vmdk: %s: %w", d.path, err)
		}
		for _, x := range d.ext {
			if x.f == old {
				x.f = f
				if x.sp != nil {
					x.sp.f = f
				}
			}
		}
		if d.descFile == old {
			d.descFile = f
		}
		d.files[name] = f
		old.Close()
	}
	return nil
}

func (d *vmdkDisk) closeAll() error {
	var first error
	for _, f := range d.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.files = nil
	if d.parent != nil {
		if err := d.parent.Close(); err != nil && first == nil {
			first = err
		}
		d.parent = nil
	}
	return first
}

func (d *vmdkDisk) Size() int64 { return d.size }

// find returns the extent holding virtual offset off (< size).
func (d *vmdkDisk) find(off int64) *vmdkExtent {
	i := sort.Search(len(d.ext), func(i int) bool { return d.ext[i].start+d.ext[i].size > off })
	return d.ext[i]
}

func (d *vmdkDisk) ReadAt(p []byte, off int64) (int, error) {
	return readUnits(p, off, d.size, 0, d.read)
}

// read fills p from off extent by extent.
func (d *vmdkDisk) read(p []byte, off int64) error {
	for len(p) > 0 {
		x := d.find(off)
		m := min(int64(len(p)), x.start+x.size-off)
		var err error
		switch {
		case x.sp != nil:
			err = x.sp.readAt(p[:m], off-x.start, d.parent, x.start)
		case x.f != nil:
			if err = x.checkFlat(off-x.start, m); err == nil {
				err = vmdkPread(x.f, p[:m], x.flatOff+off-x.start, x.path)
			}
		default:
			clear(p[:m])
		}
		if err != nil {
			return err
		}
		p, off = p[m:], off+m
	}
	return nil
}

func (d *vmdkDisk) WriteAt(p []byte, off int64) (int, error) {
	prepare := func() error {
		// Refuse a write onto the image's own metadata before the first
		// write's CID update changes anything (overlap_vmdk.go).
		if !d.cidDone.Load() {
			if err := d.precheck(p[:min(int64(len(p)), d.size-off)], off); err != nil {
				return err
			}
		}
		return d.touch()
	}
	return writeUnits(p, off, d.size, d.readOnly, 0, prepare, d.write)
}

// write writes p at off extent by extent.
func (d *vmdkDisk) write(p []byte, off int64) error {
	for len(p) > 0 {
		x := d.find(off)
		m := min(int64(len(p)), x.start+x.size-off)
		if x.sp != nil {
			if err := x.sp.writeAt(p[:m], off-x.start, d.parent, x.start); err != nil {
				return err
			}
		} else if err := x.checkFlat(off-x.start, m); err != nil {
			return err
		} else if err := writeFullAt(x.f, p[:m], x.flatOff+off-x.start, "vmdk", x.path); err != nil {
			return err
		}
		p, off = p[m:], off+m
	}
	return nil
}

// touch gives the image a new CID on its first write of the session, as
// VMware does, so children made from the old content notice the change.
func (d *vmdkDisk) touch() error {
	if d.cidDone.Load() {
		return nil
	}
	d.cidMu.Lock()
	defer d.cidMu.Unlock()
	if d.cidDone.Load() {
		return nil
	}
	d.cidDone.Store(true)
	cid := rand.Uint32N(0xfffffffe) // never ffffffff ("no parent") or fffffffe
	text := d.desc.withCID(cid)
	if text == nil {
		return nil // no CID line to update
	}
	if d.descOff >= 0 {
		if int64(len(text)) > d.descCap {
			return nil // no room: keep the old CID
		}
		buf := make([]byte, max(len(text), len(d.desc.text)))
		copy(buf, text)
		if _, err := d.descFile.WriteAt(buf, d.descOff); err != nil {
			return fmt.Errorf("vmdk: %s: updating CID: %w", d.path, err)
		}
	} else {
		if _, err := d.descFile.WriteAt(text, 0); err != nil {
			return fmt.Errorf("vmdk: %s: updating CID: %w", d.path, err)
		}
		if err := d.descFile.Truncate(int64(len(text))); err != nil {
			return fmt.Errorf("vmdk: %s: updating CID: %w", d.path, err)
		}
	}
	d.desc.text = text
	d.cid = fmt.Sprintf("%08x", cid)
	return nil
}

func (d *vmdkDisk) Flush() error {
	if d.readOnly {
		return nil
	}
	for _, f := range d.files {
		if err := syncFile(f, "vmdk", f.Name()); err != nil {
			return err
		}
	}
	return nil
}

func (d *vmdkDisk) Close() error {
	err := d.Flush()
	if cerr := d.closeAll(); err == nil {
		err = cerr
	}
	return err
}

func (d *vmdkDisk) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map %d+%d", ErrInvalid, off, length)
	}
	x := d.find(off)
	m := min(length, x.start+x.size-off)
	switch {
	case x.sp != nil:
		st, n, err := x.sp.mapAt(off-x.start, m)
		if err != nil {
			return false, 0, err
		}
		n = roundUp(n, SectorSize)
		switch st {
		case vmdkData:
			return true, n, nil
		case vmdkUnalloc:
			if d.parent == nil || off >= d.parent.Size() {
				return false, n, nil
			}
			if pm, ok := d.parent.(Mapper); ok {
				return pm.Map(off, n)
			}
			return true, n, nil
		}
		return false, n, nil
	case x.f != nil:
		return true, m, nil
	}
	return false, m, nil
}

func (d *vmdkDisk) Info() Info {
	info := Info{
		Format: "vmdk", Variant: d.variant, Path: d.path, Files: d.names, Size: d.size,
		Allocated: 0, ReadOnly: d.readOnly, ReadOnlyReason: d.roReason,
		Warnings: append([]string(nil), d.warnings...),
		Metadata: map[string]string{},
	}
	d.cidMu.Lock()
	info.Metadata["CID"] = d.cid
	d.cidMu.Unlock()
	info.Metadata["parentCID"] = d.parCID
	for _, k := range []string{"createType", "parentFileNameHint", "version", "encoding", "ddb.adapterType", "ddb.uuid", "ddb.longContentID", "ddb.virtualHWVersion"} {
		if v := d.desc.get(k); v != "" {
			info.Metadata[k] = v
		}
	}
	feats := map[string]bool{}
	for _, x := range d.ext {
		switch {
		case x.sp != nil:
			info.Allocated = -1
			if info.ClusterSize == 0 {
				info.ClusterSize = x.sp.grainSize
			}
			feats[x.sp.kind.String()] = true
			if x.sp.compress {
				feats["compressed grains"] = true
			}
			if x.sp.zeroGTE {
				feats["zeroed-grain entries"] = true
			}
			if x.sp.rgdOff != 0 {
				feats["redundant grain directory"] = true
			}
			if x.sp.gdAtEnd {
				feats["grain directory at end"] = true
			}
			if x.sp.unclean {
				info.Warnings = append(info.Warnings, fmt.Sprintf("extent %q was not closed cleanly", x.path))
			}
		case x.f != nil:
			feats["flat"] = true
			if info.Allocated >= 0 {
				info.Allocated += x.size
			}
		default:
			feats["zero"] = true
		}
	}
	for f := range feats {
		info.Features = append(info.Features, f)
	}
	sort.Strings(info.Features)
	if d.parent != nil {
		pi := d.parent.Info()
		info.Parent = &pi
	}
	return info
}

// CanWrite reports whether this VMDK could be written if opened read-write.
func (d *vmdkDisk) CanWrite() bool { return d.canWrite }
