package engine

import (
	"context"
	"fmt"

	"github.com/orch-dev/orch/spec"
)

// waitNoticeKey carries a WithWaitNotice function in a context.
type waitNoticeKey struct{}

// WithWaitNotice returns ctx carrying notice, which a request made with
// it (Pause, Resume, Stop, Start, Restart, RestartCascade) calls, with the
// address, once it begins to wait for a change in flight on that
// address (callFree): the agent tells its client so, which tells the
// user why the command has not answered yet.
func WithWaitNotice(ctx context.Context, notice func(spec.Address)) context.Context {
	return context.WithValue(ctx, waitNoticeKey{}, notice)
}

// callFree runs f on the controller, as call does, once no change is in
// flight on the address that on names (read on the controller, inFlight):
// a user's pause, resume, stop, start or restart of an instance that a
// round is starting, replacing or stopping right now, or that a restart
// is stopping, waits for that change to end and then acts on what it
// left, instead of being refused (or, for a pause in a restart, freezing
// the old process on its way out while the new one runs unpaused). A daemon is
// reported started as soon as its own start is recorded, while the rest
// of its round goes on, so "wait for started, then pause" would
// otherwise meet a refusal for as long as the slowest start beside it.
// The wait is bounded by ctx (the caller's request) and ends when the
// engine stops; f itself says ErrStopping then.
func (e *Engine) callFree(ctx context.Context, on func() spec.Address, f func()) error {
	return e.callWhenNot(ctx, on, e.inFlight, f)
}

// callWhenNot is callFree with the test of what is waited for: busy(a)
// (inFlight, or restartingNow for a signal).
func (e *Engine) callWhenNot(ctx context.Context, on func() spec.Address, busy func(spec.Address) bool, f func()) error {
	noticed := false
	for {
		var (
			freed chan struct{}
			a     spec.Address
		)
		err := e.call(ctx, func() {
			a = on()
			if busy(a) && !e.stopping {
				freed = make(chan struct{})
				e.freed[a] = append(e.freed[a], freed)
				return
			}
			f()
		})
		if err != nil || freed == nil {
			return err
		}
		if notice, ok := ctx.Value(waitNoticeKey{}).(func(spec.Address)); ok && !noticed {
			noticed = true
			notice(a)
		}
		select {
		case <-freed:
		case <-e.dead:
			return ErrStopping
		case <-ctx.Done():
			return fmt.Errorf("%s is being changed right now, and that change did not end in time: %w", a, ctx.Err())
		}
	}
}

// inFlight reports whether a change of a is under way: an apply that
// holds it (busy), or a restart whose stop has not ended yet (its start
// follows at once, in an apply). On the controller.
func (e *Engine) inFlight(a spec.Address) bool {
	return e.busy[a] || e.restartingNow(a)
}

// signalWaits reports whether a signal for a waits: while a restart
// stops its process, while a change in flight (that restart's start) has
// no process of it running yet, and, for a daemon with a health check,
// until the restarted process's first verdict (verdictAwaited): a reload
// signal (SIGHUP) that reaches a process before it has set up its
// handlers ends it instead. A daemon that runs while its round goes on,
// or that has no health check, is signalled once it runs.
func (e *Engine) signalWaits(a spec.Address) bool {
	if e.restartingNow(a) {
		return true
	}
	inst := e.insts[a]
	if inst == nil {
		return e.busy[a]
	}
	if e.busy[a] && !inst.sup.running() {
		return true
	}
	return inst.verdictAwaited && inst.health() == HealthStarting
}

// restartingNow reports whether a restart is stopping a's process (its
// start follows at once). On the controller.
func (e *Engine) restartingNow(a spec.Address) bool {
	inst := e.insts[a]
	return inst != nil && inst.sup.restarting()
}

// free wakes what waits for the change in flight on a to end; on the
// controller, when a is no longer busy.
func (e *Engine) free(a spec.Address) {
	for _, ch := range e.freed[a] {
		close(ch)
	}
	delete(e.freed, a)
}
