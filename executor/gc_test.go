package executor

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent reads the GC percent (SetGCPercent can only read by setting).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestTightenGC: a large Apply tightens the collector and sets a memory
// limit that follows the live heap; nested calls keep it until the last
// returns, which restores both; a small Apply, or a user's GOGC, leaves
// them alone.
func TestTightenGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	if TightenGC(tightSteps - 1)(); gcPercent() != 100 {
		t.Fatal("a small Apply changed the collector")
	}
	runtime.GC() // a live heap to follow
	outer := TightenGC(tightSteps)
	inner := TightenGC(10 * tightSteps)
	// The controller sets both at once, then every tightEvery (the
	// percent stays 100 for a live heap below tightHeadroom, as here).
	for deadline := time.Now().Add(10 * time.Second); debug.SetMemoryLimit(-1) == math.MaxInt64; {
		if time.Now().After(deadline) {
			t.Fatalf("collector not tightened: percent %d, limit %d", gcPercent(), debug.SetMemoryLimit(-1))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := gcPercent(); p < tightMinPct || p > 100 {
		t.Fatalf("percent %d, want between %d and 100", p, tightMinPct)
	}
	inner()
	if debug.SetMemoryLimit(-1) == math.MaxInt64 {
		t.Fatal("the inner call's end restored the collector while the outer Apply runs")
	}
	outer()
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Fatalf("after both: percent %d, limit %d; want 100 and no limit", p, l)
	}

	t.Setenv("GOGC", "200")
	restore := TightenGC(10 * tightSteps)
	time.Sleep(2 * tightEvery)
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Fatalf("with GOGC set by the user: percent %d, limit %d", p, l)
	}
	restore()
}
