package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// HeldWhy is what orch status says a held instance waits for.
const HeldWhy = "stopped by user; orch start runs it again"

// Stop stops daemon (or module) a and holds it stopped: its stop is a
// plan (planner.StopAll of its record alone) run by the executor's
// walker, with the stop signal and timeout it was applied with, and its
// record is marked stopped. Until Start, no restart policy starts it, an
// edit of its configuration does not start it (the edit is applied when
// it is started), and its dependents that wait are shown blocked by it
// (those that run go on running). Stop returns once the instance is
// stopped. A hold lasts as long as the engine: a later orch up starts it.
func (e *Engine) Stop(ctx context.Context, a spec.Address) error {
	ch := make(chan error, 1)
	if err := e.callFree(ctx, func() spec.Address { return a }, func() { e.requestStop(a, func(err error) { ch <- err }) }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start releases the hold of Stop and starts a, with its configuration
// as declared now; its blocked dependents start once it is ready. On an
// instance that is not held it starts it if it is not running (as orch
// restart would) and does nothing when it runs. It returns once the
// start is under way; the started (or failed) event tells when it is
// done.
func (e *Engine) Start(ctx context.Context, a spec.Address) error {
	var rerr error
	if err := e.callFree(ctx, func() spec.Address { return a }, func() { rerr = e.requestStart(a) }); err != nil {
		return err
	}
	return rerr
}

// holdable checks that a may be stopped or started by the user; on the
// controller.
func (e *Engine) holdable(a spec.Address, verb string) (*instance, error) {
	switch {
	case e.stopping:
		return nil, ErrStopping
	case e.paused:
		return nil, ErrPaused
	case !supervised(a.Kind):
		return nil, fmt.Errorf("%s is a %s: only daemons and modules can be %s", a, a.Kind, verb)
	}
	inst := e.insts[a]
	if inst == nil || inst.res == nil || e.desired[a] == nil {
		return nil, fmt.Errorf("%s is not declared, or not applied yet", a)
	}
	if e.busy[a] {
		// Not reached from Stop and Start, which wait for the change
		// (callFree); kept for any other caller on the controller.
		return nil, fmt.Errorf("%s is being changed right now; try again", a)
	}
	return inst, nil
}

func (e *Engine) requestStop(a spec.Address, done func(error)) {
	inst, err := e.holdable(a, "stopped")
	if err != nil {
		done(err)
		return
	}
	if inst.sup.held() {
		done(nil)
		return
	}
	delete(e.deferred, a)
	if !inst.sup.running() {
		e.hold(inst)
		e.emit(Event{Type: EventStopped, Addr: a, Detail: "by user (it was not running); held until orch start"})
		e.promote() // what waits for it is blocked by it now
		done(nil)
		return
	}
	stored, err := e.opts.Store.List()
	if err != nil {
		done(fmt.Errorf("reading state: %w", err))
		return
	}
	var rec map[spec.Address]*planner.Stored
	for _, r := range stored {
		if r.Addr == a {
			rec = executor.StoredOf(append(stored[:0:0], r))
		}
	}
	p := planner.StopAll(rec)
	if c := p.Change(a); c == nil || c.Action != planner.Stop {
		done(fmt.Errorf("%s is not recorded running; try again", a))
		return
	}
	p.ConfigHash = e.cfg.Hash
	// No more supervision of this generation: its exit is not a crash,
	// its health is not checked.
	handle, paused := inst.handle, inst.sup.isPaused()
	prov, rt := e.opts.Providers[inst.rt.Type], e.runtime(inst.rt)
	inst.stopSupervising()
	e.hold(inst)
	e.readyResolved(a, handle, errors.New("stopped by user"))
	e.busy[a] = true
	e.emit(Event{Type: EventStopping, Addr: a, Detail: "by user"})
	before := func() {
		if s, ok := prov.(providers.Signaler); ok && paused {
			// Continued first, so that it can act on its stop signal.
			s.Signal(context.WithoutCancel(e.ctx), providers.SignalRequest{Runtime: rt, Addr: a, Handle: handle, Signal: spec.Signal{Name: "SIGCONT", Num: 18}})
		}
		e.drainBefore(context.WithoutCancel(e.ctx), a, handle)
	}
	e.apply(p, before, func(res *executor.Result, err error) {
		e.afterApply(p, res, err)
		if err == nil && res != nil {
			for _, o := range res.Outcomes {
				if o.Err != nil {
					err = fmt.Errorf("%s: %w", a, o.Err)
				}
			}
		}
		if err != nil && inst.sup.held() {
			// Not stopped: no hold; the next round takes it back under
			// supervision as it is.
			e.illegal(a, inst.sup.release())
			e.reconcile()
		}
		e.promote() // what waits for it is blocked by it now
		done(err)
	})
}

func (e *Engine) requestStart(a spec.Address) error {
	inst, err := e.holdable(a, "started")
	if err != nil {
		return err
	}
	if !inst.sup.held() {
		if inst.sup.running() {
			return nil
		}
		return e.requestRestart(a)
	}
	e.illegal(a, inst.sup.release())
	inst.ran, inst.history, inst.attempt = false, nil, 0
	inst.waiting, inst.blockedBy = "", spec.Address{}
	e.reconcile() // plans its start (and its dependents') as declared now
	return nil
}
