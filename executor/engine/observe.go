package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// This file holds the engine's read-only accessors for what watches it
// (metrics, orch top, the web page): a snapshot of its books that observes
// nothing (cheap at 1,000 instances, unlike Status, which asks every
// provider), counters kept as events pass (stats), and the forwarding of
// the modules' bus into the event stream.

// ApplyBuckets are the upper bounds, in seconds, of the histogram of
// apply durations (Stats.ApplyBuckets counts).
var ApplyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// stats is what the engine counts for those who watch it. Its methods are
// safe for concurrent use: emit calls event under outMu, the applies'
// goroutines call applied, the health monitors call probe.
type stats struct {
	events   [256]atomic.Uint64 // by EventType
	mu       sync.Mutex
	applies  uint64
	failed   uint64 // applies that ended with an error or a failed step
	sum      float64
	buckets  []uint64 // per ApplyBuckets, not cumulative
	lastPlan *planner.Plan
	planAt   time.Time
	addrs    map[spec.Address]*addrStats
}

// addrStats is what stats knows of one address.
type addrStats struct {
	pid         int       // from its last started or adopted event, until it ends
	pidAt       time.Time // when that event came
	exitCode    *int
	signal      string
	exitAt      time.Time
	exits       uint64
	module      string // a module's own state (module_state events)
	probes      uint64
	probeFails  uint64
	probeSum    float64
	probeLast   time.Duration
	probeLastOK bool
	handleGen   uint64 // the generation handlePid and handleID were read for
	handlePid   int
	handleID    string
}

func (s *stats) addr(a spec.Address) *addrStats {
	if s.addrs == nil {
		s.addrs = map[spec.Address]*addrStats{}
	}
	as := s.addrs[a]
	if as == nil {
		as = &addrStats{}
		s.addrs[a] = as
	}
	return as
}

// event counts ev and keeps what an instance's events tell (its pid, how
// it last ended, a module's state).
func (s *stats) event(ev Event) {
	s.events[ev.Type].Add(1)
	if ev.Addr.IsZero() {
		return
	}
	switch ev.Type {
	case EventStarted, EventAdopted, EventExited, EventCompleted, EventStopped, EventDestroyed, EventFailed, EventModuleState:
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.addr(ev.Addr)
	switch ev.Type {
	case EventStarted, EventAdopted:
		if ev.Pid != 0 {
			as.pid, as.pidAt = ev.Pid, ev.Time
		}
	case EventExited, EventCompleted:
		as.pid = 0
		as.exits++
		as.exitCode, as.signal, as.exitAt = ev.ExitCode, ev.Signal, ev.Time
	case EventFailed:
		as.pid = 0 // a job that failed, or a start that did
		if ev.ExitCode != nil || ev.Signal != "" {
			as.exitCode, as.signal, as.exitAt = ev.ExitCode, ev.Signal, ev.Time
		}
	case EventStopped:
		as.pid = 0
	case EventDestroyed:
		delete(s.addrs, ev.Addr)
	case EventModuleState:
		as.module, _, _ = strings.Cut(ev.Detail, ":")
	}
}

// applied counts one apply of p that took d.
func (s *stats) applied(p *planner.Plan, d time.Duration, res *executor.Result, err error) {
	failed := err != nil
	if res != nil {
		for _, o := range res.Outcomes {
			if o.Err != nil {
				failed = true
				break
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applies++
	if failed {
		s.failed++
	}
	sec := d.Seconds()
	s.sum += sec
	if s.buckets == nil {
		s.buckets = make([]uint64, len(ApplyBuckets))
	}
	for i, b := range ApplyBuckets {
		if sec <= b {
			s.buckets[i]++
			break
		}
	}
	if p != nil && p.HasChanges() {
		s.lastPlan, s.planAt = p, time.Now()
	}
}

type probeKey struct{}

type probeTarget struct {
	s    *stats
	addr spec.Address
}

// probeContext marks ctx as that of a's health monitor, for probed.
func (s *stats) probeContext(ctx context.Context, a spec.Address) context.Context {
	return context.WithValue(ctx, probeKey{}, probeTarget{s, a})
}

// probed records a health probe of the monitor of ctx that took d.
func probed(ctx context.Context, d time.Duration, err error) {
	t, ok := ctx.Value(probeKey{}).(probeTarget)
	if !ok {
		return
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	as := t.s.addr(t.addr)
	as.probes++
	if err != nil {
		as.probeFails++
	}
	as.probeSum += d.Seconds()
	as.probeLast, as.probeLastOK = d, err == nil
}

// lastProbe reports whether a's last health probe passed, and whether
// it had one.
func (s *stats) lastProbe(a spec.Address) (ok, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.addrs[a]
	if as == nil || as.probes == 0 {
		return false, false
	}
	return as.probeLastOK, true
}

// Stats are the engine's counters since it started.
type Stats struct {
	// Events counts the events published, by type.
	Events map[EventType]uint64
	// Applies counts the applies (the first, each reload's, each restart
	// and promotion), ApplyFailures those with an error or a failed step.
	Applies, ApplyFailures uint64
	// ApplySeconds is their total duration; ApplyBuckets counts them per
	// upper bound of ApplyBuckets (not cumulative; the rest are above).
	ApplySeconds float64
	ApplyBuckets []uint64
}

// Stats returns the engine's counters. Safe for concurrent use.
func (e *Engine) Stats() Stats {
	out := Stats{Events: map[EventType]uint64{}}
	for i := range e.stats.events {
		if n := e.stats.events[i].Load(); n > 0 {
			out.Events[EventType(i)] = n
		}
	}
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	out.Applies, out.ApplyFailures, out.ApplySeconds = e.stats.applies, e.stats.failed, e.stats.sum
	out.ApplyBuckets = append([]uint64(nil), e.stats.buckets...)
	if out.ApplyBuckets == nil {
		out.ApplyBuckets = make([]uint64, len(ApplyBuckets))
	}
	return out
}

// LastPlan returns the last plan with changes the engine applied
// (rendered as orch plan prints it, without colours) and when it was
// applied; "" before any.
func (e *Engine) LastPlan() (string, time.Time) {
	e.stats.mu.Lock()
	p, at := e.stats.lastPlan, e.stats.planAt
	e.stats.mu.Unlock()
	if p == nil {
		return "", time.Time{}
	}
	return e.Redact(planner.Render(p, planner.RenderOptions{})), at
}

// InstanceSnapshot is one instance as the engine's books have it, without
// asking its provider.
type InstanceSnapshot struct {
	Addr    spec.Address
	Runtime spec.Address
	// State is one word for a person: running, starting (its health check
	// has not passed yet), ready (it has), unhealthy, paused, restarting
	// (a restart is scheduled), exited, completed, failed, stopped,
	// waiting, blocked; for a module, its own state when it said one
	// (loaded, starting, running, stopping, stopped, failed).
	State    string
	Status   string // recorded: running, completed, failed, stopped; waiting, blocked, held, pending
	Running  bool
	Health   string // "", starting, healthy, unhealthy, paused
	Restarts int
	Waiting  string
	// HeldBy is the dependency, not ready, for which liveness does not
	// restart it while it is unhealthy; zero otherwise.
	HeldBy    spec.Address
	Pid       int    // its main process (a container's init, on the host)
	ID        string // a container's id
	StartedAt time.Time
	// ExitCode or Signal: how it last ended, when it did under this engine.
	ExitCode *int
	Signal   string
	ExitedAt time.Time
	Exits    uint64
	// Health probes by this engine: how many, how many failed, their total
	// and last duration.
	Probes, ProbeFailures uint64
	ProbeSeconds          float64
	ProbeLast             time.Duration
	DependsOn             []spec.Address
}

// Snapshot returns every instance the engine knows, sorted by address.
// It reads the engine's books on its goroutine and observes nothing: it
// costs microseconds per instance, so a watcher may ask it on every event.
func (e *Engine) Snapshot(ctx context.Context) ([]InstanceSnapshot, error) {
	var out []InstanceSnapshot
	var ferr error
	err := e.call(ctx, func() {
		if e.stopping {
			ferr = ErrStopping
			return
		}
		out = make([]InstanceSnapshot, 0, len(e.insts))
		e.stats.mu.Lock()
		defer e.stats.mu.Unlock()
		for a, inst := range e.insts {
			if inst.res == nil && !inst.sup.running() && inst.status == planner.StatusNone {
				continue
			}
			out = append(out, e.snapshotOf(a, inst))
		}
		// The rest of the round under way, as orch status lists it.
		for a := range e.busy {
			if e.insts[a] == nil && e.unstarted(a, nil) {
				s := InstanceSnapshot{Addr: a, Runtime: e.cfg.Resource(a).Runtime}
				e.markUnstarted(a, &s)
				out = append(out, s)
			}
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// snapshotOf is one instance's snapshot; e.stats.mu is held.
func (e *Engine) snapshotOf(a spec.Address, inst *instance) InstanceSnapshot {
	s := InstanceSnapshot{Addr: a, Runtime: inst.rt, Status: inst.status.String(), Running: inst.sup.running(),
		Restarts: inst.restarts, Waiting: inst.waiting}
	var st InstanceStatus
	e.books(inst, &st)
	s.Health, s.HeldBy = st.Health, st.HeldBy
	if inst.waiting != "" && !inst.sup.running() {
		s.Status = planner.StatusWaiting.String()
		if !inst.blockedBy.IsZero() {
			s.Status = planner.StatusBlocked.String()
		}
	}
	if inst.sup.held() && !inst.sup.running() {
		s.Status, s.Waiting = planner.StatusHeld.String(), HeldWhy
	}
	as := e.stats.addr(a)
	if inst.sup.running() {
		s.StartedAt = inst.started
		if as.handleGen != inst.gen {
			var h struct {
				Pid int    `json:"pid"`
				ID  string `json:"id"`
			}
			json.Unmarshal(inst.handle, &h)
			as.handleGen, as.handlePid, as.handleID = inst.gen, h.Pid, h.ID
		}
		s.Pid, s.ID = as.pid, as.handleID
		if s.Pid == 0 {
			s.Pid = as.handlePid
		}
	}
	s.ExitCode, s.Signal, s.ExitedAt, s.Exits = as.exitCode, as.signal, as.exitAt, as.exits
	s.Probes, s.ProbeFailures, s.ProbeSeconds, s.ProbeLast = as.probes, as.probeFails, as.probeSum, as.probeLast
	if e.cfg != nil && e.cfg.Graph != nil && e.cfg.Graph.Has(a) {
		for _, d := range e.cfg.Graph.DependenciesOf(a) {
			if d.Kind != spec.KindRuntime {
				s.DependsOn = append(s.DependsOn, d)
			}
		}
	}
	if a.Kind == spec.KindModule && as.module != "" && !inst.sup.isPaused() {
		s.State = as.module // its own word
	} else {
		s.State = inst.state(as.exits).String()
	}
	if e.unstarted(a, inst) {
		e.markUnstarted(a, &s)
	}
	return s
}

// unstarted reports whether declared instance a (inst: its books, nil
// when it has none) is part of the apply in flight without a record, a
// supervised process, a wait or a hold of its own: the round has not
// started it yet (pending), or it is a job whose process runs, which is
// recorded only once it ends (jobRun). On the controller.
func (e *Engine) unstarted(a spec.Address, inst *instance) bool {
	if !e.busy[a] {
		return false
	}
	if inst == nil {
		return e.cfg != nil && e.cfg.Resource(a) != nil
	}
	return inst.res != nil && inst.status == planner.StatusNone && !inst.sup.running() && inst.waiting == "" && !inst.sup.held()
}

// jobRun is the pid of job a's process and when it started, while an
// apply runs it: from its started event to its end (stats). e.stats.mu
// is held.
func (e *Engine) jobRun(a spec.Address) (providers.Observed, bool) {
	as := e.stats.addrs[a]
	if a.Kind != spec.KindJob || as == nil || as.pid == 0 {
		return providers.Observed{}, false
	}
	return providers.Observed{State: providers.StateRunning, Pid: as.pid, StartedAt: as.pidAt}, true
}

// markUnstarted says of s, unstarted (above), that it is pending, or
// running when it is a job whose process runs. e.stats.mu is held.
func (e *Engine) markUnstarted(a spec.Address, s *InstanceSnapshot) {
	s.State, s.Status = StatePending.String(), planner.StatusPending.String()
	if run, ok := e.jobRun(a); ok {
		s.State, s.Status, s.Pid, s.StartedAt = StateRunning.String(), planner.StatusRunning.String(), run.Pid, run.StartedAt
	}
}

// Observe asks a's provider how a runs now: its pid (for a container, its
// init's pid on the host), id and state. For orch trace.
func (e *Engine) Observe(ctx context.Context, a spec.Address) (providers.Observed, error) {
	var (
		h    providers.Handle
		rt   *spec.Runtime
		prov providers.Provider
		ferr error
	)
	err := e.call(ctx, func() {
		inst := e.insts[a]
		switch {
		case e.stopping:
			ferr = ErrStopping
		case inst == nil:
			ferr = fmt.Errorf("%s is not known to this engine", a)
		case !inst.sup.running():
			ferr = fmt.Errorf("%s is not running", a)
		default:
			h, rt, prov = inst.handle, e.runtime(inst.rt), e.opts.Providers[inst.rt.Type]
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return providers.Observed{}, err
	}
	if prov == nil {
		return providers.Observed{}, fmt.Errorf("%s: no provider for runtime %s", a, rt.Addr)
	}
	resp, err := prov.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{a: h}})
	if err != nil {
		return providers.Observed{}, fmt.Errorf("%s: %w", a, err)
	}
	return resp.Objects[a], nil
}

// maxPublished is the most of a published event's data that reaches the
// event stream.
const maxPublished = 4096

// ForwardBus makes the modules' bus part of the event stream: every
// module's own state (orch.module.*: loaded, starting, running, stopping,
// stopped, failed) becomes a module_state event, and every topic a module
// publishes a published event (its data in Detail, cut at 4 KiB). The
// lifecycle events the engine itself publishes there are not repeated.
// The bus hands events over on the publisher's goroutine, so they are
// queued (up to 4,096; more are counted as dropped in an error event) and
// emitted by a goroutine of their own, until cancel.
func (e *Engine) ForwardBus(b *pbus.Bus) (cancel func()) {
	if b == nil {
		return func() {}
	}
	q := make(chan pbus.Event, 4096)
	var dropped atomic.Uint64
	// What modules publish, and the modules' own states: not the
	// lifecycle events the engine itself publishes, so that with no
	// module subscribed to those the engine does not build them (a
	// subscription to "*" made every event JSON-encoded for nothing).
	queue := func(ev pbus.Event) {
		select {
		case q <- ev:
		default:
			dropped.Add(1)
		}
	}
	unsubOthers := b.SubscribeUnreserved(queue)
	unsubModules := b.Subscribe(pbus.ReservedPrefix+"module.*", queue)
	unsub := func() { unsubOthers(); unsubModules() }
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case ev := <-q:
				if n := dropped.Swap(0); n > 0 {
					e.emit(Event{Type: EventError, Detail: fmt.Sprintf("%d events of the modules' bus were not shown: they came faster than they could be passed on", n)})
				}
				e.emit(busEvent(ev))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			unsub()
			close(done)
		})
	}
}

// busEvent turns an event of the modules' bus into an engine event.
func busEvent(ev pbus.Event) Event {
	if rest, ok := strings.CutPrefix(ev.Topic, pbus.ReservedPrefix+"module."); ok {
		var l pbus.Lifecycle
		if json.Unmarshal(ev.Data, &l) == nil {
			out := Event{Time: l.Time, Type: EventModuleState, Detail: l.Event}
			if a, err := spec.ParseAddress(l.Address); err == nil {
				out.Addr = a
			}
			if l.Error != "" {
				out.Detail += ": " + l.Error
			}
			return out
		}
		return Event{Type: EventModuleState, Detail: rest}
	}
	data := string(ev.Data)
	if len(data) > maxPublished {
		data = data[:maxPublished] + "..."
	}
	return Event{Type: EventPublished, Topic: ev.Topic, Detail: data}
}
