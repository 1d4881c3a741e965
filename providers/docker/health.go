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
// stream of that container and returns once the status is not req.Prior;
// while the Engine cannot be reached it keeps trying. A container that is
// gone, not running, or not orch's, is an error.
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
			var sctx context.Context
			sctx, cancel = context.WithCancel(ctx)
			res = e.Client.Events(sctx, client.EventsListOptions{Filters: client.Filters{}.
				Add("type", string(events.ContainerEventType)).Add("container", hi.ID)})
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
		select {
		case <-res.Messages:
			backoff.reset()
		case <-res.Err:
			if ctx.Err() == nil && !backoff.wait(ctx) {
				cancel()
				return providers.HealthResponse{}, ctx.Err()
			}
		case <-ctx.Done():
		}
		cancel()
	}
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
