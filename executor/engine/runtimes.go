package engine

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// A backend that goes away (a Docker Engine restarted, its socket gone)
// says nothing about what runs there. The engine follows the event stream
// of each runtime whose provider has one (providers.EventSource) for its
// "disconnected" and "reconnected", and:
//
//	          disconnected: "unreachable" event
//	reachable --------------------------------> away
//	    ^                                         |  watches keep trying and report
//	    |  reconnected: "reconnected" event,      |  nothing; a start that cannot
//	    |  parked starts now, then a reconcile    |  reach it parks its daemon
//	    '-----------------------------------------'  (not a crash), retried after
//	       (a fresh listing: Refresh, Make)          its backoff and at once on
//	                                                 reconnected
//
// A start that fails because the backend cannot be reached
// (providers.IsUnreachable) is never counted as the daemon's crash: its
// restart history and backoff stay as they were, and it waits ("waiting
// for runtime.docker.x to be reachable again") instead of failing.

// follow is the engine following one runtime's event stream.
type follow struct {
	key    string // the runtime's settings when it started (runtimeKey)
	cancel context.CancelFunc
}

// runtimeKey identifies a runtime's settings: a stream is followed again
// when they change (another host).
func runtimeKey(rt *spec.Runtime) string {
	var b strings.Builder
	b.WriteString(rt.Addr.String() + "\x00" + rt.Plugin + "\x00" + rt.SHA256)
	names := make([]string, 0, len(rt.Attrs))
	for n := range rt.Attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString("\x00" + n + "=" + rt.Attrs[n].GoString())
	}
	return b.String()
}

// followRuntimes follows the event streams of the configuration's
// runtimes whose providers have one, and stops following those no longer
// declared or declared with other settings. Called whenever e.cfg changes.
func (e *Engine) followRuntimes() {
	want := map[spec.Address]*spec.Runtime{}
	for _, rt := range e.cfg.Runtimes {
		if _, ok := e.opts.Providers[rt.Kind].(providers.EventSource); ok {
			want[rt.Addr] = rt
		}
	}
	for a, f := range e.follows {
		if rt := want[a]; rt == nil || f.key != runtimeKey(rt) {
			f.cancel()
			delete(e.follows, a)
			delete(e.away, a)
		}
	}
	project := e.project()
	for a, rt := range want {
		if e.follows[a] != nil {
			continue
		}
		es := e.opts.Providers[rt.Kind].(providers.EventSource)
		ctx, cancel := context.WithCancel(e.ctx)
		f := &follow{key: runtimeKey(rt), cancel: cancel}
		e.follows[a] = f
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			ch, err := es.Events(ctx, providers.EventsRequest{Runtime: rt, Project: project})
			if err != nil {
				if ctx.Err() == nil {
					e.emit(Event{Type: EventError, Addr: a, Detail: "not following its events: " + err.Error()})
				}
				return
			}
			for ev := range ch {
				if ev.Kind == "disconnected" || ev.Kind == "reconnected" {
					kind := ev.Kind
					e.post(func() { e.runtimeEvent(a, f, kind) })
				}
			}
		}()
	}
}

// runtimeEvent takes a "disconnected" or "reconnected" of runtime a's
// stream f.
func (e *Engine) runtimeEvent(a spec.Address, f *follow, kind string) {
	if e.follows[a] != f || e.stopping {
		return // stale
	}
	switch kind {
	case "disconnected":
		if e.away[a] {
			return
		}
		e.away[a] = true
		e.emit(Event{Type: EventUnreachable, Addr: a,
			Detail: "cannot reach it; what runs there is left as it is and looked at again once it is back"})
	case "reconnected":
		if !e.away[a] {
			return
		}
		delete(e.away, a)
		e.emit(Event{Type: EventReconnected, Addr: a, Detail: "reachable again; looking at everything on it afresh"})
		e.unpark(a)
		e.reconcile()
	}
}

// park holds a supervised instance whose start failed because its runtime
// could not be reached: not a crash. It waits for the runtime, and is
// tried again after its backoff (in case no "reconnected" comes: a
// provider without an event stream) and at once on "reconnected".
func (e *Engine) park(inst *instance, err error) {
	why := "for " + inst.rt.String() + " to be reachable again"
	if !inst.parked || inst.waiting != why {
		inst.waiting = why
		e.emit(Event{Type: EventWaiting, Addr: inst.addr, Detail: why + " (" + err.Error() + ")"})
	}
	inst.parked = true
	if inst.res == nil || e.stopping || e.paused {
		return
	}
	if inst.timer != nil {
		inst.timer.Stop()
	}
	d := max(Backoff(inst.res.Restart, inst.parkedTries, e.opts.Rand()), parkMin)
	inst.parkedTries++
	addr, gen := inst.addr, inst.gen
	inst.timer = time.AfterFunc(d, func() { e.post(func() { e.restart(addr, gen) }) })
}

// parkMin is the least pause between two starts of a parked instance,
// whatever its restart backoff (which may be zero).
const parkMin = 100 * time.Millisecond

// unreachableStart says whether err is a start that could not reach its
// runtime (a stop or delete that could not is not: what it was to stop
// may still run).
func unreachableStart(err error) bool {
	var pe *providers.Error
	return errors.As(err, &pe) && pe.Unreachable && pe.Op == "start"
}

// unpark starts at once the instances parked for runtime a.
func (e *Engine) unpark(a spec.Address) {
	if e.paused {
		return
	}
	for _, inst := range e.insts {
		if !inst.parked || inst.rt != a || inst.sup.running() || e.busy[inst.addr] {
			continue
		}
		if inst.timer != nil {
			inst.timer.Stop()
			inst.timer = nil
		}
		e.restart(inst.addr, inst.gen)
	}
}
