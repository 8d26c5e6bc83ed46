package formats

import (
	"bytes"
	"strconv"
	"strings"
)

// VMDK text descriptor: "key=value" lines, comments, and extent lines
// ("ACCESS SECTORS TYPE ["FILE" [OFFSET [PARTITION-UUID [DEVICE]]]]").
// Layout from VMware's "Virtual Disk Format 1.1" and libvmdk's notes.

// vmdkMaxDescriptor bounds a descriptor (standalone or embedded).
const vmdkMaxDescriptor = 1 << 20

// vmdkMaxExtents bounds the extent lines of one descriptor (each opens a file).
const vmdkMaxExtents = 4096

type vmdkExtentLine struct {
	access  string // RW, RDONLY, NOACCESS
	sectors int64
	typ     string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, SESPARSE, ...
	name    string // file name, as written (empty for ZERO)
	offset  int64  // start sector in the file (FLAT)
}

type vmdkDescriptor struct {
	text    []byte
	keys    []string          // keys in order of appearance
	kv      map[string]string // unquoted values
	extents []vmdkExtentLine
}

func (d *vmdkDescriptor) get(key string) string { return d.kv[key] }

// vmdkDescriptorText trims a raw descriptor area at its first NUL byte.
func vmdkDescriptorText(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return b
}

// vmdkProbeDescriptor reports whether head looks like a text descriptor:
// the "# Disk DescriptorFile" signature or a createType line near the
// start. The text ends at the first NUL, as for the parser: qemu pads a
// descriptor file with NULs to a sector, and when it rewrites the CID in
// place with fewer hex digits, the old text's last bytes stay after the
// new NUL.
func vmdkProbeDescriptor(head []byte) bool {
	if len(head) > 4096 {
		head = head[:4096]
	}
	s := strings.TrimPrefix(string(vmdkDescriptorText(head)), "\ufeff")
	if strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "# Disk DescriptorFile") {
		return true
	}
	for _, line := range strings.Split(s, "\n") {
		k, _, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "createType" {
			return true
		}
	}
	return false
}

// vmdkParseDescriptor parses descriptor text. It needs a createType and,
// unless embedded, at least one extent line.
func vmdkParseDescriptor(text []byte, path string) (*vmdkDescriptor, error) {
	d := &vmdkDescriptor{text: text, kv: map[string]string{}}
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
		if line == "" || line[0] == '#' {
			continue
		}
		f := vmdkFields(line)
		if len(f) > 0 && (f[0] == "RW" || f[0] == "RDONLY" || f[0] == "NOACCESS") {
			e, err := vmdkParseExtentLine(f)
			if err != nil {
				return nil, corruptf("vmdk", path, -1, "descriptor line %d %q: %s", i+1, line, err)
			}
			if len(d.extents) >= vmdkMaxExtents {
				return nil, corruptf("vmdk", path, -1, "more than %d extents", vmdkMaxExtents)
			}
			d.extents = append(d.extents, e)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue // unknown line: VMware ignores it too
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if _, dup := d.kv[k]; !dup {
			d.keys = append(d.keys, k)
		}
		d.kv[k] = v
	}
	if d.kv["createType"] == "" {
		return nil, corruptf("vmdk", path, -1, "no valid descriptor: createType missing")
	}
	return d, nil
}

// vmdkFields splits an extent line on blanks, keeping "quoted names" whole
// (without the quotes).
func vmdkFields(line string) []string {
	var out []string
	for i := 0; i < len(line); {
		c := line[i]
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if c == '"' {
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				out = append(out, line[i+1:]) // unterminated: rejected by the caller
				out = append(out, "\x00")
				return out
			}
			out = append(out, line[i+1:i+1+j])
			i += j + 2
			continue
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' {
			j++
		}
		out = append(out, line[i:j])
		i = j
	}
	return out
}

func vmdkParseExtentLine(f []string) (vmdkExtentLine, error) {
	var e vmdkExtentLine
	if len(f) < 3 || len(f) > 7 {
		return e, vmdkErr("extent line needs 3 to 7 fields")
	}
	for _, s := range f {
		if strings.IndexByte(s, 0) >= 0 {
			return e, vmdkErr("unterminated quoted name")
		}
	}
	e.access = f[0]
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n <= 0 || n > vmdkMaxSectors {
		return e, vmdkErr("bad sector count")
	}
	e.sectors = n
	e.typ = strings.ToUpper(f[2])
	if e.typ == "ZERO" {
		return e, nil
	}
	if len(f) < 4 || f[3] == "" {
		return e, vmdkErr("extent file name missing")
	}
	e.name = f[3]
	if len(f) >= 5 {
		o, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil || o < 0 || o > vmdkMaxSectors {
			return e, vmdkErr("bad extent offset")
		}
		e.offset = o
	}
	// Fields 6 and 7 (partition UUID, device id of VMFS/raw devices) do not
	// change where the data is.
	return e, nil
}

// withCID returns the descriptor text with the CID value replaced.
func (d *vmdkDescriptor) withCID(cid uint32) []byte {
	lines := strings.SplitAfter(string(d.text), "\n")
	val := strconv.FormatUint(uint64(cid), 16)
	for len(val) < 8 {
		val = "0" + val
	}
	for i, line := range lines {
		k, _, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "CID" {
			end := ""
			if strings.HasSuffix(line, "\r\n") {
				end = "\r\n"
			} else if strings.HasSuffix(line, "\n") {
				end = "\n"
			}
			lines[i] = "CID=" + val + end
			return []byte(strings.Join(lines, ""))
		}
	}
	return nil
}

type vmdkErr string

func (e vmdkErr) Error() string { return string(e) }
