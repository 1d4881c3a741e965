// Package workers splits a loop over [0, n) across goroutines: the
// decoding of state records and stored snapshots, the planner's
// decisions, and the process runtime's reads of /proc, which at 10,000
// instances are each worth the CPUs a machine has.
package workers

import (
	"runtime"
	"sync"
)

// most caps the goroutines of one split.
const most = 8

// Count is how many goroutines a loop of n items is worth: one below
// least items, then one per least/2 items at most, and no more than the
// CPUs Go runs on (or 8).
func Count(n, least int) int {
	if n < least {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0), most, n/max(1, least/2)))
}

// Split calls fn(lo, hi) for consecutive ranges that together cover
// [0, n), one range for each of up to workers goroutines (the first on
// the caller's), and returns once every call has returned. With workers
// of 1 or less it is fn(0, n).
func Split(n, workers int, fn func(lo, hi int)) {
	if workers <= 1 || n <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := chunk; lo < n; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+chunk, n))
	}
	fn(0, min(chunk, n))
	wg.Wait()
}
