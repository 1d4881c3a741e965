package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// observePoll is how often a daemon is observed when its provider cannot
// watch (no providers.Watcher).
const observePoll = 250 * time.Millisecond

func (e *Engine) runtime(a spec.Address) *spec.Runtime {
	if rt := e.cfg.Runtime(a); rt != nil {
		return rt
	}
	return &spec.Runtime{Addr: a, Kind: a.Type, Name: a.Name}
}

// supervise starts a new generation for inst running as handle: a watch
// for its exit and, when it has a health check, a monitor.
func (e *Engine) supervise(inst *instance, handle providers.Handle) {
	if inst.cancel != nil {
		inst.cancel()
	}
	inst.gen++
	e.unholdLiveness(inst)
	gen, addr := inst.gen, inst.addr
	inst.handle = handle
	inst.portUp, inst.portProbe, inst.portStop = 0, 0, nil // the generation's context ends its look
	e.illegal(addr, inst.sup.start())
	inst.own = ownUnknown
	inst.started = time.Now()
	ctx, cancelCtx := context.WithCancel(e.ctx)
	inst.cancel = cancelCtx
	inst.genCtx = ctx
	p := e.opts.Providers[inst.rt.Type]
	if p == nil {
		return
	}
	rt := e.runtime(inst.rt)
	exited := func(obs providers.Observed) { e.post(func() { e.exited(addr, gen, obs) }) }
	if n, ok := p.(providers.ExitNotifier); ok {
		// No goroutine waits: the provider calls back, on a goroutine
		// of its own that must not block, hence postNoWait.
		cancelWatch, err := n.NotifyExit(providers.WatchRequest{Runtime: rt, Addr: addr, Handle: handle}, func(obs providers.Observed) {
			e.postNoWait(func() { e.exited(addr, gen, obs) })
		})
		if err == nil {
			// The watch ends with the generation, where inst.cancel is
			// called (its end, a new generation, the shutdown), on the
			// engine's goroutine: not through context.AfterFunc, which
			// held about 600 bytes an instance while it ran and, at the
			// shutdown's cancel of every generation at once, started a
			// goroutine each (a stack each, fresh memory, before the
			// first stop signal; issue 12).
			inst.cancel = func() {
				cancelCtx()
				if cancelWatch != nil {
					cancelWatch()
					cancelWatch = nil
				}
			}
		} else {
			e.emit(Event{Type: EventError, Addr: addr, Detail: "cannot watch: " + err.Error()})
		}
	} else if w, ok := p.(providers.Watcher); ok {
		resp, err := w.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: addr, Handle: handle})
		if err == nil {
			e.bg.Add(1)
			go func() {
				defer e.bg.Done()
				if obs, ok := <-resp.Exited; ok {
					exited(obs)
				}
			}()
		} else {
			e.emit(Event{Type: EventError, Addr: addr, Detail: "cannot watch: " + err.Error()})
		}
	} else {
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			t := time.NewTicker(observePoll)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{addr: handle}})
				if o := resp.Objects[addr]; err == nil && o.Gone() {
					exited(o)
					return
				}
			}
		}()
	}
	if hc, ok := p.(providers.HealthChecker); ok && e.ownHealthPossible(inst.res) {
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			e.followOwnHealth(ctx, hc, rt, addr, handle, gen)
		}()
	}
	e.monitorHealth(ctx, inst, false)
	if inst.res == nil || inst.res.Health == nil {
		e.releaseLiveness() // ready as it runs: what it held may be checked again
	}
}

// monitorHealth starts the health monitor of inst's current generation
// under ctx (cancelled with the generation), from ready or starting;
// inst.healthCancel suspends it (pause).
func (e *Engine) monitorHealth(ctx context.Context, inst *instance, ready bool) {
	r := inst.res
	if r == nil {
		return
	}
	h := r.Health
	if inst.healthOfSet {
		h = inst.healthOf
	}
	if h == nil {
		return
	}
	hctx, cancel := context.WithCancel(e.stats.probeContext(ctx, inst.addr))
	inst.healthCancel = cancel
	addr, gen, started := inst.addr, inst.gen, inst.started
	handle, rt := inst.handle, e.runtime(inst.rt)
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		report := func(ok bool, detail string) {
			e.post(func() { e.health(addr, gen, ok, detail) })
		}
		if h.Kind == spec.HealthNotify {
			if nf, ok := e.opts.Providers[rt.Addr.Type].(providers.NotifyFollower); ok {
				followNotify(hctx, nf, h, rt, addr, handle, started, ready, report)
				return
			}
			e.monitorNotify(hctx, h, r, rt, handle, started, ready, report)
			return
		}
		failing := func(detail string) {
			e.post(func() { e.stillStarting(addr, gen, detail) })
		}
		monitorFrom(hctx, h, r, started, ready, report, failing)
	}()
}

// exited handles the end of generation gen of addr.
func (e *Engine) exited(addr spec.Address, gen uint64, obs providers.Observed) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || !inst.sup.running() || e.stopping {
		return // stale
	}
	if e.busy[addr] {
		// The executor still acts on it (the apply that started it goes
		// on): afterApply takes this exit once that apply ends.
		inst.exitBusy, inst.exitBusyGen = &obs, gen
		e.readyResolved(addr, inst.handle, fmt.Errorf("it exited (%s)", obs.Ended()))
		return
	}
	cause := inst.sup.end()
	inst.cancel()
	e.unholdLiveness(inst)
	ev := Event{Type: EventExited, Addr: addr, Pid: obs.Pid, Signal: obs.Signal}
	e.readyResolved(addr, inst.handle, fmt.Errorf("it exited (%s)", obs.Ended()))
	if obs.State == providers.StateExited && obs.Signal == "" {
		code := obs.ExitCode
		ev.ExitCode = &code
	}
	if obs.State == providers.StateMissing {
		ev.Detail = "gone; its exit status is unknown"
	}
	if obs.Error != "" {
		ev.Detail = obs.Error
	}
	if cause == stopLiveness && ev.Detail == "" {
		// orch was stopping it: its exit code says how it took the
		// signal, not why it ended (an nginx "exited code=0" read as its
		// own). Worded so for an exit orch's signal did not cause either
		// (a kill -9 that its unhealthy verdict overtook, seen late for
		// an adopted daemon).
		ev.Detail = "orch was stopping it: unhealthy"
	}
	if cause == stopRestart {
		ev.Detail = "restart requested"
		e.emit(ev)
		e.restart(addr, gen)
		// What waited for the restart's stop (callFree) waits on for its
		// start when that is under way (busy), else acts now.
		e.free(addr)
		return
	}
	e.emit(ev)
	failed := cause == stopLiveness || obs.Signal != "" || obs.ExitCode != 0 || obs.State != providers.StateExited
	e.down(inst, failed, time.Since(inst.started))
	// The restarted process ended before its first verdict: a signal
	// that waited for it finds it not running.
	e.endVerdictWait(inst)
}

// endVerdictWait ends what a signal for inst waits for after a restart
// (verdictAwaited): the new process's first verdict came, or there is no
// such process; it wakes the signals waiting. A verdict on the process a
// restart is still stopping is not that one.
func (e *Engine) endVerdictWait(inst *instance) {
	if inst.verdictAwaited && !inst.sup.restarting() {
		inst.verdictAwaited = false
		e.free(inst.addr)
	}
}

// down applies the restart policy to a daemon that stopped running after
// uptime; failed says whether it counts as a failure.
func (e *Engine) down(inst *instance, failed bool, uptime time.Duration) {
	r := inst.res
	if r == nil || e.paused || inst.sup.held() {
		return
	}
	rp := r.Restart
	switch {
	case rp.Policy == spec.RestartNever:
		return
	case rp.Policy == spec.RestartOnFailure && !failed:
		return
	}
	if uptime >= stableAfter(rp) {
		inst.attempt = 0
	}
	now := time.Now()
	if !inst.history.allow(now, rp.Window, rp.MaxRestarts) {
		why := fmt.Sprintf("crash loop: it was restarted %d times within %s and stopped again; not restarting it until its configuration changes", rp.MaxRestarts, rp.Window)
		e.emit(Event{Type: EventFailed, Addr: inst.addr, Detail: why})
		e.cascadeFailed(inst.addr)
		e.markFailed(inst.addr, why)
		inst.status = executor.StatusFailed
		return
	}
	d := Backoff(rp, inst.attempt, e.opts.Rand())
	inst.attempt++
	e.emit(Event{Type: EventRestarting, Addr: inst.addr, Detail: "in " + d.Round(time.Millisecond).String()})
	gen := inst.gen
	if d == 0 {
		e.restart(inst.addr, gen)
		return
	}
	inst.timer = time.AfterFunc(d, func() { e.post(func() { e.restart(inst.addr, gen) }) })
}

func (e *Engine) markFailed(a spec.Address, why string) {
	if err := executor.MarkFailed(e.opts.Store, e.cfg.Redactor(), a, why); err != nil {
		e.emit(Event{Type: EventError, Addr: a, Detail: "recording the failure: " + err.Error()})
	}
}

// restart starts generation gen's successor: a one-change apply (start),
// which records the new handle, after sweeping what the old process group
// may have left behind.
func (e *Engine) restart(addr spec.Address, gen uint64) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || inst.sup.running() || inst.sup.held() || e.stopping || e.paused || e.busy[addr] {
		return
	}
	inst.timer = nil
	desired := e.desired[addr]
	if inst.res == nil || desired == nil {
		return
	}
	p := planner.Restart(inst.res, desired,
		&planner.Stored{Addr: addr, Runtime: inst.rt, ConfigHash: inst.hash, Handle: inst.handle, Status: executor.StatusRunning},
		planner.Reason{Kind: planner.ReasonRestartPolicy, Arg: inst.res.Restart.Policy.String()})
	p.ConfigHash = e.cfg.Hash
	e.busy[addr] = true
	if !inst.parked { // trying again to reach the runtime is not one more restart
		inst.restarts++
	}
	prov, rt, old, stop := e.opts.Providers[inst.rt.Type], e.runtime(inst.rt), inst.handle, inst.stopSettings()
	sweep := func() {
		if prov != nil && len(old) > 0 {
			prov.Stop(context.WithoutCancel(e.ctx), providers.StopRequest{Runtime: rt, Addr: addr, Handle: old, Signal: spec.Signal{Name: "SIGKILL", Num: 9}, Timeout: stop.Timeout})
		}
	}
	e.apply(p, sweep, func(res *executor.Result, err error) {
		e.afterApply(p, res, err) // a failed start counts as a crash there
		if res != nil && len(res.Outcomes) == 1 && res.Outcomes[0].Err == nil && res.Outcomes[0].Skipped.IsZero() {
			e.restartWithWhenReady(addr, p)
			if e.hasBlocked {
				// What a failure blocked may start now.
				e.hasBlocked = false
				e.again = true
			}
		}
		e.promote() // what waited for it to run
		if e.again {
			e.reconcile()
		}
	})
}

// stillStarting says that generation gen of addr, not healthy yet, keeps
// failing its health check (EventStillStarting).
func (e *Engine) stillStarting(addr spec.Address, gen uint64, detail string) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || !inst.sup.running() || inst.sup.healthy() || e.stopping || inst.sup.isPaused() {
		return
	}
	e.emit(Event{Type: EventStillStarting, Addr: addr, Detail: detail})
}

// health handles a transition of generation gen's health check.
func (e *Engine) health(addr spec.Address, gen uint64, ok bool, detail string) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || !inst.sup.running() || e.stopping || inst.sup.isPaused() {
		return // stale, or a probe that was in flight when it was paused
	}
	e.illegal(addr, inst.sup.verdict(ok))
	e.endVerdictWait(inst) // a signal that waited for it goes now
	if ok {
		e.unholdLiveness(inst)
		e.emit(Event{Type: EventHealthy, Addr: addr})
		defer e.releaseLiveness()
		if p := inst.withPending; p != nil {
			inst.withPending = nil
			e.restartWith(addr, p)
		}
		e.readyResolved(addr, inst.handle, nil)
		e.promote()
		return
	}
	if inst.sickBusy == "" || !e.busy[addr] {
		e.emit(Event{Type: EventUnhealthy, Addr: addr, Detail: detail})
	}
	e.readyResolved(addr, inst.handle, errors.New(detail))
	if e.busy[addr] {
		// The apply that started it still acts on it (a
		// create_before_destroy replace waits for it to be ready, and
		// reverts it): afterApply acts once the apply ends.
		inst.sickBusy = detail
		return
	}
	if !livenessMayStop(inst) {
		return
	}
	// Liveness: stop it; its watch reports the exit, which counts as a
	// failure and restarts it per its policy; unless a dependency that
	// is not ready holds it (liveness.go).
	e.liveness(inst)
}

// restartWithWhenReady restarts the restart_with dependents of dep once
// dep is ready again: at once when it has no health check (or is healthy
// already), else when its health check passes.
func (e *Engine) restartWithWhenReady(dep spec.Address, p *planner.Plan) {
	inst := e.insts[dep]
	if inst != nil && inst.res != nil && inst.res.Health != nil && !inst.sup.healthy() {
		inst.withPending = p
		return
	}
	e.restartWith(dep, p)
}

// restartWith restarts the running daemons that declare restart_with on
// dep, which was just restarted or replaced by the engine, unless plan p
// (the one that did it) changed them too.
func (e *Engine) restartWith(dep spec.Address, p *planner.Plan) {
	if e.stopping || e.paused {
		return
	}
	defer e.cascadeReady(dep)
	for _, inst := range e.insts {
		if inst.res == nil || !inst.sup.running() || inst.sup.restarting() || e.busy[inst.addr] || !hasAddr(inst.res.RestartWith, dep) {
			continue
		}
		if c := p.Change(inst.addr); c != nil && c.Action != planner.NoOp {
			continue
		}
		e.illegal(inst.addr, inst.sup.stopFor(stopRestart))
		inst.verdictAwaited = true
		e.emit(Event{Type: EventRestarting, Addr: inst.addr, Detail: "now, with " + dep.String() + " (restart_with)"})
		e.stopAsync(inst, inst.stopSettings().Signal)
	}
}

func hasAddr(as []spec.Address, a spec.Address) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// stopSettings is how inst's running process is stopped: with the
// settings it was applied with, else (not recorded yet) its declared ones.
func (inst *instance) stopSettings() spec.Stop {
	if inst.applied.Signal.Name != "" {
		return inst.applied
	}
	if inst.res != nil {
		return inst.res.Stop
	}
	return spec.Stop{Signal: spec.SIGTERM, Timeout: spec.DefaultStopTimeout}
}
