package executor

import (
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

// TestTightenGC: a large Apply tightens the collector from the live
// heap; nested calls keep it until the last returns, which restores it; a
// small Apply, or a user's GOGC, leaves it alone.
func TestTightenGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	if TightenGC(tightSteps - 1)(); gcPercent() != 100 {
		t.Fatal("a small Apply changed the collector")
	}
	// A live heap of 64 MB: a quarter of it is more than tightHeadroom.
	live := make([]byte, 64<<20)
	runtime.GC()
	outer := TightenGC(tightSteps)
	inner := TightenGC(10 * tightSteps)
	if p := gcPercent(); p != tightMinPct {
		t.Fatalf("percent %d with 64 MB live, want %d", p, tightMinPct)
	}
	inner()
	if p := gcPercent(); p != tightMinPct {
		t.Fatalf("percent %d once the inner call ended, while the outer Apply runs", p)
	}
	outer()
	if p := gcPercent(); p != 100 {
		t.Fatalf("after both: percent %d, want 100", p)
	}
	runtime.KeepAlive(live)

	t.Setenv("GOGC", "200")
	restore := TightenGC(10 * tightSteps)
	if p := gcPercent(); p != 100 {
		t.Fatalf("with GOGC set by the user: percent %d", p)
	}
	restore()
}
