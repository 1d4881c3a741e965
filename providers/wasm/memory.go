package wasm

import "github.com/tetratelabs/wazero/experimental"

// linearMemory backs a guest's linear memory with a Go slice, as wazero
// does by default, but starts with the capacity its module's last instance
// had when it became running (Module.memoryHint), when that is more than
// the module's declared minimum. A Go guest grows its memory from its
// minimum while its runtime initializes (44 to 53 pages for the hostile
// guest), and wazero's default allocation grows a slice of the minimum's
// capacity: each growth allocates, zeroes and copies the whole memory
// (0.5 ms or more of each start). The guest sees no difference: the
// memory's size (memory.size) is what it grew to, not the capacity, and
// the capacity beyond its size is zero, as fresh memory must be.
//
// Wasm threads (shared memories, which must not move) are not enabled in
// the Host's runtimes, so a memory may move when it grows.
type linearMemory struct {
	buf  []byte
	max  uint64
	hint uint64
}

// memoryAllocator returns the allocator of one instantiation, with the
// capacity hint in bytes (0: none).
func memoryAllocator(hint uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, limit uint64) experimental.LinearMemory {
		return &linearMemory{max: limit, hint: max(capacity, min(hint, limit))}
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
		return l.buf
	}
	// As append grows a large slice: by a quarter, at least.
	newCap := max(size, l.hint, uint64(cap(l.buf))+uint64(cap(l.buf))/4)
	newCap = min(newCap, l.max)
	buf := make([]byte, size, newCap)
	copy(buf, l.buf)
	l.buf = buf
	return buf
}

// Free implements experimental.LinearMemory.
func (l *linearMemory) Free() { l.buf = nil }
