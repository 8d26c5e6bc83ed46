package main

import (
	"bytes"
	"errors"
	"fmt"
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
		m := newAlignModel(size)
		r := rand.New(rand.NewSource(size))
		for i := 0; i < 2000; i++ {
			p := make([]byte, r.Intn(3000))
			r.Read(p)
			if err := m.step(r.Intn(2) == 0, r.Int63n(size+1000), p); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.same(); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzAlign runs readBytes and writeBytes at fuzzed offsets and lengths
// against a plain byte slice as the model.
func FuzzAlign(f *testing.F) {
	f.Add(uint16(513), []byte{1, 0, 7, 0, 200, 5, 0, 1, 0, 3, 0xff, 0x10})
	f.Add(uint16(1), []byte{1, 0, 0, 0, 1, 9})
	f.Add(uint16(4096), []byte{0, 0x10, 0x0f, 0x01, 0x30, 1, 0xff, 0x0f, 0x00, 0x02})
	f.Fuzz(func(t *testing.T, size uint16, ops []byte) {
		m := newAlignModel(int64(size%8192) + 1)
		// Each operation is 5 bytes: kind, offset (2), length (2); the
		// written bytes are the operation's index.
		for i := 0; i+5 <= len(ops); i += 5 {
			off := int64(ops[i+1]) | int64(ops[i+2])<<8
			p := bytes.Repeat([]byte{byte(i)}, int(ops[i+3])|int(ops[i+4]&0x1f)<<8)
			if err := m.step(ops[i]&1 == 1, off, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.same(); err != nil {
			t.Fatal(err)
		}
	})
}

// alignModel checks readBytes and writeBytes on a memDisk against the
// bytes a disk of that size must hold.
type alignModel struct {
	d     *memDisk
	locks rangeLock
	model []byte
}

func newAlignModel(size int64) *alignModel {
	return &alignModel{d: newMemDisk(size), model: make([]byte, size)}
}

// step writes p at off (or reads len(p) bytes there) and checks the
// result against the model.
func (m *alignModel) step(write bool, off int64, p []byte) error {
	size := int64(len(m.model))
	want := 0
	if off < size {
		want = int(min(int64(len(p)), size-off))
	}
	if write {
		got, err := writeBytes(m.d, &m.locks, p, off)
		switch {
		case len(p) == 0:
			if got != 0 || err != nil {
				return fmt.Errorf("empty write at %d: %d, %v", off, got, err)
			}
		case off >= size:
			if !errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("write at %d past end %d: %d, %v; want ENOSPC", off, size, got, err)
			}
		case got != want || err != nil:
			return fmt.Errorf("write %d at %d: %d, %v; want %d", len(p), off, got, err, want)
		default:
			copy(m.model[off:], p[:got])
		}
		return nil
	}
	clear(p)
	got, err := readBytes(m.d, p, off)
	if err != nil || got != want {
		return fmt.Errorf("read %d at %d: %d, %v; want %d", len(p), off, got, err, want)
	}
	if got > 0 && !bytes.Equal(p[:got], m.model[off:off+int64(got)]) {
		return fmt.Errorf("read %d at %d: data differs from model", len(p), off)
	}
	return nil
}

// same checks the whole disk against the model.
func (m *alignModel) same() error {
	if !bytes.Equal(m.d.bytes(int64(len(m.model))), m.model) {
		return fmt.Errorf("size %d: disk differs from model", len(m.model))
	}
	return nil
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
