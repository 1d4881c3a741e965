package wasm

// MemoryHint returns the memory capacity m's instance starts with (0: the
// module's minimum).
func MemoryHint(m *Module) uint64 { return m.h.memoryHint(m.compiled, m.addr) }

// MemorySize returns the size of m's memory, once instantiated.
func MemorySize(m *Module) uint64 { return uint64(m.inst.Memory().Size()) }
