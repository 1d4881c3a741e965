package wasm_test

import (
	"bytes"
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

// TestMemoryReused: a stopped module's memory is reused by the next
// module, another one, which finds it exactly as a new memory: zero but
// for its data segments.
func TestMemoryReused(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	src := guest(t, "hostile")
	if err := f.start(t, resource(t, "first", src, hostile("sink"))).stop(); err != nil {
		t.Fatal(err)
	}
	if n := wasm.PooledMemories(f.host); n != 1 {
		t.Fatalf("%d memories pooled after a module stopped, want 1", n)
	}
	load := func(name string) *wasm.Module {
		m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: resource(t, name, src, hostile("sink"))})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	reused, pooled, err := wasm.InstantiateMemory(load("second"), true)
	if err != nil {
		t.Fatal(err)
	}
	if pooled != 0 {
		t.Fatalf("%d memories pooled while the second module ran, want 0: it took the first's", pooled)
	}
	fresh, _, err := wasm.InstantiateMemory(load("third"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reused, fresh) {
		t.Fatal("a reused memory differs from a new one")
	}
}
