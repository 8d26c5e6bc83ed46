package main

import (
	"bytes"
	"errors"
	"math/rand"
	"sync"
	"syscall"
	"testing"

	"vdflat/formats"
)

// memDisk is a sector-granular in-memory disk that enforces the
// formats.Disk contract strictly, so align.go is tested against it.
type memDisk struct {
	mu   sync.Mutex
	data []byte // rounded up to whole sectors
	size int64
}

func newMemDisk(size int64) *memDisk {
	return &memDisk{data: make([]byte, (size+sector-1)/sector*sector), size: size}
}

func (m *memDisk) Size() int64 { return m.size }
func (m *memDisk) check(p []byte, off int64) error {
	if off%sector != 0 || len(p)%sector != 0 || off < 0 {
		return formats.ErrInvalid
	}
	return nil
}
func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(p, off); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(p)
	if off < int64(len(m.data)) {
		copy(p, m.data[off:])
	}
	// Bytes past Size read as zeros.
	for i := range p {
		if off+int64(i) >= m.size {
			p[i] = 0
		}
	}
	return len(p), nil
}
func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := m.check(p, off); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < int64(len(m.data)) {
		copy(m.data[off:], p)
	}
	return len(p), nil
}
func (m *memDisk) Flush() error         { return nil }
func (m *memDisk) Close() error         { return nil }
func (m *memDisk) Info() formats.Info   { return formats.Info{Format: "mem", Size: m.size} }
func (m *memDisk) bytes(n int64) []byte { return m.data[:n] }

func TestAlignRandom(t *testing.T) {
	for _, size := range []int64{1, 511, 512, 513, 4096, 100000} {
		d := newMemDisk(size)
		model := make([]byte, size)
		var locks rangeLock
		r := rand.New(rand.NewSource(size))
		for i := 0; i < 2000; i++ {
			off := r.Int63n(size + 1000)
			n := r.Intn(3000)
			if r.Intn(2) == 0 {
				p := make([]byte, n)
				r.Read(p)
				got, err := writeBytes(d, &locks, p, off)
				want := 0
				if off < size {
					want = int(min(int64(n), size-off))
				}
				switch {
				case n == 0:
					if got != 0 || err != nil {
						t.Fatalf("empty write at %d: %d, %v", off, got, err)
					}
				case off >= size:
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("write at %d past end %d: %d, %v; want ENOSPC", off, size, got, err)
					}
				case got != want || err != nil:
					t.Fatalf("write %d at %d: %d, %v; want %d", n, off, got, err, want)
				default:
					copy(model[off:], p[:got])
				}
			} else {
				p := make([]byte, n)
				got, err := readBytes(d, p, off)
				want := 0
				if off < size {
					want = int(min(int64(n), size-off))
				}
				if err != nil || got != want {
					t.Fatalf("read %d at %d: %d, %v; want %d", n, off, got, err, want)
				}
				if got > 0 && !bytes.Equal(p[:got], model[off:off+int64(got)]) {
					t.Fatalf("read %d at %d: data differs from model", n, off)
				}
			}
		}
		if !bytes.Equal(d.bytes(size), model) {
			t.Fatalf("size %d: disk differs from model", size)
		}
	}
}

// Concurrent unaligned writes to disjoint byte ranges that share sectors
// must all land (a naive read-modify-write loses some).
func TestAlignConcurrentWrites(t *testing.T) {
	const size = 64 << 10
	d := newMemDisk(size)
	var locks rangeLock
	model := make([]byte, size)
	// 100-byte stripes: neighbours share sectors.
	const stripe = 100
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for off := g * stripe; off+stripe <= size; off += 8 * stripe {
				p := bytes.Repeat([]byte{byte(g + 1)}, stripe)
				if n, err := writeBytes(d, &locks, p, int64(off)); n != stripe || err != nil {
					t.Errorf("write at %d: %d, %v", off, n, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	for g := 0; g < 8; g++ {
		for off := g * stripe; off+stripe <= size; off += 8 * stripe {
			copy(model[off:], bytes.Repeat([]byte{byte(g + 1)}, stripe))
		}
	}
	if !bytes.Equal(d.bytes(size), model) {
		for i := range model {
			if d.data[i] != model[i] {
				t.Fatalf("byte %d: got %d, want %d (a concurrent write was lost)", i, d.data[i], model[i])
			}
		}
	}
}

func BenchmarkAlignedRead(b *testing.B) {
	d := newMemDisk(1 << 20)
	p := make([]byte, 128<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		readBytes(d, p, 0)
	}
}
