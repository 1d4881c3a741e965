package engine

import (
	"context"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// A daemon with a service and no health check is published (DNS, the
// proxy, mDNS) once it listens on its service's port, not as soon as it
// runs: a server takes a moment to bind, and a route to it before then
// answered 502 to every request in between. A create_before_destroy
// replace of it likewise stops the old instance only once the new one
// listens (waitReady). Whether it listens (a TCP socket listening on the
// port, or a UDP socket bound to it) is asked of its runtime, where the
// runtime can tell which instance holds the socket (the old instance of
// a replace may listen on the same port): a runtime whose schema says
// OwnsListeners (the process runtime, a plugin that declares "listens").
// Elsewhere (a container behind a published port, whose proxy accepts
// before the server listens) nothing is looked for: running is ready,
// as before. The look is repeated from listenFirst, doubling up to
// listenEvery (listenLate once spec.DefaultStartTimeout has passed), until
// it listens or its generation ends; it is not a liveness check (a health
// check is).
const (
	listenFirst = 5 * time.Millisecond
	listenEvery = 250 * time.Millisecond
	listenLate  = 5 * time.Second // a daemon that has not listened within its start's bound
)

// listenedPort is the port whose listener makes a daemon declared as r
// ready, and whether there is one: a service on a runtime that tells
// listeners apart, and no health check to gate it instead (orch's, or
// one its backend may run). The one rule for the look (probedPort) and
// for a replace's wait (waitReady).
func (e *Engine) listenedPort(r *spec.Resource) (int, bool) {
	if r == nil || r.Service == nil || r.Service.Port <= 0 || r.Health != nil || !e.owns[r.Runtime.Type] || e.ownHealthPossible(r) {
		return 0, false
	}
	return r.Service.Port, true
}

// probedPort is listenedPort of inst as declared now, on the runtime it
// runs on.
func (e *Engine) probedPort(inst *instance) (int, bool) {
	if !e.owns[inst.rt.Type] || inst.healthOfSet && inst.healthOf != nil {
		return 0, false // or checked as it was applied (a reverted replace)
	}
	return e.listenedPort(inst.res)
}

// probeListening starts looking for inst's listener on its service port,
// unless it was found or is being looked for; on the controller.
func (e *Engine) probeListening(inst *instance) {
	port, ok := e.probedPort(inst)
	if !ok || !inst.sup.running() || inst.genCtx == nil ||
		inst.portUp == port || inst.portProbe == port || inst.portProbe != 0 && !e.runsDeclared(inst) {
		// Found, or being looked for. The first look of a generation is
		// for the port declared when it started (its apply's); a later
		// one follows an in-place change of the port, not an edit that
		// is not applied yet.
		return
	}
	lo, ok := e.opts.Providers[inst.rt.Type].(providers.ListenerOwner)
	if !ok {
		return
	}
	if inst.portStop != nil {
		inst.portStop() // a look for the port before an in-place change
	}
	ctx, stop := context.WithCancel(inst.genCtx)
	inst.portProbe, inst.portStop = port, stop
	addr, gen := inst.addr, inst.gen
	req := providers.ListensRequest{Runtime: e.runtime(inst.rt), Addr: addr, Handle: inst.handle, Port: port, UDP: true}
	listens := func(ctx context.Context) bool {
		ok, err := lo.Listens(ctx, req)
		return err == nil && ok
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		if awaitListening(ctx, listens) {
			e.post(func() { e.listening(addr, gen, port) })
		}
	}()
}

// ownersOfListeners is, by runtime kind, whether the runtime tells
// whether an instance's own processes listen on a port (its schema's
// OwnsListeners): the engine's providers do not change while it runs.
func ownersOfListeners(ps executor.Providers) map[string]bool {
	owns := make(map[string]bool, len(ps))
	for kind, p := range ps {
		owns[kind] = p.Schema().OwnsListeners
	}
	return owns
}

// awaitListening repeats listens until it says yes (true) or ctx is done;
// past spec.DefaultStartTimeout, only every listenLate.
func awaitListening(ctx context.Context, listens func(context.Context) bool) bool {
	delay := listenFirst
	late := time.Now().Add(spec.DefaultStartTimeout)
	for {
		if listens(ctx) {
			return true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		delay = min(2*delay, listenEvery)
		if time.Now().After(late) {
			delay = listenLate
		}
	}
}

// listening records that generation gen of addr listens on port; what
// waits for it to be ready (a replace) is answered.
func (e *Engine) listening(addr spec.Address, gen uint64, port int) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || !inst.sup.running() {
		return
	}
	if port != inst.portProbe {
		return // a look for a port since changed in place
	}
	inst.portUp = port
	e.readyResolved(addr, inst.handle, nil)
}
