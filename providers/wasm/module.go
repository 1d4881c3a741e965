package wasm

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/spec"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// State is where a module is in its lifecycle (see the package doc):
// module.State.
type State = module.State

// States of a module.
const (
	StateLoaded   = module.StateLoaded
	StateStarting = module.StateStarting
	StateRunning  = module.StateRunning
	StateStopping = module.StateStopping
	StateStopped  = module.StateStopped
	StateFailed   = module.StateFailed
)

// Names of the guest's exports (docs/modules.md).
const (
	ExportInit       = "orch_init"
	ExportStart      = "orch_start"
	ExportStop       = "orch_stop"
	ExportOnEvent    = "orch_on_event"
	ExportOnEvents   = "orch_on_events"
	ExportAlloc      = "orch_alloc"
	exportInitialize = "_initialize" // the reactor's entry: the Go runtime and package init
)

// Stats are counters of one module.
type Stats struct {
	Delivered uint64 // events handed to orch_on_event
	Dropped   uint64 // events dropped because the queue was full
}

// Module is one loaded guest. Run it once; it is not reusable after Run
// returns (Load it again to restart). Its methods are safe for concurrent
// use.
type Module struct {
	h      *Host
	addr   spec.Address
	hash   string
	config []byte
	limits spec.ModuleLimits
	grants *spec.Grants
	kv     KV
	bus    *bus.Bus
	logf   func(LogRecord)

	rt       wazero.Runtime
	compiled *compiled
	inst     api.Module    // set by Run
	grantFS  []*grantFS    // inst's directory grants, closed after it
	mem      *linearMemory // inst's memory
	fns      struct{ init, start, stop, onEvent, onEvents, alloc api.Function }
	batch    []byte                     // the host-side encoding of a batch of events
	buf      struct{ ptr, size uint32 } // the guest buffer of the last orch_alloc
	stack    []uint64
	stderr   head

	state atomic.Int32
	ran   atomic.Bool

	mu      sync.Mutex
	queue   []bus.Event
	spare   []bus.Event
	wake    chan struct{}
	subs    []func()
	stats   struct{ delivered, dropped atomic.Uint64 }
	calls   module.Calls
	calling string  // the hook being called, for errors
	budget  *budget // the context of calls into the guest (callContext)
}

// Addr returns the module's address.
func (m *Module) Addr() spec.Address { return m.addr }

// Hash returns the SHA-256 of the module's .wasm file, hex-encoded: a
// changed hash on reload means the module must be replaced.
func (m *Module) Hash() string { return m.hash }

// State returns the module's current state.
func (m *Module) State() State { return State(m.state.Load()) }

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	return Stats{Delivered: m.stats.delivered.Load(), Dropped: m.stats.dropped.Load()}
}

// Error is why a module failed.
type Error struct {
	Addr spec.Address
	// Hook is the call that failed: "instantiate", "orch_init", ...
	Hook string
	// Limit is true when the call exceeded the module's call budget or
	// was interrupted by its context: retrying may help.
	Limit bool
	Err   error
	// Stderr is the end of what the guest wrote on stderr (a Go panic).
	Stderr string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s: %v", e.Addr, e.Hook, e.Err)
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func (m *Module) transition(to State, err error) {
	from := State(m.state.Swap(int32(to)))
	m.h.report(StateChange{Addr: m.addr, From: from, To: to, Err: err})
}

// Close releases a module that was loaded but never run. After Run it does
// nothing.
func (m *Module) Close(ctx context.Context) error {
	if m.ran.Swap(true) {
		return nil
	}
	m.transition(StateStopped, nil)
	m.h.release(m.compiled)
	return nil
}

// Run starts the module (instantiate, orch_init with its config, then
// orch_start), delivers the events it subscribed to one at a time until
// ctx is done, then calls orch_stop and releases the module. It returns nil
// when the module stopped cleanly, or an *Error when it failed (a trap,
// an exit, a non-zero result, a call over its budget, memory over its cap);
// either way the module is closed when Run returns. Each call into the
// guest has the budget Limits.CallTimeout, orch_stop included, whatever
// ctx says.
func (m *Module) Run(ctx context.Context) error { return m.RunReady(ctx, nil) }

// RunReady is Run, calling ready (when not nil) once the module is
// running: orch_start returned 0.
func (m *Module) RunReady(ctx context.Context, ready func()) error {
	if m.ran.Swap(true) {
		return fmt.Errorf("%s: Run called twice", m.addr)
	}
	ctx = context.WithValue(ctx, moduleKey{}, m)
	defer m.h.release(m.compiled)
	defer func() {
		if m.inst != nil {
			m.inst.Close(context.WithoutCancel(ctx))
		}
		m.closeGrants()
		m.reuseMemory()
	}()
	defer m.unsubscribe()
	m.transition(StateStarting, nil)
	if err := m.start(ctx); err != nil {
		m.transition(StateFailed, err)
		return err
	}
	m.transition(StateRunning, nil)
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			m.transition(StateStopping, nil)
			m.unsubscribe()
			if err := m.call(ctx, m.fns.stop, ExportStop); err != nil {
				m.transition(StateFailed, err)
				return err
			}
			m.transition(StateStopped, nil)
			return nil
		case <-m.wake:
			if err := m.drain(ctx); err != nil {
				m.transition(StateFailed, err)
				return err
			}
		}
	}
}

func (m *Module) start(ctx context.Context) error {
	inst, err := m.instantiate(ctx, &m.h.pool, exportInitialize)
	if err != nil {
		return m.fail("instantiate", err)
	}
	m.inst = inst
	m.fns.init = inst.ExportedFunction(ExportInit)
	m.fns.start = inst.ExportedFunction(ExportStart)
	m.fns.stop = inst.ExportedFunction(ExportStop)
	m.fns.onEvent = inst.ExportedFunction(ExportOnEvent)
	m.fns.onEvents = inst.ExportedFunction(ExportOnEvents)
	if f := m.fns.onEvents; f != nil && (len(f.Definition().ParamTypes()) != 3 || len(f.Definition().ResultTypes()) != 1) {
		return m.fail(ExportOnEvents, errors.New("must take (ptr, len, count i32) and return a status i32"))
	}
	m.fns.alloc = inst.ExportedFunction(ExportAlloc)
	m.stack = make([]uint64, 4)
	if m.fns.init != nil {
		ptr, err := m.write(ctx, m.config)
		if err != nil {
			return err
		}
		m.stack[0], m.stack[1] = uint64(ptr), uint64(len(m.config))
		if err := m.callStack(ctx, m.fns.init, ExportInit); err != nil {
			return err
		}
	}
	if err := m.call(ctx, m.fns.start, ExportStart); err != nil {
		return err
	}
	m.h.setMemoryHint(m.compiled, m.addr, uint64(inst.Memory().Size()))
	return nil
}

// instantiate instantiates the module, with its grants, its memory from
// pool (nil: a new one), and start as its start functions.
func (m *Module) instantiate(ctx context.Context, pool *memoryPool, start ...string) (api.Module, error) {
	mc := wazero.NewModuleConfig().
		WithName(m.h.instanceName(m.addr)).
		WithStartFunctions(start...).
		WithRandSource(rand.Reader).
		WithStdout(&lineWriter{m: m, level: LevelInfo}).
		WithStderr(&lineWriter{m: m, level: LevelError, tail: &m.stderr})
	if g := m.grants; g != nil {
		if len(g.Dirs) > 0 {
			fs := wazero.NewFSConfig()
			guests := make([]string, 0, len(g.Dirs))
			for guest := range g.Dirs {
				guests = append(guests, guest)
			}
			sort.Strings(guests)
			for _, guest := range guests {
				// Not wazero's DirFS: it follows a symbolic link the
				// guest made out of the grant (grantFS).
				gfs, err := openGrant(g.Dirs[guest])
				if err != nil {
					return nil, fmt.Errorf("grant %s: %w", guest, err)
				}
				m.grantFS = append(m.grantFS, gfs)
				var sfs experimentalsys.FS = gfs
				if !contains(g.Writable, guest) {
					sfs = &sysfs.ReadFS{FS: gfs}
				}
				fs = fs.(sysfs.FSConfig).WithSysFSMount(sfs, guest)
			}
			mc = mc.WithFSConfig(fs)
		}
		for _, k := range g.Env {
			if v, ok := os.LookupEnv(k); ok {
				mc = mc.WithEnv(k, v)
			}
		}
	}
	cctx, cancel := m.callContext(ctx)
	defer cancel()
	m.calling = "instantiate"
	alloc := memoryAllocator(m.h.memoryHint(m.compiled, m.addr), pool, func(l *linearMemory) { m.mem = l })
	return m.rt.InstantiateModule(experimental.WithMemoryAllocator(cctx, alloc), m.compiled.c, mc)
}

// closeGrants closes the roots of the directory grants, once the instance
// (and the files it opened through them) is closed.
func (m *Module) closeGrants() {
	for _, g := range m.grantFS {
		g.Close()
	}
	m.grantFS = nil
}

// reuseMemory gives the module's memory to the Host's pool, once nothing
// runs in it: the module is closed and Run's goroutine, the only one that
// calls into it, is done with it.
func (m *Module) reuseMemory() {
	if l := m.mem; l != nil {
		m.mem = nil
		m.h.pool.put(l.buf, l.used)
	}
}

// moduleKey is the context key of the Module a call into the guest is
// for: host functions, shared by the modules of a Runtime, find it there.
type moduleKey struct{}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// callContext returns the context of one call into the guest: ctx's
// values, not its cancellation, and the call budget. Calls into a module
// come one at a time from Run's goroutine, so one budget context per
// module is re-armed for each call instead of a new timer context: the
// difference is measurable at hundreds of thousands of events a second.
func (m *Module) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if m.budget == nil || m.budget.expired.Load() {
		m.budget = newBudget(ctx)
	}
	m.budget.arm(m.limits.CallTimeout)
	return m.budget, m.budget.disarm
}

// budget is a context.Context with the values of the context it was made
// from, no cancellation of its own, and a deadline armed before each call.
// Once it expires it stays done (the module is closed by then); a new one
// is made if a call finished just as the timer fired.
type budget struct {
	values   context.Context
	timer    *time.Timer
	done     chan struct{}
	expired  atomic.Bool
	mu       sync.Mutex
	deadline time.Time
}

func newBudget(values context.Context) *budget {
	b := &budget{values: context.WithoutCancel(values), done: make(chan struct{})}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.expired.Store(true)
		close(b.done)
	})
	b.timer.Stop()
	return b
}

func (b *budget) arm(d time.Duration) {
	b.mu.Lock()
	b.deadline = time.Now().Add(d)
	b.mu.Unlock()
	b.timer.Reset(d)
}

func (b *budget) disarm() { b.timer.Stop() }

func (b *budget) Deadline() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deadline, !b.deadline.IsZero()
}

func (b *budget) Done() <-chan struct{} { return b.done }

func (b *budget) Err() error {
	if b.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (b *budget) Value(key any) any { return b.values.Value(key) }

// call calls fn (a hook without parameters returning an int32 status); a
// nil fn (not exported) succeeds.
func (m *Module) call(ctx context.Context, fn api.Function, name string) error {
	if fn == nil {
		return nil
	}
	return m.callStack(ctx, fn, name)
}

// Calls returns the module's call counts and latencies.
func (m *Module) Calls() *module.Calls { return &m.calls }

// hookOf is the hook an export is, for the call latency metric.
func hookOf(export string) module.Hook {
	switch export {
	case ExportInit:
		return module.HookInit
	case ExportStart:
		return module.HookStart
	case ExportStop:
		return module.HookStop
	}
	return module.HookEvent
}

// callStack calls fn with its parameters in m.stack; its result must be 0.
func (m *Module) callStack(ctx context.Context, fn api.Function, name string) error {
	cctx, cancel := m.callContext(ctx)
	m.calling = name
	began := time.Now()
	err := fn.CallWithStack(cctx, m.stack)
	m.calls.Observe(hookOf(name), time.Since(began))
	cancel()
	if err != nil {
		return m.fail(name, err)
	}
	if rc := int32(m.stack[0]); rc != 0 {
		return m.fail(name, fmt.Errorf("returned %d", rc))
	}
	return nil
}

// fail builds the error of a failed hook.
func (m *Module) fail(hook string, err error) error {
	e := &Error{Addr: m.addr, Hook: hook, Err: err, Stderr: m.stderr.String()}
	if msg := err.Error(); strings.Contains(msg, "\n") {
		// wazero appends the guest's stack trace: keep the first line.
		e.Err = errors.New(msg[:strings.IndexByte(msg, '\n')])
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			e.Limit = true
			e.Err = fmt.Errorf("exceeded its call budget of %s", m.limits.CallTimeout)
		case sys.ExitCodeContextCanceled:
			e.Limit = true
			e.Err = errors.New("interrupted")
		default:
			e.Err = fmt.Errorf("exited with code %d", exit.ExitCode())
		}
	}
	return e
}

// write copies data into the guest buffer (orch_alloc'd again when too
// small) and returns its address.
func (m *Module) write(ctx context.Context, data []byte) (uint32, error) {
	if uint32(len(data)) > m.buf.size || m.buf.size == 0 {
		if m.fns.alloc == nil {
			return 0, m.fail(ExportAlloc, errors.New("the module does not export it"))
		}
		size := uint32(len(data))
		if size < 4096 {
			size = 4096
		}
		m.stack[0] = uint64(size)
		cctx, cancel := m.callContext(ctx)
		m.calling = ExportAlloc
		err := m.fns.alloc.CallWithStack(cctx, m.stack)
		cancel()
		if err != nil {
			return 0, m.fail(ExportAlloc, err)
		}
		m.buf.ptr, m.buf.size = uint32(m.stack[0]), size
	}
	if !m.inst.Memory().Write(m.buf.ptr, data) {
		return 0, m.fail(ExportAlloc, fmt.Errorf("returned %#x, out of memory for %d bytes", m.buf.ptr, len(data)))
	}
	return m.buf.ptr, nil
}

// offer queues ev for the module (the Bus calls it).
func (m *Module) offer(ev bus.Event) {
	m.mu.Lock()
	if len(m.queue) >= m.h.opts.QueueLimit {
		m.mu.Unlock()
		m.stats.dropped.Add(1)
		return
	}
	m.queue = append(m.queue, ev)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// drain delivers every queued event, in order.
func (m *Module) drain(ctx context.Context) error {
	for {
		m.mu.Lock()
		evs := m.queue
		m.queue, m.spare = m.spare[:0], nil
		m.mu.Unlock()
		if len(evs) == 0 {
			return nil
		}
		for i := 0; i < len(evs); {
			if ctx.Err() != nil {
				// Stopping: what is left is dropped.
				m.stats.dropped.Add(uint64(len(evs) - i))
				return nil
			}
			n := 1
			var err error
			if m.fns.onEvents != nil {
				n, err = m.deliverBatch(ctx, evs[i:])
			} else {
				err = m.deliver(ctx, evs[i])
			}
			if err != nil {
				return err
			}
			clear(evs[i : i+n])
			i += n
		}
		m.mu.Lock()
		m.spare = evs[:0]
		m.mu.Unlock()
	}
}

// Batches of orch_on_events: at most this many events, and this many
// bytes unless one event alone is larger. The call budget applies to a
// whole batch.
const (
	maxBatchEvents = 256
	maxBatchBytes  = 64 << 10
)

// deliverBatch hands the first events of evs (as many as a batch holds) to
// orch_on_events in one call and returns how many it delivered. Each event
// is encoded as topic length and data length (u32, little endian), then
// the topic and the data.
func (m *Module) deliverBatch(ctx context.Context, evs []bus.Event) (int, error) {
	b := m.batch[:0]
	n := 0
	for _, ev := range evs {
		size := 8 + len(ev.Topic) + len(ev.Data)
		if n == maxBatchEvents || n > 0 && len(b)+size > maxBatchBytes {
			break
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ev.Topic)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ev.Data)))
		b = append(b, ev.Topic...)
		b = append(b, ev.Data...)
		n++
	}
	m.batch = b
	if uint32(len(b)) > m.buf.size {
		if _, err := m.write(ctx, make([]byte, max(len(b), maxBatchBytes))); err != nil {
			return 0, err
		}
	}
	if !m.inst.Memory().Write(m.buf.ptr, b) {
		return 0, m.fail(ExportOnEvents, errors.New("the event buffer is outside the module's memory"))
	}
	m.stack[0], m.stack[1], m.stack[2] = uint64(m.buf.ptr), uint64(len(b)), uint64(n)
	if err := m.callStack(ctx, m.fns.onEvents, ExportOnEvents); err != nil {
		return 0, err
	}
	m.stats.delivered.Add(uint64(n))
	return n, nil
}

func (m *Module) deliver(ctx context.Context, ev bus.Event) error {
	if m.fns.onEvent == nil {
		return nil
	}
	n := len(ev.Topic) + len(ev.Data)
	if uint32(n) > m.buf.size {
		if _, err := m.write(ctx, make([]byte, n)); err != nil {
			return err
		}
	}
	mem := m.inst.Memory()
	if !mem.WriteString(m.buf.ptr, ev.Topic) || !mem.Write(m.buf.ptr+uint32(len(ev.Topic)), ev.Data) {
		return m.fail(ExportOnEvent, errors.New("the event buffer is outside the module's memory"))
	}
	m.stack[0], m.stack[1] = uint64(m.buf.ptr), uint64(len(ev.Topic))
	m.stack[2], m.stack[3] = uint64(m.buf.ptr)+uint64(len(ev.Topic)), uint64(len(ev.Data))
	if err := m.callStack(ctx, m.fns.onEvent, ExportOnEvent); err != nil {
		return err
	}
	m.stats.delivered.Add(1)
	return nil
}

func (m *Module) subscribe(pattern string) {
	cancel := m.bus.Subscribe(pattern, m.offer)
	m.mu.Lock()
	m.subs = append(m.subs, cancel)
	m.mu.Unlock()
}

func (m *Module) unsubscribe() {
	m.mu.Lock()
	subs := m.subs
	m.subs = nil
	m.mu.Unlock()
	for _, c := range subs {
		c()
	}
}

// head keeps the first bytes written to it: where a Go guest's runtime
// writes "panic: ..." or "fatal error: ..." before its goroutines.
type head struct {
	mu  sync.Mutex
	buf []byte
}

const headSize = 1024

func (h *head) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := headSize - len(h.buf); n > 0 {
		h.buf = append(h.buf, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// String returns the first paragraph written, on one line.
func (h *head) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return summary(string(h.buf))
}

// summary returns the first paragraph of s (up to a blank line) with its
// lines joined by "; ".
func summary(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " "), " ; ", "; ")
}

// lineWriter turns a guest's stdout or stderr into log lines.
type lineWriter struct {
	m     *Module
	level Level
	tail  *head
	mu    sync.Mutex
	part  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.tail != nil {
		w.tail.Write(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := indexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.m.log(w.level, string(w.part[:i]))
		w.part = w.part[i+1:]
	}
	if len(w.part) > 4096 {
		w.m.log(w.level, string(w.part))
		w.part = w.part[:0]
	}
	return len(p), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func (m *Module) log(level Level, msg string) {
	if m.logf != nil {
		m.logf(LogRecord{Addr: m.addr, Level: level, Message: msg})
	}
}

// wasi instantiates WASI in rt.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	_, err := wasi_snapshot_preview1.Instantiate(ctx, rt)
	return err
}
