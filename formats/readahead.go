package formats

import (
	"sync"
)

// Readahead sizes: a sequential reader keeps up to raDepth blocks of
// raBlockSize bytes being read ahead of it, and at most raMaxBlocks are
// held per disk (a little over 3 MiB).
const (
	raBlockSize = 512 << 10
	raDepth     = 3
	raMaxBlocks = raDepth + 3
)

var raPool = sync.Pool{New: func() any { return new([raBlockSize]byte) }}

// Readahead returns a view of d for a sequential reader whose reads cost
// CPU (decompression, checksums): the next blocks are read by background
// goroutines, on other CPUs, while the reader consumes the current one.
// Reads that are not sequential go straight to d. Writes go straight to d
// too and drop what was read ahead. Close waits for the background reads
// and leaves d open: d belongs to the caller.
func Readahead(d Disk) Disk {
	return &readahead{Disk: d, blocks: make(map[int64]*raBlock), lastBlock: -2}
}

type readahead struct {
	Disk

	wg sync.WaitGroup // background reads in flight

	mu        sync.Mutex
	blocks    map[int64]*raBlock // by block number
	lastBlock int64              // last block the previous read touched
	clock     uint64             // use counter for least-recently-used eviction
	closed    bool
}

type raBlock struct {
	done chan struct{} // closed once data and err are set
	data *[raBlockSize]byte
	n    int // valid bytes in data
	err  error
	used uint64 // clock value at the last use
	refs int    // readers copying out of data; it goes back to the pool at 0 once evicted
	gone bool   // evicted
}

func (r *readahead) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 || off < 0 || off >= r.Size() {
		return r.Disk.ReadAt(p, off)
	}
	first := off / raBlockSize
	last := (off + int64(len(p)) - 1) / raBlockSize
	blocks := r.acquire(first, last)
	if blocks == nil {
		return r.Disk.ReadAt(p, off)
	}
	n, ok := 0, true
	for i, b := range blocks {
		<-b.done
		if ok && b.err == nil {
			start := (first + int64(i)) * raBlockSize
			lo := max(off, start) - start
			if lo < int64(b.n) {
				n += copy(p[n:], b.data[lo:b.n])
			}
		} else {
			ok = false
		}
	}
	r.release(blocks)
	if !ok || n < len(p) {
		// A block that failed (or stopped short) is read again directly,
		// so an error is reported for exactly the range that was asked.
		return r.Disk.ReadAt(p, off)
	}
	return n, nil
}

// acquire returns blocks first..last with a reference held on each, and
// starts reading the blocks after them, when the read continues the
// previous one. It returns nil when the read should go to the disk
// directly.
func (r *readahead) acquire(first, last int64) []*raBlock {
	r.mu.Lock()
	defer r.mu.Unlock()
	sequential := first == r.lastBlock || first == r.lastBlock+1
	r.lastBlock = last
	if r.closed {
		return nil
	}
	if !sequential {
		for b := first; b <= last; b++ {
			if r.blocks[b] == nil {
				return nil
			}
		}
	}
	blocks := make([]*raBlock, 0, last-first+1)
	for b := first; b <= last; b++ {
		blk := r.start(b)
		if blk == nil {
			r.unref(blocks)
			return nil
		}
		blk.refs++
		blocks = append(blocks, blk)
	}
	if sequential {
		end := (r.Size() - 1) / raBlockSize
		for b := last + 1; b <= min(last+raDepth, end); b++ {
			r.start(b)
		}
	}
	return blocks
}

// start returns block b, starting its read if it is not held yet. It
// returns nil when every held block is still being read (only possible
// with many readers at once). Called with mu held.
func (r *readahead) start(b int64) *raBlock {
	r.clock++
	if blk := r.blocks[b]; blk != nil {
		blk.used = r.clock
		return blk
	}
	if len(r.blocks) >= raMaxBlocks && !r.evictOne() {
		return nil
	}
	blk := &raBlock{done: make(chan struct{}), data: raPool.Get().(*[raBlockSize]byte), used: r.clock}
	r.blocks[b] = blk
	r.wg.Add(1)
	go r.fill(b, blk)
	return blk
}

// fill reads block b in the background.
func (r *readahead) fill(b int64, blk *raBlock) {
	defer r.wg.Done()
	off := b * raBlockSize
	// Disks move whole sectors; the last one may run past Size() and
	// reads as zeros there, as a direct read would.
	n := int(min(raBlockSize, (r.Size()-off+SectorSize-1)/SectorSize*SectorSize))
	_, err := r.Disk.ReadAt(blk.data[:n], off)
	r.mu.Lock()
	blk.n, blk.err = n, err
	close(blk.done)
	recycle(blk)
	r.mu.Unlock()
}

// evictOne drops the least recently used block that has been read.
// Called with mu held.
func (r *readahead) evictOne() bool {
	var victim int64
	var vb *raBlock
	for b, blk := range r.blocks {
		select {
		case <-blk.done:
		default:
			continue
		}
		if vb == nil || blk.used < vb.used {
			victim, vb = b, blk
		}
	}
	if vb == nil {
		return false
	}
	r.drop(victim, vb)
	return true
}

// drop forgets block b; its buffer goes back to the pool once no reader
// copies from it. Called with mu held.
func (r *readahead) drop(b int64, blk *raBlock) {
	delete(r.blocks, b)
	blk.gone = true
	recycle(blk)
}

// recycle returns blk's buffer to the pool once blk is dropped, read, and
// no reader copies from it; drop, fill and the last release each call it,
// whichever comes last does it. Called with mu held.
func recycle(blk *raBlock) {
	if !blk.gone || blk.refs != 0 || blk.data == nil {
		return
	}
	select {
	case <-blk.done:
		raPool.Put(blk.data)
		blk.data = nil
	default: // still being read
	}
}

func (r *readahead) release(blocks []*raBlock) {
	r.mu.Lock()
	r.unref(blocks)
	r.mu.Unlock()
}

// unref drops the references acquire took. Called with mu held.
func (r *readahead) unref(blocks []*raBlock) {
	for _, blk := range blocks {
		blk.refs--
		recycle(blk)
	}
}

// WriteAt drops every block read ahead; a read racing the write may see
// either content, as with any disk.
func (r *readahead) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	for b, blk := range r.blocks {
		r.drop(b, blk)
	}
	r.mu.Unlock()
	return r.Disk.WriteAt(p, off)
}

func (r *readahead) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
