package engine

import (
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

// BenchmarkEventDelivery10 is one event published and received by each
// of 10 subscribers (the agent's event streams: orch events, orch top,
// web pages): the time from emit until the tenth has it.
func BenchmarkEventDelivery10(b *testing.B) {
	e := New(Options{})
	got := make(chan struct{}, 10)
	for range 10 {
		_, ch, cancel := e.Subscribe(time.Time{})
		defer cancel()
		go func() {
			for range ch {
				got <- struct{}{}
			}
		}()
	}
	ev := Event{Type: EventStarted, Addr: spec.Address{Kind: spec.KindDaemon, Name: "api"}, Pid: 42}
	for b.Loop() {
		e.emit(ev)
		for range 10 {
			<-got
		}
	}
}

// TestStatsCountEvents: the counters that metrics read follow emit.
func TestStatsCountEvents(t *testing.T) {
	e := New(Options{})
	a := spec.Address{Kind: spec.KindDaemon, Name: "api"}
	code := 3
	e.emit(Event{Type: EventStarted, Addr: a, Pid: 42})
	e.emit(Event{Type: EventExited, Addr: a, ExitCode: &code})
	e.emit(Event{Type: EventConfigReloaded})
	st := e.Stats()
	if st.Events[EventStarted] != 1 || st.Events[EventExited] != 1 || st.Events[EventConfigReloaded] != 1 {
		t.Fatalf("events counted: %v", st.Events)
	}
	as := e.stats.addrs[a]
	if as == nil || as.pid != 0 || as.exits != 1 || as.exitCode == nil || *as.exitCode != 3 {
		t.Fatalf("books of %s after its exit: %+v", a, as)
	}
}
