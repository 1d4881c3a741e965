package wasm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/wasm"
	"github.com/orch-dev/orch/providers/wasm/wasmtest"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

// cacheState is the state directory whose compilation cache the tests
// share.
var cacheState string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orch-wasm-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheState = filepath.Join(dir, "state")
	code := m.Run()
	os.RemoveAll(dir)
	wasmtest.Remove()
	os.Exit(code)
}

// guest returns the .wasm file of the named guest (wasmtest.Packages).
func guest(tb testing.TB, name string) string { return wasmtest.Guest(tb, name) }

// storeKV backs a module's namespace with the state store, as the engine
// does.
type storeKV struct{ kv *state.KV }

func (s storeKV) Get(key string) ([]byte, bool, error) {
	v, err := s.kv.Get(key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}
func (s storeKV) Put(key string, v []byte) error { return s.kv.Put(key, v) }
func (s storeKV) Delete(key string) error        { return s.kv.Delete(key) }

// recorder keeps every transition and log line.
type recorder struct {
	mu      sync.Mutex
	changes []wasm.StateChange
	logs    []wasm.LogRecord
}

func (r *recorder) onState(c wasm.StateChange) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *recorder) log(l wasm.LogRecord) {
	r.mu.Lock()
	r.logs = append(r.logs, l)
	r.mu.Unlock()
}

func (r *recorder) states(addr spec.Address) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.changes {
		if c.Addr == addr {
			out = append(out, c.To.String())
		}
	}
	return out
}

func (r *recorder) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, l := range r.logs {
		fmt.Fprintf(&b, "%s %s: %s\n", l.Addr, l.Level, l.Message)
	}
	return b.String()
}

type fixture struct {
	host *wasm.Host
	rec  *recorder
}

func newFixture(t testing.TB, stateDir string, store *state.Store) *fixture {
	t.Helper()
	f := &fixture{rec: &recorder{}}
	opts := wasm.Options{StateDir: stateDir, OnState: f.rec.onState, Log: f.rec.log}
	if store != nil {
		opts.KV = func(a spec.Address) wasm.KV { return storeKV{store.KV(a.String())} }
	}
	h, err := wasm.NewHost(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	f.host = h
	return f
}

func resource(t testing.TB, name, source string, config cty.Value) *spec.Resource {
	t.Helper()
	addr, err := spec.ParseAddress("module." + name)
	if err != nil {
		t.Fatal(err)
	}
	return &spec.Resource{Addr: addr, Source: source, Config: config,
		Limits: spec.ModuleLimits{MemoryBytes: 64 << 20, CallTimeout: 5 * time.Second}}
}

// running is a module running in its own goroutine.
type running struct {
	m      *wasm.Module
	cancel context.CancelFunc
	done   chan error
}

// start loads r and runs it until it is running (or failed).
func (f *fixture) start(t testing.TB, r *spec.Resource) *running {
	t.Helper()
	m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- m.Run(ctx) }()
	t.Cleanup(func() { rn.stop() })
	waitFor(t, func() bool { s := m.State(); return s == wasm.StateRunning || s >= wasm.StateStopped })
	return rn
}

func (rn *running) stop() error {
	rn.cancel()
	err := <-rn.done
	rn.done <- err
	return err
}

// waitFor polls cond until it holds, or fails the test after 20s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// collect subscribes to pattern and returns what arrives.
func collect(h *wasm.Host, pattern string) (<-chan bus.Event, func()) {
	ch := make(chan bus.Event, 1024)
	cancel := h.Bus().Subscribe(pattern, func(ev bus.Event) { ch <- ev })
	return ch, cancel
}

func next(t *testing.T, ch <-chan bus.Event) bus.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return bus.Event{}
}

// hostile returns the config of the hostile guest in mode.
func hostile(mode string) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{"mode": cty.StringVal(mode)})
}

func daemonAddr(t testing.TB, s string) spec.Address {
	a, err := spec.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEventCount runs the eventcount example through its whole lifecycle,
// twice: its counts persist in the state store across the restart.
func TestEventCount(t *testing.T) {
	src := guest(t, "eventcount")
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.db")
	api, web := daemonAddr(t, "daemon.api"), daemonAddr(t, "daemon.web[1]")
	count := func(store *state.Store, key string) string {
		v, err := store.KV("module.counter").Get(key)
		if err != nil {
			t.Fatalf("KV %s: %v", key, err)
		}
		return string(v)
	}

	round := func(events []bus.Event) *state.Store {
		store, err := state.Open(statePath, state.Options{Operation: "test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		f := newFixture(t, cacheState, store)
		r := resource(t, "counter", src, cty.NilVal)
		updated, cancel := collect(f.host, "eventcount.updated")
		defer cancel()
		rn := f.start(t, r)
		for _, ev := range events {
			f.host.Bus().Publish(ev)
		}
		for range events {
			next(t, updated)
		}
		if err := rn.stop(); err != nil {
			t.Fatalf("Run: %v\n%s", err, f.rec.logText())
		}
		if got, want := strings.Join(f.rec.states(r.Addr), " "), "loaded starting running stopping stopped"; got != want {
			t.Errorf("states = %s, want %s", got, want)
		}
		return store
	}
	now := time.Now()
	store := round([]bus.Event{
		bus.LifecycleEvent(api, "started", now, nil),
		bus.LifecycleEvent(api, "started", now, nil),
		bus.LifecycleEvent(web, "started", now, nil),
		bus.LifecycleEvent(api, "exited", now, errors.New("exit 1")),
	})
	if got := count(store, "daemon.api/started"); got != "2" {
		t.Errorf("daemon.api/started = %s, want 2", got)
	}
	if got := count(store, "total/started"); got != "3" {
		t.Errorf("total/started = %s, want 3", got)
	}
	store.Close()

	store = round([]bus.Event{bus.LifecycleEvent(api, "started", now, nil)})
	if got := count(store, "daemon.api/started"); got != "3" {
		t.Errorf("after a restart daemon.api/started = %s, want 3", got)
	}
	if got := count(store, "daemon.web[1]/started"); got != "1" {
		t.Errorf("daemon.web[1]/started = %s, want 1", got)
	}
}

// TestTransform runs the transform example on a granted directory.
func TestTransform(t *testing.T) {
	src := guest(t, "transform")
	in, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, cacheState, nil)
	done, cancel := collect(f.host, "transform.done")
	defer cancel()
	r := resource(t, "transform", src, cty.ObjectVal(map[string]cty.Value{
		"input": cty.StringVal("/in"), "output": cty.StringVal("/out"), "op": cty.StringVal("upper"),
	}))
	r.Grants = &spec.Grants{Dirs: map[string]string{"/in": in, "/out": out}, Writable: []string{"/out"}}
	rn := f.start(t, r)
	if rn.m.State() != wasm.StateRunning {
		t.Fatalf("state %s: %v\n%s", rn.m.State(), rn.stop(), f.rec.logText())
	}
	next(t, done)
	if b, err := os.ReadFile(filepath.Join(out, "a.txt")); err != nil || string(b) != "HELLO\n" {
		t.Errorf("out/a.txt = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(in, "b.txt"), []byte("world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.host.Bus().Publish(bus.Event{Topic: "transform.run"})
	next(t, done)
	if b, err := os.ReadFile(filepath.Join(out, "b.txt")); err != nil || string(b) != "WORLD\n" {
		t.Errorf("out/b.txt = %q, %v", b, err)
	}
	if err := rn.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.rec.logText(), "transformed 2 files") {
		t.Errorf("log:\n%s", f.rec.logText())
	}
}

// failed runs r and returns Run's error, which must be a *wasm.Error, and
// how long Run took.
func failed(t *testing.T, f *fixture, r *spec.Resource) (*wasm.Error, time.Duration) {
	t.Helper()
	m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = m.Run(context.Background())
	took := time.Since(begin)
	var we *wasm.Error
	if !errors.As(err, &we) {
		t.Fatalf("Run = %v, want a *wasm.Error", err)
	}
	if m.State() != wasm.StateFailed {
		t.Errorf("state = %s, want failed", m.State())
	}
	if s := f.rec.states(r.Addr); s[len(s)-1] != "failed" {
		t.Errorf("states = %v", s)
	}
	return we, took
}

// TestInfiniteLoop: a start that never returns fails on its call budget,
// and the host keeps running other modules.
func TestInfiniteLoop(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	other := f.start(t, resource(t, "sink", guest(t, "hostile"), hostile("sink")))
	r := resource(t, "loop", guest(t, "hostile"), hostile("loop"))
	// A budget the module's instantiation fits in on 2 busy cores (under
	// make test-busy, 300 ms ran out in instantiate, before the start).
	budget := 3 * time.Second
	r.Limits.CallTimeout = budget
	we, took := failed(t, f, r)
	t.Logf("failed after %s: %v", took, we)
	if !we.Limit || we.Hook != wasm.ExportStart || !strings.Contains(we.Error(), "call budget") {
		t.Errorf("error = %v (limit %v, hook %s)", we, we.Limit, we.Hook)
	}
	if took > budget+time.Minute {
		t.Errorf("failed after %s: the budget of %s did not end the call", took, budget)
	}
	f.host.Bus().Publish(bus.Event{Topic: "bench.x"})
	waitFor(t, func() bool { return other.m.Stats().Delivered == 1 })
	if err := other.stop(); err != nil {
		t.Errorf("the other module: %v", err)
	}
}

// TestMemoryBomb: a guest that allocates without end fails at its memory
// cap.
func TestMemoryBomb(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	r := resource(t, "bomb", guest(t, "hostile"), hostile("bomb"))
	r.Limits.MemoryBytes = 32 << 20
	r.Limits.CallTimeout = time.Minute // growing memory is slow under -race
	we, _ := failed(t, f, r)
	t.Logf("%v", we)
	if we.Hook != wasm.ExportStart || !strings.Contains(we.Error(), "out of memory") {
		t.Errorf("error = %v", we)
	}
}

// TestTrapInInit: a panic in init fails the module with the panic's text.
func TestTrapInInit(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	we, _ := failed(t, f, resource(t, "trap", guest(t, "hostile"), hostile("trap")))
	t.Logf("%v", we)
	if we.Hook != wasm.ExportInit || !strings.Contains(we.Error(), "nil map") {
		t.Errorf("error = %v", we)
	}
}

// TestGrants: a guest reads its read-only grant, and nothing else.
func TestGrants(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	secret := filepath.Join(root, "secret")
	for _, p := range []string{in} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(in, "ok.txt"), []byte("granted"), 0o644)
	os.WriteFile(secret, []byte("SECRET"), 0o644)
	paths := []string{"/in/ok.txt", "/in/../secret", "/in/../../secret", secret, "/etc/passwd", "../secret", "secret"}
	f := newFixture(t, cacheState, nil)
	results, cancel := collect(f.host, "escape.result")
	defer cancel()
	configs, cancelConfigs := collect(f.host, "escape.config")
	defer cancelConfigs()
	var vals []cty.Value
	for _, p := range paths {
		vals = append(vals, cty.StringVal(p))
	}
	r := resource(t, "escape", guest(t, "hostile"), cty.ObjectVal(map[string]cty.Value{"mode": cty.StringVal("escape"), "paths": cty.ListVal(vals)}))
	r.Grants = &spec.Grants{Dirs: map[string]string{"/in": in}}
	rn := f.start(t, r)
	if err := rn.stop(); err != nil {
		t.Fatalf("%v\n%s", err, f.rec.logText())
	}
	for _, p := range paths {
		got := string(next(t, results).Data)
		if p == "/in/ok.txt" {
			if got != "ok /in/ok.txt granted" {
				t.Errorf("%s: %s", p, got)
			}
			continue
		}
		if !strings.HasPrefix(got, "err ") || strings.Contains(got, "SECRET") {
			t.Errorf("%s: %s", p, got)
		}
	}
	if got := string(next(t, results).Data); !strings.HasPrefix(got, "err write") {
		t.Errorf("writing into a read-only grant: %s", got)
	}
	if _, err := os.Stat(filepath.Join(in, "written")); err == nil {
		t.Error("the guest wrote into a read-only grant")
	}
	if got := string(next(t, configs).Data); !strings.Contains(got, `"mode":"escape"`) || !strings.Contains(got, `"/in/ok.txt"`) {
		t.Errorf("config host function: %s", got)
	}
}

// TestSHA256: a pinned hash that differs refuses the module.
func TestSHA256(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	r := resource(t, "sink", guest(t, "hostile"), hostile("sink"))
	r.SHA256 = strings.Repeat("0", 64)
	if _, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: r}); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("Load = %v", err)
	}
}

// TestRewrittenSourceIsReloaded: a module file rewritten in place (a new
// build) is read again, never served from what was compiled for the old
// bytes; an unchanged one keeps its hash.
func TestRewrittenSourceIsReloaded(t *testing.T) {
	f := newFixture(t, cacheState, nil)
	path := filepath.Join(t.TempDir(), "m.wasm")
	copyFile := func(from string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load := func() string {
		m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: resource(t, "m", path, cty.NilVal)})
		if err != nil {
			t.Fatal(err)
		}
		return m.Hash()
	}
	copyFile(guest(t, "eventcount"))
	h1 := load()
	if h1b := load(); h1b != h1 {
		t.Fatalf("unchanged file: hash %s then %s", h1, h1b)
	}
	copyFile(guest(t, "transform"))
	if h2 := load(); h2 == h1 {
		t.Fatal("a rewritten file was served from the old compiled module")
	}
}
