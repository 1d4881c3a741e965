package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// Liveness that knows the dependencies. A daemon whose health check goes
// through what it depends on (an app's /health that queries its database,
// a proxy's that goes to its upstream) fails its check when that
// dependency dies; stopping it cannot bring the dependency back, and on a
// real stack (redis killed under two app instances and nginx) it turned one
// crash into four restarts. So a daemon that turns unhealthy while one of
// its dependencies (directly, or through the jobs between them) is not
// ready is not stopped: it stays unhealthy (out of DNS and the proxy), and
// is held so until that dependency is ready again. It then has its own
// detection window (interval x retries) to pass its check; if it still
// fails after it, liveness stops it as any other.
//
// "Not ready" is: not running (exited, restarting, failed, held, never
// started), being stopped or restarted by the engine, without a health
// verdict yet, unhealthy, or with its last probe failed (a dependency
// that just died whose own check has not failed retries times yet: the
// two checks race, and on the stack the dependents' verdicts came first).
// A dependency with a longer interval than the dependent's whole window
// can still lose that race; the dependent is then stopped as before.

// notReadyDependency is the first daemon inst depends on, directly or
// through jobs, that is not ready now.
func (e *Engine) notReadyDependency(inst *instance) (spec.Address, bool) {
	if e.cfg == nil || e.cfg.Graph == nil {
		return spec.Address{}, false
	}
	seen := map[spec.Address]bool{inst.addr: true}
	var walk func(a spec.Address) (spec.Address, bool)
	walk = func(a spec.Address) (spec.Address, bool) {
		for _, d := range e.cfg.Graph.DependenciesOf(a) {
			if seen[d] {
				continue
			}
			seen[d] = true
			switch d.Kind {
			case spec.KindJob:
				if by, ok := walk(d); ok {
					return by, true
				}
			case spec.KindDaemon:
				if di := e.insts[d]; di != nil && !e.liveDependencyReady(di) {
					return d, true
				}
			}
		}
		return spec.Address{}, false
	}
	return walk(inst.addr)
}

// liveDependencyReady says whether dependency d counts as ready for the
// liveness of what depends on it (see above).
func (e *Engine) liveDependencyReady(d *instance) bool {
	switch {
	case !d.sup.running(), d.sup.killing(), d.sup.restarting(), d.sup.isPaused():
		return false
	case d.res == nil || d.res.Health == nil:
		return true
	case !d.sup.healthy():
		return false
	}
	ok, known := e.stats.lastProbe(d.addr)
	return !known || ok
}

// liveness acts on inst's unhealthy verdict (its health check failed
// retries times in a row, after it had passed): it stops inst, whose exit
// then counts as a failure and restarts it by its policy, unless a
// dependency is not ready, which holds it.
func (e *Engine) liveness(inst *instance) {
	if d, ok := e.notReadyDependency(inst); ok {
		if inst.liveHeldBy != d {
			inst.liveHeldBy = d
			e.liveHeld[inst.addr] = struct{}{}
			e.emit(Event{Type: EventUnhealthy, Addr: inst.addr, Detail: fmt.Sprintf("not restarted while %s, which it depends on, is not ready", d)})
		}
		return
	}
	e.unholdLiveness(inst)
	e.illegal(inst.addr, inst.sup.stopFor(stopLiveness))
	prov, rt, h, stop := e.opts.Providers[inst.rt.Type], e.runtime(inst.rt), inst.handle, inst.stopSettings()
	if prov == nil {
		return
	}
	addr := inst.addr
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		// Out of DNS and the proxy, and its requests in flight ended (at
		// most service.drain), before its stop signal, as every other
		// stop the engine makes.
		e.drainBefore(context.WithoutCancel(e.ctx), addr, h)
		prov.Stop(context.WithoutCancel(e.ctx), providers.StopRequest{Runtime: rt, Addr: addr, Handle: h, Signal: stop.Signal, Timeout: stop.Timeout})
	}()
}

// unholdLiveness forgets that inst's liveness was held (a verdict, a new
// generation, its end).
func (e *Engine) unholdLiveness(inst *instance) {
	if !inst.liveHeldBy.IsZero() {
		inst.liveHeldBy = spec.Address{}
		delete(e.liveHeld, inst.addr)
	}
}

// releaseLiveness looks again at the instances whose liveness is held,
// after something became ready: each whose dependencies are all ready
// now gets its own detection window (interval x retries, with its
// timeout) to pass its check, after which, still unhealthy, it is stopped.
func (e *Engine) releaseLiveness() {
	for a := range e.liveHeld {
		inst := e.insts[a]
		if inst == nil {
			delete(e.liveHeld, a)
			continue
		}
		if inst.sup.healthy() || !inst.sup.running() {
			e.unholdLiveness(inst)
			continue
		}
		if _, ok := e.notReadyDependency(inst); ok {
			continue
		}
		e.unholdLiveness(inst)
		gen := inst.gen
		time.AfterFunc(ownWindow(inst.res), func() { e.post(func() { e.livenessAgain(a, gen) }) })
	}
}

// livenessAgain is the end of the window a held instance was given once
// its dependencies were ready again: still unhealthy, it goes through
// liveness again.
func (e *Engine) livenessAgain(a spec.Address, gen uint64) {
	inst := e.insts[a]
	if inst == nil || inst.gen != gen || e.stopping || e.busy[a] || !inst.sup.checked() || inst.sup.healthy() ||
		inst.sup.isPaused() || !inst.liveHeldBy.IsZero() || !livenessMayStop(inst) {
		return
	}
	e.liveness(inst)
}

// livenessMayStop says whether a failing check may stop inst: it has a
// restart policy, and orch is not stopping it already (by liveness, or by
// a restart that a failing check must not turn into a crash: the process
// on its way out stops answering).
func livenessMayStop(inst *instance) bool {
	return inst.res != nil && inst.res.Restart.Policy != spec.RestartNever && !inst.sup.killing() && !inst.sup.restarting()
}

// ownWindow is how long r's health check takes to find it unhealthy from
// healthy: retries probes an interval apart, the last one up to its
// timeout.
func ownWindow(r *spec.Resource) time.Duration {
	if r == nil || r.Health == nil {
		return time.Second
	}
	interval, retries := probeTiming(r.Health)
	return time.Duration(retries)*interval + r.Health.Timeout
}
