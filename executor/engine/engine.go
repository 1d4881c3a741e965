package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/engine/gate"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// StatusStopped is the stored status of a daemon that orch up stopped on
// its way out. The record (and its handle) stays: a later orch up plans a
// start for it, orch destroy removes it.
const StatusStopped = planner.StatusStopped

// DefaultDebounce is how long the configuration directory must stay quiet
// after a change before it is read again.
const DefaultDebounce = 50 * time.Millisecond

// Store is the part of the state store the engine uses: *state.Store.
type Store interface {
	executor.Recorder
	List() ([]state.Instance, error)
}

// LoadResult is one reading of the configuration directory.
type LoadResult struct {
	Config *spec.Config
	Diags  hcl.Diagnostics
	// Files holds every source the diagnostics point into, keyed by the
	// file names their ranges carry (for rendering with snippets).
	Files map[string]*hcl.File
	// Current, when set, says whether the result still describes what
	// the engine should run: an agent of several hosts restricts the
	// configuration to the instances assigned to its node, and an
	// assignment may change between a reload's load and its use (then
	// the engine loads again rather than undo what the newer assignment
	// started).
	Current func() bool
}

// Options configure an Engine. Providers, Store and StateDir are required.
type Options struct {
	// Dir is the configuration directory, watched for changes.
	Dir string
	// Config is the configuration to start from, already loaded and valid;
	// nil: Run loads it first. Files are its sources, for diagnostics.
	Config *spec.Config
	Files  map[string]*hcl.File
	// Load reads the configuration again after a change. It is called from
	// the watcher's goroutine. Nil: spec.Load(Dir) with the providers'
	// schemas, Vars, VarFiles and Environ.
	Load     func() LoadResult
	Vars     []string
	VarFiles []spec.VarFile
	Environ  []string
	// WatchFiles are files outside the configuration's own that Load
	// reads (the -var-files, when Load is set): a change to one is a
	// change to the configuration.
	WatchFiles []string

	Providers executor.Providers
	// Store is the state, opened for writing: the caller holds its lock for
	// the whole Run.
	Store       Store
	StateDir    string // absolute
	Project     string // default: the configuration's project name
	Parallelism int    // steps at once per apply; default executor.DefaultParallelism
	// Out receives every event, one call at a time, in order. Nil: events
	// are dropped.
	Out func(Event)
	// Debounce is the quiet period after a change in Dir; default
	// DefaultDebounce.
	Debounce time.Duration
	// Rand returns a uniform number in [0, 1) for backoff jitter; default
	// math/rand/v2.
	Rand func() float64
	// Bus is the modules' event bus: the lifecycle of every daemon and
	// job is published there as orch.<kind>.<event> (orch.daemon.started,
	// ...). Nil: nothing is published.
	Bus *pbus.Bus
	// Hurry, when closed during shutdown, makes the stops still to come or
	// in progress use SIGKILL at once (a second interrupt). Nil: never.
	Hurry <-chan struct{}
	// Elsewhere, when set, is the readiness of instances the
	// configuration's graph holds but does not declare: those run by the
	// agents of other nodes of a project on several hosts. The gate
	// consults it for such a dependency as it does this engine's own
	// instances (elsewhere.go); nil, or an address it leaves out: Down.
	// Call ElsewhereChanged when what it says may have changed.
	Elsewhere func() map[spec.Address]gate.Readiness
	// CloseLater, when set, takes a copy of a descriptor the engine is
	// about to close and closes it later, elsewhere (the process
	// runtime's log daemon: process.Provider.CloseLater), so that the
	// engine does not wait for that close; an error: the engine closes it
	// itself. See closeWatcher.
	CloseLater func(fd int) error
}

// Engine is orch up: it applies the configuration, supervises what runs,
// and applies every valid edit. Make one with New and call Run once.
type Engine struct {
	opts Options

	outMu sync.Mutex // serialises Out and guards bus
	bus   bus
	// redactor removes the sensitive values of every configuration this
	// engine loaded (an old value may still be quoted by what runs from
	// before an edit) from what it reports: events, and the agent API.
	redactor atomic.Pointer[spec.Redactor]
	msgs     chan func() // work for the controller goroutine
	// queued is work for the controller goroutine from callers that must
	// not wait for it (postNoWait): a provider's exit notification, made
	// on a goroutine that all its watches share.
	queued struct {
		sync.Mutex
		fs   []func()
		wake chan struct{} // holds one token while fs is not empty
	}
	dead chan struct{}
	bg   sync.WaitGroup
	ctx  context.Context
	// prep is the shutdown's input, listed ahead (prep.go).
	prep shutdownPrep

	// Owned by the controller goroutine (Run).
	cfg       *spec.Config
	files     map[string]*hcl.File
	insts     map[spec.Address]*instance
	desired   map[spec.Address]*planner.Snapshot
	busy      map[spec.Address]bool
	freed     map[spec.Address][]chan struct{} // closed as a's change in flight ends (free.go)
	deferred  map[spec.Address]*deferral       // starts waiting for a dependency (promote)
	deferHash string                           // configuration hash of the plan they come from
	applying  bool                             // a reconcile's apply is in flight
	promoting int                              // applies of promoted starts in flight
	again     bool                             // reconcile again when it ends
	showPlan  bool                             // the next reconcile follows a reload: print its plan
	inflight  int                              // applies in flight (reconcile and restarts)
	stopping  bool
	// owns says, by runtime kind, whether it tells an instance's
	// listeners apart (listening.go); set by New, read-only after.
	owns      map[string]bool
	firstDone bool
	// paused: an API destroy took everything down; nothing is started
	// (reconcile, restarts) until an API apply.
	paused  bool
	waiters []func(err string)       // API applies waiting for the round to settle
	sources sources                  // binaries watched for rebuilds
	invalid string                   // the last config_invalid reported, until a valid load
	idle    []func()                 // run once no apply is in flight
	follows map[spec.Address]*follow // runtimes whose event streams are followed (runtimes.go)
	away    map[spec.Address]bool    // runtimes whose stream said disconnected, until reconnected
	// awayLook is the pending look again at runtimes a refresh could not
	// reach (around); one at a time, however many reconciles ran meanwhile.
	awayLook *time.Timer

	// hasBlocked: an apply skipped a start because what it needs failed;
	// a later successful restart plans the round again.
	hasBlocked bool

	// cascades are the orch restart -cascade in progress (cascade.go).
	cascades []*cascade
	// liveHeld is the instances whose liveness stop a dependency holds
	// (instance.liveHeldBy).
	liveHeld map[spec.Address]struct{}

	readyMu    sync.Mutex
	readyWaits map[spec.Address][]*readyWait // Executor.Ready calls waiting (ready.go)

	// svc is the service registry and the listeners that follow it
	// (services.go); nil while the configuration publishes no service.
	svc *services

	stats stats // counters for metrics and orch top (observe.go)

	elsewhereDue atomic.Bool // an ElsewhereChanged is queued (elsewhere.go)
}

// instance is what the engine knows of one declared instance: its
// supervisor (the state machine, drawn in supervisor.go), the handle and
// generation it watches, and the books of its restart policy. A daemon's
// restart policy, one generation per handle:
//
//	exit (policy says restart) --> backoff timer --> restart: a one-change
//	apply (planner.Restart); health fails retries times --> stopFor(liveness),
//	then as an exit; crash loop (max_restarts within window) --> failed
//	(executor.MarkFailed), until the config changes.
type instance struct {
	addr   spec.Address
	res    *spec.Resource // nil once no longer declared
	rt     spec.Address
	handle providers.Handle
	hash   string         // config hash it was last started or adopted with
	status planner.Status // stored status
	ran    bool           // started, adopted or attempted by this engine
	gen    uint64         // bumped for each new handle: older notifications are stale
	// sup is its state machine: down, starting, ready, unhealthy,
	// held; paused and stopping over a running one (supervisor.go).
	sup     supervisor
	own     ownHealth // the backend's own health check, for this generation (ownhealth.go)
	started time.Time
	cancel  context.CancelFunc // the watch and health monitor of gen
	// liveHeldBy is the dependency, not ready, that holds its liveness
	// stop while it is unhealthy (liveness.go); zero when none does.
	liveHeldBy spec.Address
	timer      *time.Timer // a pending restart
	attempt    int         // backoff exponent
	history    restartHistory
	restarts   int    // restarts by this engine (policy, liveness, requested)
	waiting    string // what it waits for, as last reported
	// parked: its last start could not reach its runtime (runtimes.go);
	// parkedTries counts those starts, for their backoff.
	parked      bool
	parkedTries int
	// exitBusy is an exit of generation exitBusyGen seen while the
	// executor still acted on the instance (its start's apply had not
	// ended): afterApply handles it once the apply ends.
	exitBusy    *providers.Observed
	exitBusyGen uint64
	// sickBusy: its health check said unhealthy while the executor still
	// acted on it; afterApply acts on it once the apply ends.
	sickBusy string
	// applied is the stop signal and timeout of the configuration the
	// running instance was applied with (appliedStop of its record): an
	// edit not applied yet does not change how it is stopped.
	applied spec.Stop
	// healthCancel suspends its health checks (orch pause) until orch
	// resume.
	healthCancel context.CancelFunc
	genCtx       context.Context // the context of the current generation's supervision
	// withPending is the plan of a restart or replace of this instance
	// whose restart_with dependents are restarted once it is healthy.
	withPending *planner.Plan
	// healthOf, when healthOfSet, is the health check of the running
	// instance instead of the declared one (a reverted replace: the old
	// instance, checked as it was applied).
	healthOf    *spec.Health
	healthOfSet bool
	// blockedBy is the failed instance its start waits on, at the root.
	blockedBy spec.Address
	// reverted is the configuration hash of a create_before_destroy
	// replace that was reverted (the new instance never became ready):
	// it is not tried again until the configuration changes.
	reverted string
	// portUp is the service port this generation was found listening on
	// (0: not yet), portProbe the one being looked for, portStop ends
	// that look (listening.go).
	portUp, portProbe int
	portStop          context.CancelFunc
	// verdictAwaited: a restart of it (orch restart, restart_with) is
	// under way or just done, and a signal for it (orch signal) waits
	// for its new process's first health verdict (signalWaits); cleared
	// by that verdict or an exit.
	verdictAwaited bool
}

// New returns an Engine; nothing happens until Run.
func New(opts Options) *Engine {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	e := &Engine{opts: opts, msgs: make(chan func(), 1024), dead: make(chan struct{}),
		insts: map[spec.Address]*instance{}, liveHeld: map[spec.Address]struct{}{}, desired: map[spec.Address]*planner.Snapshot{},
		busy: map[spec.Address]bool{}, freed: map[spec.Address][]chan struct{}{}, deferred: map[spec.Address]*deferral{},
		follows: map[spec.Address]*follow{}, away: map[spec.Address]bool{},
		readyWaits: map[spec.Address][]*readyWait{}, owns: ownersOfListeners(opts.Providers)}
	e.queued.wake = make(chan struct{}, 1)
	return e
}

// Run applies the configuration and supervises until ctx is done; then it
// stops every daemon in reverse dependency order, records them stopped,
// and returns nil. It returns an error at once when the first
// configuration is invalid, and on faults of the state store at shutdown.
func (e *Engine) Run(ctx context.Context) error {
	e.ctx = ctx
	e.cfg, e.files = e.opts.Config, e.opts.Files
	if e.cfg == nil {
		lr := e.load()
		e.noteSecrets(lr.Config)
		if lr.Diags.HasErrors() {
			e.emit(Event{Type: EventConfigInvalid, Detail: renderDiags(lr.Diags, lr.Files)})
			return errors.New("the configuration is invalid")
		}
		e.cfg, e.files = lr.Config, lr.Files
	}
	e.noteSecrets(e.cfg)
	if err := e.startServices(e.cfg); err != nil {
		// A listener that cannot be bound: nothing was started.
		e.closeServices()
		e.emit(Event{Type: EventError, Detail: err.Error()})
		return err
	}
	defer e.closeServices()
	if err := e.watchConfig(ctx); err != nil {
		e.emit(Event{Type: EventError, Detail: "not watching the configuration for changes: " + err.Error()})
	}
	e.followRuntimes()
	e.reconcile()
	e.syncServices()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.prepareShutdown(ctx)
	}()
	for {
		select {
		case f := <-e.msgs:
			f()
			e.syncServices()
		case <-e.queued.wake:
			e.runQueued()
			e.syncServices()
		case <-ctx.Done():
			return e.shutdown()
		}
	}
}

// post hands f to the controller goroutine; dropped once Run has returned.
func (e *Engine) post(f func()) {
	select {
	case e.msgs <- f:
	case <-e.dead:
	}
}

// postNoWait is post for a caller that must not block: f is queued,
// and the controller goroutine runs what is queued, in order, when it
// next looks. Dropped once Run has returned.
func (e *Engine) postNoWait(f func()) {
	e.queued.Lock()
	e.queued.fs = append(e.queued.fs, f)
	first := len(e.queued.fs) == 1
	e.queued.Unlock()
	if first {
		select {
		case e.queued.wake <- struct{}{}:
		default:
		}
	}
}

// runQueued runs what postNoWait queued; the controller goroutine's.
func (e *Engine) runQueued() {
	e.queued.Lock()
	fs := e.queued.fs
	e.queued.fs = nil
	e.queued.Unlock()
	for _, f := range fs {
		f()
	}
}

func (e *Engine) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.outMu.Lock()
	defer e.outMu.Unlock()
	// The detail may quote a command, an environment value or a health
	// URL (an error of the backend, a probe's failure): no sensitive
	// value leaves the engine.
	ev.Detail = e.redactor.Load().Redact(ev.Detail)
	e.stats.event(ev)
	e.bus.publish(ev)
	e.toModules(ev)
	if e.opts.Out != nil {
		e.opts.Out(ev)
	}
}

// noteSecrets adds cfg's sensitive values to those the engine's reports
// never show.
func (e *Engine) noteSecrets(cfg *spec.Config) {
	r := cfg.Redactor()
	if r == nil {
		return
	}
	for {
		old := e.redactor.Load()
		if e.redactor.CompareAndSwap(old, old.Union(r)) {
			return
		}
	}
}

// Redact returns s without the sensitive values of any configuration the
// engine loaded (for the agent API).
func (e *Engine) Redact(s string) string {
	return e.redactor.Load().Redact(s)
}

func (e *Engine) project() string {
	if e.opts.Project != "" {
		return e.opts.Project
	}
	return e.cfg.Project.Name
}

func (e *Engine) load() LoadResult {
	if e.opts.Load != nil {
		return e.opts.Load()
	}
	cfg, diags := spec.Load(e.opts.Dir, spec.Options{Schemas: e.opts.Providers.Schemas(), Vars: e.opts.Vars,
		VarFiles: e.opts.VarFiles, Environ: e.opts.Environ})
	var files map[string]*hcl.File
	if cfg != nil {
		files = cfg.Files
	}
	return LoadResult{Config: cfg, Diags: diags, Files: files}
}

func renderDiags(diags hcl.Diagnostics, files map[string]*hcl.File) string {
	var b bytes.Buffer
	w := hcl.NewDiagnosticTextWriter(&b, files, 100, false)
	w.WriteDiagnostics(diags)
	return strings.TrimRight(b.String(), "\n")
}

func (e *Engine) instance(a spec.Address) *instance {
	inst := e.insts[a]
	if inst == nil {
		inst = &instance{addr: a}
		e.insts[a] = inst
	}
	if e.cfg != nil {
		inst.res = e.cfg.Resource(a)
		if inst.res != nil {
			inst.rt = inst.res.Runtime
		}
	}
	return inst
}

// reloaded takes a new reading of the configuration directory.
func (e *Engine) reloaded(lr LoadResult) {
	if e.stopping {
		return
	}
	for i := 0; lr.Current != nil && !lr.Current() && i < 3; i++ {
		lr = e.load() // made from what changed since: again
	}
	e.noteSecrets(lr.Config)
	if lr.Diags.HasErrors() {
		e.watchSources(lr.Config, true)
		// Reported once per distinct problem: a directory written to
		// again and again (a log, a build) while a save is invalid does
		// not repeat it.
		detail := renderDiags(lr.Diags, lr.Files)
		if detail == e.invalid {
			return
		}
		e.invalid = detail
		e.emit(Event{Type: EventConfigInvalid, Detail: detail})
		return
	}
	wasInvalid := e.invalid != ""
	e.invalid = ""
	if lr.Config == nil || lr.Config.Hash == e.cfg.Hash && lr.Config.VariablesHash() == e.cfg.VariablesHash() {
		// Touched, not changed (an edited -var-file changes only the
		// variables). After an invalid save, the user still hears that
		// the directory is sound again.
		if wasInvalid {
			e.watchSources(e.cfg, false)
			e.emit(Event{Type: EventConfigValid})
		}
		return
	}
	e.cfg, e.files = lr.Config, lr.Files
	if err := e.startServices(e.cfg); err != nil {
		// The listener in force (if any) goes on; the rest of the edit
		// is applied.
		e.emit(Event{Type: EventError, Detail: err.Error()})
	}
	e.watchSources(e.cfg, false)
	e.followRuntimes()
	for a := range e.insts {
		e.instance(a)
	}
	ev := Event{Type: EventConfigReloaded}
	if len(lr.Diags) > 0 {
		ev.Detail = renderDiags(lr.Diags, lr.Files)
	}
	e.emit(ev)
	e.showPlan = true
	e.reconcile()
}

// reconcile refreshes, plans, and applies the part of the plan that may
// run now: deletions, in-place changes, and starts whose dependencies are
// ready. Restarting what exited is left to the supervisor.
func (e *Engine) reconcile() {
	if e.stopping {
		e.settle("the engine is stopping")
		return
	}
	if e.paused {
		e.settle("")
		return
	}
	if e.applying {
		e.again = true
		return
	}
	e.again = false
	// The desired side is made beside the listing and the refresh
	// (records.go).
	var prep *planner.Prepared
	prepared := make(chan struct{})
	go func(cfg *spec.Config) {
		defer close(prepared)
		prep = planner.Prepare(cfg, e.opts.Providers.Schemas())
	}(e.cfg)
	stored, co, err := e.listForPlan()
	if err != nil {
		<-prepared
		e.emit(Event{Type: EventError, Detail: "reading state: " + err.Error()})
		e.settle("reading state: " + err.Error())
		return
	}
	in, away, err := executor.RefreshAround(e.ctx, e.cfg, stored, e.opts.Providers, e.project(), e.opts.StateDir)
	<-prepared
	if err != nil {
		e.emit(Event{Type: EventError, Detail: err.Error()})
		e.settle(err.Error())
		return
	}
	// Without co, nothing was left out: only in.Prepared is set.
	if err := executor.ReadOmittedConfigs(co, &in, prep); err != nil {
		e.emit(Event{Type: EventError, Detail: "reading state: " + err.Error()})
		e.settle("reading state: " + err.Error())
		return
	}
	plan, diags := planner.Make(in)
	if diags.HasErrors() {
		e.emit(Event{Type: EventError, Detail: renderDiags(diags, e.files)})
		e.showPlan = false
		e.settle(renderDiags(diags, e.files))
		return
	}
	e.backAgain(away)
	if len(away) > 0 {
		plan = e.around(plan, away)
	}
	for _, c := range plan.Changes {
		if c.Desired != nil {
			e.desired[c.Addr] = c.Desired
		}
	}
	e.sync(stored, in)
	batch := e.selectChanges(plan)
	show := e.showPlan
	e.showPlan = false
	if len(batch) == 0 {
		if show {
			e.emit(Event{Type: EventPlanApplied, Detail: "no changes"})
		}
		e.ready()
		e.settle("")
		return
	}
	sub := &planner.Plan{Changes: batch, ConfigHash: plan.ConfigHash}
	if show {
		text := planner.Render(sub, planner.RenderOptions{})
		if len(diags) > 0 {
			// Warnings (no error gets here) come first, as orch plan
			// prints them.
			text = renderDiags(diags, e.files) + "\n\n" + text
		}
		e.emit(Event{Type: EventPlan, Detail: text})
	}
	for _, c := range batch {
		e.busy[c.Addr] = true
	}
	e.applying = true
	e.apply(sub, nil, func(res *executor.Result, err error) {
		e.applying = false
		e.afterApply(sub, res, err)
		if res != nil && show {
			s := res.Summary()
			e.emit(Event{Type: EventPlanApplied, Detail: fmt.Sprintf("%d added, %d changed, %d replaced, %d destroyed",
				s.Add, s.Change, s.Replace, s.Destroy)})
		}
		e.roundEnded()
	})
}

// roundEnded follows the end of an apply of the round (a reconcile's or
// a promotion's): the starts it let through are promoted, and the round
// is planned again when something asked for it meanwhile.
func (e *Engine) roundEnded() {
	e.promote()
	if e.again {
		e.reconcile()
		return
	}
	e.ready()
	e.settle("")
}

// deferral is a start of the last reconcile's plan that waits for a
// dependency; gen is its instance's generation when it was planned.
type deferral struct {
	change *planner.Change
	gen    uint64
}

// promote starts at once the deferred starts whose dependencies became
// ready since they were planned: it is called when one may have (a
// dependency turned healthy, said it has no health check of its own, or
// an apply that started or completed something ended). Their changes are
// applied as planned, alongside whatever applies are in flight, without
// refreshing and planning everything again: nothing but this engine acts
// on an instance that waits, so the plan still holds. When it may not
// (the configuration changed, or the instance got a new generation since)
// the round is planned again instead (reconcile).
func (e *Engine) promote() {
	if len(e.deferred) == 0 || e.stopping || e.paused {
		return
	}
	if e.deferHash != e.cfg.Hash {
		e.reconcile() // a reload's reconcile is pending: it decides
		return
	}
	in := map[spec.Address]*planner.Change{}
	stale := false
	for a, d := range e.deferred {
		switch inst := e.insts[a]; {
		case e.busy[a]:
			e.again = true
		case inst == nil || inst.gen != d.gen:
			stale = true
		default:
			in[a] = d.change
		}
	}
	cands := make([]spec.Address, 0, len(in))
	for a := range in {
		cands = append(cands, a)
	}
	dec := e.gate(in)
	batch := dec.Now
	for _, a := range cands {
		if w, ok := dec.Wait[a]; ok {
			e.waitingFor(a, w)
		} else {
			delete(e.deferred, a) // started now, or left to the supervisor
		}
	}
	if stale {
		defer e.reconcile() // once the others are under way
	}
	if len(batch) == 0 {
		return
	}
	sub := &planner.Plan{Changes: batch, ConfigHash: e.deferHash}
	for _, c := range batch {
		e.busy[c.Addr] = true
	}
	e.promoting++
	e.apply(sub, nil, func(res *executor.Result, err error) {
		e.promoting--
		e.afterApply(sub, res, err)
		e.roundEnded()
	})
}

// settle tells the API applies waiting for this round that it ended:
// with err when it could not go on, else once nothing is applying and no
// start waits for a dependency.
func (e *Engine) settle(err string) {
	if len(e.waiters) == 0 || (err == "" && e.unsettled()) {
		return
	}
	ws := e.waiters
	e.waiters = nil
	for _, w := range ws {
		w(err)
	}
}

// unsettled says whether the round goes on: an apply of it in flight, or
// a start waiting for a dependency.
func (e *Engine) unsettled() bool {
	if e.applying || e.promoting > 0 {
		return true
	}
	for a := range e.deferred {
		// A start blocked by a held instance waits for orch start, not
		// for the round: an orch apply meanwhile does not wait for it.
		if inst := e.insts[a]; inst == nil || inst.blockedBy.IsZero() || !e.isHeld(inst.blockedBy) {
			return true
		}
	}
	return false
}

func (e *Engine) isHeld(a spec.Address) bool {
	inst := e.insts[a]
	return inst != nil && inst.sup.held()
}

// ready reports the end of the first round of applies, once.
func (e *Engine) ready() {
	if e.firstDone || e.unsettled() {
		return
	}
	e.firstDone = true
	n := 0
	for _, inst := range e.insts {
		if inst.sup.running() {
			n++
		}
	}
	e.emit(Event{Type: EventReady, Detail: fmt.Sprintf("%d running; watching %s for changes", n, e.cfg.Dir)})
}

// sync takes under supervision the daemons that run as recorded but that
// this engine does not watch yet (what an earlier orch apply or orch up
// left running).
func (e *Engine) sync(stored []state.Instance, in planner.Input) {
	var adopt []state.Instance
	for _, rec := range stored {
		if e.cfg.Resource(rec.Addr) == nil {
			continue
		}
		inst := e.instance(rec.Addr)
		inst.status = recStatus(rec)
		if e.busy[rec.Addr] || !supervised(rec.Addr.Kind) {
			continue
		}
		obs := in.Observed[rec.Addr]
		if obs.State != providers.StateRunning || recStatus(rec) != executor.StatusRunning {
			continue
		}
		if inst.sup.running() && bytes.Equal(inst.handle, rec.Handle) {
			continue
		}
		adopt = append(adopt, rec)
	}
	// The stop settings each was applied with are in its configuration.
	e.withConfigs(adopt)
	for _, rec := range adopt {
		inst, obs := e.instance(rec.Addr), in.Observed[rec.Addr]
		inst.ran, inst.hash, inst.rt = true, rec.ConfigHash, rec.Runtime
		inst.applied = appliedStopOf(rec)
		e.supervise(inst, rec.Handle)
		e.emit(Event{Type: EventAdopted, Addr: rec.Addr, Pid: obs.Pid, Detail: "already running"})
	}
}

// around leaves out of plan the changes on the runtimes that could not be
// reached (away): what runs there is unknown, so nothing is done to it
// until the runtime is back. The runtimes are marked away (one
// "unreachable" event each); their "reconnected" brings a reconcile, and
// for a runtime without an event stream a reconcile is tried again
// later. The starts left out wait for their runtime.
func (e *Engine) around(plan *planner.Plan, away map[spec.Address]error) *planner.Plan {
	for a, err := range away {
		if !e.away[a] {
			e.away[a] = true
			e.emit(Event{Type: EventUnreachable, Addr: a,
				Detail: "cannot reach it (" + err.Error() + "); what runs there is left as it is and looked at again once it is back"})
		}
	}
	// A stream's "reconnected" brings a reconcile at once; this one is for
	// runtimes without a stream, or one that never said disconnected.
	if e.awayLook == nil {
		e.awayLook = time.AfterFunc(awayRetry, func() {
			e.post(func() {
				e.awayLook = nil
				e.reconcile()
			})
		})
	}
	out, left := planner.Without(plan, away)
	for _, c := range left {
		if c.Resource != nil && starts(c) {
			e.waitFor(c.Addr, "for "+c.Runtime().String()+" to be reachable again")
		}
	}
	return out
}

// backAgain takes the runtimes marked away that a refresh reached again
// (an adopting provider lists each declared runtime at every refresh):
// as a stream's "reconnected" would, it says so and starts what waited.
func (e *Engine) backAgain(away map[spec.Address]error) {
	for a := range e.away {
		if away[a] != nil {
			continue
		}
		rt := e.cfg.Runtime(a)
		if rt == nil {
			continue
		}
		if _, ok := e.opts.Providers[rt.Kind].(providers.Adopter); !ok {
			continue
		}
		delete(e.away, a)
		e.emit(Event{Type: EventReconnected, Addr: a, Detail: "reachable again; looking at everything on it afresh"})
		e.unpark(a)
	}
}

// awayRetry is how long the engine waits before it looks again at a
// runtime it could not reach and whose provider has no event stream to
// say when it is back.
const awayRetry = 2 * time.Second

func starts(c *planner.Change) bool { return gate.Starts(c) }

// selectChanges picks the changes of plan to apply now; the starts that
// wait for a dependency are held in e.deferred, for promote.
func (e *Engine) selectChanges(plan *planner.Plan) []*planner.Change {
	var batch []*planner.Change
	in := map[spec.Address]*planner.Change{}
	for _, c := range plan.Changes {
		if c.Action == planner.NoOp {
			continue
		}
		if e.busy[c.Addr] {
			e.again = true
			continue
		}
		if c.Resource == nil { // delete
			batch = append(batch, c)
			continue
		}
		in[c.Addr] = c
	}
	held := make(map[spec.Address]*planner.Change, len(in))
	for a, c := range in {
		held[a] = c
	}
	dec := e.gate(in)
	batch = append(batch, dec.Now...)
	e.deferred = make(map[spec.Address]*deferral, len(dec.Wait))
	e.deferHash = plan.ConfigHash
	for a, w := range dec.Wait {
		e.waitingFor(a, w)
		e.deferred[a] = &deferral{change: held[a], gen: e.instance(a).gen}
	}
	sort.Slice(batch, func(i, j int) bool { return batch[i].Addr.Less(batch[j].Addr) })
	return batch
}

// waitFor records (and reports) that a's start waits for why, naming the
// failed or held instance behind it, if any (gate.BlockedBy).
func (e *Engine) waitFor(a spec.Address, why string) {
	w := gate.Wait{Why: why}
	if e.cfg != nil {
		w.BlockedBy, w.Blocker, _ = gate.BlockedBy(e.cfg.Graph, e.readiness(), a)
	}
	e.waitingFor(a, w)
}

// waitingFor records (and reports, when it changed) why a's start waits.
// When what it waits for is, at its root, an instance that failed or that
// the user stopped, it is blocked on that instance (status "blocked",
// event "blocked"), not merely waiting.
func (e *Engine) waitingFor(a spec.Address, w gate.Wait) {
	inst := e.instance(a)
	if inst.waiting == w.Why && inst.blockedBy == w.BlockedBy {
		return
	}
	inst.waiting, inst.blockedBy = w.Why, w.BlockedBy
	switch {
	case w.BlockedBy.IsZero():
		e.emit(Event{Type: EventWaiting, Addr: a, Detail: w.Why})
	case w.Blocker == gate.Held:
		e.emit(Event{Type: EventBlocked, Addr: a, Detail: "by " + w.BlockedBy.String() + ", which was stopped by user (" + w.Why + ")"})
	default:
		e.emit(Event{Type: EventBlocked, Addr: a, Detail: "by " + w.BlockedBy.String() + ", which failed (" + w.Why + ")"})
	}
}

// gate decides, through the pure gate.Decide, which changes of in (which
// it empties of those it drops) may be applied now, sorted by address,
// and which starts must wait, with what they wait for. A start of what
// this engine started and saw end is dropped first: the supervisor
// restarts it per its policy, or it stays down until its configuration
// changes; so are the changes of a held instance (orch stop).
func (e *Engine) gate(in map[spec.Address]*planner.Change) gate.Decision {
	var gated map[spec.Address]string
	for a, c := range in {
		inst := e.insts[a]
		if inst != nil && c.Action == planner.Start && inst.ran && inst.hash == c.Hash() {
			delete(in, a)
			continue
		}
		if inst != nil && inst.reverted != "" && inst.reverted == c.Hash() {
			delete(in, a) // its new configuration never became ready: until it changes
			continue
		}
		if !gate.Starts(c) || c.Resource == nil {
			continue
		}
		why := ""
		switch {
		case a.Kind == spec.KindDaemon && c.Resource.Health != nil:
			why = "to be healthy"
		case e.ownHealthPossible(c.Resource):
			why = "to run (and be healthy, if it has a health check of its own)"
		}
		if why != "" {
			if gated == nil {
				gated = map[spec.Address]string{}
			}
			gated[a] = why
		}
	}
	dec := gate.Decide(gate.Input{Graph: e.cfg.Graph, Changes: in, Instances: e.readiness(), Gated: gated})
	for a := range dec.Wait {
		delete(in, a)
	}
	for _, a := range dec.Held {
		delete(in, a)
	}
	return dec
}

// readiness is what the gate knows of every instance of the engine's
// books.
func (e *Engine) readiness() map[spec.Address]gate.Instance {
	m := make(map[spec.Address]gate.Instance, len(e.insts))
	for a, inst := range e.insts {
		r := e.readinessOf(inst)
		m[a] = gate.Instance{Readiness: r, Runtime: inst.rt, Starting: r == gate.Running && inst.sup.phase == phaseStarting}
	}
	e.addElsewhere(m)
	return m
}

func (e *Engine) readinessOf(inst *instance) gate.Readiness {
	switch {
	case inst.sup.held():
		return gate.Held
	case inst.sup.running():
		if inst.addr.Kind == spec.KindDaemon && e.gatedOnHealth(inst) && !inst.sup.healthy() {
			return gate.Running
		}
		return gate.Ready
	case inst.parked:
		return gate.Away
	case inst.status == executor.StatusFailed:
		return gate.Failed
	case inst.status == executor.StatusCompleted:
		return gate.Completed
	}
	return gate.Down
}

// supervised says whether instances of kind are kept running (watched,
// restarted by their policy, stopped on shutdown): daemons and modules.
func supervised(k spec.Kind) bool { return k == spec.KindDaemon || k == spec.KindModule }

// apply runs p in its own goroutine and calls done on the controller.
// before, when set, runs first in that goroutine.
func (e *Engine) apply(p *planner.Plan, before func(), done func(*executor.Result, error)) {
	e.inflight++
	cfg := e.cfg
	ex := &executor.Executor{Providers: e.drainingProviders(e.opts.Providers), Store: e.opts.Store, Parallelism: e.opts.Parallelism,
		Project: e.project(), StateDir: e.opts.StateDir, Progress: e.progress, Ready: e.waitReady}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		if before != nil {
			before()
		}
		t0 := time.Now()
		res, err := ex.Apply(e.ctx, cfg, p)
		e.stats.applied(p, time.Since(t0), res, err)
		e.post(func() {
			e.inflight--
			done(res, err)
			if e.inflight == 0 && len(e.idle) > 0 {
				fs := e.idle
				e.idle = nil
				for _, f := range fs {
					f()
				}
			}
		})
	}()
}

// progress turns the executor's step events into engine events. It runs
// on the steps' goroutines.
func (e *Engine) progress(ev executor.StepEvent) {
	if ev.Running {
		// A job's process runs: "started", as a daemon's start says
		// (orch status lists it running from this event: jobRun).
		e.emit(Event{Type: EventStarted, Addr: ev.Addr, Pid: ev.Observed.Pid})
		return
	}
	if !ev.Done || ev.Skipped {
		return
	}
	out := Event{Addr: ev.Addr, Pid: ev.Observed.Pid}
	switch {
	case ev.Err != nil && supervised(ev.Addr.Kind) && unreachableStart(ev.Err):
		return // not a failure: afterApply parks it, waiting for its runtime
	case ev.Err != nil:
		out.Type, out.Detail, out.Pid = EventFailed, ev.Err.Error(), 0
		if ev.Addr.Kind == spec.KindJob && ev.Observed.State == providers.StateExited {
			code := ev.Observed.ExitCode
			out.ExitCode, out.Signal = &code, ev.Observed.Signal
		}
	case ev.Kind == executor.StepDown:
		out.Pid = 0
		switch ev.Action {
		case planner.Delete:
			out.Type = EventDestroyed
		case planner.Stop: // orch stop (hold.go)
			out.Type, out.Detail, out.Signal = EventStopped, "by user; held until orch start", ev.Observed.Signal
		default:
			out.Type, out.Detail = EventStopped, "replaced"
		}
	case ev.Action == planner.Adopt:
		out.Type = EventAdopted
	case ev.Action == planner.Update:
		out.Type = EventUpdated
	case ev.Action == planner.Reload:
		out.Type, out.Detail = EventReloaded, "signalled to apply its new configuration"
	case ev.Addr.Kind == spec.KindJob:
		code := ev.Observed.ExitCode
		out.Type, out.ExitCode, out.Pid = EventCompleted, &code, 0
	default:
		out.Type = EventStarted
	}
	if ev.Err == nil && ev.Kind != executor.StepDown && supervised(ev.Addr.Kind) && len(ev.Handle) > 0 &&
		(ev.Action == planner.Create || ev.Action == planner.Start || ev.Action == planner.Replace) {
		// Supervision from the first moment: the exit watch and the
		// health checks of what just started begin now, not when the
		// rest of its apply ends (an unrelated job may run for long).
		// The event goes out once the books say so: a reader that asks
		// for a snapshot on "started" (orch top) sees it running.
		addr, rt, h := ev.Addr, ev.Runtime, ev.Handle
		e.post(func() {
			e.superviseStarted(addr, rt, h)
			e.emit(out)
		})
		return
	}
	e.emit(out)
	if out.Type == EventFailed {
		// After the failure is told: what a cascade now leaves out is
		// said after why (on the controller: the cascades are its).
		addr := ev.Addr
		e.post(func() { e.cascadeFailed(addr) })
	}
}

// superviseStarted takes under supervision an instance that a step of an
// apply in flight just started as h (its record is durable).
func (e *Engine) superviseStarted(addr spec.Address, rt spec.Address, h providers.Handle) {
	if e.stopping {
		return
	}
	inst := e.instance(addr)
	if inst.sup.running() && bytes.Equal(inst.handle, h) {
		return
	}
	if inst.timer != nil {
		inst.timer.Stop()
		inst.timer = nil
	}
	inst.ran, inst.rt = true, rt
	inst.healthOf, inst.healthOfSet = nil, false
	inst.waiting, inst.blockedBy = "", spec.Address{}
	inst.parked, inst.parkedTries = false, 0
	e.supervise(inst, h)
}

// afterApply takes the results of an apply into the engine's books: new
// handles are supervised, deleted instances forgotten, failures held until
// their configuration changes.
func (e *Engine) afterApply(p *planner.Plan, res *executor.Result, err error) {
	for _, c := range p.Changes {
		delete(e.busy, c.Addr)
		e.free(c.Addr)
	}
	defer func() {
		// A restart whose start failed brought no process for a signal
		// to wait for: the next one starts afresh.
		for _, c := range p.Changes {
			if inst := e.insts[c.Addr]; inst != nil && !inst.sup.running() {
				e.endVerdictWait(inst)
			}
		}
	}()
	if err != nil && !errors.Is(err, executor.ErrInterrupted) {
		e.emit(Event{Type: EventError, Detail: err.Error()})
	}
	if res == nil || e.stopping {
		// Stopping: the shutdown lists the records itself and stops what
		// they say runs; nothing is taken under supervision any more.
		// (Listing the records here as well, and starting a watch and
		// health checks of each instance the apply started, held back the
		// first stop signal of orch up interrupted during its first apply
		// by 2-6 ms at 100 daemons.)
		return
	}
	addrs := make([]spec.Address, len(res.Outcomes))
	for i, o := range res.Outcomes {
		addrs[i] = o.Addr
	}
	recs, lerr := e.recordsOf(addrs)
	if lerr != nil {
		e.emit(Event{Type: EventError, Detail: "reading state: " + lerr.Error()})
		return
	}
	var replaced []spec.Address
	var failedStarts []*instance
	var exitsSeen, skipped []func()
	blocked := false
	defer func() {
		for _, a := range replaced {
			e.restartWithWhenReady(a, p)
		}
		// A failed start is retried by the restart policy, with the
		// backoff and crash-loop accounting of an exit.
		for _, inst := range failedStarts {
			if e.insts[inst.addr] == inst && !inst.sup.running() && inst.timer == nil {
				e.down(inst, true, 0)
			}
		}
		for _, f := range exitsSeen {
			f()
		}
		for _, f := range skipped {
			f()
		}
		if blocked {
			e.hasBlocked = true
		}
	}()
	for _, o := range res.Outcomes {
		c := p.Change(o.Addr)
		rec, ok := recs[o.Addr]
		if !ok {
			if o.Skipped.Reason == executor.SkipDependencyFailed && !e.stopping && e.cfg.Resource(o.Addr) != nil {
				// Never started: what it needs failed. It stays visible
				// (status, events) as blocked on that, and is planned
				// again once what blocks it is restarted.
				addr, why := o.Addr, o.Skipped.String()
				skipped = append(skipped, func() { e.waitFor(addr, why) }) // once every status is in
				blocked = true
				continue
			}
			if inst := e.insts[o.Addr]; inst != nil && (e.cfg.Resource(o.Addr) == nil || o.Err == nil) {
				e.forget(inst)
			}
			continue
		}
		inst := e.instance(o.Addr)
		inst.status = recStatus(rec)
		switch {
		case !o.Skipped.IsZero():
			if o.Skipped.Reason == executor.SkipDependencyFailed && !e.stopping {
				e.emit(Event{Type: EventSkipped, Addr: o.Addr, Detail: o.Skipped.String()})
			}
		case o.Err != nil && isReverted(o.Err):
			// The new instance never became ready and was stopped; the old
			// one runs on, as its restored record says.
			inst.reverted = c.Hash()
			inst.hash, inst.rt = rec.ConfigHash, rec.Runtime
			inst.applied = appliedStopOf(rec)
			if recStatus(rec) == executor.StatusRunning && len(rec.Handle) > 0 && !(inst.sup.running() && bytes.Equal(inst.handle, rec.Handle)) {
				// Checked as it was applied, until the configuration
				// changes: the declared check is the new one's.
				inst.healthOf, inst.healthOfSet = healthApplied(rec), true
				e.supervise(inst, rec.Handle)
				e.illegal(inst.addr, inst.sup.verdict(true)) // it served before, and was not replaced
			}
		case o.Err != nil && c != nil && (c.Action == planner.Update || c.Action == planner.Reload) && recStatus(rec) == executor.StatusRunning:
			// A failed in-place update leaves the instance running as it
			// was (its record unchanged): its supervision goes on; the
			// next plan shows the update again.
			if !(inst.sup.running() && bytes.Equal(inst.handle, rec.Handle)) {
				e.supervise(inst, rec.Handle)
			}
		case o.Err != nil && !isNotReady(o.Err):
			if c != nil && inst.hash != c.Hash() {
				inst.history, inst.attempt = nil, 0 // a new configuration: a new count
			}
			inst.ran, inst.hash = true, c.Hash()
			if inst.cancel != nil {
				inst.cancel()
			}
			inst.sup.end()
			if supervised(o.Addr.Kind) && unreachableStart(o.Err) && !e.stopping {
				e.park(inst, o.Err)
				break
			}
			inst.parked, inst.parkedTries = false, 0
			if (o.Addr.Kind == spec.KindDaemon || o.Addr.Kind == spec.KindJob) && c != nil && starts(c) && !e.stopping {
				failedStarts = append(failedStarts, inst)
			}
		case o.Err != nil && isNotReady(o.Err):
			// A rolling replace stopped: this instance started but did not
			// become ready; it runs on under supervision (its liveness and
			// restart policy act), and the instances after it keep their
			// old configuration.
			e.emit(Event{Type: EventFailed, Addr: o.Addr, Detail: o.Err.Error()})
			fallthrough
		default:
			if inst.hash != rec.ConfigHash {
				inst.history, inst.attempt = nil, 0 // a new configuration: a new count
			}
			inst.reverted = ""
			inst.healthOf, inst.healthOfSet = nil, false
			inst.applied = appliedStopOf(rec)
			inst.ran, inst.hash, inst.rt = true, rec.ConfigHash, rec.Runtime
			inst.waiting, inst.blockedBy = "", spec.Address{}
			inst.parked, inst.parkedTries = false, 0
			if supervised(o.Addr.Kind) && recStatus(rec) == executor.StatusRunning {
				if inst.timer != nil {
					inst.timer.Stop()
					inst.timer = nil
				}
				if inst.sup.running() && bytes.Equal(inst.handle, rec.Handle) {
					// Supervised since its step ended (superviseStarted);
					// an exit or an unhealthy check seen while the apply
					// went on is handled now.
					if x := inst.exitBusy; x != nil && inst.exitBusyGen == inst.gen {
						gen, obs := inst.gen, *x
						exitsSeen = append(exitsSeen, func() { e.exited(inst.addr, gen, obs) })
					} else if why := inst.sickBusy; why != "" && !inst.sup.healthy() {
						gen := inst.gen
						exitsSeen = append(exitsSeen, func() { e.health(inst.addr, gen, false, why) })
					}
					inst.sickBusy = ""
				} else {
					e.supervise(inst, rec.Handle)
				}
				inst.exitBusy = nil
				if c != nil && c.Action == planner.Replace {
					replaced = append(replaced, o.Addr)
				}
			}
		}
	}
}

func (e *Engine) forget(inst *instance) {
	if inst.cancel != nil {
		inst.cancel()
	}
	if inst.timer != nil {
		inst.timer.Stop()
	}
	delete(e.insts, inst.addr)
}

// recStatus is the status rec records.
func recStatus(rec state.Instance) planner.Status { return planner.ParseStatus(rec.Status) }
