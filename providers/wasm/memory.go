package wasm

import (
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory backs a guest's linear memory with a Go slice, as wazero
// does by default, with two differences that make a start cheaper:
//
//   - It starts with the capacity its address's last instance had when it
//     became running (Host.memoryHint), when that is more than the module's
//     declared minimum. A Go guest grows its memory while its runtime
//     initializes (44 to 53 pages for the hostile guest), and each growth
//     of wazero's default allocation (a slice of the minimum's capacity)
//     allocates, zeroes and copies the whole memory.
//   - It takes its slice from the Host's memoryPool when one fits: a zeroed
//     memory of a stopped instance. A fresh multi-megabyte Go allocation is
//     zeroed, and its pages, which the Go runtime gave back to the system,
//     fault in again as the guest touches them: reusing one halves the
//     time from instantiation to running (docs/modules.md).
//
// The guest sees no difference: the memory's size (memory.size) is what it
// grew to, not the capacity, and the memory is zero but for what its data
// segments wrote, as fresh memory must be.
//
// Wasm threads (shared memories, which must not move) are not enabled in
// the Host's runtimes, so a memory may move when it grows.
type linearMemory struct {
	buf  []byte
	max  uint64
	used int // the largest length handed out: what may be non-zero
}

// memoryAllocator returns the allocator of one instantiation: with the
// capacity hint in bytes (0: none), from pool (nil: none). The
// allocation, when there is one, is passed to got.
func memoryAllocator(hint uint64, pool *memoryPool, got func(*linearMemory)) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, limit uint64) experimental.LinearMemory {
		want := max(capacity, min(hint, limit))
		l := &linearMemory{max: limit}
		if pool != nil {
			// A larger memory than wanted is taken, not one much larger:
			// this instance would keep the difference for its lifetime.
			l.buf = pool.get(want, min(limit, 2*want))
		}
		if l.buf == nil {
			l.buf = make([]byte, 0, want)
		}
		if got != nil {
			got(l)
		}
		return l
	})
}

// Reallocate implements experimental.LinearMemory: it returns the memory
// with size bytes, or nil when size is over the maximum.
func (l *linearMemory) Reallocate(size uint64) []byte {
	if size > l.max {
		return nil
	}
	if size <= uint64(cap(l.buf)) {
		l.buf = l.buf[:size]
	} else {
		// As append grows a large slice: by a quarter, at least.
		newCap := min(max(size, uint64(cap(l.buf))+uint64(cap(l.buf))/4), l.max)
		buf := make([]byte, size, newCap)
		copy(buf, l.buf)
		l.buf = buf
		l.used = 0 // a new slice: only its own length was written
	}
	l.used = max(l.used, len(l.buf))
	return l.buf
}

// Free implements experimental.LinearMemory. It does nothing: wazero calls
// it when the module is closed, which may be from another goroutine (a
// Runtime's Close) while the guest still runs. The memory goes back to the
// pool from Module.RunReady, once nothing runs in it (Module.reuseMemory).
func (l *linearMemory) Free() {}

// memoryPool keeps the memories of stopped instances, zeroed, for the next
// instances. It keeps at most poolBytes, and drops a memory unused for
// poolTTL: what it costs is at most poolBytes of zeroed heap, for at most
// poolTTL after the last module stopped.
type memoryPool struct {
	mu     sync.Mutex
	free   []pooled // oldest first
	bytes  uint64
	timer  *time.Timer
	closed bool
}

type pooled struct {
	buf []byte // zero over its whole capacity
	at  time.Time
}

const (
	poolBytes = 32 << 20
	poolTTL   = time.Minute
)

// get returns a zeroed memory with a capacity from want to limit bytes,
// of length 0, or nil when there is none.
func (p *memoryPool) get(want, limit uint64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, e := range p.free {
		c := uint64(cap(e.buf))
		if c >= want && c <= limit && (best < 0 || c < uint64(cap(p.free[best].buf))) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	buf := p.free[best].buf
	p.free = slices.Delete(p.free, best, best+1)
	p.bytes -= uint64(cap(buf))
	return buf
}

// put zeroes the first used bytes of buf (the rest must be zero) and keeps
// it, dropping the oldest memories over poolBytes. Nothing may use buf
// any more.
func (p *memoryPool) put(buf []byte, used int) {
	c := uint64(cap(buf))
	if c == 0 || c > poolBytes/2 {
		return
	}
	clear(buf[:used])
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for p.bytes+c > poolBytes {
		p.bytes -= uint64(cap(p.free[0].buf))
		p.free = slices.Delete(p.free, 0, 1)
	}
	p.free = append(p.free, pooled{buf: buf[:0], at: time.Now()})
	p.bytes += c
	if p.timer == nil {
		p.timer = time.AfterFunc(poolTTL, func() { p.trim(time.Now()) })
	}
}

// trim drops the memories unused since poolTTL before now.
func (p *memoryPool) trim(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.free) && now.Sub(p.free[n].at) >= poolTTL {
		p.bytes -= uint64(cap(p.free[n].buf))
		n++
	}
	p.free = slices.Delete(p.free, 0, n)
	switch {
	case p.timer == nil:
	case len(p.free) == 0:
		p.timer.Stop()
		p.timer = nil
	default:
		p.timer.Reset(p.free[0].at.Add(poolTTL).Sub(now))
	}
}

// close drops every memory; put keeps none after it.
func (p *memoryPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.free, p.bytes = nil, 0
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
