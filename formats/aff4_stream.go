package formats

// AFF4 ImageStreams: chunks in bevies, each chunk compressed on its own.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

type aff4Codec int

const (
	aff4Stored aff4Codec = iota
	aff4Snappy
	aff4LZ4
	aff4Deflate
	aff4Zlib
	aff4Zstd
)

func (c aff4Codec) String() string {
	return [...]string{"stored", "snappy", "lz4", "deflate", "zlib", "zstd"}[c]
}

// aff4Codecs maps compression method IRIs to codecs: the Standard's
// table, the variants writers use (http/https, rfc1950 for zlib, the
// github snappy URL of newer c-aff4), and stored markers.
var aff4Codecs = map[string]aff4Codec{
	"":                            aff4Stored,
	aff4NS + "NullCompressor":     aff4Stored,
	aff4NS + "nullCompressor":     aff4Stored,
	aff4NS + "compression/stored": aff4Stored,
	"http://afflib.org/2009/aff4#nullCompressor": aff4Stored,
	"http://code.google.com/p/snappy/":           aff4Snappy,
	"https://code.google.com/p/snappy/":          aff4Snappy,
	"https://github.com/google/snappy":           aff4Snappy,
	"http://code.google.com/p/lz4/":              aff4LZ4,
	"https://code.google.com/p/lz4/":             aff4LZ4,
	"https://tools.ietf.org/html/rfc1951":        aff4Deflate,
	"http://tools.ietf.org/html/rfc1951":         aff4Deflate,
	"https://www.ietf.org/rfc/rfc1951.txt":       aff4Deflate,
	"https://www.ietf.org/rfc/rfc1950.txt":       aff4Zlib,
	"http://www.ietf.org/rfc/rfc1950.txt":        aff4Zlib,
	"https://tools.ietf.org/html/rfc1950":        aff4Zlib,
	"https://code.facebook.com/posts/1658392934479273/smaller-and-faster-data-compression-with-zstandard/": aff4Zstd,
	"https://facebook.github.io/zstd/": aff4Zstd,
	"http://facebook.github.io/zstd/":  aff4Zstd,
	"https://github.com/facebook/zstd": aff4Zstd,
}

// aff4Zstd decodes with a bounded window; DecodeAll is safe for
// concurrent use.
var aff4ZstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(aff4MaxChunkSize*2),
		zstd.WithDecoderMaxWindow(aff4MaxChunkSize*2))
})

// aff4Chunk is one bevy index entry.
type aff4Chunk struct {
	off int64
	len uint32
}

// aff4Bevy is one loaded bevy: where its data segment lies in the volume
// file, and its chunk index.
type aff4Bevy struct {
	dataOff, dataSize int64
	index             []aff4Chunk
}

type aff4Stream struct {
	iri       string
	vol       *aff4Volume
	base      string // segment name prefix
	size      int64
	chunkSize int64
	perSeg    int64
	codec     aff4Codec
	bevies    *lru[int64, *aff4Bevy]
	chunks    *lru[int64, []byte]
	bufs      sync.Pool
}

func newAff4Stream(v *aff4Volume, iri string) (*aff4Stream, error) {
	g := v.graph
	s := &aff4Stream{iri: iri, vol: v, base: v.segmentName(iri)}
	bad := func(err error) error { return corruptf("aff4", v.path, -1, "image stream: %v", err) }
	n, ok, err := g.int(iri, aff4NS+"size")
	if err != nil {
		return nil, bad(err)
	}
	if !ok {
		return nil, corruptf("aff4", v.path, -1, "image stream %s has no aff4:size", iri)
	}
	s.size = n
	// Without these properties, the defaults of c-aff4 and pyaff4.
	if s.chunkSize, err = g.intOr(iri, aff4NS+"chunkSize", 32<<10); err != nil {
		return nil, bad(err)
	}
	if s.perSeg, err = g.intOr(iri, aff4NS+"chunksInSegment", 1024); err != nil {
		return nil, bad(err)
	}
	if s.chunkSize < 1 || s.chunkSize > aff4MaxChunkSize {
		return nil, unsupportedf("aff4", v.path, "image stream %s: chunk size %d", iri, s.chunkSize)
	}
	if s.perSeg < 1 || s.perSeg > aff4MaxPerSegment {
		return nil, unsupportedf("aff4", v.path, "image stream %s: %d chunks per bevy", iri, s.perSeg)
	}
	method := g.iri(iri, aff4NS+"compressionMethod")
	codec, ok := aff4Codecs[method]
	if !ok {
		return nil, unsupportedf("aff4", v.path, "image stream %s: compression method %s", iri, method)
	}
	s.codec = codec
	s.chunks = newLRU[int64, []byte](max(4, int(aff4ChunkCacheSize/s.chunkSize)))
	s.bevies = newLRU[int64, *aff4Bevy](max(2, int(aff4IndexCacheSize/(s.perSeg*aff4IndexEntrySize))))
	s.bufs.New = func() any { b := make([]byte, s.chunkSize); return &b }
	return s, nil
}

func aff4BevyName(n int64) string { return fmt.Sprintf("%08d", n) }

// bevy loads bevy n's index and locates its data segment.
func (s *aff4Stream) bevy(n int64) (*aff4Bevy, error) {
	if b, ok := s.bevies.Get(n); ok {
		return b, nil
	}
	name := s.base + "/" + aff4BevyName(n)
	raw, err := s.vol.segment(name+".index", s.perSeg*aff4IndexEntrySize)
	if err != nil {
		return nil, err
	}
	if len(raw)%aff4IndexEntrySize != 0 {
		return nil, corruptf("aff4", s.vol.path, -1, "bevy index %s: %d bytes, not a whole number of entries", name, len(raw))
	}
	b := &aff4Bevy{index: make([]aff4Chunk, len(raw)/aff4IndexEntrySize)}
	if b.dataOff, b.dataSize, err = s.vol.storedSegment(name); err != nil {
		return nil, err
	}
	for i := range b.index {
		e := raw[i*aff4IndexEntrySize:]
		off, l := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint32(e[8:])
		if off > uint64(b.dataSize) || uint64(l) > uint64(b.dataSize)-off || int64(l) > s.chunkSize+s.chunkSize/8+1024 {
			return nil, corruptf("aff4", s.vol.path, -1, "bevy %s: chunk %d (%d bytes at %d) lies outside its %d-byte segment", name, i, l, off, b.dataSize)
		}
		b.index[i] = aff4Chunk{int64(off), l}
	}
	s.bevies.Put(n, b)
	return b, nil
}

// chunks returns the number of chunks the stream's size needs.
func (s *aff4Stream) chunkCount() int64 { return (s.size + s.chunkSize - 1) / s.chunkSize }

// chunk returns chunk n decoded (chunkSize bytes; padding included).
func (s *aff4Stream) chunk(n int64) ([]byte, error) {
	if c, ok := s.chunks.Get(n); ok {
		return c, nil
	}
	c, err := s.decode(n, nil)
	if err != nil {
		return nil, err
	}
	s.chunks.Put(n, c)
	return c, nil
}

// decode reads and decompresses chunk n into dst (allocated when nil).
func (s *aff4Stream) decode(n int64, dst []byte) ([]byte, error) {
	if n < 0 || n >= s.chunkCount() {
		return nil, corruptf("aff4", s.vol.path, -1, "image stream %s: chunk %d past its end (%d chunks)", s.iri, n, s.chunkCount())
	}
	b, err := s.bevy(n / s.perSeg)
	if err != nil {
		return nil, err
	}
	i := n % s.perSeg
	if i >= int64(len(b.index)) {
		return nil, corruptf("aff4", s.vol.path, -1, "image stream %s: chunk %d missing from bevy %d's index", s.iri, n, n/s.perSeg)
	}
	e := b.index[i]
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	src := *bp
	if int64(e.len) > int64(len(src)) {
		src = make([]byte, e.len)
	}
	src = src[:e.len]
	if err := readFullAt(s.vol.f, src, b.dataOff+e.off, "aff4", s.vol.path); err != nil {
		return nil, err
	}
	if dst == nil {
		dst = make([]byte, s.chunkSize)
	}
	dst = dst[:s.chunkSize]
	if err := s.inflate(dst, src); err != nil {
		return nil, corruptf("aff4", s.vol.path, b.dataOff+e.off, "image stream %s: chunk %d (%s): %v", s.iri, n, s.codec, err)
	}
	return dst, nil
}

// inflate fills dst (a whole chunk) from one stored chunk. A chunk whose
// stored length is the chunk size is stored as is (Standard 3.2); a
// shorter decoded chunk (the last one, unpadded) reads as zeros past its
// end.
func (s *aff4Stream) inflate(dst, src []byte) error {
	if int64(len(src)) == s.chunkSize || s.codec == aff4Stored {
		if int64(len(src)) > s.chunkSize {
			return fmt.Errorf("stored chunk of %d bytes", len(src))
		}
		clear(dst[copy(dst, src):])
		return nil
	}
	var n int
	switch s.codec {
	case aff4Snappy:
		l, err := snappy.DecodedLen(src)
		if err != nil {
			return err
		}
		if int64(l) > s.chunkSize {
			return fmt.Errorf("decodes to %d bytes", l)
		}
		out, err := snappy.Decode(dst, src)
		if err != nil {
			return err
		}
		n = len(out)
	case aff4LZ4:
		var err error
		if n, err = lz4.UncompressBlock(src, dst); err != nil {
			return err
		}
	case aff4Deflate, aff4Zlib:
		var r io.ReadCloser
		var err error
		if s.codec == aff4Zlib {
			r, err = zlib.NewReader(bytes.NewReader(src))
		} else {
			r = flate.NewReader(bytes.NewReader(src))
		}
		if err != nil {
			return err
		}
		defer r.Close()
		n, err = io.ReadFull(r, dst)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return err
		}
		if n == len(dst) {
			var one [1]byte
			if k, err := r.Read(one[:]); k != 0 || err != nil && err != io.EOF {
				if k != 0 {
					err = errors.New("inflates to more than a chunk")
				}
				return err
			}
		}
	case aff4Zstd:
		dec, err := aff4ZstdDecoder()
		if err != nil {
			return err
		}
		out, err := dec.DecodeAll(src, dst[:0:len(dst)])
		if err != nil {
			return err
		}
		if len(out) > len(dst) || len(out) > 0 && &out[0] != &dst[0] {
			return errors.New("decodes to more than a chunk")
		}
		n = len(out)
	}
	clear(dst[n:])
	return nil
}

// readAt fills p from the stream at off; the stream must hold it all.
func (s *aff4Stream) readAt(p []byte, off int64) error {
	if off < 0 || off > s.size || int64(len(p)) > s.size-off {
		return corruptf("aff4", s.vol.path, -1, "map reads %d bytes at %d of image stream %s, which holds %d", len(p), off, s.iri, s.size)
	}
	for len(p) > 0 {
		c, err := s.chunk(off / s.chunkSize)
		if err != nil {
			return err
		}
		k := copy(p, c[off%s.chunkSize:])
		p, off = p[k:], off+int64(k)
	}
	return nil
}
