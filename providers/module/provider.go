package module

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// Kind is the runtime kind of modules: the key of this provider in the
// executor's providers (spec.ModuleRuntime.Type).
const Kind = "module"

// wasmMagic starts every WebAssembly binary.
var wasmMagic = []byte{0, 'a', 's', 'm'}

// Options configure a Provider.
type Options struct {
	// Wasm loads .wasm modules; Plugin loads plugin executables. A nil
	// loader makes Start of that kind fail with a clear error.
	Wasm, Plugin Loader
	// Bus is the engine's event bus; nil: a private one.
	Bus *bus.Bus
	// KV returns the namespace of a module; nil: KV calls fail.
	KV func(spec.Address) KV
	// Log receives what modules log; nil: discarded.
	Log func(Record)
	// Now is the clock of lifecycle events; default time.Now.
	Now func() time.Time
	// Unhosted is the reason modules cannot run in this process (a
	// one-shot orch apply: modules live in the engine); Start fails with
	// it, and every handle observes as missing.
	Unhosted string
}

// Provider hosts modules for the engine. It implements providers.Provider
// and providers.Watcher. Safe for concurrent use.
type Provider struct {
	opts Options
	host string // identifies this process's provider in handles

	mu      sync.Mutex
	seq     uint64
	running map[spec.Address]*hosted
}

// hosted is one module run by this provider.
type hosted struct {
	addr    spec.Address
	token   uint64
	cancel  context.CancelFunc
	started time.Time
	state   atomic.Int32
	done    chan struct{} // closed when Run returned
	err     error         // why it failed; valid after done
	calls   *Calls        // the guest's, when it counts them
}

// handle is what state stores for a module.
type handle struct {
	Host  string `json:"host"`
	Token uint64 `json:"token"`
	Hash  string `json:"sha256,omitempty"`
}

// New returns a provider hosting modules in this process.
func New(opts Options) *Provider {
	if opts.Bus == nil {
		opts.Bus = bus.NewBus()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Provider{opts: opts, host: hex.EncodeToString(b[:]), running: map[spec.Address]*hosted{}}
}

// Bus returns the event bus modules use.
func (p *Provider) Bus() *bus.Bus { return p.opts.Bus }

// Schema: modules add no runtime attributes.
func (p *Provider) Schema() spec.RuntimeSchema { return spec.RuntimeSchema{} }

// State returns the lifecycle state of the module at addr hosted here,
// and false when none is.
func (p *Provider) State(addr spec.Address) (State, bool) {
	p.mu.Lock()
	h := p.running[addr]
	p.mu.Unlock()
	if h == nil {
		return 0, false
	}
	return State(h.state.Load()), true
}

func (p *Provider) lookup(addr spec.Address, raw providers.Handle) *hosted {
	var hd handle
	if json.Unmarshal(raw, &hd) != nil || hd.Host != p.host {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.running[addr]; h != nil && h.token == hd.Token {
		return h
	}
	return nil
}

// observe reports h as the executor sees it.
func (h *hosted) observe() providers.Observed {
	select {
	case <-h.done:
		o := providers.Observed{State: providers.StateExited, StartedAt: h.started}
		if h.err != nil {
			o.ExitCode, o.Error = 1, h.err.Error()
		}
		return o
	default:
		return providers.Observed{State: providers.StateRunning, StartedAt: h.started}
	}
}

// Observe reports modules hosted here as running or exited; any other
// handle (an earlier engine's, a one-shot apply's) as missing.
func (p *Provider) Observe(_ context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	out := providers.ObserveResponse{Objects: make(map[spec.Address]providers.Observed, len(req.Handles))}
	for addr, raw := range req.Handles {
		if h := p.lookup(addr, raw); h != nil {
			out.Objects[addr] = h.observe()
		} else {
			out.Objects[addr] = providers.Observed{State: providers.StateMissing}
		}
	}
	return out, nil
}

func (p *Provider) publish(addr spec.Address, s State, err error) {
	p.opts.Bus.Publish(bus.LifecycleEvent(addr, s.String(), p.opts.Now(), err))
}

func (h *hosted) set(p *Provider, s State, err error) {
	h.state.Store(int32(s))
	p.publish(h.addr, s, err)
}

// loaderFor picks the loader of source by its first bytes.
func (p *Provider) loaderFor(source string) (Loader, string, error) {
	f, err := os.Open(source)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	if bytes.Equal(head[:n], wasmMagic) {
		return p.opts.Wasm, "WebAssembly", nil
	}
	return p.opts.Plugin, "plugin", nil
}

func startError(err error) error {
	return &providers.Error{Op: "start", Attr: "source", Err: err}
}

// CallStats returns, for each module hosted here now, its calls so far
// per hook and how long they took (module call latency, for metrics).
func (p *Provider) CallStats() map[spec.Address]map[Hook]CallHistogram {
	p.mu.Lock()
	calls := make(map[spec.Address]*Calls, len(p.running))
	for a, h := range p.running {
		if h.calls != nil {
			calls[a] = h.calls
		}
	}
	p.mu.Unlock()
	out := make(map[spec.Address]map[Hook]CallHistogram, len(calls))
	for a, c := range calls {
		if s := c.Snapshot(); len(s) > 0 {
			out[a] = s
		}
	}
	return out
}

// Start loads the module, runs it and returns once it is running (its
// start hook returned) or has failed in its init or start hook: that
// failure is an exit (Observed), not an error, so that the restart policy
// applies. An error means the module cannot run as declared (unreadable
// or invalid binary, checksum mismatch, no loader for its kind).
func (p *Provider) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	r := req.Resource
	if p.opts.Unhosted != "" {
		return providers.StartResponse{}, &providers.Error{Op: "start", Err: errors.New(p.opts.Unhosted)}
	}
	loader, kind, err := p.loaderFor(r.Source)
	if err != nil {
		return providers.StartResponse{}, startError(err)
	}
	if loader == nil {
		return providers.StartResponse{}, startError(fmt.Errorf("%s is a %s module, and this orch cannot host %s modules", r.Source, kind, kind))
	}
	p.mu.Lock()
	if old := p.running[r.Addr]; old != nil {
		select {
		case <-old.done:
		default:
			p.mu.Unlock()
			return providers.StartResponse{}, &providers.Error{Op: "start", Err: fmt.Errorf("%s is already running", r.Addr)}
		}
	}
	p.seq++
	// The guest lives as long as this process or until Stop, not as long
	// as the call that started it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &hosted{addr: r.Addr, token: p.seq, done: make(chan struct{}), cancel: cancel}
	p.running[r.Addr] = h
	p.mu.Unlock()

	svc := Services{Bus: p.opts.Bus, Log: p.opts.Log}
	if p.opts.KV != nil {
		svc.KV = p.opts.KV(r.Addr)
	}
	guest, err := loader.Load(ctx, LoadRequest{Resource: r, Services: svc})
	if err != nil {
		cancel()
		h.err = err
		close(h.done)
		h.set(p, StateFailed, err)
		return providers.StartResponse{}, startError(err)
	}
	if c, ok := guest.(Counted); ok {
		p.mu.Lock()
		h.calls = c.Calls()
		p.mu.Unlock()
	}
	h.set(p, StateLoaded, nil)
	ready := make(chan struct{})
	h.set(p, StateStarting, nil)
	go func() {
		err := guest.Run(runCtx, func() {
			h.started = p.opts.Now()
			h.set(p, StateRunning, nil)
			close(ready)
		})
		cancel()
		h.err = err
		if err != nil {
			h.set(p, StateFailed, err)
		} else {
			h.set(p, StateStopped, nil)
		}
		close(h.done)
	}()
	select {
	case <-ready:
	case <-h.done:
		// It failed in its init or start hook: started, and exited at
		// once, as a process that crashes on start; its restart policy
		// decides what comes next. Watch and Observe report how it ended.
	case <-ctx.Done():
		cancel()
		<-h.done
		return providers.StartResponse{}, startError(ctx.Err())
	}
	raw, _ := json.Marshal(handle{Host: p.host, Token: h.token, Hash: r.SourceHash})
	return providers.StartResponse{Handle: raw, Observed: h.observe()}, nil
}

// Stop cancels the module (its stop hook runs, under its own call budget)
// and waits for it up to the timeout. A module not hosted here is already
// stopped.
func (p *Provider) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	h := p.lookup(req.Addr, req.Handle)
	if h == nil {
		return providers.StopResponse{Observed: providers.Observed{State: providers.StateMissing}}, nil
	}
	select {
	case <-h.done:
	default:
		h.set(p, StateStopping, nil)
		h.cancel()
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultStopTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.done:
	case <-t.C:
		return providers.StopResponse{Killed: true, Observed: h.observe()},
			&providers.Error{Op: "stop", Err: fmt.Errorf("%s did not stop within %s", req.Addr, timeout)}
	case <-ctx.Done():
		return providers.StopResponse{}, ctx.Err()
	}
	p.mu.Lock()
	if p.running[req.Addr] == h {
		delete(p.running, req.Addr)
	}
	p.mu.Unlock()
	return providers.StopResponse{Observed: h.observe()}, nil
}

// Watch reports the end of the module (a failure, or a stop) at once.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	ch := make(chan providers.Observed, 1)
	h := p.lookup(req.Addr, req.Handle)
	if h == nil {
		ch <- providers.Observed{State: providers.StateMissing}
		close(ch)
		return providers.WatchResponse{Exited: ch}, nil
	}
	go func() {
		defer close(ch)
		select {
		case <-h.done:
			ch <- h.observe()
		case <-ctx.Done():
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}

// Close stops every module hosted here (the process is going away).
func (p *Provider) Close(ctx context.Context) {
	p.mu.Lock()
	hs := make([]*hosted, 0, len(p.running))
	for _, h := range p.running {
		hs = append(hs, h)
	}
	p.mu.Unlock()
	for _, h := range hs {
		h.cancel()
	}
	for _, h := range hs {
		select {
		case <-h.done:
		case <-ctx.Done():
			return
		}
	}
}
