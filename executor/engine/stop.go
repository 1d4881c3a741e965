package engine

import (
	"context"
	"sync"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// shutdown stops everything once ctx is done: supervision first (timers,
// watches, health checks), then the applies in flight are let finish (they
// start nothing new), then every daemon recorded running is stopped,
// dependents before what they depend on, independent ones in parallel,
// each within its stop timeout. Their records stay, marked stopped.
func (e *Engine) shutdown() error {
	e.stopping = true
	e.settle("the engine is stopping")
	e.emit(Event{Type: EventShutdown, Detail: "stopping everything, dependents first"})
	for _, inst := range e.insts {
		if inst.timer != nil {
			inst.timer.Stop()
		}
		if inst.cancel != nil {
			inst.cancel()
		}
	}
	for e.inflight > 0 {
		(<-e.msgs)()
	}
	err := e.stopAll()
	close(e.dead)
	e.bg.Wait()
	return err
}

type stopTarget struct {
	rec     state.Instance
	deps    []spec.Address // what it depends on, among the targets
	waitFor int            // targets that depend on it and have not stopped yet
}

func (e *Engine) stopAll() error {
	stored, err := e.opts.Store.List()
	if err != nil {
		return err
	}
	targets := map[spec.Address]*stopTarget{}
	for _, rec := range stored {
		if rec.Status == executor.StatusRunning && len(rec.Handle) > 0 && supervised(rec.Addr.Kind) {
			targets[rec.Addr] = &stopTarget{rec: rec}
		}
	}
	recs := make(map[spec.Address]state.Instance, len(stored))
	for _, rec := range stored {
		recs[rec.Addr] = rec
	}
	// Edges between targets go through what is not stopped here (a
	// completed job, a daemon that is not running): an app that depends on
	// a migrate job that depends on the database stops before the
	// database. behind memoises, for each address that is not a target,
	// the targets it depends on, transitively.
	behind := map[spec.Address][]spec.Address{}
	var through func(a spec.Address, rec *state.Instance, seen map[spec.Address]bool) []spec.Address
	through = func(a spec.Address, rec *state.Instance, seen map[spec.Address]bool) []spec.Address {
		var out []spec.Address
		for _, d := range e.dependsOnAddr(a, rec) {
			if d == a || seen[d] {
				continue
			}
			seen[d] = true
			if targets[d] != nil {
				out = append(out, d)
				continue
			}
			ts, ok := behind[d]
			if !ok {
				var drec *state.Instance
				if r, ok := recs[d]; ok {
					drec = &r
				}
				ts = through(d, drec, map[spec.Address]bool{d: true})
				behind[d] = ts
			}
			for _, t := range ts {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
		return out
	}
	for a, t := range targets {
		rec := t.rec
		for _, d := range through(a, &rec, map[spec.Address]bool{a: true}) {
			if dt := targets[d]; dt != nil && d != a {
				t.deps = append(t.deps, d)
				dt.waitFor++
			}
		}
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		stopped []spec.Address
	)
	var stop func(t *stopTarget)
	stop = func(t *stopTarget) {
		defer wg.Done()
		if e.stopOne(t.rec) {
			mu.Lock()
			stopped = append(stopped, t.rec.Addr)
			mu.Unlock()
		}
		mu.Lock()
		var next []*stopTarget
		for _, d := range t.deps {
			dt := targets[d]
			dt.waitFor--
			if dt.waitFor == 0 {
				next = append(next, dt)
			}
		}
		mu.Unlock()
		for _, n := range next {
			wg.Add(1)
			go stop(n)
		}
	}
	var first []*stopTarget
	for _, t := range targets {
		if t.waitFor == 0 {
			first = append(first, t)
		}
	}
	for _, t := range first {
		wg.Add(1)
		go stop(t)
	}
	wg.Wait()
	if len(stopped) == 0 {
		return nil
	}
	return e.opts.Store.Update(func(tx *state.Tx) error {
		for _, a := range stopped {
			inst, err := tx.Get(a)
			if err != nil {
				continue
			}
			inst.Status, inst.LastError = StatusStopped, ""
			if err := tx.Put(inst); err != nil {
				return err
			}
		}
		return nil
	})
}

// dependsOnAddr lists what a depends on: from the configuration when it
// is declared, else from the configuration its record (when there is
// one) was applied with.
func (e *Engine) dependsOnAddr(a spec.Address, rec *state.Instance) []spec.Address {
	if e.cfg.Resource(a) != nil {
		return e.cfg.Graph.DependenciesOf(a)
	}
	if rec != nil {
		if snap, err := planner.DecodeSnapshot(rec.Config); err == nil {
			return snap.DependsOn
		}
	}
	return nil
}

// stopOne stops one daemon with its stop signal and timeout, removes what
// its provider leaves behind, and reports whether it is gone.
func (e *Engine) stopOne(rec state.Instance) bool {
	p := e.opts.Providers[rec.Runtime.Type]
	if p == nil {
		return false
	}
	sig, timeout := appliedStop(rec)
	rt := e.runtime(rec.Runtime)
	e.emit(Event{Type: EventStopping, Addr: rec.Addr})
	// A bound on top of the timeout: Stop kills after it, and waits for
	// the kill too.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+15*time.Second)
	defer cancel()
	req := providers.StopRequest{Runtime: rt, Addr: rec.Addr, Handle: rec.Handle, Signal: sig, Timeout: timeout}
	if e.hurried() {
		req.Signal, req.Timeout = sigKill, 0
	}
	var resp providers.StopResponse
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err = p.Stop(ctx, req)
	}()
	select {
	case <-done:
	case <-e.opts.Hurry:
		if req.Signal != sigKill {
			kill := req
			kill.Signal, kill.Timeout = sigKill, 0
			p.Stop(ctx, kill)
		}
		<-done
	}
	if err != nil {
		e.emit(Event{Type: EventError, Addr: rec.Addr, Detail: err.Error()})
		return false
	}
	if d, ok := p.(providers.Deleter); ok {
		d.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: rec.Addr, Handle: rec.Handle})
	}
	ev := Event{Type: EventStopped, Addr: rec.Addr, Pid: resp.Observed.Pid, Signal: resp.Observed.Signal}
	if resp.Observed.State == providers.StateExited && resp.Observed.Signal == "" {
		code := resp.Observed.ExitCode
		ev.ExitCode = &code
	}
	if resp.Killed {
		ev.Detail = "killed after " + timeout.String()
	}
	e.emit(ev)
	return true
}

// appliedStopOf is appliedStop as a spec.Stop.
func appliedStopOf(rec state.Instance) spec.Stop {
	sig, timeout := appliedStop(rec)
	return spec.Stop{Signal: sig, Timeout: timeout}
}

// appliedStop is the stop signal and timeout rec's instance was applied
// with: an edit of its stop block that is not applied yet does not change
// how it is stopped.
func appliedStop(rec state.Instance) (spec.Signal, time.Duration) {
	snap, err := planner.DecodeSnapshot(rec.Config)
	if err != nil {
		return executor.StopSettings(nil)
	}
	return executor.StopSettings(snap)
}

var sigKill = spec.Signal{Name: "SIGKILL", Num: 9}

// hurried says whether a second interrupt asked for the stops to kill.
func (e *Engine) hurried() bool {
	select {
	case <-e.opts.Hurry:
		return e.opts.Hurry != nil
	default:
		return false
	}
}
