package executor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// recorder is a provider that records the order of calls and can be told
// to fail or to block a start. It tests the executor's scheduling; the
// real process provider is exercised by cmd/orch's tests.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	fail     map[string]error
	block    map[string]chan struct{} // Start of addr waits for the channel
	started  map[string]chan struct{} // closed when Start of addr begins
	inflight int
	maxIn    int
	nextPid  int
}

func newRecorder() *recorder {
	return &recorder{fail: map[string]error{}, block: map[string]chan struct{}{}, started: map[string]chan struct{}{}, nextPid: 100}
}

func (r *recorder) Schema() spec.RuntimeSchema {
	return spec.RuntimeSchema{Kind: "process", CommandRequired: true}
}

func (r *recorder) Observe(_ context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	out := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	for a, h := range req.Handles {
		var pid int
		fmt.Sscanf(string(h), "pid=%d", &pid)
		out.Objects[a] = providers.Observed{State: providers.StateRunning, Pid: pid}
	}
	return out, nil
}

func (r *recorder) Start(_ context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	a := req.Resource.Addr.String()
	r.mu.Lock()
	r.inflight++
	if r.inflight > r.maxIn {
		r.maxIn = r.inflight
	}
	if ch, ok := r.started[a]; ok {
		close(ch)
	}
	block := r.block[a]
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	r.calls = append(r.calls, "start "+a)
	if err := r.fail[a]; err != nil {
		return providers.StartResponse{}, err
	}
	r.nextPid++
	return providers.StartResponse{Handle: providers.Handle(fmt.Sprintf("pid=%d", r.nextPid)),
		Observed: providers.Observed{State: providers.StateRunning, Pid: r.nextPid}}, nil
}

func (r *recorder) Stop(_ context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "stop "+req.Addr.String())
	return providers.StopResponse{}, nil
}

func (r *recorder) index(call string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.calls {
		if c == call {
			return i
		}
	}
	return -1
}

type fixture struct {
	t     *testing.T
	rec   *recorder
	store *state.Store
	ex    *Executor
}

func newFixture(t *testing.T) *fixture {
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := newRecorder()
	return &fixture{t: t, rec: rec, store: st,
		ex: &Executor{Providers: Providers{"process": rec}, Store: st, Project: "p", StateDir: t.TempDir()}}
}

func (f *fixture) load(src string) *spec.Config {
	cfg, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, "/project",
		spec.Options{Schemas: f.ex.Providers.Schemas()})
	if diags.HasErrors() {
		f.t.Fatal(diags.Error())
	}
	return cfg
}

// apply plans cfg against the store and applies the plan.
func (f *fixture) apply(ctx context.Context, cfg *spec.Config, destroy bool) (*planner.Plan, *Result, error) {
	stored, err := f.store.List()
	if err != nil {
		f.t.Fatal(err)
	}
	in, err := Refresh(context.Background(), cfg, stored, f.ex.Providers, "p", f.ex.StateDir)
	if err != nil {
		f.t.Fatal(err)
	}
	in.Destroy = destroy
	p, diags := planner.Make(in)
	if diags.HasErrors() {
		f.t.Fatal(diags.Error())
	}
	res, err := f.ex.Apply(ctx, cfg, p)
	return p, res, err
}

const chain = `
daemon "c" {
  command = ["/bin/c"]
}
daemon "b" {
  command    = ["/bin/b"]
  depends_on = [daemon.c]
}
daemon "a" {
  command = ["/bin/a", daemon.b.name]
}
daemon "solo" {
  command = ["/bin/solo"]
}
`

func TestApplyOrder(t *testing.T) {
	f := newFixture(t)
	cfg := f.load(chain)
	if _, res, err := f.apply(context.Background(), cfg, false); err != nil || len(res.Diagnostics) > 0 {
		t.Fatalf("apply: %v %v", err, res.Diagnostics)
	}
	if !(f.rec.index("start daemon.c") < f.rec.index("start daemon.b") && f.rec.index("start daemon.b") < f.rec.index("start daemon.a")) {
		t.Fatalf("dependencies did not start first: %v", f.rec.calls)
	}
	insts, _ := f.store.List()
	if len(insts) != 4 {
		t.Fatalf("state has %d records, want 4", len(insts))
	}
	// A second plan is empty: apply recorded exactly what it did.
	p, _, _ := f.apply(context.Background(), cfg, false)
	if p.HasChanges() {
		t.Fatalf("plan after apply has changes:\n%s", planner.Render(p, planner.RenderOptions{}))
	}
	// Destroy runs in reverse dependency order.
	f.rec.calls = nil
	if _, res, err := f.apply(context.Background(), cfg, true); err != nil || len(res.Diagnostics) > 0 {
		t.Fatalf("destroy: %v %v", err, res.Diagnostics)
	}
	if !(f.rec.index("stop daemon.a") < f.rec.index("stop daemon.b") && f.rec.index("stop daemon.b") < f.rec.index("stop daemon.c")) {
		t.Fatalf("destroy not in reverse order: %v", f.rec.calls)
	}
	if insts, _ := f.store.List(); len(insts) != 0 {
		t.Fatalf("state not empty after destroy: %v", insts)
	}
}

func TestRemovedInstancesStopInReverseOrder(t *testing.T) {
	f := newFixture(t)
	f.apply(context.Background(), f.load(chain), false)
	f.rec.calls = nil
	// Remove a, b and c from the configuration: they are deleted, dependents first,
	// from the dependencies recorded in state.
	f.apply(context.Background(), f.load(`daemon "solo" {
  command = ["/bin/solo"]
}
`), false)
	if !(f.rec.index("stop daemon.a") < f.rec.index("stop daemon.b") && f.rec.index("stop daemon.b") < f.rec.index("stop daemon.c")) {
		t.Fatalf("removed instances not stopped in reverse order: %v", f.rec.calls)
	}
}

func TestFailureSkipsDependentsOnly(t *testing.T) {
	f := newFixture(t)
	f.rec.fail["daemon.b"] = &providers.Error{Op: "start", Attr: "command", Err: errors.New("exec: /bin/b: no such file or directory")}
	_, res, err := f.apply(context.Background(), f.load(chain), false)
	if err != nil {
		t.Fatal(err)
	}
	outcome := map[string]Outcome{}
	for _, o := range res.Outcomes {
		outcome[o.Addr.String()] = o
	}
	if outcome["daemon.b"].Err == nil || outcome["daemon.a"].Skipped.IsZero() || outcome["daemon.solo"].Err != nil || outcome["daemon.c"].Err != nil {
		t.Fatalf("outcomes: %+v", outcome)
	}
	if !strings.Contains(outcome["daemon.a"].Skipped.String(), "daemon.b failed") {
		t.Fatalf("skip reason: %q", outcome["daemon.a"].Skipped.String())
	}
	if f.rec.index("start daemon.a") >= 0 {
		t.Fatal("the dependent of a failed step was started")
	}
	if len(res.Diagnostics) != 1 || res.Diagnostics[0].Subject == nil || res.Diagnostics[0].Subject.Start.Line != 6 {
		t.Fatalf("want one diagnostic at the command of daemon.b (line 6), got %v", res.Diagnostics)
	}
	b, err := f.store.Get(spec.Address{Kind: spec.KindDaemon, Name: "b"})
	if err != nil || b.Status != StatusFailed.String() || !strings.Contains(b.LastError, "no such file") {
		t.Fatalf("failed instance not recorded: %+v %v", b, err)
	}
	// Fixed: the next apply starts b and then a.
	delete(f.rec.fail, "daemon.b")
	_, res, _ = f.apply(context.Background(), f.load(chain), false)
	if len(res.Diagnostics) != 0 || f.rec.index("start daemon.a") < 0 {
		t.Fatalf("recovery apply: %v %v", res.Diagnostics, f.rec.calls)
	}
}

func TestParallelismBound(t *testing.T) {
	f := newFixture(t)
	f.ex.Parallelism = 3
	release := make(chan struct{})
	var src strings.Builder
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&src, "daemon \"d%02d\" {\n  command = [\"/bin/x\"]\n}\n", i)
		f.rec.block[fmt.Sprintf("daemon.d%02d", i)] = release
	}
	for i := 0; i < 3; i++ {
		f.rec.started[fmt.Sprintf("daemon.d%02d", i)] = make(chan struct{})
	}
	done := make(chan struct{})
	go func() {
		f.apply(context.Background(), f.load(src.String()), false)
		close(done)
	}()
	// the first three (in address order) start together
	for i := 0; i < 3; i++ {
		<-f.rec.started[fmt.Sprintf("daemon.d%02d", i)]
	}
	close(release)
	<-done
	if f.rec.maxIn != 3 {
		t.Fatalf("max steps in flight = %d, want 3", f.rec.maxIn)
	}
}

func TestReplaceOrdering(t *testing.T) {
	for _, cbd := range []bool{false, true} {
		t.Run(fmt.Sprintf("create_before_destroy=%v", cbd), func(t *testing.T) {
			f := newFixture(t)
			src := fmt.Sprintf("daemon \"x\" {\n  command = [\"/bin/x\", \"%%s\"]\n  lifecycle {\n    create_before_destroy = %v\n  }\n}\n", cbd)
			f.apply(context.Background(), f.load(fmt.Sprintf(src, "1")), false)
			f.rec.calls = nil
			_, res, err := f.apply(context.Background(), f.load(fmt.Sprintf(src, "2")), false)
			if err != nil || len(res.Diagnostics) > 0 {
				t.Fatal(err, res.Diagnostics)
			}
			stop, start := f.rec.index("stop daemon.x"), f.rec.index("start daemon.x")
			if stop < 0 || start < 0 || (start < stop) != cbd {
				t.Fatalf("calls %v", f.rec.calls)
			}
			inst, err := f.store.Get(spec.Address{Kind: spec.KindDaemon, Name: "x"})
			if err != nil || !strings.Contains(string(inst.Config), "/bin/x") || inst.Status != StatusRunning.String() {
				t.Fatalf("record after replace: %+v %v", inst, err)
			}
		})
	}
}

func TestInterruptFinishesInFlight(t *testing.T) {
	f := newFixture(t)
	f.ex.Parallelism = 1
	release := make(chan struct{})
	f.rec.block["daemon.a0"] = release
	f.rec.started["daemon.a0"] = make(chan struct{})
	src := ""
	for i := 0; i < 5; i++ {
		src += fmt.Sprintf("daemon \"a%d\" {\n  command = [\"/bin/x\"]\n}\n", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type out struct {
		res *Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		_, res, err := f.apply(ctx, f.load(src), false)
		ch <- out{res, err}
	}()
	<-f.rec.started["daemon.a0"]
	cancel()
	// The in-flight step is still blocked: the apply waits for it.
	select {
	case o := <-ch:
		t.Fatalf("apply returned while a step was in flight: %v", o.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	o := <-ch
	if !errors.Is(o.err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", o.err)
	}
	insts, _ := f.store.List()
	if len(insts) != 1 || insts[0].Addr.Name != "a0" {
		t.Fatalf("state after interrupt: %+v (want only the in-flight a0 recorded)", insts)
	}
	if f.rec.index("start daemon.a1") >= 0 {
		t.Fatal("a step started after the interrupt")
	}
}

// countingStore counts transactions, to check that steps share them.
type countingStore struct {
	*state.Store
	mu sync.Mutex
	n  int
}

func (c *countingStore) Update(fn func(tx *state.Tx) error) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Store.Update(fn)
}

func TestEveryStepRecorded(t *testing.T) {
	f := newFixture(t)
	cs := &countingStore{Store: f.store}
	f.ex.Store = cs
	f.ex.Parallelism = 64
	_, res, err := f.apply(context.Background(), f.load("daemon \"w\" {\n  count = 200\n  command = [\"/bin/w\"]\n}\n"), false)
	if err != nil || len(res.Diagnostics) > 0 {
		t.Fatal(err, res.Diagnostics)
	}
	insts, _ := f.store.List()
	if len(insts) != 200 {
		t.Fatalf("%d records, want 200", len(insts))
	}
	if cs.n > 200 {
		t.Fatalf("%d transactions for 200 steps", cs.n)
	}
	t.Logf("200 steps recorded in %d transactions", cs.n)
}

// updatingRecorder also takes in-place updates.
type updatingRecorder struct {
	*recorder
	updates []string
	fail    error
}

func (u *updatingRecorder) Update(_ context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.updates = append(u.updates, req.Resource.Addr.String()+" "+req.Resource.Restart.Policy.String())
	return providers.UpdateResponse{}, u.fail
}

func TestUpdateReachesProvider(t *testing.T) {
	f := newFixture(t)
	u := &updatingRecorder{recorder: f.rec}
	f.ex.Providers = Providers{"process": u}
	src := "daemon \"x\" {\n  command = [\"/bin/x\"]\n  restart {\n    policy = \"%s\"\n  }\n}\n"
	f.apply(context.Background(), f.load(fmt.Sprintf(src, "always")), false)

	// A failed update leaves the record as it was: the next plan shows it again.
	u.fail = errors.New("engine refused")
	p, res, _ := f.apply(context.Background(), f.load(fmt.Sprintf(src, "never")), false)
	if p.Changes[0].Action != planner.Update || len(res.Diagnostics) != 1 {
		t.Fatalf("want a failed update, got %s and %v", p.Changes[0].Action, res.Diagnostics)
	}
	u.fail = nil
	p, res, _ = f.apply(context.Background(), f.load(fmt.Sprintf(src, "never")), false)
	if p.Changes[0].Action != planner.Update || len(res.Diagnostics) != 0 {
		t.Fatalf("the update was not planned again: %s %v", p.Changes[0].Action, res.Diagnostics)
	}
	if len(u.updates) != 2 || u.updates[1] != "daemon.x never" || f.rec.index("stop daemon.x") >= 0 {
		t.Fatalf("updates %v, calls %v", u.updates, f.rec.calls)
	}
	if p, _, _ := f.apply(context.Background(), f.load(fmt.Sprintf(src, "never")), false); p.HasChanges() {
		t.Fatal("changes left after the update")
	}
}

// gatedStore holds its first transaction until released, and counts
// transactions and the records each carried; written, when set, is
// called once the first transaction is committed.
type gatedStore struct {
	*state.Store
	gate    chan struct{}
	written func()
	mu      sync.Mutex
	batches []int
}

func (g *gatedStore) Update(fn func(tx *state.Tx) error) error {
	g.mu.Lock()
	first := len(g.batches) == 0
	g.batches = append(g.batches, 0)
	n := len(g.batches) - 1
	g.mu.Unlock()
	if first {
		<-g.gate
	}
	err := g.Store.Update(func(tx *state.Tx) error {
		err := fn(tx)
		insts, _ := tx.List()
		g.mu.Lock()
		g.batches[n] = len(insts)
		g.mu.Unlock()
		return err
	})
	if first && err == nil && g.written != nil {
		g.written()
	}
	return err
}

// entered is how many transactions have begun.
func (g *gatedStore) entered() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.batches)
}

// TestGroupCommitBatches: records that arrive while a transaction runs go
// into the next one together, and every writer returns only once its
// record is committed.
func TestGroupCommitBatches(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gs := &gatedStore{Store: st, gate: make(chan struct{})}
	g := newGroupCommit(gs)
	put := func(i int, done chan<- error) {
		done <- g.put(state.Instance{Addr: spec.Address{Kind: spec.KindDaemon, Name: fmt.Sprintf("d%d", i)}, Config: []byte("{}")})
	}
	done := make(chan error, 51)
	go put(0, done)
	// The first record is in its (held) transaction once the queue is
	// empty again and a batch exists.
	waitUntil(t, func() bool { gs.mu.Lock(); defer gs.mu.Unlock(); return len(gs.batches) == 1 })
	for i := 1; i <= 50; i++ {
		go put(i, done)
	}
	waitUntil(t, func() bool { return len(g.ops) == 50 })
	select {
	case err := <-done:
		t.Fatalf("a writer returned before its record was committed (%v)", err)
	default:
	}
	close(gs.gate)
	for i := 0; i <= 50; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	g.close()
	if len(gs.batches) != 2 || gs.batches[1] != 51 {
		t.Fatalf("transactions %v: want the 50 queued records in one transaction after the first", gs.batches)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStopsDoNotWaitForRecords: on a chain of removals, a dependency's
// stop begins once its dependent has stopped, without waiting for the
// dependent's record (held here in its transaction); the order of the
// stops is kept, and Apply returns only once every record is written.
func TestStopsDoNotWaitForRecords(t *testing.T) {
	f := newFixture(t)
	f.apply(context.Background(), f.load(chain), false)
	f.rec.mu.Lock()
	f.rec.calls = nil
	f.rec.mu.Unlock()
	gs := &gatedStore{Store: f.store, gate: make(chan struct{})}
	f.ex.Store = gs
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, res, err := f.apply(context.Background(), f.load(`daemon "solo" {
  command = ["/bin/solo"]
}
`), false)
		done <- result{res, err}
	}()
	// a's record is held in the first transaction; b and c stop anyway.
	waitUntil(t, func() bool { return f.rec.index("stop daemon.c") >= 0 })
	if !(f.rec.index("stop daemon.a") < f.rec.index("stop daemon.b") && f.rec.index("stop daemon.b") < f.rec.index("stop daemon.c")) {
		t.Fatalf("removed instances not stopped in reverse order: %v", f.rec.calls)
	}
	select {
	case r := <-done:
		t.Fatalf("Apply returned before its records were written: %v", r.err)
	default:
	}
	close(gs.gate)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if s := r.res.Summary(); s.Destroy != 3 {
		t.Fatalf("summary %+v, want 3 destroyed", s)
	}
	insts, _ := f.store.List()
	if len(insts) != 1 || insts[0].Addr.Name != "solo" {
		t.Fatalf("records after the apply: %v", insts)
	}
}

// failingStore fails every transaction that deletes a record.
type failingStore struct {
	*state.Store
}

var errDiskGone = errors.New("disk gone")

func (f *failingStore) Update(fn func(tx *state.Tx) error) error {
	return f.Store.Update(func(tx *state.Tx) error {
		before, _ := tx.List()
		if err := fn(tx); err != nil {
			return err
		}
		if after, _ := tx.List(); len(after) < len(before) {
			return errDiskGone
		}
		return nil
	})
}

// TestReleasedRecordFailureEndsApply: a removal's record is written
// after its step was reported done, without the step waiting for it
// (putReleased); a failure to write it still ends the Apply with a state
// error, and the records stay as they were.
func TestReleasedRecordFailureEndsApply(t *testing.T) {
	f := newFixture(t)
	f.apply(context.Background(), f.load(chain), false)
	before, _ := f.store.List()
	f.ex.Store = &failingStore{Store: f.store}
	_, _, err := f.apply(context.Background(), f.load(chain), true)
	var se *stateError
	if !errors.As(err, &se) || !errors.Is(err, errDiskGone) {
		t.Fatalf("Apply returned %v, want the state error of the removals' records", err)
	}
	if after, _ := f.store.List(); len(after) != len(before) {
		t.Fatalf("%d records after the failed writes, want the %d kept", len(after), len(before))
	}
}

// TestReleasedRecordsGather: the records of stops (released writes) wait
// for each other while a step runs, up to releasedBatch a transaction,
// and a write a step waits on takes them along at once; when the last
// step ends, what is left commits.
func TestReleasedRecordsGather(t *testing.T) {
	defer func(d time.Duration) { releasedLinger = d }(releasedLinger)
	releasedLinger = time.Hour // only the rules below end a wait
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gs := &gatedStore{Store: st, gate: make(chan struct{})}
	close(gs.gate)
	g := newGroupCommit(gs)
	inst := func(i int) state.Instance {
		return state.Instance{Addr: spec.Address{Kind: spec.KindDaemon, Name: fmt.Sprintf("d%d", i)}, Config: []byte("{}")}
	}
	batches := func() []int { gs.mu.Lock(); defer gs.mu.Unlock(); return slices.Clone(gs.batches) }
	g.running.Store(2) // steps still run: released writes wait for more
	g.writers.Store(2)
	for i := range 5 {
		g.putReleased(inst(i))
	}
	waitUntil(t, func() bool { return len(g.ops) == 0 })
	// A step's own record: it waits for it, so it commits at once, with
	// the five released ones.
	if err := g.put(inst(5)); err != nil {
		t.Fatal(err)
	}
	if b := batches(); len(b) != 1 || b[0] != 6 {
		t.Fatalf("records after each transaction: %v, want [6]", b)
	}
	g.running.Store(40) // many steps still run: a full batch commits
	g.writers.Store(40)
	for i := range releasedBatch + 3 {
		g.putReleased(inst(10 + i))
	}
	waitUntil(t, func() bool { return len(batches()) == 2 })
	g.running.Store(1) // what is left waits for the last step
	g.writers.Store(1)
	for i := range releasedBatch {
		g.putReleased(inst(100 + i))
	}
	waitUntil(t, func() bool { return len(g.ops) == 0 })
	if b := batches(); len(b) != 2 {
		t.Fatalf("records after each transaction: %v: a full batch committed while fewer steps ran than it held", b)
	}
	g.stepEnded(false) // the last step ends: the rest commits, in one
	if err := g.flush(); err != nil {
		t.Fatal(err)
	}
	g.close()
	// gatedStore counts the records in the file after each transaction;
	// the first of the second burst may have found more than a batch
	// queued at once (a transaction takes what is queued).
	b := batches()
	if len(b) != 3 || b[1] < 6+releasedBatch || b[2] != 6+2*releasedBatch+3 {
		t.Fatalf("records after each transaction: %v, want a full batch, then the rest in one when the step ended", b)
	}
}

// forgetful is the recorder as a runtime that fails to forget one
// address (Delete).
type forgetful struct {
	*recorder
	fails string
}

func (f *forgetful) Delete(_ context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+req.Addr.String())
	if req.Addr.String() == f.fails {
		return providers.DeleteResponse{}, errors.New("registry full")
	}
	return providers.DeleteResponse{}, nil
}

// TestStopsDoNotWaitForForgetting: a dependency's stop begins once its
// dependent is gone, before the runtime has forgotten the dependent; a
// failure to forget it fails the dependent's step alone (its record
// stays), and the stops after it go on.
func TestStopsDoNotWaitForForgetting(t *testing.T) {
	f := newFixture(t)
	fg := &forgetful{recorder: f.rec, fails: "daemon.a"}
	f.ex.Providers = Providers{"process": fg}
	f.apply(context.Background(), f.load(chain), false)
	_, res, err := f.apply(context.Background(), f.load(chain), true)
	if err != nil {
		t.Fatal(err)
	}
	if !(f.rec.index("stop daemon.a") < f.rec.index("stop daemon.b") && f.rec.index("stop daemon.b") < f.rec.index("stop daemon.c")) {
		t.Fatalf("not stopped in reverse order, or not all: %v", f.rec.calls)
	}
	if i, j := f.rec.index("delete daemon.a"), f.rec.index("stop daemon.b"); i < 0 || j < 0 {
		t.Fatalf("calls %v", f.rec.calls)
	}
	var failed []string
	for _, o := range res.Outcomes {
		if o.Err != nil {
			failed = append(failed, o.Addr.String())
		}
	}
	if len(failed) != 1 || failed[0] != "daemon.a" {
		t.Fatalf("failed steps %v, want daemon.a alone", failed)
	}
	insts, _ := f.store.List()
	if len(insts) != 1 || insts[0].Addr.String() != "daemon.a" {
		t.Fatalf("records after the destroy: %v, want daemon.a's kept", insts)
	}
}

// TestDecodeSnapshotsSplit: the stored snapshots decode the same whether
// one goroutine does it or several share the records.
func TestDecodeSnapshotsSplit(t *testing.T) {
	f := newFixture(t)
	f.apply(context.Background(), f.load(`
daemon "d" {
  count   = 300
  command = ["/bin/d", "${count.index}"]
  env     = { N = "${count.index}" }
}
`), false)
	stored, err := f.store.List()
	if err != nil || len(stored) != 300 {
		t.Fatalf("%d records, %v", len(stored), err)
	}
	split := decodeSnapshots(stored)
	for i, inst := range stored {
		one, err := planner.DecodeSnapshot(inst.Config)
		if err != nil || split[i] == nil {
			t.Fatalf("%s: %v, split %v", inst.Addr, err, split[i])
		}
		if string(one.Encode()) != string(split[i].Encode()) {
			t.Fatalf("%s decodes to\n%s\nsplit, and to\n%s\nalone", inst.Addr, split[i].Encode(), one.Encode())
		}
	}
}

// slowStop is the recorder as a runtime whose Stop of one address waits
// for gate, and fails with err when it is set.
type slowStop struct {
	*recorder
	addr string
	gate chan struct{}
	err  error
}

func (s *slowStop) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	if req.Addr.String() == s.addr {
		<-s.gate
		if s.err != nil {
			return providers.StopResponse{}, s.err
		}
	}
	return s.recorder.Stop(ctx, req)
}

// TestStopRecordedAhead: the record of a Stop (orch up's shutdown) is
// written while its instance is still stopping, so that its transaction
// overlaps the stops rather than following the last; a Stop that fails
// puts the record back as it was, with the failure as its last error.
func TestStopRecordedAhead(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			f := newFixture(t)
			cfg := f.load(chain)
			if _, _, err := f.apply(context.Background(), cfg, false); err != nil {
				t.Fatal(err)
			}
			ss := &slowStop{recorder: f.rec, addr: "daemon.solo", gate: make(chan struct{})}
			if fail {
				ss.err = errors.New("process group 7 survived SIGKILL")
			}
			f.ex.Providers = Providers{"process": ss}
			stored, err := f.store.List()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			var res *Result
			go func() {
				r, err := f.ex.Apply(context.Background(), cfg, planner.StopAll(StoredOf(stored)))
				res = r
				done <- err
			}()
			status := func(name string) (string, string) {
				insts, err := f.store.List()
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range insts {
					if i.Addr.Name == name {
						return i.Status, i.LastError
					}
				}
				t.Fatalf("no record of %s", name)
				return "", ""
			}
			// solo's Stop has not returned: its record says stopped already.
			waitUntil(t, func() bool { s, _ := status("solo"); return s == StatusStopped.String() })
			select {
			case err := <-done:
				t.Fatalf("Apply returned while a Stop was under way: %v", err)
			default:
			}
			close(ss.gate)
			err = <-done
			s, lastErr := status("solo")
			if !fail {
				if err != nil || s != StatusStopped.String() {
					t.Fatalf("Apply: %v; solo's record %q, want stopped", err, s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, o := range res.Outcomes {
				if o.Err != nil {
					failed = append(failed, o.Addr.String())
				}
			}
			if len(failed) != 1 || failed[0] != "daemon.solo" {
				t.Fatalf("failed steps %v, want daemon.solo alone", failed)
			}
			if s != StatusRunning.String() || !strings.Contains(lastErr, "survived SIGKILL") {
				t.Fatalf("solo's record after its failed stop: %q, %q; want running, with the failure", s, lastErr)
			}
			if s, _ := status("a"); s != StatusStopped.String() {
				t.Fatalf("a's record %q, want stopped", s)
			}
		})
	}
}

// TestRefreshMarksOmittedConfigs: records listed without their
// configurations (state.ListOptions.OmitConfig) reach the planner marked
// so, with the rest of what they record, and a plan of the same
// configuration made from them changes nothing; records listed whole are
// not marked. The refresh alone carries the mark, so that a caller may
// let the records go before it plans.
func TestRefreshMarksOmittedConfigs(t *testing.T) {
	f := newFixture(t)
	cfg := f.load(chain)
	if _, _, err := f.apply(context.Background(), cfg, false); err != nil {
		t.Fatal(err)
	}
	for _, omit := range []bool{true, false} {
		stored, err := f.store.ListWith(state.ListOptions{OmitConfig: omit})
		if err != nil {
			t.Fatal(err)
		}
		in, err := Refresh(context.Background(), cfg, stored, f.ex.Providers, "p", f.ex.StateDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Stored) != len(stored) {
			t.Fatalf("omit=%v: %d stored, %d records", omit, len(in.Stored), len(stored))
		}
		for _, r := range stored {
			sd := in.Stored[r.Addr]
			if sd.ConfigOmitted != omit || (len(sd.Config) == 0) != omit || sd.ConfigHash != r.ConfigHash || string(sd.Handle) != string(r.Handle) {
				t.Errorf("omit=%v: %s reached the planner as %+v", omit, r.Addr, sd)
			}
		}
		in.Prepared = planner.Prepare(cfg, f.ex.Providers.Schemas())
		p, diags := planner.Make(in)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		if s := p.Summary(); s != (planner.Summary{}) {
			t.Errorf("omit=%v: a plan of the applied configuration: %+v", omit, s)
		}
	}
}

// adopter is a recorder that is an Adopter, as a plugin is whether or not
// it can find anything.
type adopter struct{ *recorder }

func (adopter) Adopt(context.Context, providers.AdoptRequest) (providers.AdoptResponse, error) {
	return providers.AdoptResponse{}, nil
}

// journaling is an adopter whose starts are durable on their own
// (providers.StartJournal), as the process runtime's are through its
// registry.
type journaling struct{ adopter }

func (journaling) JournalsStarts() {}

// putFailingStore fails every transaction that adds a record.
type putFailingStore struct {
	*state.Store
}

func (f *putFailingStore) Update(fn func(tx *state.Tx) error) error {
	return f.Store.Update(func(tx *state.Tx) error {
		before, _ := tx.List()
		if err := fn(tx); err != nil {
			return err
		}
		if after, _ := tx.List(); len(after) > len(before) {
			return errDiskGone
		}
		return nil
	})
}

// TestJournaledStartsDoNotWaitForRecords: on the state file, a start
// through a runtime whose starts are durable on their own (StartJournal)
// ends without waiting for its record: on a chain, each dependent starts
// while the records are held in their transaction, and Apply returns only
// once they are written. Through a runtime that is only an Adopter, a
// dependent waits for its dependency's record, as before; and a record
// that cannot be written still fails the Apply.
func TestJournaledStartsDoNotWaitForRecords(t *testing.T) {
	for _, adopts := range []bool{true, false} {
		t.Run(fmt.Sprint("journals=", adopts), func(t *testing.T) {
			f := newFixture(t)
			f.ex.Providers = Providers{"process": adopter{f.rec}}
			if adopts {
				f.ex.Providers = Providers{"process": journaling{adopter{f.rec}}}
			}
			gs := &gatedStore{Store: f.store, gate: make(chan struct{}), written: func() {
				f.rec.mu.Lock()
				f.rec.calls = append(f.rec.calls, "first records written")
				f.rec.mu.Unlock()
			}}
			f.ex.Store = gs
			done := make(chan error, 1)
			go func() {
				_, _, err := f.apply(context.Background(), f.load(chain), false)
				done <- err
			}()
			if adopts {
				// c's record is held in the first transaction; b and a
				// start anyway, in order.
				waitUntil(t, func() bool { return f.rec.index("start daemon.a") >= 0 })
				if !(f.rec.index("start daemon.c") < f.rec.index("start daemon.b") && f.rec.index("start daemon.b") < f.rec.index("start daemon.a")) {
					t.Fatalf("not started in dependency order: %v", f.rec.calls)
				}
				select {
				case err := <-done:
					t.Fatalf("Apply returned before its records were written: %v", err)
				default:
				}
			} else {
				// c's step waits for its record: the first transaction
				// begins at once (a released record would linger).
				waitUntil(t, func() bool { return gs.entered() > 0 })
			}
			close(gs.gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if w, b := f.rec.index("first records written"), f.rec.index("start daemon.b"); !adopts && b < w {
				t.Fatalf("b started before c's record was written: %v", f.rec.calls)
			}
			insts, _ := f.store.List()
			if len(insts) != 4 {
				t.Fatalf("%d records after the apply, want 4", len(insts))
			}
		})
	}
	t.Run("record fails", func(t *testing.T) {
		f := newFixture(t)
		f.ex.Providers = Providers{"process": journaling{adopter{f.rec}}}
		f.ex.Store = &putFailingStore{Store: f.store}
		_, _, err := f.apply(context.Background(), f.load(chain), false)
		var se *stateError
		if !errors.As(err, &se) || !errors.Is(err, errDiskGone) {
			t.Fatalf("Apply returned %v, want the state error of the starts' records", err)
		}
	})
}

// presignalStop is the recorder as a runtime that presignals (counting
// each address it is asked to) and whose Stops wait for gate.
type presignalStop struct {
	*recorder
	gate  chan struct{}
	mu    sync.Mutex
	pre   map[string]int
	inNow int
}

func (p *presignalStop) Presignal(_ context.Context, reqs []providers.StopRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range reqs {
		p.pre[r.Addr.String()]++
	}
}

func (p *presignalStop) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	p.mu.Lock()
	p.inNow++
	p.mu.Unlock()
	<-p.gate
	return p.recorder.Stop(ctx, req)
}

// TestPresignalReady: with PresignalReady (orch up's shutdown), the stops
// that wait for a worker are presignalled with the first batch, each
// once; without it, only what runs.
func TestPresignalReady(t *testing.T) {
	for _, ready := range []bool{true, false} {
		t.Run(fmt.Sprintf("ready=%v", ready), func(t *testing.T) {
			f := newFixture(t)
			cfg := f.load(`
daemon "d" {
  count   = 20
  command = ["/bin/d", "${count.index}"]
}
`)
			if _, _, err := f.apply(context.Background(), cfg, false); err != nil {
				t.Fatal(err)
			}
			ps := &presignalStop{recorder: f.rec, gate: make(chan struct{}), pre: map[string]int{}}
			ex := *f.ex // an Executor's fields are set once
			ex.Providers = Providers{"process": ps}
			ex.Parallelism, ex.PresignalReady = 4, ready
			stored, err := f.store.List()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ex.Apply(context.Background(), cfg, planner.StopAll(StoredOf(stored)))
				done <- err
			}()
			waitUntil(t, func() bool { ps.mu.Lock(); defer ps.mu.Unlock(); return ps.inNow == 4 })
			ps.mu.Lock()
			n := len(ps.pre)
			ps.mu.Unlock()
			if want := map[bool]int{true: 20, false: 4}[ready]; n != want {
				t.Errorf("%d presignalled while 4 stops wait, want %d", n, want)
			}
			close(ps.gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for a, k := range ps.pre {
				if k != 1 {
					t.Errorf("%s presignalled %d times", a, k)
				}
			}
			if len(ps.pre) != 20 {
				t.Errorf("%d of 20 presignalled", len(ps.pre))
			}
		})
	}
}
