package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orch-dev/orch/providers"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

// Every capability is implemented; those the plugin does not declare are
// emulated or refused (see the table in doc.go).
var (
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Deleter       = (*Provider)(nil)
	_ providers.HealthChecker = (*Provider)(nil)
	_ providers.Adopter       = (*Provider)(nil)
	_ providers.Signaler      = (*Provider)(nil)
	_ providers.LogReader     = (*Provider)(nil)
	_ providers.EventSource   = (*Provider)(nil)
	_ providers.Updater       = (*Provider)(nil)
	_ providers.Watcher       = (*Provider)(nil)
)

// Options configures a Provider or a Loader. The zero value is ready to
// use.
type Options struct {
	// StartTimeout bounds a launch: from starting the executable to the
	// end of the handshake and, for providers, the schema. Default 10s.
	StartTimeout time.Duration
	// CallTimeout is the budget of each call into a provider plugin
	// (Stop's and Watch's own durations come on top). A plugin that does
	// not answer within it is killed and relaunched. Default 30s.
	CallTimeout time.Duration
	// Backoff and MaxBackoff space the relaunches of a provider plugin that
	// crashed or could not start: Backoff, doubled after each failure up
	// to MaxBackoff. Defaults 200ms and 30s.
	Backoff, MaxBackoff time.Duration
	// WatchPoll is how often Watch observes an instance when the plugin
	// cannot watch. Default 250ms.
	WatchPoll time.Duration
	// Log receives every line the plugin writes (stdout, stderr) and the
	// adapter's own notices (crashes, relaunches), prefixed with the block
	// that declared the plugin. nil discards them.
	Log func(line string)
}

func (o Options) withDefaults() Options {
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(30*time.Second, o.Backoff)
	}
	if o.WatchPoll <= 0 {
		o.WatchPoll = 250 * time.Millisecond
	}
	return o
}

// Provider is a runtime backend served by a plugin executable, seen by
// orch as any other providers.Provider. The plugin is launched on first
// use (Schema or any call), once per Provider; a crashed plugin is
// relaunched with backoff, a hung one is killed when a call exceeds its
// budget. Its methods are safe for concurrent use. Close kills the plugin.
//
//	        first use                 exit / crash / hung call
//	(none) ----------> launching ---> running ------------------> down
//	                      ^  |                                      |
//	                      |  '-- failed (handshake, checksum) --.   |
//	                      '---- after backoff (200ms .. 30s) ---'---'
type Provider struct {
	kind string
	bin  Binary
	opts Options

	mu         sync.Mutex
	cur        *proc
	client     pb.ProviderClient
	launching  chan struct{} // closed when the launch in progress ends
	lastErr    error         // of the last failed launch
	failures   int           // consecutive failed launches or crashes
	retryAt    time.Time     // no launch before
	relaunch   *time.Timer
	launches   int
	closed     bool
	schema     spec.RuntimeSchema
	caps       []providers.Capability
	haveSchema bool
	up         chan struct{} // closed and replaced at every successful launch
	subs       map[*eventSub]struct{}

	// runtimes encodes the runtime every call carries, once per version.
	runtimes wire.RuntimeEncoder
}

// NewProvider returns the adapter of the plugin bin for runtime kind
// kind. It launches nothing yet.
func NewProvider(kind string, bin Binary, opts Options) *Provider {
	return &Provider{kind: kind, bin: bin, opts: opts.withDefaults(), up: make(chan struct{}),
		subs: map[*eventSub]struct{}{}}
}

// Binary returns the plugin executable this Provider launches.
func (p *Provider) Binary() Binary { return p.bin }

func (p *Provider) log(format string, args ...any) {
	if p.opts.Log != nil {
		p.opts.Log(fmt.Sprintf(format, args...))
	}
}

// Close kills the plugin; later calls fail. It is idempotent.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	cur := p.cur
	p.cur, p.client = nil, nil
	if p.relaunch != nil {
		p.relaunch.Stop()
	}
	p.mu.Unlock()
	if cur != nil {
		cur.kill()
	}
	return nil
}

// Running returns the pid of the plugin process, or 0 when none runs.
func (p *Provider) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && p.cur.alive() {
		return p.cur.pid
	}
	return 0
}

var errClosed = errors.New("the plugin was closed")

// get returns the running plugin, launching it when none runs. It waits
// for a launch in progress and for the backoff after a failure, within
// ctx.
func (p *Provider) get(ctx context.Context) (*proc, pb.ProviderClient, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, fmt.Errorf("%s: %w", p.bin.Block, errClosed)
		}
		if p.cur != nil && p.cur.alive() {
			cur, c := p.cur, p.client
			p.mu.Unlock()
			return cur, c, nil
		}
		if w := p.launching; w != nil {
			p.mu.Unlock()
			select {
			case <-w:
				continue
			case <-ctx.Done():
				return nil, nil, p.waitErr(ctx)
			}
		}
		if wait := time.Until(p.retryAt); wait > 0 {
			p.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, nil, p.waitErr(ctx)
			}
		}
		w := make(chan struct{})
		p.launching = w
		p.mu.Unlock()
		err := p.launch()
		p.mu.Lock()
		p.launching = nil
		close(w)
		p.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
	}
}

func (p *Provider) waitErr(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastErr != nil {
		return fmt.Errorf("%w (waiting to relaunch it: %v)", p.lastErr, ctx.Err())
	}
	return fmt.Errorf("%s: waiting for the plugin %s: %w", p.bin.Block, p.bin.Path, ctx.Err())
}

func (p *Provider) backoff() time.Duration {
	d := p.opts.Backoff
	for i := 1; i < p.failures && d < p.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.opts.MaxBackoff)
}

// launch starts the plugin, reads its schema and installs it as current.
func (p *Provider) launch() error {
	pr, err := launch(p.bin, launchOptions{kind: wire.ProviderPlugin, plugin: providerPlugin{},
		startTimeout: p.opts.StartTimeout, log: p.opts.Log})
	var c pb.ProviderClient
	var schema spec.RuntimeSchema
	var caps []providers.Capability
	var calls bool
	if err == nil {
		c = pr.raw.(pb.ProviderClient)
		schema, caps, calls, err = p.fetchSchema(c)
		if err != nil {
			pr.kill()
		}
	}
	if err == nil && calls {
		// Without it (a plugin built with an older SDK, or a failure to
		// open it), calls are unary.
		if cs, cerr := openCalls(c); cerr == nil {
			c = &callClient{ProviderClient: c, cs: cs}
			go func() {
				<-pr.exited
				cs.close()
			}()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures++
		p.lastErr = err
		p.retryAt = time.Now().Add(p.backoff())
		p.log("%s: %v; next attempt in %s", p.bin.Block, err, p.backoff())
		return err
	}
	if p.closed {
		go pr.kill()
		return fmt.Errorf("%s: %w", p.bin.Block, errClosed)
	}
	p.cur, p.client, p.lastErr = pr, c, nil
	if !p.haveSchema {
		p.schema, p.caps, p.haveSchema = schema, caps, true
	}
	p.launches++
	if p.launches > 1 {
		p.log("%s: plugin %s relaunched (pid %d)", p.bin.Block, p.bin.Path, pr.pid)
		p.notify(providers.Event{Time: time.Now(), Kind: "reconnected"})
	}
	close(p.up)
	p.up = make(chan struct{})
	go p.monitor(pr)
	return nil
}

// fetchSchema asks the plugin for its schema; calls says whether it
// serves Calls.
func (p *Provider) fetchSchema(c pb.ProviderClient) (s spec.RuntimeSchema, caps []providers.Capability, calls bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.StartTimeout)
	defer cancel()
	resp, err := c.GetSchema(ctx, &pb.GetSchemaRequest{})
	if err != nil {
		return spec.RuntimeSchema{}, nil, false, fmt.Errorf("%s: plugin %s: reading its schema: %v", p.bin.Block, p.bin.Path, status.Convert(err).Message())
	}
	s, caps, unknown, err := wire.FromSchema(resp)
	if err != nil {
		return s, nil, false, fmt.Errorf("%s: plugin %s: invalid schema: %w", p.bin.Block, p.bin.Path, err)
	}
	if len(unknown) > 0 {
		p.log("%s: plugin %s declares capabilities this orch does not know, ignored: %v", p.bin.Block, p.bin.Path, unknown)
	}
	if s.Kind != p.kind {
		return s, nil, false, fmt.Errorf("%s: plugin %s serves runtime kind %q, not %q: fix the runtime block's kind or its plugin", p.bin.Block, p.bin.Path, s.Kind, p.kind)
	}
	return s, caps, resp.CallStream, nil
}

// monitor waits for pr to end. A crash (an exit orch did not ask for) is
// logged, announced as a "disconnected" event, and followed by a relaunch
// after the backoff.
func (p *Provider) monitor(pr *proc) {
	<-pr.exited
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == pr {
		p.cur, p.client = nil, nil
	}
	if p.closed {
		return
	}
	reason := pr.exitReason()
	if time.Since(pr.started) > p.opts.MaxBackoff {
		p.failures = 0
	}
	p.failures++
	p.lastErr = fmt.Errorf("%s: plugin %s ended (%s)", p.bin.Block, p.bin.Path, reason)
	d := p.backoff()
	p.retryAt = time.Now().Add(d)
	p.log("%s: plugin %s (pid %d) ended: %s; relaunching in %s", p.bin.Block, p.bin.Path, pr.pid, reason, d)
	p.notify(providers.Event{Time: time.Now(), Kind: "disconnected"})
	if p.relaunch != nil {
		p.relaunch.Stop()
	}
	p.relaunch = time.AfterFunc(d, func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.StartTimeout)
		defer cancel()
		p.get(ctx)
	})
}

// LoadSchema launches the plugin if needed and returns its schema and the
// capabilities it declares.
func (p *Provider) LoadSchema(ctx context.Context) (spec.RuntimeSchema, []providers.Capability, error) {
	p.mu.Lock()
	if p.haveSchema {
		defer p.mu.Unlock()
		return p.schema, slices.Clone(p.caps), nil
	}
	p.mu.Unlock()
	if _, _, err := p.get(ctx); err != nil {
		return spec.RuntimeSchema{Kind: p.kind}, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.schema, slices.Clone(p.caps), nil
}

// Schema returns the plugin's schema, launching it if needed; when it
// cannot be launched, a schema with only the kind (LoadSchema says why).
func (p *Provider) Schema() spec.RuntimeSchema {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.StartTimeout)
	defer cancel()
	s, _, _ := p.LoadSchema(ctx)
	return s
}

// Capabilities lists the capabilities the plugin declares (nil until it
// has been launched once).
func (p *Provider) Capabilities() []providers.Capability {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.caps)
}

func (p *Provider) has(c providers.Capability) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.caps, c)
}

// call runs f against the plugin within budget. who names what the call
// is about (an instance's address, else the runtime block) for errors.
func (p *Provider) call(ctx context.Context, op, who string, budget time.Duration, f func(context.Context, pb.ProviderClient) error) error {
	pr, c, err := p.get(ctx)
	if err != nil {
		return &providers.Error{Op: op, Retryable: true, Err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	err = f(cctx, c)
	if err == nil {
		return nil
	}
	return p.callErr(ctx, cctx, pr, op, who, budget, err)
}

func (p *Provider) callErr(ctx, cctx context.Context, pr *proc, op, who string, budget time.Duration, err error) error {
	if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		p.log("%s: plugin %s (pid %d) did not answer %s of %s within %s: killing it", p.bin.Block, p.bin.Path, pr.pid, op, who, budget)
		pr.kill()
		return &providers.Error{Op: op, Retryable: true,
			Err: fmt.Errorf("%s: the plugin %s of %s did not answer within %s; it was killed and will be relaunched", who, p.bin.Path, p.bin.Block, budget)}
	}
	if st, ok := status.FromError(err); ok && (st.Code() == codes.Unavailable || st.Code() == codes.Canceled) && ctx.Err() == nil {
		// The connection broke: the plugin is most likely gone.
		select {
		case <-pr.exited:
		case <-time.After(time.Second):
		}
		if !pr.alive() {
			return &providers.Error{Op: op, Retryable: true,
				Err: fmt.Errorf("%s: the plugin %s of %s crashed during %s (%s); it will be relaunched", who, p.bin.Path, p.bin.Block, op, pr.exitReason())}
		}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unimplemented {
		return &providers.Error{Op: op, Err: fmt.Errorf("%s: the plugin %s of %s does not implement %s: %s", who, p.bin.Path, p.bin.Block, op, st.Message())}
	}
	err = wire.FromStatus(err)
	var pe *providers.Error
	if errors.As(err, &pe) {
		if pe.Op == "" {
			pe.Op = op
		}
		return pe
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	return &providers.Error{Op: op, Err: fmt.Errorf("%s: %s", who, msg)}
}

// ---------------------------------------------------------------------------
// The required methods

func (p *Provider) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "observe", Err: err}
	}
	err = p.call(ctx, "observe", p.bin.Block, p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		r, err := c.Observe(ctx, &pb.ObserveRequest{Runtime: rt, Handles: wire.Handles(req.Handles)})
		if err != nil {
			return err
		}
		for s, o := range r.Objects {
			a, err := spec.ParseAddress(s)
			if err != nil {
				return fmt.Errorf("the plugin answered for %q: %w", s, err)
			}
			if _, asked := req.Handles[a]; asked {
				resp.Objects[a] = wire.FromObserved(o)
			}
		}
		return nil
	})
	if err != nil {
		return resp, err
	}
	for a := range req.Handles {
		if _, ok := resp.Objects[a]; !ok {
			resp.Objects[a] = providers.Observed{State: providers.StateUnknown}
		}
	}
	return resp, nil
}

func (p *Provider) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	var resp providers.StartResponse
	if req.Resource == nil {
		return resp, &providers.Error{Op: "start", Err: errors.New("no resource")}
	}
	rt, r, err := p.runtimeAndResource("start", req.Runtime, req.Resource)
	if err != nil {
		return resp, err
	}
	err = p.call(ctx, "start", req.Resource.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		out, err := c.Start(ctx, &pb.StartRequest{Runtime: rt, Resource: r, Project: req.Project,
			ConfigHash: req.ConfigHash, StateDir: req.StateDir})
		if err != nil {
			return err
		}
		resp.Handle, resp.Observed = out.Handle, wire.FromObserved(out.Observed)
		return nil
	})
	return resp, err
}

func (p *Provider) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	var resp providers.StopResponse
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "stop", Err: err}
	}
	err = p.call(ctx, "stop", req.Addr.String(), req.Timeout+p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		out, err := c.Stop(ctx, &pb.StopRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle,
			Signal: req.Signal.Name, TimeoutNs: int64(req.Timeout)})
		if err != nil {
			return err
		}
		resp.Killed, resp.Observed = out.Killed, wire.FromObserved(out.Observed)
		return nil
	})
	return resp, err
}

// ---------------------------------------------------------------------------
// Capabilities

// Delete forwards to the plugin when it declares delete; otherwise Stop
// leaves nothing behind and Delete does nothing.
func (p *Provider) Delete(ctx context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	if !p.has(providers.CapDelete) {
		return providers.DeleteResponse{}, nil
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return providers.DeleteResponse{}, &providers.Error{Op: "delete", Err: err}
	}
	return providers.DeleteResponse{}, p.call(ctx, "delete", req.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		_, err := c.Delete(ctx, &pb.DeleteRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle})
		return err
	})
}

// Health forwards to the plugin when it declares health; otherwise an
// instance is healthy while Observe finds it running.
func (p *Provider) Health(ctx context.Context, req providers.HealthRequest) (providers.HealthResponse, error) {
	var resp providers.HealthResponse
	if !p.has(providers.CapHealth) {
		o, err := p.Observe(ctx, providers.ObserveRequest{Runtime: req.Runtime, Handles: map[spec.Address]providers.Handle{req.Addr: req.Handle}})
		if err != nil {
			return resp, err
		}
		st := o.Objects[req.Addr].State
		return providers.HealthResponse{Healthy: st == providers.StateRunning, Detail: "observed " + st.String()}, nil
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "health", Err: err}
	}
	err = p.call(ctx, "health", req.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		out, err := c.Health(ctx, &pb.HealthRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle})
		if err != nil {
			return err
		}
		resp.Healthy, resp.Detail = out.Healthy, out.Detail
		return nil
	})
	return resp, err
}

// Adopt forwards to the plugin when it declares adopt; otherwise it finds
// nothing.
func (p *Provider) Adopt(ctx context.Context, req providers.AdoptRequest) (providers.AdoptResponse, error) {
	var resp providers.AdoptResponse
	if !p.has(providers.CapAdopt) {
		return resp, nil
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return resp, &providers.Error{Op: "adopt", Err: err}
	}
	err = p.call(ctx, "adopt", p.bin.Block, p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		out, err := c.Adopt(ctx, &pb.AdoptRequest{Runtime: rt, Project: req.Project, StateDir: req.StateDir})
		if err != nil {
			return err
		}
		for _, o := range out.Objects {
			a, err := spec.ParseAddress(o.Address)
			if err != nil {
				return fmt.Errorf("the plugin found %q: %w", o.Address, err)
			}
			resp.Objects = append(resp.Objects, providers.Adoptable{Addr: a, Handle: o.Handle,
				ConfigHash: o.ConfigHash, Observed: wire.FromObserved(o.Observed)})
		}
		return nil
	})
	return resp, err
}

func (p *Provider) unsupported(op string, addr spec.Address, what string) error {
	return &providers.Error{Op: op, Err: fmt.Errorf("%s: runtime kind %q (plugin %s of %s) does not support %s", addr, p.kind, p.bin.Path, p.bin.Block, what)}
}

// Signal forwards to the plugin when it declares signal; otherwise it is
// an error naming the instance.
func (p *Provider) Signal(ctx context.Context, req providers.SignalRequest) (providers.SignalResponse, error) {
	if !p.has(providers.CapSignal) {
		return providers.SignalResponse{}, p.unsupported("signal", req.Addr, "signals")
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: err}
	}
	return providers.SignalResponse{}, p.call(ctx, "signal", req.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		_, err := c.Signal(ctx, &pb.SignalRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle, Signal: req.Signal.Name})
		return err
	})
}

// Listens forwards to the plugin when it declares listens
// (providers.ListenerOwner); otherwise it reports false: orch cannot tell,
// so a health check's answer is taken as it is, as for any runtime that
// is not a ListenerOwner.
func (p *Provider) Listens(ctx context.Context, req providers.ListensRequest) (bool, error) {
	if !p.has(providers.CapListens) {
		return false, nil
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return false, &providers.Error{Op: "listens", Err: err}
	}
	var listens bool
	err = p.call(ctx, "listens", req.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		resp, err := c.Listens(ctx, &pb.ListensRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle, Port: int32(req.Port)})
		if err == nil {
			listens = resp.Listens
		}
		return err
	})
	return listens, err
}

// Update forwards to the plugin when it declares update; otherwise the
// change is only recorded and takes effect when the instance next starts,
// which the response says as a warning.
func (p *Provider) Update(ctx context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	var resp providers.UpdateResponse
	if !p.has(providers.CapUpdate) {
		resp.Warnings = []string{fmt.Sprintf("runtime kind %q cannot update in place: the change takes effect when the instance next starts", p.kind)}
		return resp, nil
	}
	if req.Resource == nil {
		return resp, &providers.Error{Op: "update", Err: errors.New("no resource")}
	}
	rt, r, err := p.runtimeAndResource("update", req.Runtime, req.Resource)
	if err != nil {
		return resp, err
	}
	err = p.call(ctx, "update", req.Resource.Addr.String(), p.opts.CallTimeout, func(ctx context.Context, c pb.ProviderClient) error {
		out, err := c.Update(ctx, &pb.UpdateRequest{Runtime: rt, Resource: r, Handle: req.Handle, StateDir: req.StateDir})
		if err != nil {
			return err
		}
		resp.Handle, resp.Warnings = out.Handle, out.Warnings
		return nil
	})
	return resp, err
}

// Logs forwards to the plugin when it declares logs; otherwise it is an
// error naming the instance.
func (p *Provider) Logs(ctx context.Context, req providers.LogsRequest) (providers.LogsResponse, error) {
	if !p.has(providers.CapLogs) {
		return providers.LogsResponse{}, p.unsupported("logs", req.Addr, "logs")
	}
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return providers.LogsResponse{}, &providers.Error{Op: "logs", Err: err}
	}
	pr, c, err := p.get(ctx)
	if err != nil {
		return providers.LogsResponse{}, &providers.Error{Op: "logs", Retryable: true, Err: err}
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := c.Logs(sctx, &pb.LogsRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle, StateDir: req.StateDir})
	if err != nil {
		cancel()
		return providers.LogsResponse{}, p.callErr(ctx, sctx, pr, "logs", req.Addr.String(), 0, err)
	}
	// The first chunk (or the error) tells whether the log can be read.
	first, err := stream.Recv()
	if err != nil && err != io.EOF {
		cancel()
		return providers.LogsResponse{}, p.callErr(ctx, sctx, pr, "logs", req.Addr.String(), 0, err)
	}
	r, w := io.Pipe()
	go func() {
		defer cancel()
		if err == io.EOF {
			w.Close()
			return
		}
		for chunk := first; ; {
			if _, werr := w.Write(chunk.Data); werr != nil {
				return
			}
			var rerr error
			if chunk, rerr = stream.Recv(); rerr != nil {
				if rerr == io.EOF {
					w.Close()
				} else {
					w.CloseWithError(fmt.Errorf("%s: reading the log through the plugin: %v", req.Addr, status.Convert(rerr).Message()))
				}
				return
			}
		}
	}()
	return providers.LogsResponse{Log: &cancelReader{PipeReader: r, cancel: cancel}}, nil
}

type cancelReader struct {
	*io.PipeReader
	cancel func()
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}

// eventSub is one Events caller.
type eventSub struct {
	ch chan providers.Event
}

// notify hands ev to every Events caller without blocking; p.mu is held.
func (p *Provider) notify(ev providers.Event) {
	for s := range p.subs {
		select {
		case s.ch <- ev:
		default:
		}
	}
}

// Events streams the plugin's own events when it declares events, plus
// the adapter's: "disconnected" when the plugin ends unasked and
// "reconnected" when it runs again (without an address: the reconciler
// should look at every instance again). The stream survives relaunches.
func (p *Provider) Events(ctx context.Context, req providers.EventsRequest) (<-chan providers.Event, error) {
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return nil, &providers.Error{Op: "events", Err: err}
	}
	if _, _, err := p.LoadSchema(ctx); err != nil {
		return nil, &providers.Error{Op: "events", Retryable: true, Err: err}
	}
	sub := &eventSub{ch: make(chan providers.Event, 64)}
	p.mu.Lock()
	p.subs[sub] = struct{}{}
	p.mu.Unlock()
	out := make(chan providers.Event)
	var wg sync.WaitGroup
	if p.has(providers.CapEvents) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.forwardEvents(ctx, rt, req.Project, sub.ch)
		}()
	}
	go func() {
		defer close(out)
		defer func() {
			p.mu.Lock()
			delete(p.subs, sub)
			p.mu.Unlock()
		}()
		for {
			select {
			case ev := <-sub.ch:
				select {
				case out <- ev:
				case <-ctx.Done():
					wg.Wait()
					return
				}
			case <-ctx.Done():
				wg.Wait()
				return
			}
		}
	}()
	return out, nil
}

// forwardEvents reads the plugin's event stream into ch until ctx is done,
// opening it again after each relaunch.
func (p *Provider) forwardEvents(ctx context.Context, rt *pb.Runtime, project string, ch chan<- providers.Event) {
	for ctx.Err() == nil {
		_, c, err := p.get(ctx)
		if err != nil {
			if !p.sleep(ctx, p.opts.Backoff) {
				return
			}
			continue
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		stream, err := c.Events(ctx, &pb.EventsRequest{Runtime: rt, Project: project})
		for err == nil {
			var ev *pb.Event
			if ev, err = stream.Recv(); err != nil {
				break
			}
			out := providers.Event{Kind: ev.Kind, Observed: wire.FromObserved(ev.Observed)}
			if ev.TimeUnixNs != 0 {
				out.Time = time.Unix(0, ev.TimeUnixNs)
			}
			if ev.Address != "" {
				if out.Addr, err = spec.ParseAddress(ev.Address); err != nil {
					break
				}
			}
			select {
			case ch <- out:
			case <-ctx.Done():
				return
			}
		}
		// The stream ended: wait for the next launch, or a while.
		t := time.NewTimer(p.opts.MaxBackoff)
		select {
		case <-up:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

func (p *Provider) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Watch forwards to the plugin's watch when it declares one, or observes
// the instance every WatchPoll. Either way it survives a crash of the
// plugin: once the plugin runs again the instance is watched again, from
// its handle, so an instance that outlived the crash is not reported as
// exited.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	rt, err := p.runtimes.Encode(req.Runtime)
	if err != nil {
		return providers.WatchResponse{}, &providers.Error{Op: "watch", Err: err}
	}
	if _, _, err := p.LoadSchema(ctx); err != nil {
		return providers.WatchResponse{}, &providers.Error{Op: "watch", Retryable: true, Err: err}
	}
	ch := make(chan providers.Observed, 1)
	go func() {
		defer close(ch)
		var obs providers.Observed
		var ok bool
		if p.has(providers.CapWatch) {
			obs, ok = p.watchStream(ctx, rt, req)
		} else {
			obs, ok = p.watchPoll(ctx, req)
		}
		if ok {
			ch <- obs
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}

func (p *Provider) watchStream(ctx context.Context, rt *pb.Runtime, req providers.WatchRequest) (providers.Observed, bool) {
	for ctx.Err() == nil {
		_, c, err := p.get(ctx)
		if err != nil {
			if !p.sleep(ctx, p.opts.Backoff) {
				break
			}
			continue
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		stream, err := c.Watch(ctx, &pb.WatchRequest{Runtime: rt, Address: req.Addr.String(), Handle: req.Handle})
		if err == nil {
			var resp *pb.WatchResponse
			if resp, err = stream.Recv(); err == nil {
				return wire.FromObserved(resp.Observed), true
			}
		}
		if ctx.Err() != nil {
			break
		}
		p.log("%s: watching %s: %v", p.bin.Block, req.Addr, status.Convert(err).Message())
		t := time.NewTimer(p.opts.MaxBackoff)
		select {
		case <-up:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return providers.Observed{}, false
}

func (p *Provider) watchPoll(ctx context.Context, req providers.WatchRequest) (providers.Observed, bool) {
	t := time.NewTicker(p.opts.WatchPoll)
	defer t.Stop()
	for {
		resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: req.Runtime, Handles: map[spec.Address]providers.Handle{req.Addr: req.Handle}})
		if o := resp.Objects[req.Addr]; err == nil && o.Gone() {
			return o, true
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return providers.Observed{}, false
		}
	}
}

// runtimeAndResource converts what Start and Update send to the plugin.
func (p *Provider) runtimeAndResource(op string, rt *spec.Runtime, res *spec.Resource) (*pb.Runtime, *pb.Resource, error) {
	prt, err := p.runtimes.Encode(rt)
	if err != nil {
		return nil, nil, &providers.Error{Op: op, Err: err}
	}
	pr, err := wire.ResourceOf(res)
	if err != nil {
		return nil, nil, &providers.Error{Op: op, Err: err}
	}
	return prt, pr, nil
}
