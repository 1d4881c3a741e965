package workers

import (
	"runtime"
	"sync"
	"testing"
)

// TestSplitCoversOnce: every index of [0, n) is handed to fn exactly
// once, in ranges that do not overlap, for any n and number of workers.
func TestSplitCoversOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 100, 1001} {
		for _, w := range []int{-1, 0, 1, 2, 3, 8, 2000} {
			seen := make([]int, n)
			var mu sync.Mutex
			calls := 0
			Split(n, w, func(lo, hi int) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				for i := lo; i < hi; i++ {
					seen[i]++
				}
			})
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("n=%d workers=%d: index %d handed %d times", n, w, i, c)
				}
			}
			if max(w, 1) < calls && n > 0 {
				t.Fatalf("n=%d workers=%d: %d calls", n, w, calls)
			}
		}
	}
}

func TestCount(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, c := range []struct{ n, least, want int }{
		{100, 256, 1}, {256, 256, 2}, {511, 256, 3}, {10000, 256, 4}, {10000, 1 << 30, 1}, {3, 2, 3}, {5, 1, 4},
	} {
		if got := Count(c.n, c.least); got != c.want {
			t.Errorf("Count(%d, %d) = %d, want %d", c.n, c.least, got, c.want)
		}
	}
}
