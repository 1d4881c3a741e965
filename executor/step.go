package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

// Stored statuses the executor writes (as their String, in
// state.Instance.Status).
const (
	StatusRunning   = planner.StatusRunning
	StatusFailed    = planner.StatusFailed
	StatusCompleted = planner.StatusCompleted
	StatusStopped   = planner.StatusStopped
)

func (e *Executor) runStep(ctx context.Context, cfg *spec.Config, s *step, rec *groupCommit) error {
	c := s.change
	start := time.Now()
	if e.Progress != nil {
		e.Progress(StepEvent{Addr: c.Addr, Action: c.Action, Kind: s.kind})
	}
	var obs providers.Observed
	var handle providers.Handle
	var killed bool
	var err error
	reported := false
	if s.kind == StepDown {
		var sr providers.StopResponse
		sr, err = e.down(ctx, cfg, s, rec, func(sr providers.StopResponse) {
			// Stopped and forgotten by its runtime: reported done now,
			// before its record (releasesEarly), so that what is told
			// keeps the order in which instances stopped.
			if e.Progress != nil {
				e.Progress(StepEvent{Addr: c.Addr, Action: c.Action, Kind: s.kind, Done: true,
					Elapsed: time.Since(start), Observed: sr.Observed, Killed: sr.Killed})
			}
			reported = true
			s.stopped()
		})
		obs, killed = sr.Observed, sr.Killed
	} else {
		obs, handle, err = e.up(ctx, cfg, c, rec)
		s.handle, s.pid = handle, obs.Pid
		switch {
		case err != nil || c.Addr.Kind != spec.KindDaemon || len(handle) == 0:
		case e.WaitUp != nil && (c.Action == planner.Create || c.Action == planner.Start || (c.Action == planner.Replace && !c.CreateBeforeDestroy)):
			err = e.WaitUp(ctx, c, handle)
		}
	}
	// A failure may quote what the step ran (a command, an environment
	// value, a health URL): it leaves the executor without any sensitive
	// value, for the progress report, the outcome and its diagnostic.
	err = spec.RedactError(cfg.Redactor(), err)
	if e.Progress != nil && !reported {
		ev := StepEvent{Addr: c.Addr, Action: c.Action, Kind: s.kind, Done: true, Err: err,
			Elapsed: time.Since(start), Observed: obs, Killed: killed}
		if err == nil {
			ev.Handle = handle
			if c.Resource != nil {
				ev.Runtime = c.Resource.Runtime
			}
		}
		e.Progress(ev)
	}
	if err == nil && s.kind == StepUp && e.Ready != nil && e.WaitUp == nil && c.Action == planner.Replace &&
		!c.CreateBeforeDestroy && c.Resource.Lifecycle.ReplaceParallel() > 0 && len(handle) > 0 {
		// A rolling replace that stops first: the next instance's replace
		// begins only once this one is ready again. Asked after the step
		// was reported, so that a supervisor (orch up) watches it already.
		if rerr := e.Ready(ctx, c, handle); rerr != nil {
			err = &NotReadyError{Addr: c.Addr, Err: rerr}
		}
	}
	return err
}

func (e *Executor) provider(rt spec.Address) (providers.Provider, error) {
	p := e.Providers[rt.Type]
	if p == nil {
		return nil, fmt.Errorf("no provider for runtime kind %q (%s)", rt.Type, rt)
	}
	return p, nil
}

// up brings the declared instance of c up and records it; it returns the
// handle recorded (durable once up returns, but for a start released
// through a StartJournal: releasesStart).
func (e *Executor) up(ctx context.Context, cfg *spec.Config, c *planner.Change, rec *groupCommit) (obs providers.Observed, h providers.Handle, err error) {
	obs, err = e.upRecord(ctx, cfg, c, rec, &h)
	return obs, h, err
}

func (e *Executor) upRecord(ctx context.Context, cfg *spec.Config, c *planner.Change, rec *groupCommit, handle *providers.Handle) (providers.Observed, error) {
	r := c.Resource
	inst := state.Instance{Addr: c.Addr, Runtime: r.Runtime, Config: c.Encoded(), ConfigHash: c.Hash(),
		Status: StatusRunning.String()}
	switch c.Action {
	case planner.Reload:
		// A change confined to the daemon's reload.on: its signal to the
		// main process, and the new configuration recorded.
		inst.Handle = c.Prior.Handle
		p, err := e.provider(r.Runtime)
		if err != nil {
			return c.Observed, err
		}
		s, ok := p.(providers.Signaler)
		if !ok {
			return c.Observed, fmt.Errorf("%s: its runtime cannot send signals, so it cannot be reloaded", c.Addr)
		}
		if _, err := s.Signal(ctx, providers.SignalRequest{Runtime: runtimeFor(cfg, r.Runtime), Addr: c.Addr,
			Handle: c.Prior.Handle, Signal: r.Reload.Signal, MainOnly: true}); err != nil {
			return c.Observed, err
		}
		*handle = inst.Handle
		return c.Observed, rec.put(inst)
	case planner.Adopt, planner.Update:
		// Record what the running instance runs now; an update first
		// reaches it through the provider when the provider can take it.
		inst.Handle = c.Prior.Handle
		if c.Prior.Status == StatusCompleted {
			inst.Status = StatusCompleted.String()
		}
		if c.Action == planner.Update && c.Observed.State == providers.StateRunning && !r.Runtime.IsZero() {
			p, err := e.provider(r.Runtime)
			if err != nil {
				return c.Observed, err
			}
			if u, ok := p.(providers.Updater); ok {
				resp, err := u.Update(ctx, providers.UpdateRequest{Runtime: runtimeFor(cfg, r.Runtime), Resource: r,
					Handle: c.Prior.Handle, StateDir: e.StateDir})
				if err != nil {
					// The instance still runs as before and its record says
					// so: the next plan shows the update again.
					return c.Observed, err
				}
				if len(resp.Handle) > 0 {
					inst.Handle = resp.Handle
				}
			}
		}
		*handle = inst.Handle
		return c.Observed, rec.put(inst)
	}
	p, err := e.provider(r.Runtime)
	if err != nil {
		return providers.Observed{}, err
	}
	rt := runtimeFor(cfg, r.Runtime)
	if c.Action == planner.Start && c.Prior != nil && len(c.Prior.Handle) > 0 && c.Observed.State == providers.StateUnknown {
		// It may still run in a state the provider cannot tell: make sure.
		_, _ = p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: c.Addr, Handle: c.Prior.Handle, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout})
	}
	resp, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: e.Project,
		ConfigHash: inst.ConfigHash, StateDir: e.StateDir})
	if err != nil {
		inst.Status, inst.LastError = StatusFailed.String(), err.Error()
		return providers.Observed{}, firstErr(err, rec.put(inst))
	}
	inst.Handle = resp.Handle
	obs := resp.Observed
	if r.Addr.Kind == spec.KindJob {
		if e.Progress != nil {
			e.Progress(StepEvent{Addr: c.Addr, Action: c.Action, Kind: StepUp, Running: true, Observed: resp.Observed})
		}
		obs, err = e.waitJob(ctx, p, rt, c.Addr, resp.Handle)
		if err == nil && (obs.ExitCode != 0 || obs.Signal != "") {
			err = jobError(c.Addr, obs)
		}
		if err != nil {
			inst.Status, inst.LastError = StatusFailed.String(), err.Error()
			return obs, firstErr(err, rec.put(inst))
		}
		inst.Status = StatusCompleted.String()
	}
	*handle = inst.Handle
	if r.Addr.Kind != spec.KindJob && e.releasesStart(p) {
		// Its runtime finds it again were its record lost (StartJournal:
		// the process runtime's registry line is written before the
		// program runs), so the step does not wait for the record:
		// what depends on it starts meanwhile, and the record goes in
		// the next transaction (putReleased; Apply still returns only
		// once it is durable, and fails if it could not be written). A
		// crash before then leaves the instance running without a
		// record, which the next plan adopts (ReasonAdopted), as when
		// orch is killed inside the start. A chain of 100 starts waited
		// 0.43 ms a link for its fdatasyncs (execution trace, 1.54 ms
		// from one link's fork to the next).
		rec.putReleased(inst)
		return obs, nil
	}
	if err := rec.put(inst); err != nil {
		if r.Addr.Kind != spec.KindJob {
			// Not recorded, it would run with nobody knowing of it (a
			// node of several hosts cut off from etcd in the middle of
			// its start stops what its records hold): the start is
			// undone.
			p.Stop(context.WithoutCancel(ctx), providers.StopRequest{Runtime: rt, Addr: c.Addr, Handle: resp.Handle, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout})
			*handle = nil
		}
		return obs, err
	}
	return obs, nil
}

// releasesStart reports whether a start through p may end before its
// record is durable: p finds its instances again when their records are
// lost (providers.StartJournal), and the state is this host's own. A state
// shared by several hosts (etcd) keeps every start waiting for its
// record: there the record says which host runs the instance, and a
// start a host could not record is undone (upRecord).
func (e *Executor) releasesStart(p providers.Provider) bool {
	if _, ok := p.(providers.StartJournal); !ok {
		return false
	}
	l, ok := e.Store.(interface{ Local() bool })
	return ok && l.Local()
}

func jobError(a spec.Address, o providers.Observed) error {
	if o.Signal != "" {
		return fmt.Errorf("%s was killed by %s", a, o.Signal)
	}
	return fmt.Errorf("%s exited with code %d", a, o.ExitCode)
}

// waitJob observes a job until it is no longer running.
func (e *Executor) waitJob(ctx context.Context, p providers.Provider, rt *spec.Runtime, addr spec.Address, h providers.Handle) (providers.Observed, error) {
	poll := e.JobPoll
	if poll <= 0 {
		poll = 5 * time.Millisecond
	}
	for {
		resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{addr: h}})
		if err != nil {
			return providers.Observed{}, err
		}
		o := resp.Objects[addr]
		switch o.State {
		case providers.StateExited:
			return o, nil
		case providers.StateMissing:
			return o, fmt.Errorf("%s ended, but its exit status is unknown", addr)
		}
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(poll):
		}
		if poll < 250*time.Millisecond {
			poll *= 2
		}
	}
}

// down stops and removes the prior instance of s and writes (or deletes)
// its record. For a stop or a removal, stopped is called in between, once
// the instance is gone (before its runtime forgets it): the step is
// reported done and the stops of what it depends on may begin
// (releasesEarly). Its record is written after, without the step waiting
// for it (groupCommit.putReleased); a failure to write it ends the Apply
// (stateError) once every step has. Reporting before the record is durable is
// safe for a stop: a crash in between leaves a record of an instance
// that is gone, which the next refresh observes as gone.
//
// The old instance of a create_before_destroy replace is stopped only once
// the new one is ready (Executor.Ready); when it never is, the new one is
// stopped instead (revert).
func (e *Executor) down(ctx context.Context, cfg *spec.Config, s *step, rec *groupCommit, stopped func(providers.StopResponse)) (providers.StopResponse, error) {
	var sr providers.StopResponse
	c := s.change
	if s.pair != nil && e.Ready != nil && len(s.pair.handle) > 0 && c.Resource != nil {
		if err := e.Ready(ctx, c, s.pair.handle); err != nil {
			return sr, e.revert(ctx, cfg, c, s.pair.handle, err, rec)
		}
	}
	prior := c.Prior
	release := c.Action == planner.Stop || c.Action == planner.Delete
	if rtAddr, req, ok := priorStop(cfg, c); ok {
		p, err := e.provider(rtAddr)
		if err != nil {
			return sr, err
		}
		if sr, err = e.stop(ctx, s.hurry, p, req); err != nil {
			unrecord(s, rec, err)
			return sr, err
		}
		if release {
			// Gone: what depends on it may stop now, while its runtime
			// forgets it (the process runtime's registry line: 90-180
			// us a link of a chain of stops, traced). A failure to
			// forget fails the step, not the stops after it.
			stopped(sr)
			release = false
		}
		if d, ok := p.(providers.Deleter); ok {
			if _, err := d.Delete(ctx, providers.DeleteRequest{Runtime: req.Runtime, Addr: c.Addr, Handle: prior.Handle}); err != nil {
				unrecord(s, rec, err)
				return sr, err
			}
		}
	}
	if release {
		stopped(sr) // nothing to stop
	}
	if c.Action == planner.Replace && c.CreateBeforeDestroy {
		return sr, nil // the new instance's record replaced the old one already
	}
	if c.Action == planner.Stop {
		if !s.recordedAhead {
			rec.putReleased(stoppedRecord(c))
		}
		return sr, nil
	}
	if c.Action == planner.Delete {
		rec.deleteReleased(c.Addr)
		return sr, nil
	}
	return sr, rec.delete(c.Addr)
}

var sigKill = spec.Signal{Name: "SIGKILL", Num: 9}

// stoppedRecord is the record a Stop leaves (orch up's shutdown, orch
// stop): the instance's, marked stopped, so that a later orch up starts it
// again and orch destroy removes it. Nothing in it depends on how the stop
// went, so it can be written before (recordAhead).
func stoppedRecord(c *planner.Change) state.Instance {
	prior := c.Prior
	inst := state.Instance{Addr: c.Addr, Runtime: prior.Runtime, ConfigHash: prior.ConfigHash, Handle: prior.Handle,
		Status: StatusStopped.String()}
	if inst.Config = prior.Config; inst.Config == nil && prior.Snapshot != nil {
		// The record's own bytes when the plan kept them: a stop of
		// 1,000 re-encoded every snapshot (2% of orch up's CPU).
		inst.Config = prior.Snapshot.Encode()
	}
	return inst
}

// recordAhead queues the records of the Stops of batch as they are
// launched, before their instances are gone, so that they become durable
// while the instances die rather than after: a stop of 100 then ended on
// a transaction (two fsyncs, 2-4 ms here) begun after its last daemon
// had died, the largest part of orch up's stop after the deaths
// themselves. It is safe because the planner goes by what it observes: a
// crash before an instance is gone leaves it marked stopped while it
// still runs, which the next refresh observes running, as it is. A stop
// that fails puts the record back (unrecord). A removal is not recorded
// ahead: its record's deletion, durable while the instance still ran,
// would lose it.
func recordAhead(batch []*step, rec *groupCommit) {
	for _, s := range batch {
		c := s.change
		if s.kind != StepDown || s.pair != nil || c.Action != planner.Stop || c.Prior == nil {
			continue
		}
		s.recordedAhead = true
		rec.ahead(stoppedRecord(c))
	}
}

// unrecord puts back the record of a stop recorded ahead that failed:
// the instance's, as it was, with the failure as its last error.
func unrecord(s *step, rec *groupCommit, err error) {
	if !s.recordedAhead {
		return
	}
	inst := stoppedRecord(s.change)
	inst.Status, inst.LastError = s.change.Prior.Status.String(), err.Error()
	rec.putReleased(inst)
}

// priorStop is how c's prior instance is stopped: its runtime and the
// stop request with the settings it was applied with; ok is false when
// there is nothing to stop (no handle, or no runtime recorded).
func priorStop(cfg *spec.Config, c *planner.Change) (rtAddr spec.Address, req providers.StopRequest, ok bool) {
	prior := c.Prior
	if prior == nil || len(prior.Handle) == 0 {
		return rtAddr, req, false
	}
	rtAddr = prior.Runtime
	if rtAddr.IsZero() && prior.Snapshot != nil {
		rtAddr = prior.Snapshot.Runtime
	}
	if rtAddr.IsZero() {
		return rtAddr, req, false
	}
	sig, timeout := StopSettings(prior.Snapshot)
	return rtAddr, providers.StopRequest{Runtime: runtimeFor(cfg, rtAddr), Addr: c.Addr, Handle: prior.Handle, Signal: sig, Timeout: timeout}, true
}

// presignal sends the stop signals of the stops and removals about to
// begin, in one loop through each runtime that can
// (providers.Presignaler), before the steps' goroutines run: a hundred
// stops each doing its own work first sent their signals over 46 ms, each
// daemon's exit taking the CPU between two of them. A single stop is
// signalled too: launched by the stop it waited for (releasesEarly), its
// signal goes out from that step's goroutine at once, not once a new
// goroutine gets to run (on a chain of stops, the previous step still
// holds the processor while its runtime forgets its instance). What waits for an
// instance to be ready first (the old half of a create-before-destroy
// replace) is left out; so is a runtime wrapped to drain first (orch up's
// services), which does not offer it.
func (e *Executor) presignal(cfg *spec.Config, h *hurry, batch []*step) {
	if len(batch) == 0 {
		return
	}
	type group struct {
		p    providers.Presignaler
		reqs []providers.StopRequest
	}
	var groups map[spec.Address]*group
	for _, s := range batch {
		c := s.change
		if s.kind != StepDown || s.pair != nil || c.Action != planner.Stop && c.Action != planner.Delete {
			continue
		}
		rtAddr, req, ok := priorStop(cfg, c)
		if !ok {
			continue
		}
		g := groups[rtAddr]
		if g == nil {
			p, err := e.provider(rtAddr)
			ps, ok := p.(providers.Presignaler)
			if err != nil || !ok {
				continue
			}
			if groups == nil {
				groups = map[spec.Address]*group{}
			}
			g = &group{p: ps}
			groups[rtAddr] = g
		}
		if h.hasFired() {
			req.Signal, req.Timeout = sigKill, 0
		}
		g.reqs = append(g.reqs, req)
	}
	for _, g := range groups {
		g.p.Presignal(context.Background(), g.reqs)
	}
}

// stop stops through p, with SIGKILL at once once the Apply's hurry has
// fired (e.Kill closed: a second interrupt of orch up), also for a stop
// already under way.
func (e *Executor) stop(ctx context.Context, h *hurry, p providers.Provider, req providers.StopRequest) (providers.StopResponse, error) {
	if h == nil {
		return p.Stop(ctx, req)
	}
	hs, fired := h.add(p, req)
	if fired {
		req.Signal, req.Timeout = sigKill, 0
	}
	resp, err := p.Stop(ctx, req)
	if h.remove(hs) {
		resp.Killed = true
	}
	return resp, err
}

// hurry holds the stops under way in one Apply while e.Kill may close.
// One goroutine waits for it and then kills each of them (a stop already
// sent SIGTERM is sent SIGKILL, and still returns when its instance is
// gone), rather than a goroutine beside every stop: 1,000 stops made
// 1,000 more goroutines, each growing its stack (a fifth of orch's CPU
// in a stop of 1,000).
type hurry struct {
	mu    sync.Mutex
	fired bool
	stops map[*hurried]struct{}
	end   chan struct{}
}

type hurried struct {
	p      providers.Provider
	req    providers.StopRequest
	killed bool
}

// newHurry watches kill until close is called; nil without kill.
func newHurry(kill <-chan struct{}) *hurry {
	if kill == nil {
		return nil
	}
	h := &hurry{stops: map[*hurried]struct{}{}, end: make(chan struct{})}
	go func() {
		select {
		case <-kill:
		case <-h.end:
			return
		}
		h.mu.Lock()
		h.fired = true
		var under []*hurried
		for hs := range h.stops {
			if hs.req.Signal != sigKill {
				hs.killed = true
				under = append(under, hs)
			}
		}
		h.mu.Unlock()
		for _, hs := range under {
			kill := hs.req
			kill.Signal, kill.Timeout = sigKill, 0
			go hs.p.Stop(context.Background(), kill)
		}
	}()
	return h
}

// add notes a stop about to begin; fired says it must be a kill.
func (h *hurry) add(p providers.Provider, req providers.StopRequest) (*hurried, bool) {
	hs := &hurried{p: p, req: req}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fired {
		hs.req.Signal = sigKill
		hs.killed = true
	}
	h.stops[hs] = struct{}{}
	return hs, h.fired
}

// remove forgets a stop that returned; it says whether it was killed.
func (h *hurry) remove(hs *hurried) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.stops, hs)
	return hs.killed
}

// hasFired says whether stops must be kills now.
func (h *hurry) hasFired() bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fired
}

func (h *hurry) close() {
	if h != nil {
		close(h.end)
	}
}

// StopSettings reads the stop signal and timeout the prior instance was
// applied with.
func StopSettings(s *planner.Snapshot) (spec.Signal, time.Duration) {
	sig, timeout := spec.SIGTERM, spec.DefaultStopTimeout
	if s == nil {
		return sig, timeout
	}
	v, ok := s.Values["stop"]
	if !ok || !v.Type().IsObjectType() {
		return sig, timeout
	}
	if x := v.GetAttr("signal"); x.Type() == cty.String {
		if parsed, err := spec.ParseSignal(x.AsString()); err == nil {
			sig = parsed
		}
	}
	if x := v.GetAttr("timeout"); x.Type() == cty.String {
		if d, err := time.ParseDuration(x.AsString()); err == nil {
			timeout = d
		}
	}
	return sig, timeout
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// revert stops the new instance h of c's create_before_destroy replace,
// which did not become ready (why), and restores the record of the old
// one, which keeps running.
func (e *Executor) revert(ctx context.Context, cfg *spec.Config, c *planner.Change, h providers.Handle, why error, rec *groupCommit) error {
	r := c.Resource
	p, err := e.provider(r.Runtime)
	if err != nil {
		return err
	}
	rt := runtimeFor(cfg, r.Runtime)
	if _, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: c.Addr, Handle: h, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout}); err != nil {
		return fmt.Errorf("%s: the new instance did not become ready (%v), and stopping it failed: %w", c.Addr, why, err)
	}
	if d, ok := p.(providers.Deleter); ok {
		d.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: c.Addr, Handle: h})
	}
	prior := c.Prior
	old := state.Instance{Addr: c.Addr, Runtime: prior.Runtime, ConfigHash: prior.ConfigHash, Handle: prior.Handle,
		Status: prior.Status.String(), LastError: (&RevertedError{Addr: c.Addr, Err: why}).Error()}
	if prior.Snapshot != nil {
		old.Config = prior.Snapshot.Encode()
	}
	if old.Status == "" {
		old.Status = StatusRunning.String()
	}
	if err := rec.put(old); err != nil {
		return err
	}
	return &RevertedError{Addr: c.Addr, Err: why}
}
