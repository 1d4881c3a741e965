package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/spec"
)

// TestHealth: an image HEALTHCHECK is reported (starting, then healthy,
// then unhealthy once the server is sick) through long polls; an image
// without one is HealthNone.
func TestHealth(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	project := uniqueProject(t) + "-health"
	dockertest.RemoveProject(t, cli, project)
	ctxDir := dockertest.ServerContext(t, dockertest.HealthcheckLine("1s"))
	port := freePort(t)
	cfg := load(t, project, fmt.Sprintf(`
daemon "web" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
  ports = ["127.0.0.1:%d:8080"]
}
daemon "plain" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
}
`, ctxDir, port, dockertest.ServerContext(t, "")))
	p := New(Options{})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	web := cfg.Resource(mustAddr(t, "daemon.web"))
	rt := cfg.Runtime(web.Runtime)
	resp := start(t, p, cli, cfg, web)
	req := providers.HealthRequest{Runtime: rt, Addr: web.Addr, Handle: resp.Handle}
	h, err := p.Health(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != providers.HealthStarting && h.Status != providers.HealthHealthy {
		t.Fatalf("first status %v", h.Status)
	}
	for h.Status != providers.HealthHealthy {
		req.Wait, req.Prior = true, h.Status
		if h, err = p.Health(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if !h.Healthy || !strings.Contains(h.Detail, "exit code 0") {
		t.Errorf("healthy: %+v", h)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/sick", port))
	req.Wait, req.Prior = true, providers.HealthHealthy
	if h, err = p.Health(ctx, req); err != nil || h.Status != providers.HealthUnhealthy || h.Healthy {
		t.Fatalf("after /sick: %+v %v", h, err)
	}
	t.Logf("unhealthy: %s", h.Detail)

	// A long poll ends with its ctx.
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	req.Prior = providers.HealthUnhealthy
	if _, err := p.Health(wctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a cancelled long poll: %v", err)
	}
	wcancel()

	plain := cfg.Resource(mustAddr(t, "daemon.plain"))
	presp := start(t, p, cli, cfg, plain)
	if h, err := p.Health(ctx, providers.HealthRequest{Runtime: rt, Addr: plain.Addr, Handle: presp.Handle}); err != nil || h.Status != providers.HealthNone {
		t.Errorf("no HEALTHCHECK: %+v %v", h, err)
	}
	// A container that stopped has no verdict: an error.
	cli.ContainerKill(ctx, mustID(t, presp.Handle), client.ContainerKillOptions{Signal: "SIGKILL"})
	waitState(t, p, rt, plain.Addr, presp.Handle, providers.StateExited)
	if _, err := p.Health(ctx, providers.HealthRequest{Runtime: rt, Addr: plain.Addr, Handle: presp.Handle}); err == nil {
		t.Error("health of a stopped container")
	}
}

// TestEngineGoesAway: while the Engine cannot be reached, calls fail as
// unreachable and a container is killed; once it is back, the watch (which
// kept trying) reports the exit from a fresh inspection, and the event
// stream says disconnected, then reconnected.
func TestEngineGoesAway(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	tag := uniqueTag("orch-test/server")
	buildImage(t, cli, tag)
	px := dockertest.NewProxy(t)
	project := uniqueProject(t) + "-away"
	cfg := load(t, project, webConfig(tag, freePort(t)))
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	rt := cfg.Runtime(r.Runtime)
	rt.Attrs[AttrHost] = ctyString(px.Host())
	p := New(Options{})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp := start(t, p, cli, cfg, r)
	evs, err := p.Events(ctx, providers.EventsRequest{Runtime: rt, Project: project})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent := func(kind string) {
		t.Helper()
		for {
			select {
			case ev := <-evs:
				if ev.Kind == kind {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q event", kind)
			}
		}
	}
	// Let both connect (an inspection through the proxy proves it runs).
	observe(t, p, rt, r.Addr, resp.Handle)
	px.Down()
	waitEvent("disconnected")
	// Calls fail as unreachable (not the container's failure), and
	// retryable.
	if _, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{r.Addr: resp.Handle}}); !providers.IsUnreachable(err) || !providers.IsRetryable(err) {
		t.Errorf("observe while the Engine is away: %v; want an unreachable, retryable error", err)
	}
	if _, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: project, ConfigHash: "x"}); !providers.IsUnreachable(err) {
		t.Errorf("start while the Engine is away: %v; want an unreachable error", err)
	}
	if _, err := cli.ContainerKill(ctx, mustID(t, resp.Handle), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	select {
	case obs := <-w.Exited:
		t.Fatalf("the watch reported %+v while the Engine was away", obs)
	case <-time.After(300 * time.Millisecond):
	}
	px.Up()
	select {
	case obs := <-w.Exited:
		if obs.State != providers.StateExited || obs.ExitCode != 137 {
			t.Errorf("after the Engine came back: %+v", obs)
		}
	case <-ctx.Done():
		t.Fatal("the watch did not report the exit once the Engine came back")
	}
	waitEvent("reconnected")
}

func TestHealthOfEvent(t *testing.T) {
	for action, want := range map[string]providers.HealthStatus{
		"health_status: healthy":   providers.HealthHealthy,
		"health_status: unhealthy": providers.HealthUnhealthy,
		"health_status: starting":  providers.HealthStarting,
	} {
		if got, ok := healthOfEvent(action); !ok || got != want {
			t.Errorf("%q: %v %v, want %v", action, got, ok, want)
		}
	}
	for _, action := range []string{"health_status", "die", "exec_die", "health_status: bogus"} {
		if got, ok := healthOfEvent(action); ok {
			t.Errorf("%q: %v, want unknown", action, got)
		}
	}
}
