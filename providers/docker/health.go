package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers"
)

var _ providers.HealthChecker = (*Provider)(nil)

// Health reports the container's own health check, the HEALTHCHECK of its
// image, as the Engine runs it: HealthNone when the image declares none
// (or HEALTHCHECK NONE), else starting, healthy or unhealthy (the Engine's
// interval, timeout, start period and retries apply), with the last
// probe's output as Detail. With req.Wait it follows the Engine's event
// stream of that container, only its health_status, die and destroy
// events (not the exec events of every probe), and returns once the
// status is not req.Prior: a healthy or starting status is taken from
// the event itself, at once (Detail then says only the exit code of a
// healthy probe); an unhealthy one, or an event that does not carry the
// status (Podman's), is inspected for the probe's output. While the Engine
// cannot be reached it keeps trying. A container that is gone, not
// running, or not orch's, is an error.
func (p *Provider) Health(ctx context.Context, req providers.HealthRequest) (providers.HealthResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.HealthResponse{}, userErr("health", req.Addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.HealthResponse{}, opErr("health", req.Addr, e, err)
	}
	backoff := newBackoff()
	for {
		var res client.EventsResult
		cancel := func() {}
		if req.Wait {
			// Subscribe first, then inspect: no change falls in between.
			// "health_status" matches every "health_status: <status>".
			var sctx context.Context
			sctx, cancel = context.WithCancel(ctx)
			res = e.Client.Events(sctx, client.EventsListOptions{Filters: client.Filters{}.
				Add("type", string(events.ContainerEventType)).Add("container", hi.ID).
				Add("event", "health_status", string(events.ActionDie), string(events.ActionDestroy))})
		}
		c, ok, err := e.inspect(ctx, hi.ID)
		switch {
		case ctx.Err() != nil:
			cancel()
			return providers.HealthResponse{}, ctx.Err()
		case err != nil && ok:
			cancel()
			return providers.HealthResponse{}, userErr("health", req.Addr, "%v", err)
		case err != nil:
			cancel()
			if !req.Wait || !backoff.wait(ctx) {
				return providers.HealthResponse{}, opErr("health", req.Addr, e, err)
			}
			continue
		case !ok:
			cancel()
			return providers.HealthResponse{}, userErr("health", req.Addr, "container %s is gone", shortID(hi.ID))
		}
		if c.State == nil || !c.State.Running {
			// A container that stopped reads as unhealthy to the Engine;
			// that is an exit (Watch), not a verdict of its check.
			cancel()
			return providers.HealthResponse{}, userErr("health", req.Addr, "container %s is not running", shortID(hi.ID))
		}
		resp := healthOf(c)
		if !req.Wait || resp.Status != req.Prior {
			cancel()
			return resp, nil
		}
		if resp, ok := waitHealth(ctx, res, req.Prior, backoff); ok {
			cancel()
			return resp, nil
		}
		cancel() // inspect again
	}
}

// waitHealth reads the event stream res until the health status differs
// from prior; ok is false when the container must be inspected again
// (an unhealthy verdict, whose probe output only an inspection has; a
// die or destroy; a status the event does not carry; a broken stream,
// after a pause; ctx done).
func waitHealth(ctx context.Context, res client.EventsResult, prior providers.HealthStatus, b *backoff) (resp providers.HealthResponse, ok bool) {
	for {
		select {
		case m := <-res.Messages:
			b.reset()
			status, known := healthOfEvent(string(m.Action))
			switch {
			case !known || status == providers.HealthUnhealthy:
				return resp, false
			case status == prior:
				continue
			case status == providers.HealthHealthy:
				return providers.HealthResponse{Status: status, Healthy: true, Detail: "HEALTHCHECK exit code 0"}, true
			}
			return providers.HealthResponse{Status: status}, true
		case <-res.Err:
			if ctx.Err() == nil {
				b.wait(ctx)
			}
			return resp, false
		case <-ctx.Done():
			return resp, false
		}
	}
}

// healthOfEvent reads the status of an Engine event "health_status:
// <status>"; known is false for any other action.
func healthOfEvent(action string) (status providers.HealthStatus, known bool) {
	rest, ok := strings.CutPrefix(action, "health_status:")
	if !ok {
		return 0, false
	}
	switch container.HealthStatus(strings.TrimSpace(rest)) {
	case container.Healthy:
		return providers.HealthHealthy, true
	case container.Unhealthy:
		return providers.HealthUnhealthy, true
	case container.Starting:
		return providers.HealthStarting, true
	}
	return 0, false
}

// healthOf reads the health of an inspected container.
func healthOf(c container.InspectResponse) providers.HealthResponse {
	if c.Config != nil && c.Config.Healthcheck != nil && len(c.Config.Healthcheck.Test) > 0 && c.Config.Healthcheck.Test[0] == "NONE" {
		return providers.HealthResponse{Status: providers.HealthNone}
	}
	if c.State == nil || c.State.Health == nil {
		return providers.HealthResponse{Status: providers.HealthNone}
	}
	h := c.State.Health
	var resp providers.HealthResponse
	switch h.Status {
	case container.Healthy:
		resp.Status, resp.Healthy = providers.HealthHealthy, true
	case container.Unhealthy:
		resp.Status = providers.HealthUnhealthy
	case container.NoHealthcheck:
		resp.Status = providers.HealthNone
	default:
		resp.Status = providers.HealthStarting
	}
	if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
		last := h.Log[n-1]
		out := strings.TrimSpace(last.Output)
		if len(out) > 200 {
			out = out[:200] + "..."
		}
		resp.Detail = fmt.Sprintf("HEALTHCHECK exit code %d", last.ExitCode)
		if out != "" {
			resp.Detail += ": " + out
		}
		if h.FailingStreak > 0 {
			resp.Detail += fmt.Sprintf(" (%d failures in a row)", h.FailingStreak)
		}
	}
	return resp
}
