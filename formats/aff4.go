package formats

// AFF4 (Advanced Forensic Format 4), Standard v1.0, as written by
// Evimetry, aff4imager (c-aff4) and pyaff4: read-only. Facts from the
// AFF4 Standard v1.0 text (aff4/Standard) and the canonical reference
// images; this is an independent implementation.
//
// A volume is a ZIP64 file. Its information.turtle (RDF) names an
// aff4:Image whose aff4:dataStream is an aff4:Map or an aff4:ImageStream.
// An ImageStream stores fixed-size chunks, each compressed on its own,
// in "bevies": segment NNNNNNNN holds the chunks, NNNNNNNN.index their
// (offset u64, length u32) little-endian entries. A Map's "map" segment
// lists (mapped offset, length, target offset, target id) entries, the
// "idx" segment the target IRIs, one per line: ImageStreams, possibly in
// other volumes of a striped set, or symbolic streams (aff4:Zero,
// aff4:SymbolicStreamXX, aff4:UnknownData, aff4:UnreadableData).
//
// The ZIP layer is archive/zip: it reads ZIP64 end records and extra
// fields, checks CRCs of what it inflates, and bounds its directory by
// the file size, so no ZIP parsing of our own is needed. Bevies are
// stored uncompressed in the ZIP (the chunks inside are compressed), so
// chunk reads go straight to the file at the segment's data offset.

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func init() {
	register(format{name: "aff4", order: orderHead, probe: aff4Probe, open: aff4Open})
}

const aff4NS = "http://aff4.org/Schema#"

const (
	aff4MaxChunkSize   = 16 << 20
	aff4MaxPerSegment  = 1 << 22
	aff4MaxMapEntries  = 1 << 21 // 56 MiB of map segment
	aff4MaxIdxBytes    = 1 << 20
	aff4MaxVolumes     = 64
	aff4MaxCandidates  = 256 // files probed per search for a volume
	aff4MaxMetaValue   = 4096
	aff4MaxMetaCount   = 256
	aff4ChunkCacheSize = 32 << 20
	aff4IndexCacheSize = 32 << 20
	aff4MapEntrySize   = 28
	aff4IndexEntrySize = 12
	aff4RepeatBlock    = 1 << 20 // repeated-string streams restart every MiB
)

// aff4Probe looks for a ZIP whose first member is container.description
// (the standard's recommended layout) or whose ZIP comment starts with an
// aff4:// volume IRI.
func aff4Probe(pd *ProbeData) bool {
	if pd.IsDir || !bytes.HasPrefix(pd.Head, []byte("PK\x03\x04")) {
		return false
	}
	if len(pd.Head) >= 30 {
		n := int(binary.LittleEndian.Uint16(pd.Head[26:28]))
		if 30+n <= len(pd.Head) {
			name := string(pd.Head[30 : 30+n])
			if name == "container.description" || name == "information.turtle" {
				return true
			}
		}
	}
	// The end-of-central-directory record: 22 bytes plus the comment.
	if i := bytes.LastIndex(pd.Tail, []byte("PK\x05\x06")); i >= 0 && i+22 <= len(pd.Tail) {
		return bytes.HasPrefix(pd.Tail[i+22:], []byte("aff4://"))
	}
	return false
}

// aff4Volume is one ZIP file of an AFF4 image.
type aff4Volume struct {
	path  string
	f     *os.File
	size  int64
	iri   string
	graph aff4Graph
	files map[string]*zip.File
}

func openAff4Volume(path string) (*aff4Volume, error) {
	f, err := OpenImageFile(path, false)
	if err != nil {
		return nil, err
	}
	v, err := loadAff4Volume(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return v, nil
}

func loadAff4Volume(f *os.File, path string) (*aff4Volume, error) {
	size, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("aff4: %s: %w", path, err)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, corruptf("aff4", path, -1, "ZIP container: %v", err)
	}
	v := &aff4Volume{path: path, f: f, size: size, files: make(map[string]*zip.File, len(zr.File))}
	for _, zf := range zr.File {
		if _, dup := v.files[zf.Name]; !dup {
			v.files[zf.Name] = zf
		}
	}
	// The volume IRI: container.description, else the ZIP comment.
	if b, err := v.segment("container.description", 4096); err == nil {
		v.iri = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if v.iri == "" {
		v.iri = strings.TrimSpace(strings.TrimRight(zr.Comment, "\x00"))
	}
	if !strings.HasPrefix(v.iri, "aff4://") || strings.ContainsAny(v.iri, " \n\x00") {
		return nil, corruptf("aff4", path, -1, "no AFF4 volume IRI in container.description or the ZIP comment")
	}
	tb, err := v.segment("information.turtle", turtleMaxBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, corruptf("aff4", path, -1, "no information.turtle")
		}
		return nil, err
	}
	ts, err := parseTurtle(tb)
	if err != nil {
		return nil, corruptf("aff4", path, -1, "information.turtle: %v", err)
	}
	v.graph = newAff4Graph(ts)
	return v, nil
}

// segment reads a whole (small) ZIP member, at most limit bytes.
func (v *aff4Volume) segment(name string, limit int64) ([]byte, error) {
	zf, ok := v.files[name]
	if !ok {
		return nil, fmt.Errorf("aff4: %s: segment %q: %w", v.path, name, os.ErrNotExist)
	}
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, corruptf("aff4", v.path, -1, "segment %q: %d bytes, more than the %d allowed", name, zf.UncompressedSize64, limit)
	}
	r, err := zf.Open()
	if err != nil {
		return nil, corruptf("aff4", v.path, -1, "segment %q: %v", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, corruptf("aff4", v.path, -1, "segment %q: %v", name, err)
	}
	if int64(len(b)) > limit {
		return nil, corruptf("aff4", v.path, -1, "segment %q: more than %d bytes", name, limit)
	}
	return b, nil
}

// storedSegment locates a member stored without ZIP compression, for
// reading parts of it in place.
func (v *aff4Volume) storedSegment(name string) (off, size int64, err error) {
	zf, ok := v.files[name]
	if !ok {
		return 0, 0, corruptf("aff4", v.path, -1, "segment %q missing", name)
	}
	if zf.Method != zip.Store {
		return 0, 0, unsupportedf("aff4", v.path, "segment %q is ZIP-compressed (method %d)", name, zf.Method)
	}
	off, err = zf.DataOffset()
	if err != nil {
		return 0, 0, corruptf("aff4", v.path, -1, "segment %q: %v", name, err)
	}
	size = int64(zf.UncompressedSize64)
	if zf.UncompressedSize64 > uint64(v.size) || off < 0 || off > v.size-size {
		return 0, 0, corruptf("aff4", v.path, off, "segment %q (%d bytes) runs past the end of the file", name, zf.UncompressedSize64)
	}
	return off, size, nil
}

// segmentName maps an AFF4 IRI to a ZIP member name (Standard 5.1):
// relative to the volume when it starts with the volume IRI, else with
// its scheme and authority percent-encoded as the first folder.
func (v *aff4Volume) segmentName(iri string) string {
	if rest, ok := strings.CutPrefix(iri, v.iri); ok && (rest == "" || rest[0] == '/') {
		return strings.TrimPrefix(rest, "/")
	}
	head, rest := iri, ""
	if i := strings.Index(iri, "://"); i >= 0 {
		if j := strings.IndexByte(iri[i+3:], '/'); j >= 0 {
			head, rest = iri[:i+3+j], iri[i+3+j:]
		}
	}
	return aff4Escape(head) + rest
}

func aff4Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// aff4Graph indexes triples by subject and predicate.
type aff4Graph map[string]map[string][]term

func newAff4Graph(ts []triple) aff4Graph {
	g := aff4Graph{}
	for _, t := range ts {
		m := g[t.S]
		if m == nil {
			m = map[string][]term{}
			g[t.S] = m
		}
		m[t.P] = append(m[t.P], t.O)
	}
	return g
}

func (g aff4Graph) is(s, typ string) bool {
	for _, t := range g[s][rdfType] {
		if t.Kind == termIRI && t.Value == typ {
			return true
		}
	}
	return false
}

// ofType lists the subjects of an rdf:type, sorted for determinism.
func (g aff4Graph) ofType(typ string) []string {
	var out []string
	for s := range g {
		if g.is(s, typ) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func (g aff4Graph) first(s, p string) (term, bool) {
	if ts := g[s][p]; len(ts) > 0 {
		return ts[0], true
	}
	return term{}, false
}

func (g aff4Graph) iri(s, p string) string {
	if t, ok := g.first(s, p); ok && t.Kind == termIRI {
		return t.Value
	}
	return ""
}

// int reads an integer literal; ok is false when absent.
func (g aff4Graph) int(s, p string) (int64, bool, error) {
	t, ok := g.first(s, p)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t.Value), 10, 64)
	if t.Kind != termLiteral || err != nil || n < 0 {
		return 0, true, fmt.Errorf("%s %s: not a non-negative integer: %q", s, strings.TrimPrefix(p, aff4NS), t.Value)
	}
	return n, true, nil
}

// intOr reads an integer literal, def when absent.
func (g aff4Graph) intOr(s, p string, def int64) (int64, error) {
	n, ok, err := g.int(s, p)
	if !ok {
		return def, nil
	}
	return n, err
}

// aff4Image is an opened AFF4 image: its volumes, streams and map.
type aff4Image struct {
	readOnlyFormat
	path     string
	volumes  []*aff4Volume
	imageIRI string
	size     int64
	m        *aff4Map
	streams  []*aff4Stream // ordered by IRI
	info     Info
}

func aff4Open(path string, opt Options) (Disk, error) {
	first, err := openAff4Volume(path)
	if err != nil {
		return nil, err
	}
	d := &aff4Image{path: path, volumes: []*aff4Volume{first}}
	if err := d.load(opt); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// load finds the image in the first volume and builds its map.
func (d *aff4Image) load(opt Options) error {
	v := d.volumes[0]
	g := v.graph
	var images []string
	seen := map[string]bool{}
	for _, typ := range []string{"Image", "DiskImage", "ContiguousImage"} {
		for _, s := range g.ofType(aff4NS + typ) {
			if g.iri(s, aff4NS+"dataStream") != "" && !seen[s] {
				seen[s] = true
				images = append(images, s)
			}
		}
	}
	var dataStream string
	var warnings []string
	switch {
	case len(images) > 0:
		d.imageIRI = images[0]
		dataStream = g.iri(d.imageIRI, aff4NS+"dataStream")
		if len(images) > 1 {
			warnings = append(warnings, fmt.Sprintf("%d images in the volume; reading %s", len(images), d.imageIRI))
		}
	case len(g.ofType(aff4NS+"Map")) == 1:
		dataStream = g.ofType(aff4NS + "Map")[0]
	case len(g.ofType(aff4NS+"ImageStream")) == 1:
		dataStream = g.ofType(aff4NS + "ImageStream")[0]
	default:
		return unsupportedf("aff4", d.path, "no aff4:Image with an aff4:dataStream (a logical or memory-only container?)")
	}
	var err error
	if g.is(dataStream, aff4NS+"Map") {
		d.m, err = d.loadMap(v, dataStream, opt)
	} else {
		var s *aff4Stream
		if s, err = d.stream(dataStream, opt); err == nil {
			d.m = &aff4Map{iri: dataStream, size: s.size, gap: aff4Symbolic(aff4NS + "Zero"),
				entries: []aff4MapEntry{{length: s.size}}, targets: []aff4Target{{iri: s.iri, stream: s}}}
		}
	}
	if err != nil {
		return err
	}
	d.size = d.m.size
	if d.imageIRI != "" {
		if n, ok, err := g.int(d.imageIRI, aff4NS+"size"); err != nil {
			return corruptf("aff4", d.path, -1, "%v", err)
		} else if ok && n != d.size {
			warnings = append(warnings, fmt.Sprintf("image size %d differs from its data stream's %d; using the stream's", n, d.size))
		}
	}
	d.info = d.buildInfo(warnings)
	return nil
}

// stream returns the ImageStream named iri, opening the volume that
// stores it when that is not open yet.
func (d *aff4Image) stream(iri string, opt Options) (*aff4Stream, error) {
	for _, s := range d.streams {
		if s.iri == iri {
			return s, nil
		}
	}
	v, err := d.volumeOf(iri, opt)
	if err != nil {
		return nil, err
	}
	s, err := newAff4Stream(v, iri)
	if err != nil {
		return nil, err
	}
	d.streams = append(d.streams, s)
	sort.Slice(d.streams, func(i, j int) bool { return d.streams[i].iri < d.streams[j].iri })
	return s, nil
}

// holds reports whether v stores the ImageStream iri: described there
// and its first bevy index present.
func (v *aff4Volume) holds(iri string) bool {
	if !v.graph.is(iri, aff4NS+"ImageStream") {
		return false
	}
	if st := v.graph.iri(iri, aff4NS+"stored"); st != "" && st != v.iri {
		return false
	}
	_, ok := v.files[v.segmentName(iri)+"/00000000.index"]
	return ok
}

// volumeOf finds the volume holding stream iri: an open one, else a
// volume beside the first (or in opt.SearchPath) whose IRI is the one the
// stream's aff4:stored names, or that holds the stream.
func (d *aff4Image) volumeOf(iri string, opt Options) (*aff4Volume, error) {
	for _, v := range d.volumes {
		if v.holds(iri) {
			return v, nil
		}
	}
	want := d.volumes[0].graph.iri(iri, aff4NS+"stored")
	dirs := append([]string{filepath.Dir(d.path)}, opt.SearchPath...)
	probed := 0
	for _, dir := range dirs {
		ents, err := readDirPath(dir)
		if err != nil {
			continue
		}
		// Names ending in .aff4 first: in a folder full of other evidence,
		// only so many files are probed.
		sort.SliceStable(ents, func(i, j int) bool {
			return aff4Named(ents[i].Name()) && !aff4Named(ents[j].Name())
		})
		for _, e := range ents {
			if probed >= aff4MaxCandidates || len(d.volumes) >= aff4MaxVolumes {
				break
			}
			p := filepath.Join(dir, e.Name())
			if e.IsDir() || d.isOpen(p) {
				continue
			}
			probed++
			pd, err := readProbe(p)
			if err != nil || !aff4Probe(pd) {
				continue
			}
			v, err := openAff4Volume(p)
			if err != nil {
				continue
			}
			if (want == "" || v.iri == want) && v.holds(iri) {
				d.volumes = append(d.volumes, v)
				return v, nil
			}
			v.f.Close()
		}
	}
	if want != "" {
		return nil, fmt.Errorf("aff4: %s: image stream %s is stored in volume %s, not found beside it: %w", d.path, iri, want, os.ErrNotExist)
	}
	return nil, fmt.Errorf("aff4: %s: image stream %s not found in any volume beside it: %w", d.path, iri, os.ErrNotExist)
}

func aff4Named(name string) bool { return strings.HasSuffix(strings.ToLower(name), ".aff4") }

func (d *aff4Image) isOpen(p string) bool {
	st, err := statPath(p)
	if err != nil {
		return false
	}
	for _, v := range d.volumes {
		if vs, err := v.f.Stat(); err == nil && os.SameFile(st, vs) {
			return true
		}
	}
	return false
}

// aff4Meta lists the image properties shown by info (literals only).
var aff4MetaSkip = map[string]bool{"hash": true, "size": true, "stored": true, "target": true, "blockMapHash": true,
	"mapHash": true, "mapIdxHash": true, "mapPointHash": true, "mapPathHash": true, "imageStreamHash": true, "imageStreamIndexHash": true}

func (d *aff4Image) buildInfo(warnings []string) Info {
	meta := map[string]string{}
	// Several notes of one kind (CaseNotes) join under one key.
	put := func(k, v string) {
		if old, dup := meta[k]; dup && old != v && len(old)+len(v) < aff4MaxMetaValue {
			meta[k] = old + "; " + v
		} else if !dup && len(meta) < aff4MaxMetaCount && len(v) <= aff4MaxMetaValue {
			meta[k] = v
		}
	}
	g := d.volumes[0].graph
	put("volume", d.volumes[0].iri)
	if d.imageIRI != "" {
		put("image", d.imageIRI)
	}
	// Literal properties of the image and of what describes it (case
	// details, notes, timestamps), prefixed by the describing type.
	subjects := []string{d.imageIRI}
	for s := range g {
		if d.imageIRI != "" && g.iri(s, aff4NS+"target") == d.imageIRI && !g.is(s, aff4NS+"Map") {
			subjects = append(subjects, s)
		}
	}
	sort.Strings(subjects[1:])
	for _, s := range subjects {
		if s == "" {
			continue
		}
		prefix := ""
		if s != d.imageIRI {
			if t := g.iri(s, rdfType); t != "" {
				prefix = strings.TrimPrefix(t, aff4NS) + " "
			}
		}
		preds := make([]string, 0, len(g[s]))
		for p := range g[s] {
			preds = append(preds, p)
		}
		sort.Strings(preds)
		for _, p := range preds {
			local, ok := strings.CutPrefix(p, aff4NS)
			if !ok || aff4MetaSkip[local] {
				continue
			}
			var vals []string
			for _, t := range g[s][p] {
				if t.Kind == termLiteral {
					vals = append(vals, t.Value)
				}
			}
			if len(vals) > 0 {
				put(prefix+local, strings.Join(vals, "; "))
			}
		}
	}
	for _, h := range d.storedHashes() {
		put(h.label, h.hex)
	}
	files := make([]string, len(d.volumes))
	for i, v := range d.volumes {
		files[i] = v.path
	}
	var features []string
	methods := map[string]bool{}
	var chunk int64
	for _, s := range d.streams {
		methods[s.codec.String()] = true
		chunk = max(chunk, s.chunkSize)
	}
	for m := range methods {
		features = append(features, m+" chunks")
	}
	sort.Strings(features)
	if len(d.volumes) > 1 {
		features = append(features, fmt.Sprintf("striped over %d volumes", len(d.volumes)))
	}
	if n := d.m.unreadableBytes(); n > 0 {
		features = append(features, fmt.Sprintf("%d bytes unreadable at acquisition", n))
	}
	variant := "map"
	if len(d.m.entries) == 1 && d.m.targets[0].stream != nil && d.m.iri == d.m.targets[0].iri {
		variant = "image stream"
	}
	return Info{
		Format: "aff4", Variant: variant, Path: d.path, Files: files, Size: d.size,
		ClusterSize: chunk, Allocated: d.m.storedBytes(), ReadOnly: true,
		ReadOnlyReason: "AFF4 images are evidence containers; vdflat reads them only",
		Features:       features, Metadata: meta, Warnings: warnings,
	}
}

func (d *aff4Image) Size() int64 { return d.size }

func (d *aff4Image) ReadAt(p []byte, off int64) (int, error) {
	n := len(p)
	q, err := clampRead(p, off, d.size)
	if err != nil {
		return 0, err
	}
	if err := d.m.readAt(q, off); err != nil {
		return 0, err
	}
	return n, nil
}

func (d *aff4Image) Map(off, length int64) (bool, int64, error) {
	if off < 0 || off%SectorSize != 0 || off >= d.size || length <= 0 {
		return false, 0, fmt.Errorf("%w: map %d+%d of %d", ErrInvalid, off, length, d.size)
	}
	t, n := d.m.at(off, min(length, d.size-off))
	alloc := !t.zero()
	// Map entries need not end on a sector; runs must. A sector holding
	// any stored byte counts as stored.
	if end := off + n; end%SectorSize != 0 && end < d.size {
		switch {
		case alloc:
			n = min(roundUpSector(end), d.size) - off
		case n >= SectorSize:
			n = end/SectorSize*SectorSize - off
		default:
			alloc, n = true, SectorSize
		}
	}
	return alloc, n, nil
}

func roundUpSector(n int64) int64 { return (n + SectorSize - 1) / SectorSize * SectorSize }

func (d *aff4Image) Close() error {
	files := make([]*os.File, len(d.volumes))
	for i, v := range d.volumes {
		files[i] = v.f
	}
	return closeEach(files, func(f *os.File) *os.File { return f })
}

func (d *aff4Image) Info() Info { return d.info.clone() }

var (
	_ Mapper  = (*aff4Image)(nil)
	_ Checker = (*aff4Image)(nil)
)
