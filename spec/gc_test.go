package spec

import (
	"runtime/debug"
	"testing"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestRelaxGC: overlapping large loads relax the collector once and the
// last one to end restores the setting it found.
func TestRelaxGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	a := relaxGC()
	if p := gcPercent(); p != relaxedGCPercent {
		t.Fatalf("during a load: GC percent %d", p)
	}
	b := relaxGC()
	a()
	a() // twice: no effect
	if p := gcPercent(); p != relaxedGCPercent {
		t.Fatalf("one of two loads ended: GC percent %d", p)
	}
	b()
	if p := gcPercent(); p != 100 {
		t.Fatalf("after the loads: GC percent %d, want 100", p)
	}
	// A setting more relaxed already, or GC off, is left alone.
	for _, set := range []int{800, -1} {
		debug.SetGCPercent(set)
		r := relaxGC()
		if p := gcPercent(); p != set {
			t.Errorf("with GC percent %d before: %d during the load", set, p)
		}
		r()
		if p := gcPercent(); p != set {
			t.Errorf("with GC percent %d before: %d after the load", set, p)
		}
	}
}
