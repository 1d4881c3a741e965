package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// TestWatchAndEvents: docker kill and docker rm -f behind orch's back are
// pushed at once, by Watch and by Events; it logs the time from docker
// kill to the replacement running, as the engine would do it.
func TestWatchAndEvents(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	tag := uniqueTag("orch-test/server")
	buildImage(t, cli, tag)
	project := uniqueProject(t)
	cfg := load(t, project, webConfig(tag, freePort(t)))
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	rt := cfg.Runtime(r.Runtime)
	p := New(Options{})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	evs, err := p.Events(ctx, providers.EventsRequest{Runtime: rt, Project: project})
	if err != nil {
		t.Fatal(err)
	}
	// next waits for the next event of kind, skipping others.
	next := func(kind string) providers.Event {
		t.Helper()
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					t.Fatalf("event stream closed waiting for %q", kind)
				}
				if ev.Kind == kind {
					if ev.Addr != r.Addr {
						t.Errorf("%s event for %s", kind, ev.Addr)
					}
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %q event", kind)
			}
		}
	}

	resp := start(t, p, cli, cfg, r)
	next("started")
	w, err := p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if _, err := cli.ContainerKill(ctx, mustID(t, resp.Handle), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	select {
	case obs := <-w.Exited:
		if obs.State != providers.StateExited || obs.ExitCode != 137 {
			t.Errorf("watch after docker kill: %+v", obs)
		}
	case <-ctx.Done():
		t.Fatal("watch did not report docker kill")
	}
	noticed := time.Since(killed)
	resp2 := start(t, p, cli, cfg, r)
	running := time.Since(killed)
	if ev := next("exited"); ev.Observed.ExitCode != 137 {
		t.Errorf("exited event: %+v", ev)
	}
	t.Logf("docker kill -> watch reported it: %v; -> replacement running: %v", noticed, running)
	next("started")

	// docker rm -f: the watch reports it; the stream says destroyed.
	w, err = p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerRemove(ctx, mustID(t, resp2.Handle), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case obs := <-w.Exited:
		if obs.State != providers.StateExited && obs.State != providers.StateMissing {
			t.Errorf("watch after docker rm -f: %+v", obs)
		}
	case <-ctx.Done():
		t.Fatal("watch did not report docker rm -f")
	}
	next("destroyed")

	// A watch of what is already gone reports at once; a cancelled watch
	// closes its channel.
	w, _ = p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle})
	if obs := <-w.Exited; obs.State != providers.StateMissing {
		t.Errorf("watch of a removed container: %+v", obs)
	}
	resp3 := start(t, p, cli, cfg, r)
	wctx, wcancel := context.WithCancel(ctx)
	w, _ = p.Watch(wctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: resp3.Handle})
	wcancel()
	select {
	case obs, ok := <-w.Exited:
		if ok {
			t.Errorf("cancelled watch reported %+v", obs)
		}
	case <-time.After(5 * time.Second):
		t.Error("cancelled watch did not close")
	}
	cancel()
	for range evs {
	}
}

// TestEventsReconnect: an Engine that cannot be reached makes Events say
// "disconnected" and keep trying, until ctx is done.
func TestEventsReconnect(t *testing.T) {
	t.Parallel()
	p := New(Options{})
	defer p.Close()
	project := uniqueProject(t)
	rt := load(t, project, "").Runtimes[0]
	rt.Attrs[AttrHost] = ctyString(fmt.Sprintf("unix://%s/nothing.sock", t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := p.Events(ctx, providers.EventsRequest{Runtime: rt, Project: project})
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-evs; ev.Kind != "disconnected" {
		t.Errorf("first event %+v", ev)
	}
	cancel()
	for range evs {
	}
}

// TestUnreachable: what counts as not reaching the Engine at all (no
// connection, or one that broke before it answered), and what does not (an
// answer of the Engine, a cancelled call).
func TestUnreachable(t *testing.T) {
	get := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://docker/v1.41/containers/x/json", Err: err}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{get(io.EOF), true},
		{get(io.ErrUnexpectedEOF), true},
		{get(&net.OpError{Op: "read", Net: "unix", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{get(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}), true},
		{fmt.Errorf("wrapped: %w", get(io.EOF)), true},
		{io.EOF, false}, // not from the transport
		{get(context.Canceled), false},
		{errors.New("Error response from daemon: No such container: x"), false},
		{nil, false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	// A socket where nothing listens: the client's own connection error.
	p := New(Options{})
	defer p.Close()
	rt := load(t, uniqueProject(t), "").Runtimes[0]
	rt.Attrs[AttrHost] = ctyString(fmt.Sprintf("unix://%s/nothing.sock", t.TempDir()))
	_, err := p.Adopt(context.Background(), providers.AdoptRequest{Runtime: rt, Project: "p"})
	if !providers.IsUnreachable(err) || !providers.IsRetryable(err) {
		t.Errorf("adopt from an Engine that is not there: %v; want unreachable and retryable", err)
	}
}
