package engine

import (
	"errors"
	"time"

	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// historySize is how many past events the engine keeps for subscribers
// that ask for events since a time (GET /v1/events?since=).
const historySize = 4096

// subBuffer is how many events a subscriber may lag behind before it is
// dropped (its channel closed): a slow reader never slows the engine.
const subBuffer = 1024

// bus holds the recent events and the subscribers. It is guarded by
// Engine.outMu, which emit holds: events reach every subscriber in the
// order Out sees them.
type bus struct {
	history []Event // a ring of historySize once full
	next    int     // where the next event goes once the ring is full
	subs    map[chan Event]struct{}
}

func (b *bus) publish(ev Event) {
	if len(b.history) < historySize {
		b.history = append(b.history, ev)
	} else {
		b.history[b.next] = ev
		b.next = (b.next + 1) % historySize
	}
	for ch := range b.subs {
		select {
		case ch <- ev:
		default: // too slow: drop it; its reader sees the channel closed
			close(ch)
			delete(b.subs, ch)
		}
	}
}

// past returns the kept events at or after since, oldest first.
func (b *bus) past(since time.Time) []Event {
	var out []Event
	for i := range b.history {
		ev := b.history[(b.next+i)%len(b.history)]
		if !ev.Time.Before(since) {
			out = append(out, ev)
		}
	}
	return out
}

// Subscribe returns the kept events at or after since (none when since is
// zero) and a channel that receives every later event, in order, until
// cancel is called. The channel is closed when the subscriber falls more
// than 1,024 events behind, and after cancel. Safe for concurrent use.
func (e *Engine) Subscribe(since time.Time) (past []Event, ch <-chan Event, cancel func()) {
	c := make(chan Event, subBuffer)
	e.outMu.Lock()
	defer e.outMu.Unlock()
	if e.bus.subs == nil {
		e.bus.subs = map[chan Event]struct{}{}
	}
	if !since.IsZero() {
		past = e.bus.past(since)
	}
	e.bus.subs[c] = struct{}{}
	return past, c, func() {
		e.outMu.Lock()
		defer e.outMu.Unlock()
		if _, ok := e.bus.subs[c]; ok {
			delete(e.bus.subs, c)
			close(c)
		}
	}
}

// lifecycle lists the events of instances that modules see on the bus.
var lifecycle = map[EventType]bool{
	EventStarted: true, EventAdopted: true, EventCompleted: true, EventExited: true,
	EventRestarting: true, EventHealthy: true, EventUnhealthy: true, EventFailed: true,
	EventStopping: true, EventStopped: true, EventDestroyed: true,
	EventUnreachable: true, EventReconnected: true, // of runtimes: orch.runtime.*
}

// toModules publishes the lifecycle event ev on the modules' bus. Modules'
// own transitions are published by the module provider.
func (e *Engine) toModules(ev Event) {
	if e.opts.Bus == nil || ev.Addr.IsZero() || ev.Addr.Kind == spec.KindModule || !lifecycle[ev.Type] {
		return
	}
	if !e.opts.Bus.Wants(pbus.LifecycleTopic(ev.Addr.Kind, ev.Type.String())) {
		return
	}
	var err error
	if ev.Detail != "" && (ev.Type == EventFailed || ev.Type == EventUnhealthy || ev.Type == EventExited || ev.Type == EventUnreachable) {
		err = errors.New(ev.Detail)
	}
	e.opts.Bus.Publish(pbus.LifecycleEvent(ev.Addr, ev.Type.String(), ev.Time, err))
}
