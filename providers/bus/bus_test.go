package bus

import (
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

// TestWants: a topic is wanted while a subscriber's pattern matches it,
// and the events published reach that subscriber alone.
func TestWants(t *testing.T) {
	b := NewBus()
	topic := LifecycleTopic(spec.KindDaemon, "stopped")
	if b.Wants(topic) {
		t.Fatal("an empty bus wants a topic")
	}
	var got []string
	cancel := b.Subscribe("orch.daemon.*", func(ev Event) { got = append(got, ev.Topic) })
	if !b.Wants(topic) || b.Wants(LifecycleTopic(spec.KindJob, "completed")) {
		t.Fatalf("wants %s: %v, orch.job.completed: %v; want true, false", topic, b.Wants(topic), b.Wants("orch.job.completed"))
	}
	b.Publish(LifecycleEvent(spec.Address{Kind: spec.KindDaemon, Name: "web"}, "stopped", time.Time{}, nil))
	b.Publish(LifecycleEvent(spec.Address{Kind: spec.KindJob, Name: "migrate"}, "completed", time.Time{}, nil))
	if len(got) != 1 || got[0] != "orch.daemon.stopped" {
		t.Fatalf("delivered %v, want [orch.daemon.stopped]", got)
	}
	cancel()
	if b.Wants(topic) {
		t.Fatal("a topic is still wanted after its only subscriber cancelled")
	}
}

// TestSubscribeUnreserved: a subscriber to what modules publish gets
// every unreserved topic and none of orch's own, and does not make orch's
// lifecycle topics wanted (the engine's own subscription made every
// lifecycle event JSON-encoded for no one).
func TestSubscribeUnreserved(t *testing.T) {
	b := NewBus()
	var got []string
	cancel := b.SubscribeUnreserved(func(ev Event) { got = append(got, ev.Topic) })
	if b.Wants(LifecycleTopic(spec.KindDaemon, "stopped")) {
		t.Fatal("an unreserved subscription wants orch.daemon.stopped")
	}
	if !b.Wants("metrics.cpu") {
		t.Fatal("an unreserved subscription does not want metrics.cpu")
	}
	b.Publish(LifecycleEvent(spec.Address{Kind: spec.KindDaemon, Name: "web"}, "stopped", time.Time{}, nil))
	b.Publish(Event{Topic: "metrics.cpu", Data: []byte("1")})
	if len(got) != 1 || got[0] != "metrics.cpu" {
		t.Fatalf("delivered %v, want [metrics.cpu]", got)
	}
	cancel()
	if b.Wants("metrics.cpu") {
		t.Fatal("wanted after cancel")
	}
}
