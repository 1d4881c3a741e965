package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// The methods of this file are the engine's control surface, what the
// agent API (package executor/agent) serves. Each hands a closure to the
// controller goroutine and waits for it: none touches the engine's books
// from the caller's goroutine. They are safe for concurrent use, may be
// called before Run (they wait for it) and fail with ErrStopping once Run
// is stopping everything.

// ErrStopping is returned by the control methods once the engine stops.
var ErrStopping = errors.New("the engine is stopping")

// ErrStalePlan is returned by Apply when the plan made now is not the one
// the caller reviewed (ApplyRequest.Fingerprint).
var ErrStalePlan = errors.New("the plan changed since it was shown: what runs, the state or the configuration moved; plan again and review it")

// ErrPaused is returned by Restart after an API destroy.
var ErrPaused = errors.New("everything was destroyed through the agent; nothing is supervised until orch apply")

// call runs f on the controller goroutine and returns once it ran.
func (e *Engine) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.msgs <- func() { f(); close(done) }:
	case <-e.dead:
		return ErrStopping
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-e.dead:
		select {
		case <-done:
			return nil
		default:
			return ErrStopping
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// InstanceStatus is what the engine knows of one instance, for orch
// status: its record, what runs, and the engine's own books.
type InstanceStatus struct {
	Addr       spec.Address
	Runtime    spec.Address
	Status     string // stored: running, completed, failed, stopped; "waiting" when not started yet, "blocked" when what it waits for failed or is held, "held" when orch stop stopped it, "pending" when the round under way has not started it yet
	Observed   providers.Observed
	Supervised bool   // this engine watches it run
	Health     string // "" (no health check, or not running), "starting", "healthy", "unhealthy", "paused"
	Paused     bool   // orch pause stopped it"
	Restarts   int    // restarts by this engine (policy, liveness, requested)
	Waiting    string // what its start waits for
	// HeldBy is the dependency, not ready, for which liveness does not
	// restart it while it is unhealthy (liveness.go); zero otherwise.
	HeldBy     spec.Address
	ConfigHash string
	LastError  string
	UpdatedAt  time.Time
	// Service and Route: its service name and proxy route, as declared;
	// Registered: in DNS and on the proxy now (ready); otherwise
	// Unpublished says why not, when it runs ("not listening on port
	// 8080", "not healthy").
	Service     string
	Route       string
	Registered  bool
	Unpublished string
}

// Status returns every recorded instance, plus declared ones whose start
// waits, sorted by address. What runs is observed through the providers
// after the books were read, outside the controller goroutine; the
// instances of a runtime that cannot be observed (its backend is away)
// read as StateUnknown, and the others are reported all the same.
func (e *Engine) Status(ctx context.Context) ([]InstanceStatus, error) {
	var (
		out        []InstanceStatus
		stored     []state.Instance
		unrecorded []state.Instance // started, not recorded yet
		cfg        *spec.Config
		ferr       error
	)
	err := e.call(ctx, func() {
		if e.stopping {
			ferr = ErrStopping
			return
		}
		stored, ferr = e.opts.Store.List()
		if ferr != nil {
			return
		}
		cfg = e.cfg // immutable: read outside the controller below
		seen := map[spec.Address]bool{}
		for _, rec := range stored {
			seen[rec.Addr] = true
			st := InstanceStatus{Addr: rec.Addr, Runtime: rec.Runtime, Status: rec.Status, ConfigHash: rec.ConfigHash,
				LastError: rec.LastError, UpdatedAt: rec.UpdatedAt}
			if inst := e.insts[rec.Addr]; inst != nil {
				e.books(inst, &st)
			}
			out = append(out, st)
		}
		for a, inst := range e.insts {
			switch {
			case seen[a] || inst.res == nil:
			case e.unstarted(a, inst):
				seen[a] = true
				out = append(out, e.unstartedStatus(a, inst.rt, inst))
			case inst.waiting != "":
				st := InstanceStatus{Addr: a, Runtime: inst.rt, Status: planner.StatusWaiting.String()}
				if !inst.blockedBy.IsZero() {
					st.Status = planner.StatusBlocked.String()
				}
				e.books(inst, &st)
				out = append(out, st)
			case inst.sup.running() && len(inst.handle) > 0:
				// Started, its record not written yet (a start's
				// record is released: it goes in the next group
				// commit): observed by the handle the engine holds.
				st := InstanceStatus{Addr: a, Runtime: inst.rt, Status: planner.StatusRunning.String()}
				e.books(inst, &st)
				out = append(out, st)
				unrecorded = append(unrecorded, state.Instance{Addr: a, Runtime: inst.rt, Handle: inst.handle, Status: planner.StatusRunning.String()})
			}
		}
		// The rest of the round under way: declared, queued behind the
		// others or being started, with neither a record nor a process
		// yet (a round of 2,000 left half of them out of orch status).
		for a := range e.busy {
			if !seen[a] && e.insts[a] == nil && e.unstarted(a, nil) {
				out = append(out, e.unstartedStatus(a, cfg.Resource(a).Runtime, nil))
			}
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	obs := executor.ObserveRecorded(ctx, e.opts.Providers, cfg, append(stored, unrecorded...))
	for i := range out {
		if o, ok := obs[out[i].Addr]; ok {
			out[i].Observed = o
		}
	}
	sortStatus(out)
	return out, nil
}

// unstartedStatus is the status of a, unstarted (observe.go): pending,
// or running when it is a job whose process runs. inst is its books, nil
// when it has none.
func (e *Engine) unstartedStatus(a, rt spec.Address, inst *instance) InstanceStatus {
	st := InstanceStatus{Addr: a, Runtime: rt, Status: planner.StatusPending.String()}
	if inst != nil {
		e.books(inst, &st)
	}
	e.stats.mu.Lock()
	run, ok := e.jobRun(a)
	e.stats.mu.Unlock()
	if ok {
		st.Status, st.Observed = planner.StatusRunning.String(), run
	}
	return st
}

func (e *Engine) books(inst *instance, st *InstanceStatus) {
	st.Supervised, st.Restarts, st.Waiting = inst.sup.running(), inst.restarts, inst.waiting
	if inst.sup.held() && !inst.sup.running() {
		st.Status, st.Waiting = planner.StatusHeld.String(), HeldWhy
	}
	e.serviceBooks(inst, st)
	st.Paused = inst.sup.running() && inst.sup.isPaused()
	h := inst.health()
	st.Health = h.String()
	if h == HealthUnhealthy {
		st.HeldBy = inst.liveHeldBy
	}
}

// health is inst's Health: none without a health check (its declared
// one, or its backend's own) or while it does not run.
func (inst *instance) health() Health {
	if !inst.sup.running() || !(inst.res != nil && inst.res.Health != nil || inst.own == ownDeclared) {
		return HealthNone
	}
	switch {
	case inst.sup.isPaused():
		return HealthPaused
	case inst.sup.healthy():
		return HealthHealthy
	case inst.sup.checked():
		return HealthUnhealthy
	}
	return HealthStarting
}

func sortStatus(s []InstanceStatus) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Addr.Less(s[j-1].Addr); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Restart restarts daemon a now, whatever its restart policy: a running
// one is stopped with its stop signal and started again at once; one that
// exited, or that a crash loop marked failed, is started. Its backoff and
// crash-loop history start afresh. Restart returns once the restart is
// under way; the started (or failed) event tells when it is done.
func (e *Engine) Restart(ctx context.Context, a spec.Address) error {
	var rerr error
	if err := e.callFree(ctx, func() spec.Address { return a }, func() { rerr = e.requestRestart(a) }); err != nil {
		return err
	}
	return rerr
}

func (e *Engine) requestRestart(a spec.Address) error {
	switch {
	case e.stopping:
		return ErrStopping
	case e.paused:
		return ErrPaused
	case !supervised(a.Kind) && a.Kind != spec.KindJob:
		return fmt.Errorf("%s is a %s: only daemons, jobs and modules can be restarted", a, a.Kind)
	}
	inst := e.insts[a]
	if inst == nil || inst.res == nil || e.desired[a] == nil {
		return fmt.Errorf("%s is not declared, or not applied yet", a)
	}
	if e.busy[a] {
		// Reached only from a cascade's later members: a top-level
		// restart waits for the change first (callFree).
		return fmt.Errorf("%s is being changed right now; try again", a)
	}
	if inst.sup.held() {
		return e.requestStart(a) // orch restart of what orch stop held: its start
	}
	inst.history, inst.attempt = nil, 0
	if inst.timer != nil {
		inst.timer.Stop()
		inst.timer = nil
	}
	if !inst.sup.running() {
		if _, waiting := e.deferred[a]; waiting {
			return fmt.Errorf("%s has not started yet: it waits %s", a, inst.waiting)
		}
		e.restart(a, inst.gen)
		return nil
	}
	if inst.sup.restarting() {
		return nil // already under way
	}
	e.illegal(a, inst.sup.stopFor(stopRestart))
	inst.verdictAwaited = true
	e.stopAsync(inst, inst.stopSettings().Signal)
	return nil
}

// stopAsync stops inst's current process in the background; its watch
// reports the exit.
func (e *Engine) stopAsync(inst *instance, sig spec.Signal) {
	prov, rt, h, addr, timeout := e.opts.Providers[inst.rt.Type], e.runtime(inst.rt), inst.handle, inst.addr, inst.stopSettings().Timeout
	if prov == nil {
		return
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.drainBefore(context.WithoutCancel(e.ctx), addr, h)
		if _, err := prov.Stop(context.WithoutCancel(e.ctx), providers.StopRequest{Runtime: rt, Addr: addr, Handle: h, Signal: sig, Timeout: timeout}); err != nil {
			e.emit(Event{Type: EventError, Addr: addr, Detail: "stopping: " + err.Error()})
		}
	}()
}

// Signal sends sig to daemon a, which must be running, through its
// provider's optional providers.Signaler.
func (e *Engine) Signal(ctx context.Context, a spec.Address, sig spec.Signal) error {
	return e.SignalMain(ctx, a, sig, false)
}

// SignalMain is Signal to the daemon's main process alone when mainOnly
// (orch signal -main), as a reload does.
func (e *Engine) SignalMain(ctx context.Context, a spec.Address, sig spec.Signal, mainOnly bool) error {
	var (
		req  providers.SignalRequest
		prov providers.Provider
		ferr error
	)
	// A restart stopping the process: the signal is for the one that
	// follows, not for the one on its way out (signalWaits). A daemon
	// that runs while its round goes on gets it at once.
	err := e.callWhenNot(ctx, func() spec.Address { return a }, e.signalWaits, func() {
		inst := e.insts[a]
		switch {
		case e.stopping:
			ferr = ErrStopping
		case inst == nil || !inst.sup.running():
			ferr = fmt.Errorf("%s is not running", a)
		default:
			prov = e.opts.Providers[inst.rt.Type]
			req = providers.SignalRequest{Runtime: e.runtime(inst.rt), Addr: a, Handle: inst.handle, Signal: sig, MainOnly: mainOnly}
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	s, ok := prov.(providers.Signaler)
	if !ok {
		return fmt.Errorf("the runtime of %s cannot send signals", a)
	}
	if _, err := s.Signal(ctx, req); err != nil {
		return err
	}
	return nil
}

// Plan refreshes and plans cfg (nil: the engine's configuration) as orch
// plan does, on the controller goroutine. It changes nothing.
func (e *Engine) Plan(ctx context.Context, cfg *spec.Config, destroy bool) (*planner.Plan, hcl.Diagnostics, error) {
	var (
		p     *planner.Plan
		diags hcl.Diagnostics
		ferr  error
	)
	err := e.call(ctx, func() {
		if e.stopping {
			ferr = ErrStopping
			return
		}
		if cfg == nil {
			cfg = e.cfg
		}
		p, diags, ferr = e.planFor(cfg, destroy)
	})
	if err == nil {
		err = ferr
	}
	return p, diags, err
}

func (e *Engine) planFor(cfg *spec.Config, destroy bool) (*planner.Plan, hcl.Diagnostics, error) {
	stored, err := e.opts.Store.List()
	if err != nil {
		return nil, nil, fmt.Errorf("reading state: %w", err)
	}
	in, err := executor.Refresh(e.ctx, cfg, stored, e.opts.Providers, e.project(), e.opts.StateDir)
	if err != nil {
		return nil, nil, err
	}
	in.Destroy = destroy
	p, diags := planner.Make(in)
	return p, diags, nil
}

// ApplyRequest is an apply or a destroy asked of a running engine.
type ApplyRequest struct {
	// Config is the configuration to apply, freshly loaded and valid; nil:
	// the engine's. Files are its sources, for diagnostics.
	Config *spec.Config
	Files  map[string]*hcl.File
	// Destroy stops and removes everything, and pauses the engine:
	// nothing is started again (restart policies, edits of the directory)
	// until the next apply.
	Destroy bool
	// Fingerprint, when set, is the fingerprint of the plan the user
	// reviewed: the apply is refused with ErrStalePlan if the plan made
	// now differs.
	Fingerprint string
	// OnPlan, when set, receives the plan before it is applied, on the
	// controller goroutine: it must not block.
	OnPlan func(*planner.Plan)
}

// ApplyResult says what an Apply did.
type ApplyResult struct {
	Plan  *planner.Plan
	Diags hcl.Diagnostics // the plan's; errors mean nothing was applied
	// Summary counts what was done; for an apply (not a destroy) it
	// counts the plan, whose steps the engine may spread over several
	// rounds as dependencies become ready.
	Summary planner.Summary
	// Err is why the round could not complete ("" when it did).
	Err string
}

// Apply plans and applies on the controller goroutine: what orch apply
// and orch destroy do when an agent runs. An apply takes req.Config as the
// engine's configuration (as a reload would), starts even what the
// supervisor left down (an exited daemon with policy never, a crash
// loop), and returns once the round settled: nothing applying, no start
// waiting for a dependency. A destroy also stops supervising. Failures
// of single instances are reported as events, not as an error.
func (e *Engine) Apply(ctx context.Context, req ApplyRequest) (*ApplyResult, error) {
	type reply struct {
		res *ApplyResult
		err error
	}
	ch := make(chan reply, 1)
	send := func(res *ApplyResult, err error) { ch <- reply{res, err} }
	if err := e.call(ctx, func() { e.apiApply(req, send) }); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *Engine) apiApply(req ApplyRequest, send func(*ApplyResult, error)) {
	if e.stopping {
		send(nil, ErrStopping)
		return
	}
	cfg, files := req.Config, req.Files
	if cfg == nil {
		cfg, files = e.cfg, e.files
	}
	p, diags, err := e.planFor(cfg, req.Destroy)
	if err != nil {
		send(nil, err)
		return
	}
	res := &ApplyResult{Plan: p, Diags: diags, Summary: p.Summary()}
	if diags.HasErrors() {
		send(res, nil)
		return
	}
	if req.Fingerprint != "" && p.Fingerprint != req.Fingerprint {
		send(res, ErrStalePlan)
		return
	}
	if req.OnPlan != nil {
		req.OnPlan(p)
	}
	if req.Destroy {
		e.apiDestroy(cfg, res, send)
		return
	}
	e.paused = false
	if cfg.Hash != e.cfg.Hash {
		e.cfg, e.files = cfg, files
		e.followRuntimes()
		for a := range e.insts {
			e.instance(a)
		}
		e.emit(Event{Type: EventConfigReloaded, Detail: "by orch apply"})
	}
	for _, c := range p.Changes {
		if inst := e.insts[c.Addr]; inst != nil && c.Action == planner.Start {
			inst.ran, inst.history, inst.attempt = false, nil, 0
		}
	}
	if !p.HasChanges() {
		send(res, nil)
		return
	}
	e.showPlan = true
	e.waiters = append(e.waiters, func(why string) {
		res.Err = why
		send(res, nil)
	})
	e.reconcile()
}

// apiDestroy pauses supervision, lets the applies in flight end, then
// destroys everything.
func (e *Engine) apiDestroy(cfg *spec.Config, res *ApplyResult, send func(*ApplyResult, error)) {
	e.paused = true
	for _, inst := range e.insts {
		if inst.timer != nil {
			inst.timer.Stop()
			inst.timer = nil
		}
		if inst.cancel != nil {
			inst.cancel()
		}
		inst.sup = supervisor{} // down, and no longer held
	}
	e.deferred = map[spec.Address]*deferral{}
	run := func() {
		if e.stopping {
			send(nil, ErrStopping)
			return
		}
		p, diags, err := e.planFor(cfg, true) // again: applies may have ended since
		if err != nil || diags.HasErrors() {
			if err == nil {
				err = errors.New(renderDiags(diags, e.files))
			}
			send(nil, err)
			return
		}
		res.Plan = p
		if !p.HasChanges() {
			res.Summary = planner.Summary{}
			send(res, nil)
			return
		}
		for _, c := range p.Changes {
			e.busy[c.Addr] = true
		}
		e.apply(p, nil, func(r *executor.Result, err error) {
			e.afterApply(p, r, err)
			if r != nil {
				res.Summary = r.Summary()
			}
			if err != nil {
				res.Err = err.Error()
			}
			send(res, nil)
		})
	}
	if e.inflight > 0 {
		e.idle = append(e.idle, run)
		return
	}
	run()
}

// Pause stops daemon a where it is: SIGSTOP to its whole process group
// (its container), its health checks suspended so that a paused daemon
// is never taken for a dead one; orch status shows it paused. Pausing a
// paused daemon does nothing.
func (e *Engine) Pause(ctx context.Context, a spec.Address) error { return e.pauseResume(ctx, a, true) }

// Resume continues a paused daemon (SIGCONT) and its health checks, from
// where they were (a daemon that was ready is checked as a live one).
func (e *Engine) Resume(ctx context.Context, a spec.Address) error {
	return e.pauseResume(ctx, a, false)
}

func (e *Engine) pauseResume(ctx context.Context, a spec.Address, pause bool) error {
	var (
		req  providers.SignalRequest
		prov providers.Provider
		gen  uint64
		done bool
		ferr error
	)
	err := e.callFree(ctx, func() spec.Address { return a }, func() {
		inst := e.insts[a]
		switch {
		case e.stopping:
			ferr = ErrStopping
		case a.Kind != spec.KindDaemon:
			ferr = fmt.Errorf("%s is a %s: only daemons can be paused", a, a.Kind)
		case inst == nil || !inst.sup.running():
			ferr = fmt.Errorf("%s is not running", a)
		case pause == inst.sup.isPaused():
			done = true // already so
		default:
			prov, gen = e.opts.Providers[inst.rt.Type], inst.gen
			req = providers.SignalRequest{Runtime: e.runtime(inst.rt), Addr: a, Handle: inst.handle, Signal: spec.Signal{Name: "SIGCONT", Num: 18}}
			if pause {
				req.Signal = spec.Signal{Name: "SIGSTOP", Num: 19}
				// Suspend the checks before the process stops answering.
				e.illegal(a, inst.sup.pause())
				if inst.healthCancel != nil {
					inst.healthCancel()
				}
			}
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil || done {
		return err
	}
	s, ok := prov.(providers.Signaler)
	if !ok {
		err = fmt.Errorf("the runtime of %s cannot send signals, so it cannot pause", a)
	} else if _, serr := s.Signal(ctx, req); serr != nil {
		err = serr
	}
	cerr := e.call(ctx, func() {
		inst := e.insts[a]
		if inst == nil || inst.gen != gen || !inst.sup.running() {
			return
		}
		switch {
		case err != nil && pause: // not paused after all
			e.illegal(a, inst.sup.resume())
			e.monitorHealth(inst.genCtx, inst, inst.sup.healthy())
		case err != nil:
		case pause:
			e.emit(Event{Type: EventPaused, Addr: a, Detail: "stopped where it is (its cgroup frozen, or SIGSTOP to its process group); health checks suspended"})
		default:
			e.illegal(a, inst.sup.resume())
			e.monitorHealth(inst.genCtx, inst, inst.sup.healthy())
			e.emit(Event{Type: EventResumed, Addr: a})
		}
	})
	if err == nil {
		err = cerr
	}
	return err
}
