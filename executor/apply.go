package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// ErrInterrupted is returned when the context was cancelled during an
// apply: in-flight steps finished and were recorded, nothing new started.
var ErrInterrupted = errors.New("apply interrupted: in-flight steps finished and were recorded; nothing else was started")

// DefaultParallelism bounds how many steps run at once by default.
const DefaultParallelism = 10

// Recorder is the part of the state store the executor writes to.
type Recorder interface {
	Update(fn func(tx *state.Tx) error) error
}

// Executor applies plans. Its fields are set once; Apply may be called
// from one goroutine at a time.
type Executor struct {
	Providers   Providers
	Store       Recorder
	Parallelism int
	Project     string
	StateDir    string // absolute
	// Ready, when set, is asked before the old instance of a
	// create_before_destroy replace is stopped whether the new one (h)
	// became ready; on an error the new one is stopped, the old one keeps
	// running and its record is restored, and the change fails with a
	// *RevertedError. Nil: the old one is stopped once the new one runs.
	Ready func(ctx context.Context, c *planner.Change, h providers.Handle) error
	// WaitUp, when set, is called at the end of a successful start of a
	// daemon (create, start, or a replace that is not
	// create_before_destroy, which Ready covers) and holds its dependents
	// until it returns; an error fails the step (orch apply waits for
	// readiness this way; orch up gates dependents itself).
	WaitUp func(ctx context.Context, c *planner.Change, h providers.Handle) error
	// Kill, when closed, makes the stops still to come or under way use
	// SIGKILL at once (orch up's second interrupt). Nil: never.
	Kill <-chan struct{}
	// Progress, when set, is called for each step as it starts and ends,
	// from the step's goroutine.
	Progress func(StepEvent)
	// JobPoll is the first interval at which a running job is observed
	// while waiting for it to finish; it doubles up to 250ms. Default 5ms.
	JobPoll time.Duration
	// PresignalReady makes each batch's presignal also send the stop
	// signals of the stops that may begin but wait for a worker
	// (Parallelism): their runtimes count each stop's timeout from its
	// signal. For an Apply that is not interrupted (orch up's shutdown):
	// an interrupted one finishes those steps without running them.
	PresignalReady bool
}

// StepKind says what a step does to its instance.
type StepKind uint8

const (
	StepUp   StepKind = iota // create, start, adopt, update: bring the declared instance up
	StepDown                 // stop and delete the prior instance
)

func (k StepKind) String() string {
	if k == StepDown {
		return "down"
	}
	return "up"
}

// StepEvent reports progress of one step.
type StepEvent struct {
	Addr   spec.Address
	Action planner.Action
	Kind   StepKind
	// Done: the step ended (Err says how). A stop or a removal is done
	// once its instance is gone; its runtime forgets it and its record is
	// written after (see down): a failure to forget it is the step's
	// outcome, a failure to write its record the Apply's error.
	Done     bool
	Err      error
	Skipped  bool
	Elapsed  time.Duration
	Observed providers.Observed
	// Handle and Runtime, on a successful up step, are what was recorded
	// for the instance (durable when the event is sent): a supervisor can
	// take it over at once, before the rest of the apply ends.
	Handle  providers.Handle
	Runtime spec.Address
	// Killed, on a down step, says the instance did not stop within its
	// timeout (or a kill was asked) and was killed.
	Killed bool
	// Running, on a job's up step not done yet, says that its process
	// has started (Observed.Pid) and that the step now waits for it to
	// end: a job that runs for minutes is seen running, not only done.
	Running bool
}

// Outcome is what happened to one change.
type Outcome struct {
	Addr    spec.Address
	Action  planner.Action
	Err     error // nil when it succeeded
	Skipped Skip  // why it did not run, when it did not (zero when it ran)
	Pid     int
}

// SkipReason is why a step did not run: a closed vocabulary.
type SkipReason uint8

const (
	NotSkipped           SkipReason = iota // it ran
	SkipInterrupted                        // the apply was interrupted before it began
	SkipDependencyFailed                   // something it needs failed (Skip.Failed names the root cause)
)

// Skip is why a step did not run (Outcome.Skipped). Its String is the
// text orch prints and sends ("skipped because daemon.db failed").
type Skip struct {
	Reason SkipReason
	// Failed, for SkipDependencyFailed, is the instance whose failure
	// it follows: the root of a chain (a dependent of a skipped step
	// names what the skipped one followed).
	Failed spec.Address
}

// IsZero says it ran.
func (s Skip) IsZero() bool { return s.Reason == NotSkipped }

func (s Skip) String() string {
	switch s.Reason {
	case SkipInterrupted:
		return "not started: the apply was interrupted"
	case SkipDependencyFailed:
		return "skipped because " + s.Failed.String() + " failed"
	}
	return ""
}

// Result of an Apply.
type Result struct {
	Outcomes []Outcome // one per non-no-op change, sorted by address
	// Diagnostics name the failed resources with their file:line.
	Diagnostics hcl.Diagnostics
}

// Summary counts what was done, as Terraform's "Apply complete!" line.
func (r *Result) Summary() planner.Summary {
	var s planner.Summary
	for _, o := range r.Outcomes {
		if o.Err != nil || !o.Skipped.IsZero() {
			continue
		}
		switch o.Action {
		case planner.Create:
			s.Add++
		case planner.Update, planner.Start, planner.Adopt, planner.Reload:
			s.Change++
		case planner.Replace:
			s.Replace++
		case planner.Delete:
			s.Destroy++
		}
	}
	return s
}

type step struct {
	change *planner.Change
	kind   StepKind
	deps   []*step // must finish first
	rdeps  []*step
	wait   int
	failed error // set when this step failed
	skip   Skip  // set when a dependency failed, or the apply was interrupted
	done   bool
	// pair is, for the down step of a create-before-destroy replace, its
	// up step; handle is what an up step started.
	pair   *step
	handle providers.Handle
	pid    int // what an up step started, when the runtime has pids
	// release lets the down steps waiting on this down step begin once
	// its instance has stopped, before its record is written (see
	// releasesEarly); set by Apply, called by down.
	release  func()
	released bool
	hurry    *hurry // the Apply's, for its stops
	// recordedAhead: a stop whose record (stopped) was queued when the
	// step was launched (recordAhead), not once its instance was gone.
	recordedAhead bool
	// presignalled: its stop signal went out already (presignal), with
	// its own batch or, under PresignalReady, with an earlier one.
	presignalled bool
}

// stopped tells Apply that s's instance has stopped (releasesEarly).
func (s *step) stopped() {
	if s.release != nil {
		s.release()
	}
}

// releasesEarly says whether d may begin once s's instance has stopped,
// before s has written its record: when s is a stop or a removal, a
// dependency's stop waits for its dependents' processes to be gone, not
// for their records, which another address's step never reads. On a
// chain of stops this takes a state transaction (an fsync) off every
// link. Everything else (an up step, the halves of a replace) waits for
// s to finish.
func releasesEarly(s, d *step) bool {
	early := s.change.Action == planner.Stop || s.change.Action == planner.Delete
	return early && s.kind == StepDown && d.kind == StepDown && d.change.Addr != s.change.Addr
}

// Apply performs the plan's changes. cfg is the configuration the plan was
// made from. It returns an error only for infrastructure faults of orch
// itself (state writes) or ErrInterrupted; resource failures are in the
// Result's Outcomes and Diagnostics.
func (e *Executor) Apply(ctx context.Context, cfg *spec.Config, p *planner.Plan) (*Result, error) {
	steps := e.buildSteps(cfg, p)
	defer TightenGC(len(steps))()
	rec := newGroupCommit(e.Store)
	rec.redact = cfg.Redactor()
	rec.writers.Store(int64(len(steps)))
	defer rec.close()
	h := newHurry(e.Kill)
	defer h.close()

	par := e.Parallelism
	if par <= 0 {
		par = DefaultParallelism
	}
	var (
		mu          sync.Mutex
		ready       []*step
		running     int
		remaining   = len(steps)
		interrupted bool
		fatal       error
		allDone     = make(chan struct{}) // closed (by launch) once remaining is 0
		allClosed   bool
		pending     []*step // ready stops to presignal with the next batch (PresignalReady)
	)
	// enqueue makes s ready; under PresignalReady, a stop is also queued
	// to be presignalled with the next batch (start), whether or not a
	// worker takes it then. mu held.
	enqueue := func(s *step) {
		ready = append(ready, s)
		if e.PresignalReady && s.kind == StepDown && s.skip.IsZero() {
			pending = append(pending, s)
		}
	}
	for _, s := range steps {
		if s.wait == 0 {
			enqueue(s)
		}
	}
	// release lets the steps that may begin before s has finished begin
	// (releasesEarly); mu held.
	release := func(s *step) {
		if s.released {
			return
		}
		s.released = true
		for _, d := range s.rdeps {
			if releasesEarly(s, d) {
				d.wait--
				if d.wait == 0 {
					enqueue(d)
				}
			}
		}
	}
	// finish marks s done and releases its dependents; mu held.
	var finish func(s *step)
	finish = func(s *step) {
		s.done = true
		remaining--
		for _, d := range s.rdeps {
			if s.released && releasesEarly(s, d) {
				continue // began already
			}
			if s.failed != nil || !s.skip.IsZero() {
				if d.skip.IsZero() && !d.done {
					d.skip = skipReason(s)
				}
			}
			d.wait--
			if d.wait == 0 {
				enqueue(d)
			}
		}
	}
	// launch takes the ready steps that may run now, up to par at a time,
	// for the caller to start (after unlocking mu), and finishes at once
	// those that must not run; mu held. A step that ends (or, for
	// releasesEarly, stops) launches what it made ready itself: the next
	// link of a chain begins without a round through the loop below.
	var launch func() []*step
	var start func(batch []*step)
	launch = func() []*step {
		if ctx.Err() != nil {
			interrupted = true
		}
		var batch []*step
		for len(ready) > 0 {
			s := ready[0]
			stop := !s.skip.IsZero() || interrupted || fatal != nil
			if !stop && running >= par {
				break
			}
			ready = ready[1:]
			if stop {
				// Steps whose dependencies failed, or any step once
				// interrupted, finish without running.
				if s.skip.IsZero() {
					s.skip = Skip{Reason: SkipInterrupted}
				}
				rec.skipped()
				finish(s)
				if e.Progress != nil {
					e.Progress(StepEvent{Addr: s.change.Addr, Action: s.change.Action, Kind: s.kind, Done: true, Skipped: true})
				}
				continue
			}
			running++
			rec.running.Add(1)
			s.hurry = h
			s.release = func() {
				mu.Lock()
				release(s)
				next := launch()
				mu.Unlock()
				start(next)
			}
			batch = append(batch, s)
		}
		if remaining == 0 && !allClosed {
			allClosed = true
			close(allDone)
		}
		return batch
	}
	// Steps run on workers: a worker whose step has ended takes the next
	// step that is started while it waits, so that its stack, grown by
	// the first, serves the next (on a chain of 100 stops, a fresh
	// goroutine per link spent 8% of orch up's CPU growing its stack).
	work := make(chan *step)
	quit := make(chan struct{})
	defer close(quit)
	run := func(s *step) {
		// In-flight steps finish even when ctx is cancelled.
		err := e.runStep(context.WithoutCancel(ctx), cfg, s, rec)
		rec.stepEnded(s.recordedAhead)
		mu.Lock()
		running--
		var se *stateError
		if errors.As(err, &se) && fatal == nil {
			fatal = se
		}
		s.failed = err
		finish(s)
		next := launch()
		mu.Unlock()
		start(next)
	}
	worker := func(s *step) {
		for {
			run(s)
			select {
			case s = <-work:
			case <-quit:
				return
			}
		}
	}
	// toPresignal is what start presignals: the batch; under
	// PresignalReady, with the stops made ready since the last batch
	// (enqueue), each once.
	toPresignal := func(batch []*step) []*step {
		if !e.PresignalReady {
			return batch
		}
		mu.Lock()
		defer mu.Unlock()
		var fresh []*step
		add := func(s *step) {
			if !s.presignalled {
				s.presignalled = true
				fresh = append(fresh, s)
			}
		}
		for _, s := range batch {
			add(s)
		}
		if !interrupted && fatal == nil {
			for _, s := range pending {
				if s.skip.IsZero() {
					add(s)
				}
			}
		}
		pending = pending[:0]
		return fresh
	}
	start = func(batch []*step) {
		e.presignal(cfg, h, toPresignal(batch))
		recordAhead(batch, rec)
		for _, s := range batch {
			select {
			case work <- s:
			default:
				go worker(s)
			}
		}
	}
	mu.Lock()
	first := launch()
	mu.Unlock()
	start(first)
	select {
	case <-allDone:
	case <-ctx.Done():
		mu.Lock()
		interrupted = true
		launch() // finishes what is ready without running it
		mu.Unlock()
		<-allDone
	}
	if err := rec.flush(); err != nil && fatal == nil {
		fatal = err
	}
	rec.close()
	res := e.result(p, steps)
	if fatal != nil {
		return res, fatal
	}
	if interrupted {
		return res, ErrInterrupted
	}
	return res, nil
}

// skipReason is why the dependents of s do not run: the reason s itself
// was skipped (so a chain names the root cause), or its failure.
func skipReason(s *step) Skip {
	if !s.skip.IsZero() {
		return s.skip
	}
	return Skip{Reason: SkipDependencyFailed, Failed: s.change.Addr}
}

// buildSteps turns changes into steps and orders them.
func (e *Executor) buildSteps(cfg *spec.Config, p *planner.Plan) []*step {
	ups := map[spec.Address]*step{}
	downs := map[spec.Address]*step{}
	var steps []*step
	for _, c := range p.Changes {
		switch c.Action {
		case planner.NoOp:
		case planner.Delete, planner.Stop:
			s := &step{change: c, kind: StepDown}
			downs[c.Addr] = s
			steps = append(steps, s)
		case planner.Replace:
			down := &step{change: c, kind: StepDown}
			up := &step{change: c, kind: StepUp}
			downs[c.Addr], ups[c.Addr] = down, up
			steps = append(steps, down, up)
			if c.CreateBeforeDestroy {
				link(up, down) // down after up
				down.pair = up
			} else {
				link(down, up)
			}
		default:
			s := &step{change: c, kind: StepUp}
			ups[c.Addr] = s
			steps = append(steps, s)
		}
	}
	rolling(p, ups, downs)
	memo := map[spec.Address][]spec.Address{}
	// dependencies between instances
	for _, s := range steps {
		c := s.change
		if s.kind == StepUp {
			for _, d := range cfg.Graph.DependenciesOf(c.Addr) {
				if u := ups[d]; u != nil {
					link(u, s)
				}
			}
			continue
		}
		// A prior instance stops after the prior instances that depend on
		// it, also through what does not go down in this plan (a
		// completed job between an app and its database).
		for _, d := range downDeps(c, p, downs, memo) {
			if dd := downs[d]; dd != nil && dd != s {
				link(s, dd) // s (the dependent) goes down before its dependency
			}
		}
	}
	return steps
}

// downDeps lists the addresses with a down step that the prior instance
// of c depends on, directly or through instances of p without one. memo
// holds, for each address without a down step, what it leads to.
func downDeps(c *planner.Change, p *planner.Plan, downs map[spec.Address]*step, memo map[spec.Address][]spec.Address) []spec.Address {
	var out []spec.Address
	seen := map[spec.Address]bool{c.Addr: true}
	var walk func(deps []spec.Address)
	walk = func(deps []spec.Address) {
		for _, d := range deps {
			if seen[d] {
				continue
			}
			seen[d] = true
			if downs[d] != nil {
				out = append(out, d)
				continue
			}
			through, ok := memo[d]
			if !ok {
				memo[d] = nil // a cycle through d leads nowhere
				var dc *planner.Change
				if p != nil {
					dc = p.Change(d)
				}
				if dc != nil {
					through = downDeps(dc, p, downs, memo)
				}
				memo[d] = through
			}
			for _, t := range through {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
	}
	walk(priorDeps(c))
	return out
}

// priorDeps lists what the prior instance of a change depended on.
func priorDeps(c *planner.Change) []spec.Address {
	if c.Prior != nil && c.Prior.Snapshot != nil {
		return c.Prior.Snapshot.DependsOn
	}
	return nil
}

// link makes b wait for a.
func link(a, b *step) {
	for _, x := range b.deps {
		if x == a {
			return
		}
	}
	b.deps = append(b.deps, a)
	a.rdeps = append(a.rdeps, b)
	b.wait++
}

func (e *Executor) result(p *planner.Plan, steps []*step) *Result {
	res := &Result{}
	byAddr := map[spec.Address]*Outcome{}
	for _, s := range steps {
		o := byAddr[s.change.Addr]
		if o == nil {
			o = &Outcome{Addr: s.change.Addr, Action: s.change.Action}
			byAddr[s.change.Addr] = o
		}
		if s.kind == StepUp && s.pid != 0 {
			o.Pid = s.pid
		}
		if s.failed != nil && o.Err == nil {
			o.Err = s.failed
			res.Diagnostics = append(res.Diagnostics, failureDiag(s))
		}
		if !s.skip.IsZero() && o.Skipped.IsZero() && o.Err == nil {
			o.Skipped = s.skip
		}
	}
	for _, o := range byAddr {
		res.Outcomes = append(res.Outcomes, *o)
	}
	sort.Slice(res.Outcomes, func(i, j int) bool { return res.Outcomes[i].Addr.Less(res.Outcomes[j].Addr) })
	sort.SliceStable(res.Diagnostics, func(i, j int) bool { return res.Diagnostics[i].Summary < res.Diagnostics[j].Summary })
	return res
}

func failureDiag(s *step) *hcl.Diagnostic {
	c := s.change
	verb := map[planner.Action]string{planner.Create: "create", planner.Start: "start", planner.Update: "update",
		planner.Replace: "replace", planner.Delete: "destroy", planner.Adopt: "adopt", planner.Reload: "reload", planner.Stop: "stop"}[c.Action]
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Failed to %s %s", verb, c.Addr),
		Detail:   s.failed.Error(),
	}
	if r := c.Resource; r != nil {
		// Point at the attribute the provider blames, else the block.
		rng := r.DeclRange
		var pe *providers.Error
		if errors.As(s.failed, &pe) && pe.Attr != "" {
			if ar, ok := r.Ranges.Get(pe.Attr); ok {
				rng = ar
			}
		}
		d.Subject = &rng
	}
	return d
}

// rolling orders the replaces of the instances of one block (count,
// for_each) so that at most lifecycle.max_parallel of them are under way
// at once (Lifecycle.ReplaceParallel): the replace of the i-th instance
// begins once that of the (i-N)-th has ended. A replace that fails skips
// those after it: a rollout stops at its first failure.
func rolling(p *planner.Plan, ups, downs map[spec.Address]*step) {
	blocks := map[spec.Address][]*planner.Change{}
	var order []spec.Address
	for _, c := range p.Changes {
		if c.Action != planner.Replace || c.Resource == nil || c.Resource.Lifecycle.ReplaceParallel() == 0 {
			continue
		}
		b := c.Addr.Block()
		if blocks[b] == nil {
			order = append(order, b)
		}
		blocks[b] = append(blocks[b], c)
	}
	for _, b := range order {
		cs := blocks[b]
		if len(cs) < 2 {
			continue
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Addr.Less(cs[j].Addr) })
		n := cs[0].Resource.Lifecycle.ReplaceParallel()
		for i := n; i < len(cs); i++ {
			prev, next := cs[i-n], cs[i]
			last, first := ups[prev.Addr], downs[next.Addr]
			if prev.CreateBeforeDestroy {
				last = downs[prev.Addr]
			}
			if next.CreateBeforeDestroy {
				first = ups[next.Addr]
			}
			link(last, first)
		}
	}
}

// RevertedError is the failure of a create_before_destroy replace whose
// new instance did not become ready: the new one was stopped and the old
// one kept running, its record restored.
type RevertedError struct {
	Addr spec.Address
	Err  error
}

func (e *RevertedError) Error() string {
	return fmt.Sprintf("%s: the new instance did not become ready (%v); it was stopped, and the old one keeps running", e.Addr, e.Err)
}

func (e *RevertedError) Unwrap() error { return e.Err }

// NotReadyError is the failure of a rolling replace (without
// create_before_destroy) whose new instance started but did not become
// ready: it runs on, and the replaces after it do not begin.
type NotReadyError struct {
	Addr spec.Address
	Err  error
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%s: the new instance did not become ready (%v); the rolling replace stops here", e.Addr, e.Err)
}

func (e *NotReadyError) Unwrap() error { return e.Err }
