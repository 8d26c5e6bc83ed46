package formats

// AFF4 stored hashes (Standard section 6): linear hashes of streams and
// images, block hashes per chunk, hashes of the map segments, and the
// block map hash that binds them together. Check recomputes every one it
// finds and lists the unreadable ranges the acquisition recorded.

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// aff4HashAlgos are the algorithms of the Standard's tables, by the
// lower-case name used in datatypes and block hash segment names,
// smallest digest first with SHA512 before Blake2b: the order block
// hashes enter the block map hash.
var aff4HashAlgos = []string{"md5", "sha1", "sha256", "sha512", "blake2b"}

func aff4NewHash(algo string) hash.Hash {
	switch algo {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	case "blake2b":
		h, _ := blake2b.New512(nil)
		return h
	}
	return nil
}

// aff4Digest is one stored hash: the algorithm from its datatype, and
// whether it is a block map hash (aff4:blockMapHashSHA512 ...).
type aff4Digest struct {
	algo     string
	blockMap bool
	hex      string
}

// aff4Digests lists the hash literals of subject s's predicate p.
func aff4Digests(g aff4Graph, s, p string) []aff4Digest {
	var out []aff4Digest
	for _, t := range g[s][p] {
		dt, ok := strings.CutPrefix(t.Datatype, aff4NS)
		if t.Kind != termLiteral || !ok {
			continue
		}
		d := aff4Digest{hex: strings.ToLower(t.Value)}
		if rest, ok := strings.CutPrefix(dt, "blockMapHash"); ok {
			d.blockMap, dt = true, rest
		}
		d.algo = strings.ToLower(dt)
		if aff4NewHash(d.algo) != nil {
			out = append(out, d)
		}
	}
	return out
}

// aff4StoredHash is a stored hash as info shows it.
type aff4StoredHash struct{ label, hex string }

// storedHashes lists every stored hash for info. The image's linear MD5
// and SHA1 are labelled plainly ("md5", "sha1"): they cover the whole
// disk, like EWF's, so verify compares them with the content it reads.
func (d *aff4Image) storedHashes() []aff4StoredHash {
	var out []aff4StoredHash
	g := d.volumes[0].graph
	for _, h := range aff4Digests(g, d.imageIRI, aff4NS+"hash") {
		switch {
		case h.blockMap:
			out = append(out, aff4StoredHash{"image blockMapHash " + h.algo, h.hex})
		case h.algo == "md5" || h.algo == "sha1":
			out = append(out, aff4StoredHash{h.algo, h.hex})
		default:
			out = append(out, aff4StoredHash{"image " + h.algo, h.hex})
		}
	}
	if d.m.vol != nil {
		mg := d.m.vol.graph
		for _, p := range []string{"blockMapHash", "mapHash", "mapIdxHash", "mapPointHash", "mapPathHash"} {
			for _, h := range aff4Digests(mg, d.m.iri, aff4NS+p) {
				out = append(out, aff4StoredHash{"map " + p + " " + h.algo, h.hex})
			}
		}
	}
	for i, s := range d.streams {
		name := "stream"
		if len(d.streams) > 1 {
			name = fmt.Sprintf("stream %d", i+1)
		}
		sg := s.vol.graph
		for _, h := range aff4Digests(sg, s.iri, aff4NS+"hash") {
			out = append(out, aff4StoredHash{name + " " + h.algo, h.hex})
		}
		for _, algo := range aff4HashAlgos {
			for _, h := range aff4Digests(sg, s.iri+"/blockhash."+algo, aff4NS+"hash") {
				out = append(out, aff4StoredHash{name + " blockhash." + algo + " " + h.algo, h.hex})
			}
		}
	}
	return out
}

// aff4MaxFindings bounds what Check lists of one kind.
const aff4MaxFindings = 100

// Check recomputes every stored hash it can (reading each image stream
// once, and the whole disk only for image hashes other than MD5 and SHA1,
// which verify checks itself) and reports the unreadable ranges.
func (d *aff4Image) Check() ([]string, error) {
	var findings []string
	ranges, count := d.m.unreadable(aff4MaxFindings)
	for _, r := range ranges {
		findings = append(findings, fmt.Sprintf("unreadable at acquisition (aff4:UnreadableData): bytes %d-%d (%d bytes)", r[0], r[0]+r[1]-1, r[1]))
	}
	if count > len(ranges) {
		findings = append(findings, fmt.Sprintf("%d more unreadable ranges", count-len(ranges)))
	}
	// Block hash digests per stream and algorithm, for the block map hash.
	blockSums := map[string][]byte{}
	for _, s := range d.streams {
		f, err := s.check(blockSums)
		findings = append(findings, f...)
		if err != nil {
			return findings, err
		}
	}
	f, err := d.checkMap(blockSums)
	findings = append(findings, f...)
	if err != nil {
		return findings, err
	}
	f, err = d.checkImageHashes()
	return append(findings, f...), err
}

// compare appends a finding when a stored hash differs from got.
func aff4Compare(findings []string, what string, h aff4Digest, got []byte) []string {
	if g := hex.EncodeToString(got); g != h.hex {
		return append(findings, fmt.Sprintf("%s: stored %s %s, computed %s", what, h.algo, h.hex, g))
	}
	return findings
}

// check reads the whole stream once: its linear hashes, each chunk's
// block hashes against the block hash segments, and the hash of each
// algorithm's concatenated block hashes.
func (s *aff4Stream) check(blockSums map[string][]byte) ([]string, error) {
	var findings []string
	g := s.vol.graph
	linear := aff4Digests(g, s.iri, aff4NS+"hash")
	lh := make([]hash.Hash, len(linear))
	for i, h := range linear {
		lh[i] = aff4NewHash(h.algo)
	}
	type blockAlgo struct {
		algo    string
		concat  map[string]hash.Hash // hashes of the BlockHashes stream, by algorithm
		stored  []aff4Digest
		seg     []byte // current bevy's block hash segment
		bad     int
		missing bool
	}
	var algos []*blockAlgo
	for _, algo := range aff4HashAlgos {
		if _, ok := s.vol.files[s.base+"/00000000.blockHash."+algo]; ok {
			algos = append(algos, &blockAlgo{algo: algo})
		} else if _, ok := s.vol.files[s.base+"/00000000."+algo]; ok {
			algos = append(algos, &blockAlgo{algo: algo})
		}
	}
	for _, a := range algos {
		a.stored = aff4Digests(g, s.iri+"/blockhash."+a.algo, aff4NS+"hash")
		// The block map hash takes SHA256 or SHA512 of each BlockHashes.
		a.concat = map[string]hash.Hash{"sha256": sha256.New(), "sha512": sha512.New()}
		for _, h := range a.stored {
			if a.concat[h.algo] == nil {
				a.concat[h.algo] = aff4NewHash(h.algo)
			}
		}
	}
	buf := make([]byte, s.chunkSize)
	chunks := s.chunkCount()
	bad := 0 // chunks that fail to read
	for n := int64(0); n < chunks; n++ {
		if n%s.perSeg == 0 {
			for _, a := range algos {
				name := s.base + "/" + aff4BevyName(n/s.perSeg)
				limit := s.perSeg * int64(aff4NewHash(a.algo).Size())
				seg, err := s.vol.segment(name+".blockHash."+a.algo, limit)
				if err != nil {
					seg, err = s.vol.segment(name+"."+a.algo, limit)
				}
				if err != nil && !a.missing {
					a.missing = true
					findings = append(findings, fmt.Sprintf("image stream %s: %s block hashes of bevy %d: %v", s.iri, a.algo, n/s.perSeg, err))
				}
				a.seg = seg
				for _, c := range a.concat {
					c.Write(seg)
				}
			}
		}
		c, err := s.decode(n, buf)
		if err != nil {
			if bad++; bad <= aff4MaxFindings {
				findings = append(findings, err.Error())
			}
			clear(buf)
			c = buf
		}
		data := c[:min(s.chunkSize, s.size-n*s.chunkSize)]
		for _, h := range lh {
			h.Write(data)
		}
		for _, a := range algos {
			h := aff4NewHash(a.algo)
			h.Write(c)
			sum := h.Sum(nil)
			i := int(n%s.perSeg) * len(sum)
			if i+len(sum) > len(a.seg) || !bytes.Equal(a.seg[i:i+len(sum)], sum) {
				if a.bad++; a.bad <= aff4MaxFindings && !a.missing {
					findings = append(findings, fmt.Sprintf("image stream %s: chunk %d (image stream bytes %d-%d): %s block hash differs", s.iri, n, n*s.chunkSize, n*s.chunkSize+int64(len(data))-1, a.algo))
				}
			}
		}
	}
	if bad > aff4MaxFindings {
		findings = append(findings, fmt.Sprintf("image stream %s: %d chunks unreadable in all", s.iri, bad))
	}
	for i, h := range linear {
		findings = aff4Compare(findings, "image stream "+s.iri, h, lh[i].Sum(nil))
	}
	for _, a := range algos {
		if a.bad > aff4MaxFindings {
			findings = append(findings, fmt.Sprintf("image stream %s: %d chunks with a wrong %s block hash in all", s.iri, a.bad, a.algo))
		}
		for _, h := range a.stored {
			findings = aff4Compare(findings, "block hashes "+s.iri+"/blockhash."+a.algo, h, a.concat[h.algo].Sum(nil))
		}
		for algo, c := range a.concat {
			blockSums[s.iri+" "+a.algo+" "+algo] = c.Sum(nil)
		}
	}
	return findings, nil
}

// checkMap checks the segment hashes and block map hash of the map of
// every volume (a striped image has one per volume) and the image's
// block map hash: the one map's, or with several, the hash of theirs
// concatenated in map IRI order.
func (d *aff4Image) checkMap(blockSums map[string][]byte) ([]string, error) {
	if d.m.vol == nil {
		return nil, nil
	}
	type volMap struct {
		vol *aff4Volume
		iri string
	}
	maps := []volMap{{d.m.vol, d.m.iri}}
	for _, v := range d.volumes {
		for _, mi := range v.graph.ofType(aff4NS + "Map") {
			if v != d.m.vol && d.imageIRI != "" && v.graph.iri(mi, aff4NS+"target") == d.imageIRI {
				maps = append(maps, volMap{v, mi})
			}
		}
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].iri < maps[j].iri })
	var findings []string
	sums := map[string][][]byte{} // block map hashes by algorithm, in map order
	for _, vm := range maps {
		f, err := d.checkVolumeMap(vm.vol, vm.iri, blockSums, sums)
		findings = append(findings, f...)
		if err != nil {
			return findings, err
		}
	}
	for _, h := range aff4Digests(d.volumes[0].graph, d.imageIRI, aff4NS+"hash") {
		if !h.blockMap {
			continue
		}
		got := sums[h.algo]
		if len(got) > 1 {
			got = [][]byte{aff4Sum(h.algo, got...)}
		}
		if len(got) == 1 {
			findings = aff4Compare(findings, "image block map hash", h, got[0])
		}
	}
	return findings, nil
}

func aff4Sum(algo string, parts ...[]byte) []byte {
	h := aff4NewHash(algo)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// checkVolumeMap checks one map's segment hashes and its block map hash,
// which covers the block hashes of the streams stored in its volume, and
// adds that block map hash to sums.
func (d *aff4Image) checkVolumeMap(v *aff4Volume, iri string, blockSums map[string][]byte, sums map[string][][]byte) ([]string, error) {
	var findings []string
	g := v.graph
	base := v.segmentName(iri)
	segs := map[string][]byte{}
	for _, name := range []string{"map", "idx", "mapPath"} {
		b, err := v.segment(base+"/"+name, aff4MaxMapEntries*aff4MapEntrySize)
		switch {
		case err == nil:
			segs[name] = b
		case !errors.Is(err, os.ErrNotExist):
			return findings, err
		}
	}
	parts := []struct{ pred, seg string }{{"mapPointHash", "map"}, {"mapIdxHash", "idx"}, {"mapPathHash", "mapPath"}}
	for _, c := range parts {
		for _, h := range aff4Digests(g, iri, aff4NS+c.pred) {
			findings = aff4Compare(findings, "map "+iri+" "+c.seg+" segment", h, aff4Sum(h.algo, segs[c.seg]))
		}
	}
	for _, h := range aff4Digests(g, iri, aff4NS+"mapHash") {
		findings = aff4Compare(findings, "map "+iri, h, aff4Sum(h.algo, segs["map"], segs["idx"], segs["mapPath"]))
	}
	blockMap := func(algo string) []byte {
		h := aff4NewHash(algo)
		for _, s := range d.streams { // sorted by IRI
			if s.vol != v {
				continue
			}
			for _, a := range aff4HashAlgos {
				h.Write(blockSums[s.iri+" "+a+" "+algo])
			}
		}
		for _, c := range parts {
			if _, ok := segs[c.seg]; ok || c.seg != "mapPath" {
				h.Write(aff4Sum(algo, segs[c.seg]))
			}
		}
		return h.Sum(nil)
	}
	for _, algo := range []string{"sha256", "sha512"} {
		sums[algo] = append(sums[algo], blockMap(algo))
	}
	for _, h := range aff4Digests(g, iri, aff4NS+"blockMapHash") {
		findings = aff4Compare(findings, "map "+iri+" block map hash", h, blockMap(h.algo))
	}
	return findings, nil
}

// checkImageHashes reads the disk for the image's linear hashes other
// than MD5 and SHA1 (verify checks those from its own reading).
func (d *aff4Image) checkImageHashes() ([]string, error) {
	var want []aff4Digest
	for _, h := range aff4Digests(d.volumes[0].graph, d.imageIRI, aff4NS+"hash") {
		if !h.blockMap && h.algo != "md5" && h.algo != "sha1" {
			want = append(want, h)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	hs := make([]hash.Hash, len(want))
	for i, h := range want {
		hs[i] = aff4NewHash(h.algo)
	}
	buf := make([]byte, 4<<20)
	for off := int64(0); off < d.size; off += int64(len(buf)) {
		n := min(int64(len(buf)), d.size-off)
		b := buf[:(n+SectorSize-1)/SectorSize*SectorSize]
		if _, err := d.ReadAt(b, off); err != nil {
			return nil, err
		}
		for _, h := range hs {
			h.Write(b[:n])
		}
	}
	var findings []string
	for i, h := range want {
		findings = aff4Compare(findings, "image", h, hs[i].Sum(nil))
	}
	return findings, nil
}
