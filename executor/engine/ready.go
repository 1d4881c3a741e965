package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

// readyWait is an Executor.Ready call waiting for the instance started as
// handle to pass its health check.
type readyWait struct {
	handle providers.Handle
	ch     chan error // buffered: one result
	// failuresOnly: a pass of the check (nil) does not answer it; only a
	// failure or an exit does (waitOwnPort, after the pass).
	failuresOnly bool
}

// addReadyWait registers a wait for addr started as h.
func (e *Engine) addReadyWait(addr spec.Address, h providers.Handle, failuresOnly bool) *readyWait {
	w := &readyWait{handle: h, ch: make(chan error, 1), failuresOnly: failuresOnly}
	e.readyMu.Lock()
	e.readyWaits[addr] = append(e.readyWaits[addr], w)
	e.readyMu.Unlock()
	return w
}

// waitReady is the engine's Executor.Ready: a create_before_destroy
// replace stops the old instance only once the new one (h) is ready. The
// new one is supervised from its start (superviseStarted), so its health
// check says so: healthy -> nil; unhealthy (no pass within start_timeout,
// or failures after a pass) or an exit -> the reason. Without a health
// check, a daemon with a service is ready once it listens on the
// service's port (waitListening), and any other once it runs.
func (e *Engine) waitReady(ctx context.Context, c *planner.Change, h providers.Handle) error {
	r := c.Resource
	if r == nil {
		return nil
	}
	if r.Health == nil {
		port, ok := e.listenedPort(r)
		if !ok {
			return nil // running is ready (listening.go)
		}
		return e.waitListening(ctx, c, h, port)
	}
	w := e.addReadyWait(c.Addr, h, false)
	defer e.dropReadyWait(c.Addr, w)
	// For waitOwnPort, from now on: an exit between the pass and that
	// wait is not missed.
	exits := e.addReadyWait(c.Addr, h, true)
	defer e.dropReadyWait(c.Addr, exits)
	// Already healthy (or gone) before the wait began: the controller
	// knows. superviseStarted was posted before this, so it ran first.
	e.resolveSettled(c.Addr, h, func(inst *instance) bool { return inst.sup.healthy() })
	limit := r.Health.StartTimeout
	if limit <= 0 {
		limit = spec.DefaultStartTimeout
	}
	// The health monitor reports at start_timeout; this bound is only for
	// a monitor that cannot report (its probe hangs past its timeout).
	deadline := time.Now().Add(limit + r.Health.Timeout + 5*time.Second)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-w.ch:
		if err != nil {
			return err
		}
	case <-t.C:
		return fmt.Errorf("not ready within start_timeout %s", limit)
	case <-ctx.Done():
		return ctx.Err()
	case <-e.dead:
		return errors.New("the engine stopped")
	}
	return e.waitOwnPort(ctx, c, h, exits, deadline, fmt.Sprintf("start_timeout %s", limit))
}

// resolveSettled answers, on the controller, the waits for addr started
// as h when it is already gone or ready (by ready) before they began.
func (e *Engine) resolveSettled(addr spec.Address, h providers.Handle, ready func(*instance) bool) {
	e.post(func() {
		inst := e.insts[addr]
		switch {
		case inst == nil || !bytes.Equal(inst.handle, h):
		case !inst.sup.running():
			e.readyResolved(addr, h, errors.New("it exited"))
		case ready(inst):
			e.readyResolved(addr, h, nil)
		}
	})
}

// waitListening is waitReady of a daemon with a service and no health
// check: ready once it listens on the service's port (listening.go),
// within spec.DefaultStartTimeout.
func (e *Engine) waitListening(ctx context.Context, c *planner.Change, h providers.Handle, port int) error {
	w := e.addReadyWait(c.Addr, h, false)
	defer e.dropReadyWait(c.Addr, w)
	e.resolveSettled(c.Addr, h, func(inst *instance) bool { return inst.portUp == port })
	t := time.NewTimer(spec.DefaultStartTimeout)
	defer t.Stop()
	select {
	case err := <-w.ch:
		return err
	case <-t.C:
		return fmt.Errorf("it did not listen on its service port %d within %s (it has no health check)", port, spec.DefaultStartTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-e.dead:
		return errors.New("the engine stopped")
	}
}

// waitOwnPort is the rest of waitReady once h's health check passed
// (AwaitOwnListener): an exit or a failed check of h (exits) ends it.
func (e *Engine) waitOwnPort(ctx context.Context, c *planner.Change, h providers.Handle, exits *readyWait, deadline time.Time, within string) error {
	gone := func() error {
		select {
		case err := <-exits.ch:
			return err
		case <-e.dead:
			return errors.New("the engine stopped")
		default:
			return nil
		}
	}
	r := c.Resource
	// The runtime named, not looked up in e.cfg: this runs on the
	// executor's goroutine, and the controller replaces e.cfg.
	rt := &spec.Runtime{Addr: r.Runtime, Kind: r.Runtime.Type, Name: r.Runtime.Name}
	every := r.Health.Interval
	if every <= 0 || every > time.Second {
		every = time.Second
	}
	return AwaitOwnListener(ctx, e.opts.Providers[r.Runtime.Type], rt, c, h, every, deadline, within, gone)
}

// AwaitOwnListener holds the readiness of h, the new instance of a
// create_before_destroy replace c whose health check has passed, when the
// check reaches a port of this host (an http or tcp check of 127.0.0.1,
// localhost, ::1 or an unspecified address) on which c's old instance
// listens, and p can tell (providers.ListenerOwner): the old instance,
// still running, answers that check just as well. h is ready once its own
// processes listen on that port too. A new instance that could not bind
// beside the old one (no SO_REUSEPORT) was taken as ready, the old one
// stopped, and the service was down until the new one had been restarted
// (a count of 2 behind nginx: 43 requests of 253 got 404 and 10 got 502).
// A check through a port that neither serves (a proxy in front) is taken
// as it is. gone, asked at each look, ends the wait with its error (h
// exited); past deadline it fails with a *NotOwnPortError. orch up's
// engine (waitOwnPort) and orch apply's wait share it.
func AwaitOwnListener(ctx context.Context, p providers.Provider, rt *spec.Runtime, c *planner.Change, h providers.Handle,
	every time.Duration, deadline time.Time, within string, gone func() error) error {
	port, ok := c.Resource.Health.LocalPort()
	if !ok {
		return nil
	}
	lo, ok := p.(providers.ListenerOwner)
	if !ok || c.Prior == nil || len(c.Prior.Handle) == 0 {
		return nil
	}
	req := providers.ListensRequest{Runtime: rt, Addr: c.Addr, Handle: c.Prior.Handle, Port: port}
	if old, err := lo.Listens(ctx, req); err != nil || !old {
		return nil // the old one does not answer there: no doubt to lift
	}
	req.Handle = h
	for {
		if mine, err := lo.Listens(ctx, req); err != nil || mine {
			return err
		}
		if err := gone(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return &NotOwnPortError{Port: port, Within: within}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// NotOwnPortError is the failure of a replace's new instance whose check
// passed while none of its processes listened on Port, within Within (the
// start_timeout, or orch apply's -wait-timeout).
type NotOwnPortError struct {
	Port   int
	Within string
}

func (e *NotOwnPortError) Error() string {
	return fmt.Sprintf("its health check passed, but not one of its processes listened on port %d within %s: "+
		"the old instance, still running, answers there (with create_before_destroy, the new instance must be able to bind "+
		"beside the old one, with SO_REUSEPORT, or listen on a port of its own)", e.Port, e.Within)
}

// readyResolved answers the waits for addr started as h; on the
// controller's goroutine. A ready instance's service is registered first:
// the replace the answer lets go on drains the old instance from DNS and
// the proxy next, on its own goroutine, and must find the new one there
// already (the controller's loop syncs the services only after the
// message that got here: TestServicesRollingReplaceUnderWrk saw the old
// one deregistered before the new one registered).
func (e *Engine) readyResolved(addr spec.Address, h providers.Handle, err error) {
	if err == nil {
		e.syncServices()
	}
	e.readyMu.Lock()
	defer e.readyMu.Unlock()
	ws := e.readyWaits[addr]
	kept := ws[:0]
	for _, w := range ws {
		if bytes.Equal(w.handle, h) {
			if err == nil && w.failuresOnly {
				kept = append(kept, w)
				continue
			}
			select {
			case w.ch <- err:
			default:
			}
			continue
		}
		kept = append(kept, w)
	}
	if len(kept) == 0 {
		delete(e.readyWaits, addr)
	} else {
		e.readyWaits[addr] = kept
	}
}

func (e *Engine) dropReadyWait(addr spec.Address, w *readyWait) {
	e.readyMu.Lock()
	defer e.readyMu.Unlock()
	ws := e.readyWaits[addr]
	for i, x := range ws {
		if x == w {
			e.readyWaits[addr] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(e.readyWaits[addr]) == 0 {
		delete(e.readyWaits, addr)
	}
}

func isNotReady(err error) bool {
	var nr *executor.NotReadyError
	return errors.As(err, &nr)
}

func isReverted(err error) bool {
	var re *executor.RevertedError
	return errors.As(err, &re)
}

// healthApplied is the health check rec's instance was applied with, read
// from its recorded configuration: after a revert the old instance runs
// on, and must be checked as it was declared then, not as now (a new
// health port would find nothing there and kill it). nil when it had none
// or the record cannot be read.
func healthApplied(rec state.Instance) *spec.Health {
	snap, err := planner.DecodeSnapshot(rec.Config)
	if err != nil {
		return nil
	}
	v, ok := snap.Values["health"]
	if !ok || v.IsNull() || !v.Type().IsObjectType() {
		return nil
	}
	h := &spec.Health{Interval: spec.DefaultHealthInterval, Timeout: spec.DefaultHealthTimeout,
		Retries: spec.DefaultHealthRetries, StartTimeout: spec.DefaultStartTimeout}
	str := func(name string) (string, bool) {
		if !v.Type().HasAttribute(name) {
			return "", false
		}
		x := v.GetAttr(name)
		if x.IsNull() || x.Type() != cty.String {
			return "", false
		}
		return x.AsString(), true
	}
	durOf := func(name string, dst *time.Duration) {
		if s, ok := str(name); ok {
			if d, err := time.ParseDuration(s); err == nil {
				*dst = d
			}
		}
	}
	durOf("interval", &h.Interval)
	durOf("timeout", &h.Timeout)
	durOf("start_period", &h.StartPeriod)
	durOf("start_timeout", &h.StartTimeout)
	if v.Type().HasAttribute("retries") {
		if x := v.GetAttr("retries"); !x.IsNull() && x.Type() == cty.Number {
			if n, acc := x.AsBigFloat().Int64(); acc == 0 && n > 0 {
				h.Retries = int(n)
			}
		}
	}
	switch {
	case v.Type().HasAttribute("http"):
		h.Kind, h.HTTP = spec.HealthHTTP, v.GetAttr("http").AsString()
	case v.Type().HasAttribute("tcp"):
		h.Kind, h.TCP = spec.HealthTCP, v.GetAttr("tcp").AsString()
	case v.Type().HasAttribute("exec"):
		h.Kind = spec.HealthExec
		for it := v.GetAttr("exec").ElementIterator(); it.Next(); {
			_, e := it.Element()
			h.Exec = append(h.Exec, e.AsString())
		}
	default:
		return nil
	}
	return h
}
