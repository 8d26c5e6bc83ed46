// Package formats reads (and where the format allows, writes) virtual disk
// images as flat, sector-addressed disks. It knows nothing of FUSE: every
// format is usable on its own through Open and the Disk interface.
//
// This file holds the contract (Disk, the optional Mapper, Checker and
// the unexported canWriter and quickInfoer, Info, errors) and the
// registry. The rules every format shares live once: common.go (requests
// clamped to the disk, holes read from the parent or as zeros, rounding,
// the read-only behaviour, write preparation, cluster-table mapping) and
// check.go (bounded findings, the overlap sweep). Each format file decodes
// its header into a struct, validates it in a function of its own, and
// calls only these shared helpers, never another format's; other formats
// are reached through Open (parents), or openRaw where a format says its
// parent is raw whatever its content.
package formats

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// SectorSize is the unit of every Disk's ReadAt and WriteAt.
const SectorSize = 512

// Disk is one flattened virtual disk: an image plus its whole parent chain.
type Disk interface {
	// Size is the virtual size in bytes. It need not be a multiple of
	// SectorSize: the last sector reads as zeros past Size.
	Size() int64
	// ReadAt reads len(p) bytes at off; off and len(p) are multiples of
	// SectorSize. Bytes past Size read as zeros. Safe for concurrent use
	// with other ReadAt and WriteAt calls.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes like ReadAt reads; bytes past Size are ignored.
	// It returns ErrReadOnly when the disk was opened read-only or the
	// format is read-only.
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes written data and metadata durable.
	Flush() error
	// Close flushes and releases every file of the chain.
	Close() error
	// Info describes the image and its chain.
	Info() Info
}

// Mapper is implemented by disks that know which ranges hold data.
type Mapper interface {
	// Map reports whether the range starting at off (a multiple of
	// SectorSize, below Size) is stored (true) or reads as zeros without
	// being stored anywhere in the chain (false), and how many bytes from
	// off, at least one sector and at most length, share that state.
	Map(off, length int64) (allocated bool, n int64, err error)
}

// Checker is implemented by disks that can check their own metadata
// beyond what reading everything finds: redundant tables, reference
// counts, checksums. Each finding is a sentence; none means consistent.
type Checker interface {
	Check() ([]string, error)
}

// canWriter is implemented by disks that can tell, while open read-only,
// whether their format and variant could be written (see CanWrite).
type canWriter interface {
	CanWrite() bool
}

// quickInfoer is implemented by disks whose Info reads a whole table to
// count allocation; quickInfo leaves that count out (see QuickInfo).
type quickInfoer interface {
	quickInfo() Info
}

// Every format's disk and its optional capabilities, checked at compile
// time.
var (
	_ Disk = (*affDisk)(nil)
	_ Disk = (*dmgDisk)(nil)
	_ Disk = (*ewfDisk)(nil)
	_ Disk = (*parallelsDisk)(nil)
	_ Disk = (*parallelsBundle)(nil)
	_ Disk = (*qcow1Disk)(nil)
	_ Disk = (*qcow2Disk)(nil)
	_ Disk = (*qedDisk)(nil)
	_ Disk = (*rawDisk)(nil)
	_ Disk = (*splitDisk)(nil)
	_ Disk = (*vdiDisk)(nil)
	_ Disk = (*vhdDisk)(nil)
	_ Disk = (*vhdxDisk)(nil)
	_ Disk = (*vmdkDisk)(nil)

	_ Mapper = (*affDisk)(nil)
	_ Mapper = (*dmgDisk)(nil)
	_ Mapper = (*parallelsDisk)(nil)
	_ Mapper = (*parallelsBundle)(nil)
	_ Mapper = (*qcow1Disk)(nil)
	_ Mapper = (*qcow2Disk)(nil)
	_ Mapper = (*qedDisk)(nil)
	_ Mapper = (*vdiDisk)(nil)
	_ Mapper = (*vhdDisk)(nil)
	_ Mapper = (*vhdxDisk)(nil)
	_ Mapper = (*vmdkDisk)(nil)

	_ Checker = (*qcow2Disk)(nil)
	_ Checker = (*vhdDisk)(nil)
	_ Checker = (*vhdxDisk)(nil)
	_ Checker = (*vmdkDisk)(nil)

	_ canWriter = (*parallelsDisk)(nil)
	_ canWriter = (*qcow2Disk)(nil)
	_ canWriter = (*qedDisk)(nil)
	_ canWriter = (*rawDisk)(nil)
	_ canWriter = (*splitDisk)(nil)
	_ canWriter = (*vdiDisk)(nil)
	_ canWriter = (*vhdDisk)(nil)
	_ canWriter = (*vmdkDisk)(nil)

	_ quickInfoer = (*vhdDisk)(nil)
	_ quickInfoer = (*vhdxDisk)(nil)
)

// QuickInfo returns d's Info without the work that grows with the disk:
// where counting Allocated means reading a whole block table (VHD, VHDX)
// it may be left at -1, and complete is false: d.Info() then counts it.
func QuickInfo(d Disk) (info Info, complete bool) {
	if q, ok := d.(quickInfoer); ok {
		return q.quickInfo(), false
	}
	return d.Info(), true
}

// parentInfo is parent's Info, quick when the child's is.
func parentInfo(parent Disk, count bool) *Info {
	info := Info{}
	if count {
		info = parent.Info()
	} else {
		info, _ = QuickInfo(parent)
	}
	return &info
}

// Info describes one level of an image chain.
type Info struct {
	Format         string            `json:"format"`
	Variant        string            `json:"variant,omitempty"`
	Path           string            `json:"path"`
	Files          []string          `json:"files,omitempty"` // every file this level reads, Path first
	Size           int64             `json:"virtual_size"`
	ClusterSize    int64             `json:"cluster_size,omitempty"` // allocation unit: cluster, grain, block, chunk
	Allocated      int64             `json:"allocated_bytes"`        // virtual bytes stored in this level; -1 when unknown
	ReadOnly       bool              `json:"read_only"`
	ReadOnlyReason string            `json:"read_only_reason,omitempty"`
	Features       []string          `json:"features,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"` // what the image records, under the format's own names
	// Hashes are the digests of the whole disk the image records (EWF,
	// AFF), keyed "md5", "sha1", "sha256", in lowercase hex.
	Hashes map[string]string `json:"stored_hashes,omitempty"`
	// Acquisition is what an evidence container records of its making.
	Acquisition *Acquisition `json:"acquisition,omitempty"`
	Warnings    []string     `json:"warnings,omitempty"`
	Parent      *Info        `json:"parent,omitempty"`
}

// Acquisition is what an evidence container (EWF, AFF) records of how it
// was made, each field as the image spells it; empty when not recorded.
type Acquisition struct {
	CaseNumber     string `json:"case_number,omitempty"`
	EvidenceNumber string `json:"evidence_number,omitempty"`
	Examiner       string `json:"examiner,omitempty"`
	Description    string `json:"description,omitempty"`
	Notes          string `json:"notes,omitempty"`
	Date           string `json:"date,omitempty"`
	Software       string `json:"software,omitempty"` // the imager and its version
	DeviceModel    string `json:"device_model,omitempty"`
	DeviceSerial   string `json:"device_serial,omitempty"`
}

// clone copies i deeply enough that the caller may change the copy's
// slices and map without touching i.
func (i Info) clone() Info {
	i.Files = append([]string(nil), i.Files...)
	i.Features = append([]string(nil), i.Features...)
	i.Warnings = append([]string(nil), i.Warnings...)
	meta := make(map[string]string, len(i.Metadata))
	for k, v := range i.Metadata {
		meta[k] = v
	}
	i.Metadata = meta
	if i.Hashes != nil {
		hashes := make(map[string]string, len(i.Hashes))
		for k, v := range i.Hashes {
			hashes[k] = v
		}
		i.Hashes = hashes
	}
	if i.Acquisition != nil {
		a := *i.Acquisition
		i.Acquisition = &a
	}
	return i
}

// Options control how Open treats an image.
type Options struct {
	// ReadOnly opens every file of the image read-only. Parents are
	// always opened read-only.
	ReadOnly bool
	// SearchPath lists extra directories where parents are looked for by
	// formats that find them by identity rather than by name (VDI).
	SearchPath []string
	// Strict refuses soft inconsistencies (such as a VMDK parent CID
	// mismatch) that are otherwise only reported in Info().Warnings.
	Strict bool
	// CheckPath, when set, is asked about every image and parent path
	// before Open looks at it; an error refuses the path. (A FUSE mount
	// uses it to refuse paths inside itself.)
	CheckPath func(path string) error

	depth int // parent chain depth, to stop loops
}

// Sentinel errors; every error from this package wraps one of these or an
// *os.PathError so callers can map them to errno values.
var (
	ErrUnknownFormat = errors.New("unknown image format")
	ErrCorrupt       = errors.New("corrupt image")
	ErrUnsupported   = errors.New("unsupported image feature")
	ErrReadOnly      = errors.New("image is read-only")
	ErrInvalid       = errors.New("unaligned or out-of-range request")
)

// MaxChainDepth bounds parent chains, so a loop of images referring to
// each other fails cleanly.
const MaxChainDepth = 64

// FormatError reports a problem found in an image file.
type FormatError struct {
	Format string // "vdi", "qcow2", ...
	Path   string
	Off    int64 // file offset of the offending structure, or -1
	Msg    string
	Err    error // ErrCorrupt, ErrUnsupported, ...
}

func (e *FormatError) Error() string {
	s := e.Format + ": " + e.Path
	if e.Off >= 0 {
		s += fmt.Sprintf(": at offset %#x", e.Off)
	}
	s += ": " + e.Msg
	if e.Err != nil && e.Err != ErrCorrupt {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error {
	if e.Err == nil {
		return ErrCorrupt
	}
	return e.Err
}

// corruptf reports a damaged or inconsistent structure at file offset off
// (-1 when there is none).
func corruptf(format, path string, off int64, msg string, a ...any) error {
	return &FormatError{Format: format, Path: path, Off: off, Msg: fmt.Sprintf(msg, a...), Err: ErrCorrupt}
}

// unsupportedf reports something valid that vdflat does not handle.
func unsupportedf(format, path string, msg string, a ...any) error {
	return &FormatError{Format: format, Path: path, Off: -1, Msg: fmt.Sprintf(msg, a...), Err: ErrUnsupported}
}

// ProbeData is what a format's probe sees of a candidate file.
type ProbeData struct {
	Path  string
	Size  int64  // file size (0 for a directory)
	Head  []byte // the first probeLen bytes (fewer for a small file)
	Tail  []byte // the last probeLen bytes (fewer for a small file)
	IsDir bool
	Mode  os.FileMode // file type bits from stat
}

const probeLen = 64 << 10

// Probe orders. Formats with a magic number at the start probe first,
// formats recognised by their tail next, raw variants last.
const (
	orderHead  = 10
	orderTail  = 50
	orderSplit = 90
	orderRaw   = 100
)

type format struct {
	name  string
	order int
	probe func(*ProbeData) bool
	open  func(path string, opt Options) (Disk, error)
}

var registry []format

// register adds a format; called from each format file's init.
func register(f format) {
	registry = append(registry, f)
	sort.SliceStable(registry, func(i, j int) bool { return registry[i].order < registry[j].order })
}

// Formats lists the names of the registered formats in probe order.
func Formats() []string {
	names := make([]string, 0, len(registry))
	for _, f := range registry {
		if f.order != orderDamaged { // refuses files, opens none
			names = append(names, f.name)
		}
	}
	return names
}

// Open probes path by content and opens it with its whole parent chain.
func Open(path string, opt Options) (Disk, error) {
	if opt.depth > MaxChainDepth {
		return nil, corruptf("chain", path, -1, "parent chain deeper than %d images (a loop?)", MaxChainDepth)
	}
	if opt.CheckPath != nil {
		if err := opt.CheckPath(path); err != nil {
			return nil, err
		}
	}
	pd, err := readProbe(path)
	if err != nil {
		return nil, err
	}
	for _, f := range registry {
		if f.probe(pd) {
			return f.open(path, opt)
		}
	}
	if pd.IsDir {
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
	}
	return nil, fmt.Errorf("%s: %w", path, ErrUnknownFormat)
}

// Detect names the format Open would use for path, without opening it.
func Detect(path string) (string, error) {
	pd, err := readProbe(path)
	if err != nil {
		return "", err
	}
	for _, f := range registry {
		if f.probe(pd) {
			return f.name, nil
		}
	}
	return "", fmt.Errorf("%s: %w", path, ErrUnknownFormat)
}

func readProbe(path string) (*ProbeData, error) {
	st, err := statPath(path)
	if err != nil {
		return nil, err
	}
	pd := &ProbeData{Path: path, IsDir: st.IsDir(), Mode: st.Mode()}
	if pd.IsDir || !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		return pd, nil
	}
	f, err := OpenImageFile(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Block devices report size 0 in stat; seeking finds the real end.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pd.Size = size
	n := min(size, probeLen)
	pd.Head = make([]byte, n)
	if _, err := f.ReadAt(pd.Head, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	if size <= probeLen {
		pd.Tail = pd.Head
	} else {
		pd.Tail = make([]byte, n)
		if _, err := f.ReadAt(pd.Tail, size-n); err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: reading trailer: %w", path, err)
		}
	}
	return pd, nil
}

// openParent opens the parent named ref of the image at child: read-only,
// relative names resolved against the child's directory, chain depth
// bounded. A missing parent gives an error that wraps fs.ErrNotExist and
// names the file.
func openParent(child, ref string, opt Options) (Disk, error) {
	p := ref
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(child), p)
	}
	popt := opt
	popt.ReadOnly = true
	popt.depth++
	d, err := Open(p, popt)
	if err != nil {
		return nil, fmt.Errorf("%s: opening parent %q: %w", child, ref, err)
	}
	return d, nil
}

// openFile opens one file of an image, read-write unless readOnly.
func openFile(path string, readOnly bool) (*os.File, error) {
	return OpenImageFile(path, !readOnly)
}

// checkIO validates a ReadAt/WriteAt request against the contract.
func checkIO(p []byte, off int64) error {
	if off < 0 || off%SectorSize != 0 || len(p)%SectorSize != 0 {
		return fmt.Errorf("%w: offset %d length %d", ErrInvalid, off, len(p))
	}
	return nil
}

// readFullAt reads exactly len(p) bytes or reports a truncated file as
// corruption of the given format.
func readFullAt(r io.ReaderAt, p []byte, off int64, format, path string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	return readFullAtErr(n, err, len(p), off, format, path)
}

// readFullAtErr is readFullAt's error, out of line: every read passes
// through readFullAt on a request goroutine's small stack (see
// readFailed in the main package).
func readFullAtErr(n int, err error, want int, off int64, format, path string) error {
	if err == nil || err == io.EOF {
		return corruptf(format, path, off, "file truncated: wanted %d bytes, got %d", want, n)
	}
	return fmt.Errorf("%s: %s: read at %#x: %w", format, path, off, err)
}

// writeFullAt writes p at off of one file of an image, wrapping a failure
// with the format, the path and the offset.
func writeFullAt(w io.WriterAt, p []byte, off int64, format, path string) error {
	if _, err := w.WriteAt(p, off); err != nil {
		return fmt.Errorf("%s: %s: write at %#x: %w", format, path, off, err)
	}
	return nil
}

// syncFile makes a file of an image durable, wrapping a failure with the
// format and the path.
func syncFile(f *os.File, format, path string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %s: sync: %w", format, path, err)
	}
	return nil
}

// readHead returns the first n bytes of an image file and the file's
// size; a shorter file is reported truncated.
func readHead(f *os.File, n int, format, path string) ([]byte, int64, error) {
	fsize, err := fileSize(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %s: %w", format, path, err)
	}
	b := make([]byte, n)
	if err := readFullAt(f, b, 0, format, path); err != nil {
		return nil, 0, err
	}
	return b, fsize, nil
}

// fileSize reports the size of an open file, block devices included.
func fileSize(f *os.File) (int64, error) {
	return f.Seek(0, io.SeekEnd)
}

// CanWrite reports whether d's format and variant could be written if
// the image were opened read-write. Disks opened read-only answer through
// an optional CanWrite method; without one, only a disk that is writable
// now counts as writable.
func CanWrite(d Disk) bool {
	if w, ok := d.(canWriter); ok {
		return w.CanWrite()
	}
	info, _ := QuickInfo(d)
	return !info.ReadOnly
}
