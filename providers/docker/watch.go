package docker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

var (
	_ providers.Watcher     = (*Provider)(nil)
	_ providers.EventSource = (*Provider)(nil)
)

// reconnectMax bounds the pause between two attempts to reach an Engine
// that went away.
const reconnectMax = 5 * time.Second

// Watch reports when the container behind req.Handle stops running: the
// Engine's wait (condition not-running) returns as the container dies, and
// an inspection then says how (exit code; missing when it was removed, or
// is not orch's). While the Engine cannot be reached the watch keeps
// trying, from 100ms up to 5s apart, and reports nothing: an Engine that
// went away does not mean the container did. A container that no longer
// runs is reported at once. The channel is closed without a value when
// ctx is done first.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.WatchResponse{}, userErr("watch", req.Addr, "%w", err)
	}
	e, err := p.engine(req.Runtime)
	if err != nil {
		return providers.WatchResponse{}, opErr("watch", req.Addr, e, err)
	}
	ch := make(chan providers.Observed, 1)
	go func() {
		defer close(ch)
		backoff := newBackoff()
		for {
			c, ok, err := e.inspect(ctx, hi.ID)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && ok: // not orch's: not the instance
				ch <- providers.Observed{State: providers.StateMissing, ID: hi.ID}
				return
			case err != nil:
				if !backoff.wait(ctx) {
					return
				}
				continue
			case !ok:
				ch <- providers.Observed{State: providers.StateMissing, ID: hi.ID}
				return
			}
			if obs := observed(c); obs.State != providers.StateRunning {
				ch <- obs
				return
			}
			w := e.ContainerWait(ctx, hi.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
			select {
			case <-w.Result:
				backoff.reset()
			case err := <-w.Error:
				if ctx.Err() != nil {
					return
				}
				if !cerrdefs.IsNotFound(err) && !backoff.wait(ctx) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}

// Events streams what happens to orch's containers of req.Runtime (those
// labelled managed-by=orch and runtime=<the runtime's address>): "exited"
// on die and oom (with the exit code of a die), "destroyed" when one is
// removed, "started", and "health" on a HEALTHCHECK status change, each
// with the container's address. When the Engine's stream breaks it sends
// "disconnected" (no address), reconnects from 100ms up to 5s apart, and
// sends "reconnected" once the stream runs again: events in between are
// lost, so the receiver lists and re-observes everything. The channel is
// closed when ctx is done.
func (p *Provider) Events(ctx context.Context, req providers.EventsRequest) (<-chan providers.Event, error) {
	e, err := p.engine(req.Runtime)
	if err != nil {
		return nil, &providers.Error{Op: "events", Err: err}
	}
	f := client.Filters{}.Add("type", string(events.ContainerEventType)).Add("label", LabelManagedBy+"="+ManagedBy)
	if req.Runtime != nil {
		f.Add("label", LabelRuntime+"="+req.Runtime.Addr.String())
	}
	if req.Project == "" {
		return nil, &providers.Error{Op: "events", Err: errors.New("no project: the events of every project on this Engine would be mixed")}
	}
	f.Add("label", LabelProject+"="+req.Project)
	out := make(chan providers.Event, 64)
	go func() {
		defer close(out)
		send := func(ev providers.Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		backoff := newBackoff()
		connected := true
		for {
			if !connected {
				if _, err := e.Ping(ctx, client.PingOptions{}); err != nil {
					if !backoff.wait(ctx) {
						return
					}
					continue
				}
			}
			streamCtx, cancel := context.WithCancel(ctx)
			res := e.Client.Events(streamCtx, client.EventsListOptions{Filters: f})
			if !connected {
				connected = true
				backoff.reset()
				if !send(providers.Event{Time: time.Now(), Kind: "reconnected"}) {
					cancel()
					return
				}
			}
			broken := false
			for !broken {
				select {
				case m := <-res.Messages:
					if ev, ok := event(m); ok && !send(ev) {
						cancel()
						return
					}
				case <-res.Err:
					broken = true
				}
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
			connected = false
			if !send(providers.Event{Time: time.Now(), Kind: "disconnected"}) {
				return
			}
			if !backoff.wait(ctx) {
				return
			}
		}
	}()
	return out, nil
}

// event turns an Engine event into an orch event; ok is false for the
// actions orch does not care about.
func event(m events.Message) (providers.Event, bool) {
	attrs := m.Actor.Attributes
	addr, err := spec.ParseAddress(attrs[LabelAddress])
	if err != nil || attrs[LabelManagedBy] != ManagedBy {
		return providers.Event{}, false
	}
	ev := providers.Event{Addr: addr, Time: time.Unix(0, m.TimeNano), Observed: providers.Observed{ID: m.Actor.ID}}
	if m.TimeNano == 0 {
		ev.Time = time.Unix(m.Time, 0)
	}
	switch action := string(m.Action); {
	case action == string(events.ActionDie):
		ev.Kind = "exited"
		ev.Observed.State = providers.StateExited
		ev.Observed.ExitCode, _ = strconv.Atoi(attrs["exitCode"])
	case action == string(events.ActionOOM):
		ev.Kind = "exited"
		ev.Observed.State = providers.StateExited
		ev.Observed.Signal = "SIGKILL"
	case action == string(events.ActionDestroy):
		ev.Kind = "destroyed"
		ev.Observed.State = providers.StateMissing
	case action == string(events.ActionStart):
		ev.Kind = "started"
		ev.Observed.State = providers.StateRunning
	case strings.HasPrefix(action, "health_status"):
		ev.Kind = "health"
		ev.Observed.State = providers.StateRunning
	default:
		return providers.Event{}, false
	}
	return ev, true
}

// backoff spaces out attempts to reach an Engine, from 100ms doubling up
// to reconnectMax.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

// wait sleeps for the current delay and doubles it; false when ctx is done
// first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, reconnectMax)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
