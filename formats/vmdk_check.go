package formats

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Check compares each hosted sparse extent's grain directory and grain
// tables with their redundant copies, and checks that every table and
// grain lies inside the file.
func (d *vmdkDisk) Check() ([]string, error) {
	var findings []string
	for _, x := range d.ext {
		if x.sp == nil {
			continue
		}
		f, err := x.sp.check()
		if err != nil {
			return findings, err
		}
		for _, s := range f {
			findings = append(findings, fmt.Sprintf("extent %s: %s", x.path, s))
		}
	}
	return findings, nil
}

func (s *vmdkSparse) check() ([]string, error) {
	var findings []string
	add := func(format string, a ...any) {
		if len(findings) < 100 {
			findings = append(findings, fmt.Sprintf(format, a...))
		}
	}
	es := s.entrySize
	if s.kind == vmdkSESparse {
		es = 8
	}
	gdBytes := s.gdEntries * 4
	if s.kind == vmdkSESparse {
		gdBytes = s.gdEntries * 8
	}
	if gdBytes > s.fileSize.Load() {
		return nil, corruptf("vmdk", s.path, s.gdOff, "grain directory larger than the file")
	}
	gd := make([]byte, gdBytes)
	if err := readFullAt(s.f, gd, s.gdOff, "vmdk", s.path); err != nil {
		return nil, err
	}
	var rgd []byte
	if s.rgdOff != 0 {
		rgd = make([]byte, gdBytes)
		if err := readFullAt(s.f, rgd, s.rgdOff, "vmdk", s.path); err != nil {
			return nil, err
		}
	}
	gt := make([]byte, s.gtBytes())
	rgt := make([]byte, s.gtBytes())
	for i := int64(0); i < s.gdEntries; i++ {
		e := gd[i*(gdBytes/s.gdEntries):]
		off := s.decodeGD(e)
		if off < 0 {
			add("grain directory entry %d points outside the file", i)
			continue
		}
		if rgd == nil {
			continue
		}
		roff := s.decodeGD(rgd[i*(gdBytes/s.gdEntries):])
		if (off == 0) != (roff == 0) || roff < 0 {
			add("grain directory entry %d: primary and redundant copies disagree", i)
			continue
		}
		if off == 0 {
			continue
		}
		if err := readFullAt(s.f, gt, off, "vmdk", s.path); err != nil {
			return findings, err
		}
		if err := readFullAt(s.f, rgt, roff, "vmdk", s.path); err != nil {
			return findings, err
		}
		if !bytes.Equal(gt, rgt) {
			add("grain table %d differs from its redundant copy", i)
		}
		for j := int64(0); j < s.gtEntries && s.kind != vmdkSESparse; j++ {
			v := int64(binary.LittleEndian.Uint32(gt[j*es:]))
			if v > 1 && v*512+512 > s.fileSize.Load() {
				add("grain %d of table %d points past the end of the file", j, i)
			}
		}
	}
	return findings, nil
}
