package spec

import (
	"runtime/debug"
	"sync"
)

// Loading a large configuration allocates a few hundred bytes per byte of
// source (HCL's tokens and syntax tree, cty values), nearly all of it
// garbage by the time Load returns, while the live heap stays small: with
// the default GOGC the collector runs over and over during the load and
// takes a third of its CPU. For the duration of a large load the collector
// is relaxed to relaxedGCPercent; the previous setting comes back when the
// last concurrent large load ends. The cost is transient memory: at most
// about relaxedGCPercent/100 times the live heap of the load. It was 400:
// 200 costs about 5% more CPU on the load of 10,000 new daemons (2.14
// against 2.04 s, five runs each) and lets its RSS peak at 227 MB instead
// of 264 MB (what orch apply of them peaks at, issue 19). Since the load
// lets each block's syntax tree go as it goes (release.go), its live heap
// is about 35 MB instead of 60-90, and allocates a tenth less: 150 is
// orch plan of 10,000 new at 148 MB and 1.06 s of CPU against 161 MB and
// 1.03 s at 200, and 142 MB and 1.11 s at 100 (six runs each,
// alternating); a no-op plan, whose load comes from the cache, does not
// tell them apart (131-135 MB, 0.58-0.60 s).
const (
	relaxedGCPercent = 150
	largeSource      = 512 << 10 // bytes of configuration that make a load large
)

var gcRelax struct {
	sync.Mutex
	n    int // large loads in progress
	old  int // the GC percent to restore
	kept bool
}

// relaxGC relaxes the collector until the returned function is called.
func relaxGC() (restore func()) {
	gcRelax.Lock()
	if gcRelax.n == 0 {
		gcRelax.old = debug.SetGCPercent(relaxedGCPercent)
		// GC off, or already more relaxed: leave it as it was.
		gcRelax.kept = gcRelax.old < 0 || gcRelax.old >= relaxedGCPercent
		if gcRelax.kept {
			debug.SetGCPercent(gcRelax.old)
		}
	}
	gcRelax.n++
	gcRelax.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcRelax.Lock()
			gcRelax.n--
			if gcRelax.n == 0 && !gcRelax.kept {
				debug.SetGCPercent(gcRelax.old)
			}
			gcRelax.Unlock()
		})
	}
}
