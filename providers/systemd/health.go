package systemd

import (
	"context"
	"time"

	"github.com/orch-dev/orch/providers"
)

var _ providers.NotifyFollower = (*Provider)(nil)

// FollowsNotify says that systemd, not orch, receives a Type=notify
// unit's READY=1 (its NOTIFY_SOCKET is systemd's): Health reports it.
func (p *Provider) FollowsNotify() {}

// Health reports the readiness of a Type=notify unit (health { notify =
// true }): starting while systemd waits for its READY=1 (the unit is
// activating), healthy once it is active, unhealthy when it failed (a
// missed watchdog, a start that timed out). A unit of another type has no
// check of its own: HealthNone. With req.Wait it returns only once the
// status differs from req.Prior, or with ctx's error.
func (p *Provider) Health(ctx context.Context, req providers.HealthRequest) (providers.HealthResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.HealthResponse{}, userErr("health", req.Addr, "", "%v", err)
	}
	var kick chan struct{}
	if req.Wait {
		kick = make(chan struct{}, 1)
		unsub, err := p.subscribe(req.Runtime, func(n note) {
			if n.kind == "unit" && n.unit != hi.Unit {
				return
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return providers.HealthResponse{}, userErr("health", req.Addr, "", "%s: %v", runtimeName(req.Runtime), err)
		}
		defer unsub()
	}
	for {
		m, err := p.manager(req.Runtime, "health", req.Addr)
		if err != nil {
			return providers.HealthResponse{}, err
		}
		u, err := m.read(ctx, hi.Unit)
		if err != nil {
			return providers.HealthResponse{}, m.err(p, "health", req.Addr, err)
		}
		resp := health(u, hi.Invocation)
		if !req.Wait || resp.Status != req.Prior {
			return resp, nil
		}
		select {
		case <-kick:
		case <-time.After(safetyPoll):
		case <-ctx.Done():
			return resp, ctx.Err()
		}
	}
}

func health(u unit, inv string) providers.HealthResponse {
	if u.Type != "notify" {
		return providers.HealthResponse{Status: providers.HealthNone}
	}
	obs := u.observed(inv)
	switch {
	case obs.State == providers.StateRunning && (u.ActiveState == "activating" || u.StartQueued):
		return providers.HealthResponse{Status: providers.HealthStarting, Detail: "waiting for its READY=1"}
	case obs.State == providers.StateRunning:
		return providers.HealthResponse{Status: providers.HealthHealthy, Healthy: true, Detail: "READY=1"}
	case u.Result == "watchdog":
		return providers.HealthResponse{Status: providers.HealthUnhealthy, Detail: "missed its watchdog"}
	}
	return providers.HealthResponse{Status: providers.HealthUnhealthy, Detail: "not running: " + obs.Ended()}
}
