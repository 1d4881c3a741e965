package wasm

import (
	"bytes"
	"context"
	"time"
)

// MemoryHint returns the memory capacity m's instance starts with (0: the
// module's minimum).
func MemoryHint(m *Module) uint64 { return m.h.memoryHint(m.compiled, m.addr) }

// MemorySize returns the size of m's memory, once instantiated.
func MemorySize(m *Module) uint64 { return uint64(m.inst.Memory().Size()) }

// PooledMemories returns how many memories h keeps for the next modules.
func PooledMemories(h *Host) int {
	h.pool.mu.Lock()
	defer h.pool.mu.Unlock()
	return len(h.pool.free)
}

// InstantiateMemory instantiates m as Run does, its memory from the pool
// or not, without running anything in it (not even _initialize), and
// returns a copy of its memory then, and how many memories the pool kept
// after the instantiation; then it closes m (its memory goes to the pool).
func InstantiateMemory(m *Module, fromPool bool) ([]byte, int, error) {
	ctx := context.Background()
	defer m.Close(ctx)
	var pool *memoryPool
	if fromPool {
		pool = &m.h.pool
	}
	inst, err := m.instantiate(context.WithValue(ctx, moduleKey{}, m), pool)
	pooled := PooledMemories(m.h)
	defer m.closeGrants()
	if err != nil {
		return nil, pooled, err
	}
	mem, _ := inst.Memory().Read(0, inst.Memory().Size())
	mem = bytes.Clone(mem)
	inst.Close(ctx)
	m.reuseMemory()
	return mem, pooled, nil
}

// DropPooledMemories empties h's pool of memories.
func DropPooledMemories(h *Host) { h.pool.trim(time.Now().Add(poolTTL)) }
