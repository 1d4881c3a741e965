package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

var (
	_ module.Loader = (*Loader)(nil)
	_ module.Guest  = (*Guest)(nil)
)

// Defaults of a module plugin's limits, for a Resource built by hand.
const (
	DefaultCallTimeout = 5 * time.Second
	DefaultQueueLimit  = 1 << 16
	DefaultBatch       = 512
	// inFlight is how many event batches may await the module's
	// acknowledgement: enough to keep a stream busy, few enough that a
	// hung module is noticed within its call budget.
	inFlight = 4
)

// LoaderOptions configures a Loader. The zero value is ready to use.
type LoaderOptions struct {
	// StartTimeout bounds a launch: from starting the executable to the
	// end of go-plugin's handshake. Default 10s.
	StartTimeout time.Duration
	// QueueLimit bounds the events waiting for one module; events over it
	// are dropped and counted (Stats). Default 65536.
	QueueLimit int
	// Batch is the most events sent in one message. Default 512.
	Batch int
}

// Loader loads module plugins: modules whose source is an executable
// served over go-plugin. Each loaded module is its own plugin process.
// It implements module.Loader; it is safe for concurrent use and holds no
// state of its own.
type Loader struct {
	opts LoaderOptions
}

// NewLoader returns a Loader.
func NewLoader(opts LoaderOptions) *Loader {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.QueueLimit <= 0 {
		opts.QueueLimit = DefaultQueueLimit
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	return &Loader{opts: opts}
}

// Load verifies the executable of req.Resource.Source (its SHA-256 when
// the module pins one: a mismatch is a *ChecksumError naming the module
// and both hashes), launches it and completes the handshake. The process
// then waits, loaded, for Run (or Close). Output of the process goes to
// Services.Log as info records.
func (l *Loader) Load(ctx context.Context, req module.LoadRequest) (module.Guest, error) {
	r := req.Resource
	if r == nil {
		return nil, errors.New("plugin: no module to load")
	}
	if req.Services.Bus == nil {
		return nil, fmt.Errorf("%s: no event bus", r.Addr)
	}
	config := []byte("null")
	if r.Config != cty.NilVal && !r.Config.IsNull() {
		v, _ := r.Config.UnmarkDeep()
		var err error
		if config, err = ctyjson.Marshal(v, v.Type()); err != nil {
			return nil, fmt.Errorf("%s: config: %w", r.Addr, err)
		}
	}
	g := &Guest{addr: r.Addr, opts: l.opts, svc: req.Services, config: config,
		budget: r.Limits.CallTimeout, notify: make(chan struct{}, 1)}
	if g.budget <= 0 {
		g.budget = DefaultCallTimeout
	}
	logf := func(line string) { g.logRecord(module.LevelInfo, line) }
	type result struct {
		p   *proc
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := launch(Binary{Path: r.Source, SHA256: r.SHA256, Block: r.Addr.String()},
			launchOptions{kind: wire.ModulePlugin, plugin: modulePlugin{}, startTimeout: l.opts.StartTimeout, log: logf})
		done <- result{p, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		g.proc = res.p
		g.conn = res.p.raw.(*moduleConn)
		return g, nil
	case <-ctx.Done():
		go func() {
			if res := <-done; res.p != nil {
				res.p.kill()
			}
		}()
		return nil, fmt.Errorf("%s: loading the plugin %s: %w", r.Addr, r.Source, ctx.Err())
	}
}

// Stats counts a module's events.
type Stats struct {
	Delivered uint64 // handled by the module (acknowledged)
	Dropped   uint64 // dropped because its queue was full
}

// Guest is one loaded module plugin: a process, loaded until Run.
type Guest struct {
	addr   spec.Address
	opts   LoaderOptions
	svc    module.Services
	config []byte
	budget time.Duration
	proc   *proc
	conn   *moduleConn

	ran atomic.Bool

	mu     sync.Mutex
	queue  []bus.Event
	subs   []func()
	closed bool // no more events are queued
	notify chan struct{}
	stats  struct{ delivered, dropped atomic.Uint64 }
	calls  module.Calls
}

// Calls returns the module's call counts and latencies: each hook, and
// each batch of events from its sending to the module's acknowledgement.
func (g *Guest) Calls() *module.Calls { return &g.calls }

// Stats returns the module's event counts so far.
func (g *Guest) Stats() Stats {
	return Stats{Delivered: g.stats.delivered.Load(), Dropped: g.stats.dropped.Load()}
}

// Pid returns the plugin's process id.
func (g *Guest) Pid() int { return g.proc.pid }

func (g *Guest) logRecord(level module.Level, msg string) {
	if g.svc.Log != nil {
		g.svc.Log(module.Record{Addr: g.addr, Level: level, Message: msg})
	}
}

// Close kills a plugin that was loaded and will not run. After Run it
// does nothing.
func (g *Guest) Close(ctx context.Context) error {
	if g.ran.Swap(true) {
		return nil
	}
	g.proc.kill()
	return nil
}

// failure is how a module fails: the hook, and why.
func (g *Guest) failure(what string, err error) error {
	if !g.proc.alive() {
		return fmt.Errorf("%s: the plugin %s crashed during %s (%s)", g.addr, g.proc.bin.Path, what, g.proc.exitReason())
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.DeadlineExceeded {
			return fmt.Errorf("%s: %s did not return within its budget of %s (limits.call_timeout); the plugin was killed", g.addr, what, g.budget)
		}
		if st.Code() == codes.Unavailable {
			// The connection broke: wait a moment for the exit to show.
			select {
			case <-g.proc.exited:
				return fmt.Errorf("%s: the plugin %s crashed during %s (%s)", g.addr, g.proc.bin.Path, what, g.proc.exitReason())
			case <-time.After(time.Second):
			}
		}
		return fmt.Errorf("%s: %s", g.addr, st.Message())
	}
	return fmt.Errorf("%s: %s: %w", g.addr, what, err)
}

// hook calls one hook within the module's budget.
func (g *Guest) hook(ctx context.Context, what string, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel()
	began := time.Now()
	err := f(cctx)
	g.calls.Observe(hookNamed(what), time.Since(began))
	if err != nil {
		return g.failure(what, err)
	}
	return nil
}

// Run initialises the module with its config, starts it, calls ready,
// delivers the events of its subscriptions in batches, and serves its
// calls back (publish, subscribe, KV, log) until ctx is done; then it
// stops the module (its stop hook within limits.call_timeout) and ends the
// process. It returns as soon as the plugin fails (an error of a hook, a
// call over its budget, a crash) with the reason; the process is gone
// when Run returns. Run does not publish lifecycle events.
func (g *Guest) Run(ctx context.Context, ready func()) error {
	if g.ran.Swap(true) {
		return fmt.Errorf("%s: the module was already run or closed", g.addr)
	}
	defer g.proc.kill()
	defer g.unsubscribe()

	// orch's services for the module, served back through the broker.
	id := g.conn.broker.NextId()
	go g.conn.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(append(opts, wire.ServerOptions()...)...)
		pb.RegisterHostServer(s, &hostServer{g: g})
		return s
	})

	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A crash cancels every call in flight at once.
	go func() {
		select {
		case <-g.proc.exited:
			cancel()
		case <-rctx.Done():
		}
	}()
	if err := g.hook(rctx, "init", func(c context.Context) error {
		_, err := g.conn.client.Init(c, &pb.InitRequest{Config: g.config, HostBrokerId: id, Address: g.addr.String()})
		return err
	}); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return g.stop(rctx)
	}
	if err := g.hook(rctx, "start", func(c context.Context) error {
		_, err := g.conn.client.Start(c, &pb.StartModuleRequest{})
		return err
	}); err != nil {
		return err
	}
	sctx, scancel := context.WithCancel(rctx)
	defer scancel()
	stream, err := g.conn.client.Deliver(sctx)
	if err != nil {
		return g.failure("event delivery", err)
	}
	if ready != nil {
		ready()
	}
	if err := g.deliver(ctx, stream); err != nil {
		return err
	}
	return g.stop(rctx)
}

// during names what a plugin was doing when its event stream broke: in
// on_event when a batch it was sent is not acknowledged yet (which of the
// process's exit and the stream's end is seen first does not matter).
func during(pending []time.Time) string {
	if len(pending) > 0 {
		return "on_event"
	}
	return "event delivery"
}

// deliver sends queued events to the module until ctx is done (nil) or
// the module fails (its error).
func (g *Guest) deliver(ctx context.Context, stream grpc.BidiStreamingClient[pb.EventBatch, pb.DeliverAck]) error {
	acks := make(chan uint64, inFlight)
	recvErr := make(chan error, 1)
	go func() {
		for {
			a, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			acks <- a.Events
		}
	}()
	sends := make(chan *pb.EventBatch, inFlight)
	sendErr := make(chan error, 1)
	go func() {
		for b := range sends {
			if err := stream.Send(b); err != nil {
				sendErr <- err
				for range sends {
				}
				return
			}
		}
		stream.CloseSend()
	}()
	defer close(sends)
	var pending []time.Time // when each unacknowledged batch was queued
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	arm := func() {
		timer.Stop()
		if len(pending) > 0 {
			timer.Reset(time.Until(pending[0].Add(g.budget)))
		}
	}
	for {
		var notify chan struct{}
		if len(pending) < inFlight {
			notify = g.notify
		}
		select {
		case <-ctx.Done():
			// Stopping: what was sent is handled (and counted) before
			// the stop hook, within the budget; what is queued is not sent.
			for len(pending) > 0 {
				select {
				case n := <-acks:
					g.stats.delivered.Add(n)
					pending = pending[1:]
					arm()
				case <-timer.C:
					return nil
				case <-recvErr:
					return nil
				case <-g.proc.exited:
					return nil
				}
			}
			return nil
		case <-g.proc.exited:
			return g.failure(during(pending), status.Error(codes.Unavailable, "exited"))
		case err := <-recvErr:
			if err == io.EOF {
				err = errors.New("the module ended its event stream")
			}
			return g.failure("on_event", err)
		case err := <-sendErr:
			return g.failure(during(pending), err)
		case n := <-acks:
			g.stats.delivered.Add(n)
			if len(pending) > 0 {
				g.calls.Observe(module.HookEvent, time.Since(pending[0]))
				pending = pending[1:]
			}
			arm()
			if g.hasQueued() {
				g.wake()
			}
		case <-timer.C:
			g.proc.kill()
			return fmt.Errorf("%s: on_event did not return within its budget of %s (limits.call_timeout); the plugin was killed", g.addr, g.budget)
		case <-notify:
			b := g.take()
			if b == nil {
				continue
			}
			pending = append(pending, time.Now())
			if len(pending) == 1 {
				arm()
			}
			sends <- b
			if g.hasQueued() {
				g.wake()
			}
		}
	}
}

func hookNamed(what string) module.Hook {
	switch what {
	case "init":
		return module.HookInit
	case "start":
		return module.HookStart
	case "stop":
		return module.HookStop
	}
	return module.HookEvent
}

// stop closes the module: its stop hook within the budget; the caller
// then ends the process.
func (g *Guest) stop(ctx context.Context) error {
	g.unsubscribe()
	return g.hook(ctx, "stop", func(c context.Context) error {
		_, err := g.conn.client.Stop(c, &pb.StopModuleRequest{})
		return err
	})
}

// offer queues ev for the module (the bus calls it; it never blocks).
func (g *Guest) offer(ev bus.Event) {
	g.mu.Lock()
	if g.closed || len(g.queue) >= g.opts.QueueLimit {
		g.mu.Unlock()
		g.stats.dropped.Add(1)
		return
	}
	g.queue = append(g.queue, ev)
	g.mu.Unlock()
	g.wake()
}

func (g *Guest) wake() {
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

func (g *Guest) hasQueued() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue) > 0
}

// take removes up to Batch queued events, as one message; nil when none.
func (g *Guest) take() *pb.EventBatch {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.queue), g.opts.Batch)
	if n == 0 {
		return nil
	}
	b := &pb.EventBatch{Events: make([]*pb.BusEvent, n)}
	for i, ev := range g.queue[:n] {
		b.Events[i] = &pb.BusEvent{Topic: ev.Topic, Data: ev.Data}
	}
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil
	}
	return b
}

func (g *Guest) subscribe(pattern string) {
	cancel := g.svc.Bus.Subscribe(pattern, g.offer)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cancel()
		return
	}
	g.subs = append(g.subs, cancel)
	g.mu.Unlock()
}

func (g *Guest) unsubscribe() {
	g.mu.Lock()
	subs := g.subs
	g.subs, g.closed, g.queue = nil, true, nil
	g.mu.Unlock()
	for _, c := range subs {
		c()
	}
}

// hostServer is orch's side of the module's calls back (service Host).
type hostServer struct {
	pb.UnimplementedHostServer
	g *Guest
}

const (
	maxKey   = 1 << 10
	maxValue = 1 << 20
)

func (h *hostServer) Publish(_ context.Context, req *pb.PublishRequest) (*pb.PublishResponse, error) {
	for _, ev := range req.Events {
		if !bus.ValidTopic(ev.Topic) {
			if len(ev.Topic) >= len(bus.ReservedPrefix) && ev.Topic[:len(bus.ReservedPrefix)] == bus.ReservedPrefix {
				return nil, status.Errorf(codes.PermissionDenied, "publish: topic %q is reserved to orch", ev.Topic)
			}
			return nil, status.Errorf(codes.InvalidArgument, "publish: %q is not a valid topic (printable ASCII without spaces or '*', at most 255 bytes)", ev.Topic)
		}
	}
	for _, ev := range req.Events {
		h.g.svc.Bus.Publish(bus.Event{Topic: ev.Topic, Data: ev.Data})
	}
	return &pb.PublishResponse{}, nil
}

func (h *hostServer) Subscribe(_ context.Context, req *pb.SubscribeRequest) (*pb.SubscribeResponse, error) {
	if !bus.ValidPattern(req.Pattern) {
		return nil, status.Errorf(codes.InvalidArgument, "subscribe: %q is not a valid pattern (a topic, a prefix ending in '*', or '*')", req.Pattern)
	}
	h.g.subscribe(req.Pattern)
	return &pb.SubscribeResponse{}, nil
}

func (h *hostServer) kv() (module.KV, error) {
	if h.g.svc.KV == nil {
		return nil, status.Error(codes.FailedPrecondition, "this module has no key-value namespace")
	}
	return h.g.svc.KV, nil
}

func checkKey(k string) error {
	if k == "" || len(k) > maxKey {
		return status.Errorf(codes.InvalidArgument, "a key is 1 to %d bytes", maxKey)
	}
	return nil
}

func (h *hostServer) KVGet(_ context.Context, req *pb.KVGetRequest) (*pb.KVGetResponse, error) {
	kv, err := h.kv()
	if err != nil {
		return nil, err
	}
	if err := checkKey(req.Key); err != nil {
		return nil, err
	}
	v, ok, err := kv.Get(req.Key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "kv get %q: %v", req.Key, err)
	}
	return &pb.KVGetResponse{Value: v, Found: ok}, nil
}

func (h *hostServer) KVPut(_ context.Context, req *pb.KVPutRequest) (*pb.KVPutResponse, error) {
	kv, err := h.kv()
	if err != nil {
		return nil, err
	}
	if err := checkKey(req.Key); err != nil {
		return nil, err
	}
	if len(req.Value) > maxValue {
		return nil, status.Errorf(codes.InvalidArgument, "kv put %q: a value is at most %d bytes", req.Key, maxValue)
	}
	if err := kv.Put(req.Key, req.Value); err != nil {
		return nil, status.Errorf(codes.Internal, "kv put %q: %v", req.Key, err)
	}
	return &pb.KVPutResponse{}, nil
}

func (h *hostServer) KVDelete(_ context.Context, req *pb.KVDeleteRequest) (*pb.KVDeleteResponse, error) {
	kv, err := h.kv()
	if err != nil {
		return nil, err
	}
	if err := checkKey(req.Key); err != nil {
		return nil, err
	}
	if err := kv.Delete(req.Key); err != nil {
		return nil, status.Errorf(codes.Internal, "kv delete %q: %v", req.Key, err)
	}
	return &pb.KVDeleteResponse{}, nil
}

func (h *hostServer) Log(_ context.Context, req *pb.LogRequest) (*pb.LogResponse, error) {
	lv := module.Level(req.Level)
	if lv < module.LevelDebug || lv > module.LevelError {
		lv = module.LevelInfo
	}
	h.g.logRecord(lv, req.Message)
	return &pb.LogResponse{}, nil
}
