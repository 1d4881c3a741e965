package executor

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// An Apply of thousands of steps is bound by the kernel (forks, execs,
// fsyncs), not by its own CPU: an orch apply of 10,000 daemons used 6 s
// of CPU in 40 s. Its live heap grows with what it started (about 40 MB
// to 62 MB at 10,000), and with the default GOGC the collector lets the
// heap reach twice that before it runs: its resident memory peaked at
// 180 MB (issue 19). For the duration of such an Apply, the collector
// runs once the heap has grown by tightHeadroom or a quarter of the live
// heap, whichever is larger, instead of by all of it, checked every
// tightEvery. Measured at 10,000 daemons (orch apply, quiet, the peak
// RSS and user CPU of each run): the default 180 MB, 5.9 s; GOGC=50
// 142 MB, 7.5 s; GOGC=25 123 MB, 7.6 s; this 124 and 126 MB, 7.7 and
// 7.9 s (the first after a load that parsed the configuration). A GOGC or
// GOMEMLIMIT the user set is left alone.
const (
	tightSteps    = 1000     // steps that make an Apply large
	tightHeadroom = 12 << 20 // the least growth between collections
	tightEvery    = 250 * time.Millisecond
	tightMinPct   = 25
)

var tightGC struct {
	sync.Mutex
	n    int           // large Applies in progress
	old  int           // the GC percent to restore
	stop chan struct{} // ends the controller
	done chan struct{}
}

// TightenGC tightens the collector while an Apply of steps steps runs,
// until the returned function is called; calls nest. Apply calls it; a
// caller whose own work after Apply grows with the steps (orch apply's
// wait for its starts to prove alive, which reads every one) calls it
// around both.
func TightenGC(steps int) (restore func()) {
	if steps < tightSteps || userTunedGC() {
		return func() {}
	}
	tightGC.Lock()
	if tightGC.n == 0 {
		// Read, not set (SetGCPercent only reads by setting): off reads
		// as -1, as during orch up's shutdown, which is left so.
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		tightGC.old = int(int64(s[0].Value.Uint64()))
		if tightGC.old > 0 {
			tightGC.stop, tightGC.done = make(chan struct{}), make(chan struct{})
			c := newGCControl(tightGC.old)
			c.step() // tight from the first step on
			go c.run(tightGC.stop, tightGC.done)
		}
	}
	tightGC.n++
	tightGC.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			tightGC.Lock()
			defer tightGC.Unlock()
			tightGC.n--
			if tightGC.n == 0 && tightGC.stop != nil {
				close(tightGC.stop)
				<-tightGC.done
				tightGC.stop = nil
				debug.SetGCPercent(tightGC.old)
			}
		})
	}
}

// gcControl sets the GC percent from the live heap.
type gcControl struct {
	ceiling int // the percent it found: never above
	last    int
	sample  []metrics.Sample
}

func newGCControl(ceiling int) *gcControl {
	return &gcControl{ceiling: ceiling, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// step sets the percent so that the heap grows by tightHeadroom, or
// tightMinPct of the live heap if that is more, before the next
// collection. The goal so set is always above the live heap. (A memory
// limit at that bound, to make the runtime return freed pages at once,
// made the collector run without end after a load that parsed the
// configuration: the runtime's own memory beyond the heap, 20-60 MB
// then, counts against a limit, and the heap's goal fell to its live size
// for the whole apply: 59 s and 39 s of CPU instead of 39 s and 7 s.)
func (c *gcControl) step() {
	metrics.Read(c.sample)
	live := c.sample[0].Value.Uint64()
	pct := c.ceiling
	if live > 0 {
		pct = min(c.ceiling, int(tightHeadroom*100/live))
	}
	pct = max(pct, min(c.ceiling, tightMinPct))
	if pct != c.last {
		debug.SetGCPercent(pct)
		c.last = pct
	}
}

// run steps every tightEvery until stop is closed.
func (c *gcControl) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(tightEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.step()
		}
	}
}

// userTunedGC: the user set GOGC or GOMEMLIMIT, which orch leaves alone.
func userTunedGC() bool {
	return os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != ""
}
