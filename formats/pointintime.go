package formats

// Points in time: the states of a disk that its image still holds besides
// the current one. A qcow2 image keeps internal snapshots; every chain
// (VMDK deltas, VHDX/AVHDX differencing disks, VDI snapshots, qcow2/QED
// backing files, Parallels bundle snapshots) keeps, in each lower level,
// the disk as it was when the level above was created.

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// PointInTime is one earlier state of a disk, opened on demand.
type PointInTime struct {
	// Name is unique among the disk's points in time and safe as a file
	// name: the snapshot name (its id where names clash), or
	// parent-N-BASENAME for the level N below the top of a chain.
	Name    string
	Label   string    // the name the image gives it, as stored
	ID      string    // the format's own id (qcow2 snapshot id), if any
	Kind    string    // "snapshot" (internal) or "parent" (a chain level)
	Created time.Time // zero when the format does not store it
	Size    int64     // virtual size in bytes
	Path    string    // the image file it is read from
	Files   []string  // the files it reads (at most those of the whole chain)
	// Open opens the point in time read-only, as a flattened Disk.
	Open func() (Disk, error)
}

// pointsInTimer is implemented by disks with points in time of their
// own (internal snapshots).
type pointsInTimer interface {
	pointsInTime(opt Options) ([]PointInTime, error)
}

// chainLeveler is implemented by disks whose lower chain levels cannot be
// opened alone by their path (a Parallels bundle's images).
type chainLeveler interface {
	chainLevels(opt Options) []PointInTime
}

// PointsInTime lists d's points in time: its internal snapshots, then
// each lower level of its chain, nearest first. opt is how d was opened;
// points in time open read-only with the same options. Nothing is read
// but snapshot tables: the list is cheap enough for attach.
func PointsInTime(d Disk, opt Options) ([]PointInTime, error) {
	opt.ReadOnly = true
	var out []PointInTime
	if p, ok := d.(pointsInTimer); ok {
		snaps, err := p.pointsInTime(opt)
		if err != nil {
			return nil, err
		}
		out = append(out, snaps...)
	}
	if c, ok := d.(chainLeveler); ok {
		out = append(out, c.chainLevels(opt)...)
	} else {
		info, _ := QuickInfo(d)
		out = append(out, genericChainLevels(info, opt)...)
	}
	nameUniquely(out)
	return out, nil
}

// genericChainLevels lists the levels below the top of info's chain, each
// opened by its path with its own parents.
func genericChainLevels(info Info, opt Options) []PointInTime {
	var out []PointInTime
	n := 0
	for p := info.Parent; p != nil && n < MaxChainDepth; p = p.Parent {
		n++
		path := p.Path
		out = append(out, PointInTime{
			Label: fmt.Sprintf("parent-%d-%s", n, filepath.Base(path)), Kind: "parent",
			Size: p.Size, Path: path, Files: chainFiles(p),
			Open: func() (Disk, error) { return Open(path, opt) },
		})
	}
	return out
}

// chainFiles lists the files of info's level and every level below.
func chainFiles(info *Info) []string {
	var files []string
	for ; info != nil; info = info.Parent {
		files = append(files, info.Files...)
	}
	return files
}

// nameUniquely gives each point in time a file name made from its label:
// safe (no '/', control characters or invalid UTF-8, not "." or "..",
// at most 255 bytes) and unique (a clash is resolved by the id, then by
// a number).
func nameUniquely(pits []PointInTime) {
	count := map[string]int{}
	for _, p := range pits {
		count[safeName(p.Label)]++
	}
	taken := map[string]bool{}
	for i := range pits {
		p := &pits[i]
		name := safeName(p.Label)
		if count[name] > 1 && p.ID != "" {
			name = safeName("id-" + p.ID)
		}
		base := name[:min(len(name), 240)]
		for !utf8.ValidString(base) {
			base = base[:len(base)-1]
		}
		for k := 2; taken[name]; k++ {
			name = fmt.Sprintf("%s-%d", base, k)
		}
		taken[name] = true
		p.Name = name
	}
}

// safeName escapes what a file name cannot hold, or should not show, as
// \xNN (or \UXXXXXXXX), and the backslash itself.
func safeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '/' || r == '\\' || r < 0x80 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	name := b.String()
	if name == "" || name == "." || name == ".." {
		name = "snapshot" + name
	}
	if len(name) > 255 {
		cut := 255
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut]
	}
	return name
}

// FindPointInTime returns the point in time of d called name: its file
// name, else its label or id.
func FindPointInTime(d Disk, opt Options, name string) (PointInTime, error) {
	pits, err := PointsInTime(d, opt)
	if err != nil {
		return PointInTime{}, err
	}
	for _, match := range []func(p PointInTime) bool{
		func(p PointInTime) bool { return p.Name == name },
		func(p PointInTime) bool { return p.Label == name },
		func(p PointInTime) bool { return p.ID != "" && p.ID == name },
	} {
		for _, p := range pits {
			if match(p) {
				return p, nil
			}
		}
	}
	var names []string
	for _, p := range pits {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return PointInTime{}, fmt.Errorf("no snapshot %q: the image has no snapshots or parent levels", name)
	}
	return PointInTime{}, fmt.Errorf("no snapshot %q (there are: %s)", name, strings.Join(names, ", "))
}

// chainLevels lists the bundle's lower snapshots, each opened as the
// bundle with that snapshot on top.
func (b *parallelsBundle) chainLevels(opt Options) []PointInTime {
	info, _ := QuickInfo(b.Disk)
	var out []PointInTime
	level := info.Parent
	for k := 1; k < len(b.chain) && level != nil; k++ {
		guid := b.chain[k]
		out = append(out, PointInTime{
			Label: fmt.Sprintf("parent-%d-%s", k, guid), ID: guid, Kind: "parent",
			Size: level.Size, Path: b.xmlPath, Files: append([]string{b.xmlPath}, chainFiles(level)...),
			Open: func() (Disk, error) { return parallelsOpenBundleAt(b.xmlPath, opt, guid) },
		})
		level = level.Parent
	}
	return out
}
