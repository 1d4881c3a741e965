package wasm

import (
	"bytes"
	"testing"
	"time"
)

func TestLinearMemory(t *testing.T) {
	const page = 65536
	t.Run("no hint", func(t *testing.T) {
		l := memoryAllocator(0, nil, nil).Allocate(2*page, 10*page)
		b := l.Reallocate(2 * page)
		if len(b) != 2*page || cap(b) != 2*page {
			t.Fatalf("len %d cap %d", len(b), cap(b))
		}
		b[0], b[len(b)-1] = 1, 2
		b = l.Reallocate(3 * page)
		if len(b) != 3*page || b[0] != 1 || b[2*page-1] != 2 || !zero(b[2*page:]) {
			t.Fatal("the contents moved wrong")
		}
		if l.Reallocate(11*page) != nil {
			t.Fatal("grew over the maximum")
		}
		if b := l.Reallocate(10 * page); len(b) != 10*page || cap(b) != 10*page {
			t.Fatalf("len %d cap %d at the maximum", len(b), cap(b))
		}
	})
	t.Run("hint", func(t *testing.T) {
		l := memoryAllocator(5*page, nil, nil).Allocate(2*page, 10*page)
		b := l.Reallocate(2 * page)
		if len(b) != 2*page || cap(b) != 5*page {
			t.Fatalf("len %d cap %d", len(b), cap(b))
		}
		b[0] = 1
		c := l.Reallocate(5 * page)
		if &c[0] != &b[0] || c[0] != 1 || !zero(c[2*page:]) {
			t.Fatal("moved, or not zero, within the capacity")
		}
		c = l.Reallocate(6 * page)
		if len(c) != 6*page || c[0] != 1 || !zero(c[2*page:]) {
			t.Fatal("the contents moved wrong")
		}
	})
	t.Run("hint over the maximum", func(t *testing.T) {
		l := memoryAllocator(50*page, nil, nil).Allocate(2*page, 10*page)
		if b := l.Reallocate(2 * page); cap(b) != 10*page {
			t.Fatalf("cap %d", cap(b))
		}
	})
}

func zero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

func TestMemoryPool(t *testing.T) {
	const page = 65536
	var p memoryPool
	defer p.close()
	dirty := func(n, capacity int) ([]byte, int) {
		b := make([]byte, n, capacity)
		for i := range b {
			b[i] = 0xff
		}
		return b, n
	}
	if p.get(page, 2*page) != nil {
		t.Fatal("an empty pool gave a memory")
	}
	p.put(dirty(3*page, 4*page))
	if p.get(5*page, 10*page) != nil || p.get(page, 3*page) != nil {
		t.Fatal("a memory out of the wanted capacities")
	}
	b := p.get(4*page, 8*page)
	if b == nil || len(b) != 0 || cap(b) != 4*page || !zero(b[:cap(b)]) {
		t.Fatal("no zeroed memory of 4 pages from the pool")
	}
	if p.get(4*page, 8*page) != nil {
		t.Fatal("a memory given twice")
	}

	// The smallest that fits.
	p.put(dirty(page, 8*page))
	p.put(dirty(page, 5*page))
	p.put(dirty(page, 6*page))
	if b := p.get(4*page, 10*page); cap(b) != 5*page {
		t.Fatalf("cap %d pages, want 5", cap(b)/page)
	}

	// At most poolBytes: the oldest go first.
	p.put(dirty(page, poolBytes/2))
	p.put(dirty(page, poolBytes/2))
	if p.bytes > poolBytes {
		t.Fatalf("%d bytes kept, over %d", p.bytes, poolBytes)
	}
	if p.get(6*page, 8*page) != nil {
		t.Fatal("an old memory kept over poolBytes")
	}
	// Larger than half of it: not kept.
	p.put(dirty(page, poolBytes/2+page))
	if p.get(poolBytes/2+page, poolBytes) != nil {
		t.Fatal("a memory over half the pool kept")
	}

	// Dropped after poolTTL.
	p.trim(time.Now().Add(poolTTL))
	if len(p.free) != 0 || p.bytes != 0 {
		t.Fatalf("%d memories, %d bytes kept after poolTTL", len(p.free), p.bytes)
	}

	p.close()
	p.put(dirty(page, page))
	if p.get(page, page) != nil {
		t.Fatal("a closed pool keeps memories")
	}
}

// TestLinearMemoryReused: a memory taken from the pool is zero but for
// what was written since, over its whole capacity, whatever its last user
// wrote.
func TestLinearMemoryReused(t *testing.T) {
	const page = 65536
	var p memoryPool
	defer p.close()
	var l *linearMemory
	alloc := memoryAllocator(4*page, &p, func(x *linearMemory) { l = x })
	m := alloc.Allocate(page, 10*page)
	b := m.Reallocate(2 * page)
	for i := range b {
		b[i] = 0xff
	}
	b = m.Reallocate(3 * page)
	b[len(b)-1] = 0xff
	m.Free()
	first := &l.buf[0]
	p.put(l.buf, l.used)

	m = alloc.Allocate(page, 10*page)
	b = m.Reallocate(page)
	if &b[0] != first || l.used != page {
		t.Fatal("not the pooled memory")
	}
	if !zero(b[:cap(b)]) {
		t.Fatal("a pooled memory is not zero")
	}
}
