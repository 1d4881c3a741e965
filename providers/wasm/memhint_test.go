package wasm_test

import (
	"context"
	"testing"

	"github.com/orch-dev/orch/providers/wasm"
)

// TestMemoryHint: an address's next instance starts with the memory its
// last one had when it became running, and its guest sees the same memory
// size as without it.
func TestMemoryHint(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	r := resource(t, "hint", guest(t, "hostile"), hostile("sink"))
	var sizes, hints []uint64
	for i := 0; i < 2; i++ {
		m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: r})
		if err != nil {
			t.Fatal(err)
		}
		hints = append(hints, wasm.MemoryHint(m))
		ctx, cancel := context.WithCancel(context.Background())
		if err := m.RunReady(ctx, func() {
			sizes = append(sizes, wasm.MemorySize(m))
			cancel()
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("memory hints %v, sizes when running %v", hints, sizes)
	if len(sizes) != 2 || hints[0] != 0 || hints[1] != sizes[0] || sizes[1] != sizes[0] {
		t.Fatalf("memory hints %v, sizes when running %v", hints, sizes)
	}
}
