package engine

import (
	"context"
	"errors"
	"runtime/debug"
	"runtime/metrics"

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
	restore := relaxGCForShutdown()
	err := e.stopAll()
	restore()
	close(e.dead)
	e.bg.Wait()
	return err
}

// stopWorkers bounds how many stops of orch up's shutdown run at once.
// The process runtime sends every stop signal of a batch in one loop
// (providers.Presignaler), to its children and to the daemons it adopted,
// and counts each stop's timeout from its signal, so the bound only
// paces the waits and the bookkeeping after each exit: 10,000 adopted
// daemons stopped, each by a goroutine of its own polling /proc for its
// exit, in 16.3-18.0 s at a peak RSS of 287-296 MB; 512 at a time, in
// 8.1-8.6 s at 232-238 MB. The stops waiting for a worker are
// presignalled with the first batch (executor.PresignalReady): bounded
// without it, orch up's stop of 1,000 children signalled the last 488
// one at a time, as workers freed. A runtime without presignalling
// (Docker, systemd) has its stops sent in turn by the workers, 512 at
// once.
const stopWorkers = 512

// stopAll is orch up's shutdown, a plan like any other: planner.StopAll
// plans a Stop of every daemon and module recorded running, and the
// executor's walker carries it out, dependents first (transitively,
// through jobs and what is not running), independent ones at once, each
// with the stop settings it was applied with, recording each stopped. A
// second interrupt (Options.Hurry) makes the stops SIGKILL.
func (e *Engine) stopAll() error {
	stored := e.preparedStored()
	if stored == nil {
		list, err := e.opts.Store.List()
		if err != nil {
			return err
		}
		stored = executor.StoredOf(list)
	}
	p := planner.StopAll(stored)
	n := 0
	for _, c := range p.Changes {
		if c.Action == planner.Stop {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	// What the stops tidy once the daemons are gone (their cgroups, the
	// runtime's registry lines) is left to the end, or to outlive orch
	// (providers.LaterTidier): orch exits when its daemons have.
	var flushes []func() error
	for _, pr := range e.opts.Providers {
		if t, ok := pr.(providers.LaterTidier); ok {
			flushes = append(flushes, t.TidyLater(e.opts.StateDir))
		}
	}
	ex := &executor.Executor{Providers: e.drainingProviders(e.opts.Providers), Store: e.opts.Store, Parallelism: min(n, stopWorkers), PresignalReady: true,
		Project: e.project(), StateDir: e.opts.StateDir, Progress: e.stopProgress, Kill: e.opts.Hurry}
	_, err := ex.Apply(context.Background(), e.cfg, p)
	for _, flush := range flushes {
		if ferr := flush(); ferr != nil {
			e.emit(Event{Type: EventError, Detail: ferr.Error()})
			err = errors.Join(err, ferr)
		}
	}
	return err
}

// stopProgress turns the steps of the shutdown plan into events.
func (e *Engine) stopProgress(ev executor.StepEvent) {
	if ev.Action != planner.Stop || ev.Skipped || ev.Running {
		return
	}
	if !ev.Done {
		e.emit(Event{Type: EventStopping, Addr: ev.Addr})
		return
	}
	if ev.Err != nil {
		e.emit(Event{Type: EventError, Addr: ev.Addr, Detail: ev.Err.Error()})
		return
	}
	out := Event{Type: EventStopped, Addr: ev.Addr, Pid: ev.Observed.Pid, Signal: ev.Observed.Signal}
	if ev.Observed.State == providers.StateExited && ev.Observed.Signal == "" {
		code := ev.Observed.ExitCode
		out.ExitCode = &code
	}
	if ev.Killed {
		out.Detail = "killed"
	}
	e.emit(out)
}

// appliedStopOf is the stop signal and timeout rec's instance was applied
// with: an edit of its stop block that is not applied yet does not change
// how it is stopped.
func appliedStopOf(rec state.Instance) spec.Stop {
	snap, err := planner.DecodeSnapshot(rec.Config)
	if err != nil {
		snap = nil // unreadable: the defaults
	}
	sig, timeout := executor.StopSettings(snap)
	return spec.Stop{Signal: sig, Timeout: timeout}
}

// shutdownHeadroom is how much a shutdown may allocate before the
// collector runs (relaxGCForShutdown).
const shutdownHeadroom = 64 << 20

// relaxGCForShutdown holds the collector back during the shutdown, until
// the returned function is called. A shutdown allocates about 30 KB a
// daemon (the records listed and decoded, the stop records encoded, the
// events), nearly all of it garbage at once, while the live heap is a few
// MB: with GOGC=100 the collector ran in the middle of a stop of 100, 8.6%
// of orch up's CPU in it (perf), on the cores the dying daemons need.
// Meanwhile the collector runs only once the memory in use has grown by
// shutdownHeadroom (a memory limit in place of GOGC; a lower GOMEMLIMIT
// stays): a shutdown of 10,000 still collects, a few times instead of
// dozens.
func relaxGCForShutdown() (restore func()) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	inUse := int64(s[0].Value.Uint64() - s[1].Value.Uint64())
	oldLimit := debug.SetMemoryLimit(-1) // -1 reads it
	debug.SetMemoryLimit(min(oldLimit, inUse+shutdownHeadroom))
	oldPercent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	}
}
