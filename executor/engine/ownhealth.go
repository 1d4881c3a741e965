package engine

import (
	"context"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// A backend's own health check (a container image's HEALTHCHECK) stands
// in for a health block a daemon does not declare, when its provider is a
// providers.HealthChecker:
//
//	start --> own unknown --HealthNone--> own none (ready once running, as without a check)
//	              |
//	              '--starting/healthy/unhealthy--> own declared: healthy gates
//	                  dependents; unhealthy restarts it per its policy,
//	                  exactly as an orch health check does (Engine.health)
//
// Until the first report, the daemon's dependents wait (a daemon's image
// is only known to have a check once it runs).

// ownHealth is what the engine knows of a generation's own health check.
type ownHealth uint8

const (
	ownUnknown  ownHealth = iota // no report yet
	ownNone                      // the backend says it has none
	ownDeclared                  // it has one: its verdicts count
)

// ownHealthPossible reports whether r, a daemon without a health block,
// may have a health check of its own: its provider can tell.
func (e *Engine) ownHealthPossible(r *spec.Resource) bool {
	if r == nil || r.Health != nil || r.Addr.Kind != spec.KindDaemon {
		return false
	}
	_, ok := e.opts.Providers[r.Runtime.Type].(providers.HealthChecker)
	return ok
}

// gatedOnHealth reports whether inst's dependents wait for it to be
// healthy: it declares a health block, or its backend's own check may
// exist (not reported yet) or does.
func (e *Engine) gatedOnHealth(inst *instance) bool {
	if inst.res == nil {
		return false
	}
	if inst.res.Health != nil {
		return true
	}
	return e.ownHealthPossible(inst.res) && inst.own != ownNone
}

// followOwnHealth reports the backend's own health check of generation gen
// to the controller, from its first status and then on each change (the
// provider's long poll), until ctx is done or the backend says there is
// none. Failures to ask are retried, 100ms up to 5s apart.
func (e *Engine) followOwnHealth(ctx context.Context, hc providers.HealthChecker, rt *spec.Runtime, addr spec.Address, h providers.Handle, gen uint64) {
	req := providers.HealthRequest{Runtime: rt, Addr: addr, Handle: h}
	delay := 100 * time.Millisecond
	for {
		resp, err := hc.Health(ctx, req)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		e.post(func() { e.ownHealthReport(addr, gen, resp) })
		if resp.Status == providers.HealthNone {
			return
		}
		req.Wait, req.Prior = true, resp.Status
	}
}

// ownHealthReport takes a report of generation gen's own health check.
func (e *Engine) ownHealthReport(addr spec.Address, gen uint64, resp providers.HealthResponse) {
	inst := e.insts[addr]
	if inst == nil || inst.gen != gen || !inst.sup.running() || e.stopping {
		return
	}
	switch resp.Status {
	case providers.HealthNone:
		inst.own = ownNone
		e.promote()
	case providers.HealthStarting:
		inst.own = ownDeclared
	case providers.HealthHealthy:
		inst.own = ownDeclared
		e.health(addr, gen, true, "")
	case providers.HealthUnhealthy:
		inst.own = ownDeclared
		detail := "its own health check failed"
		if resp.Detail != "" {
			detail += ": " + resp.Detail
		}
		e.health(addr, gen, false, detail)
	}
}
