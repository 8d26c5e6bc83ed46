package formats

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"unicode/utf16"
)

// Partition is one entry of a disk's MBR or GPT.
type Partition struct {
	Number   int    `json:"number"` // as Linux numbers them: MBR primaries 1-4, logicals from 5; GPT entry index + 1
	Scheme   string `json:"scheme"` // "mbr" or "gpt"
	Type     string `json:"type"`   // MBR type byte as "0x83", or the GPT type GUID
	TypeName string `json:"type_name,omitempty"`
	Start    int64  `json:"start"` // bytes from the start of the disk
	Size     int64  `json:"size"`  // bytes
	Name     string `json:"name,omitempty"`
	GUID     string `json:"guid,omitempty"`
	Bootable bool   `json:"bootable,omitempty"`
	Logical  bool   `json:"logical,omitempty"`
}

// Bounds on what a crafted table can make us read.
const (
	maxLogicalPartitions = 256
	maxGPTEntries        = 4096
)

// Partitions reads the partition table of d: GPT when a protective MBR
// points to one, else MBR with extended and logical partitions. A disk
// without a table gives no partitions and no error. Extended containers
// themselves are not listed; their logical partitions are.
func Partitions(d Disk) ([]Partition, error) {
	mbr := make([]byte, SectorSize)
	if d.Size() < SectorSize {
		return nil, nil
	}
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("reading MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, nil
	}
	for i := 0; i < 4; i++ {
		if mbr[446+16*i+4] == 0xee {
			parts, err := gptPartitions(d)
			if err == nil {
				return parts, nil
			}
			return nil, err
		}
	}
	return mbrPartitions(d, mbr)
}

type mbrEntry struct {
	boot  bool
	typ   byte
	start int64 // sectors
	count int64
}

func parseMBREntry(b []byte) mbrEntry {
	return mbrEntry{b[0] == 0x80, b[4], int64(binary.LittleEndian.Uint32(b[8:])), int64(binary.LittleEndian.Uint32(b[12:]))}
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

func mbrPartitions(d Disk, mbr []byte) ([]Partition, error) {
	var parts []Partition
	var ext *mbrEntry
	for i := 0; i < 4; i++ {
		e := parseMBREntry(mbr[446+16*i:])
		if e.typ == 0 || e.count == 0 {
			continue
		}
		if isExtended(e.typ) {
			if ext == nil {
				ext = &e
			}
			continue
		}
		parts = append(parts, mbrPartition(i+1, e, 0, false))
	}
	if ext == nil {
		return parts, nil
	}
	// Walk the chain of extended boot records: each holds one logical
	// partition (relative to itself) and a link to the next (relative to
	// the extended partition's start).
	buf := make([]byte, SectorSize)
	seen := map[int64]bool{}
	ebr := ext.start
	for n := 5; n < 5+maxLogicalPartitions; n++ {
		if seen[ebr] || ebr*SectorSize >= d.Size() {
			break
		}
		seen[ebr] = true
		if _, err := d.ReadAt(buf, ebr*SectorSize); err != nil {
			return parts, fmt.Errorf("reading extended boot record at sector %d: %w", ebr, err)
		}
		if buf[510] != 0x55 || buf[511] != 0xaa {
			break
		}
		if e := parseMBREntry(buf[446:]); e.typ != 0 && e.count != 0 {
			parts = append(parts, mbrPartition(n, e, ebr, true))
		}
		next := parseMBREntry(buf[462:])
		if !isExtended(next.typ) || next.start == 0 {
			break
		}
		ebr = ext.start + next.start
	}
	return parts, nil
}

func mbrPartition(n int, e mbrEntry, base int64, logical bool) Partition {
	return Partition{
		Number: n, Scheme: "mbr", Type: fmt.Sprintf("0x%02x", e.typ), TypeName: mbrTypeNames[e.typ],
		Start: (base + e.start) * SectorSize, Size: e.count * SectorSize, Bootable: e.boot, Logical: logical,
	}
}

var mbrTypeNames = map[byte]string{
	0x01: "FAT12", 0x04: "FAT16 <32M", 0x06: "FAT16", 0x07: "HPFS/NTFS/exFAT", 0x0b: "W95 FAT32",
	0x0c: "W95 FAT32 (LBA)", 0x0e: "W95 FAT16 (LBA)", 0x11: "Hidden FAT12", 0x27: "Hidden NTFS WinRE",
	0x82: "Linux swap", 0x83: "Linux", 0x8e: "Linux LVM", 0xa5: "FreeBSD", 0xa6: "OpenBSD",
	0xa8: "Darwin UFS", 0xaf: "HFS / HFS+", 0xef: "EFI (FAT-12/16/32)", 0xfd: "Linux raid autodetect",
}

func gptPartitions(d Disk) ([]Partition, error) {
	hdr := make([]byte, SectorSize)
	if _, err := d.ReadAt(hdr, SectorSize); err != nil {
		return nil, fmt.Errorf("reading GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("gpt: protective MBR but no GPT header at LBA 1: %w", ErrCorrupt)
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || hsize > SectorSize {
		return nil, fmt.Errorf("gpt: header size %d: %w", hsize, ErrCorrupt)
	}
	want := binary.LittleEndian.Uint32(hdr[16:])
	check := append([]byte(nil), hdr[:hsize]...)
	clear(check[16:20])
	if crc32.ChecksumIEEE(check) != want {
		return nil, fmt.Errorf("gpt: header checksum mismatch: %w", ErrCorrupt)
	}
	entLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if count > maxGPTEntries || esize < 128 || esize > 4096 || esize%8 != 0 {
		return nil, fmt.Errorf("gpt: %d entries of %d bytes: %w", count, esize, ErrCorrupt)
	}
	total := int64(count) * int64(esize)
	if entLBA < 2 || entLBA > d.Size()/SectorSize || entLBA*SectorSize+total > d.Size() {
		return nil, fmt.Errorf("gpt: entry array at LBA %d runs past the disk: %w", entLBA, ErrCorrupt)
	}
	arr := make([]byte, (total+SectorSize-1)/SectorSize*SectorSize)
	if _, err := d.ReadAt(arr, entLBA*SectorSize); err != nil {
		return nil, fmt.Errorf("gpt: reading entries: %w", err)
	}
	var parts []Partition
	for i := 0; i < int(count); i++ {
		e := arr[i*int(esize):]
		typ := e[:16]
		if bytes.Equal(typ, make([]byte, 16)) {
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if last < first || first < 0 || last > d.Size()/SectorSize {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := strings.TrimRight(string(utf16.Decode(u)), "\x00")
		tg := guidString(typ)
		parts = append(parts, Partition{
			Number: i + 1, Scheme: "gpt", Type: tg, TypeName: gptTypeNames[tg], GUID: guidString(e[16:32]),
			Start: first * SectorSize, Size: (last - first + 1) * SectorSize, Name: name,
		})
	}
	return parts, nil
}

// guidString formats a GUID stored in its mixed-endian on-disk form.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

var gptTypeNames = map[string]string{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
	"E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
	"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS/HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
}
