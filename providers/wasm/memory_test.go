package wasm

import (
	"bytes"
	"testing"
)

func TestLinearMemory(t *testing.T) {
	const page = 65536
	t.Run("no hint", func(t *testing.T) {
		l := memoryAllocator(0).Allocate(2*page, 10*page)
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
		l := memoryAllocator(5*page).Allocate(2*page, 10*page)
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
		l := memoryAllocator(50*page).Allocate(2*page, 10*page)
		if b := l.Reallocate(2 * page); cap(b) != 10*page {
			t.Fatalf("cap %d", cap(b))
		}
	})
}

func zero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }
