package module

import (
	"sync/atomic"
	"time"
)

// Hook names a call from orch into a module: its lifecycle hooks and the
// delivery of events (one call per batch where the module takes batches).
type Hook uint8

// Hooks.
const (
	HookInit Hook = iota
	HookStart
	HookEvent
	HookStop
	hookCount
)

var hookNames = [hookCount]string{"init", "start", "event", "stop"}

func (h Hook) String() string {
	if h < hookCount {
		return hookNames[h]
	}
	return "unknown"
}

// Hooks lists every hook, in order.
func Hooks() []Hook { return []Hook{HookInit, HookStart, HookEvent, HookStop} }

// CallBuckets are the upper bounds, in seconds, of the call latency
// histogram: from 10 µs (a WebAssembly event handler) to 10 s (a hook near
// its budget).
var CallBuckets = [...]float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// Calls counts a module's calls and how long they took, per hook. The
// zero value is ready; Observe is safe for concurrent use and does not
// allocate (an event handler is called up to hundreds of thousands of
// times a second).
type Calls struct {
	h [hookCount]callHist
}

type callHist struct {
	nanos   atomic.Uint64
	buckets [len(CallBuckets) + 1]atomic.Uint64 // the last one: over every bound
}

// Observe records one call of h that took d.
func (c *Calls) Observe(h Hook, d time.Duration) {
	if c == nil || h >= hookCount {
		return
	}
	x := &c.h[h]
	x.nanos.Add(uint64(max(d, 0)))
	s := d.Seconds()
	i := 0
	for i < len(CallBuckets) && s > CallBuckets[i] {
		i++
	}
	x.buckets[i].Add(1)
}

// CallHistogram is a snapshot of one hook's calls.
type CallHistogram struct {
	Count uint64
	Sum   time.Duration
	// Buckets[i] is how many calls took at most CallBuckets[i] (and more
	// than the bound before it); not cumulative. Calls over the last
	// bound are Count minus their sum.
	Buckets [len(CallBuckets)]uint64
}

// Snapshot returns the calls so far of every hook called at least once.
func (c *Calls) Snapshot() map[Hook]CallHistogram {
	if c == nil {
		return nil
	}
	out := map[Hook]CallHistogram{}
	for h := Hook(0); h < hookCount; h++ {
		// The count is the buckets' sum, read once: a snapshot taken
		// during a call is consistent with itself.
		x := &c.h[h]
		var ch CallHistogram
		for i := range x.buckets {
			n := x.buckets[i].Load()
			ch.Count += n
			if i < len(ch.Buckets) {
				ch.Buckets[i] = n
			}
		}
		if ch.Count == 0 {
			continue
		}
		ch.Sum = time.Duration(x.nanos.Load())
		out[h] = ch
	}
	return out
}

// Counted is a Guest that counts its calls (both hosts do).
type Counted interface {
	Calls() *Calls
}
