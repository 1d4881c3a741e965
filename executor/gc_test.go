package executor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// gcPercent reads the GC percent, as TightenGC does.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(int64(s[0].Value.Uint64()))
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
	// Both are set at once (the percent stays 100 for a live heap below
	// tightHeadroom, as here), then every tightEvery.
	if debug.SetMemoryLimit(-1) == math.MaxInt64 {
		t.Fatalf("collector not tightened: percent %d, no limit", gcPercent())
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
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Fatalf("with GOGC set by the user: percent %d, limit %d", p, l)
	}
	restore()
}
