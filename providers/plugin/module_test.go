package plugin_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/spec"
)

// exampleModule copies examples/plugins/module/main.hcl into a fresh
// directory next to a bin/ holding the built plugin, loads it, and returns
// the module's instance.
func exampleModule(t *testing.T) (*spec.Resource, string) {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "module")
	if err := os.MkdirAll(filepath.Join(top, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../examples/plugins/module/main.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(pluginBin(t, "eventlog"), filepath.Join(top, "bin", "orch-module-eventlog")); err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Load(dir, spec.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Resource(spec.Address{Kind: spec.KindModule, Name: "eventlog"})
	if r == nil {
		t.Fatal("no module.eventlog")
	}
	return r, dir
}

// runGuest runs g in the background. done is closed when Run returns,
// with its error in *runErr; stop cancels Run and returns its error.
func runGuest(t *testing.T, g module.Guest) (ready, done <-chan struct{}, runErr *error, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := make(chan struct{})
	d := make(chan struct{})
	var err error
	go func() {
		defer close(d)
		err = g.Run(ctx, func() { close(r) })
	}()
	stop = func() error {
		cancel()
		select {
		case <-d:
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return")
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return r, d, &err, stop
}

func waitReady(t *testing.T, ready, done <-chan struct{}, err *error) {
	t.Helper()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("Run returned before ready: %v", *err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		out = append(out, sc.Text())
	}
	return out
}

// The example module plugin, from its configuration under examples/,
// through the Loader: it subscribes, receives the events of its topics in
// order, keeps its count in its KV namespace, logs, and publishes when it
// stops; the process is gone after Run.
func TestModuleExampleEventlog(t *testing.T) {
	r, dir := exampleModule(t)
	b := bus.NewBus()
	kv := newKV()
	logs := &logBuf{}
	g, err := plugin.NewLoader(plugin.LoaderOptions{}).Load(context.Background(), module.LoadRequest{Resource: r,
		Services: module.Services{Bus: b, KV: kv, Log: logs.record}})
	if err != nil {
		t.Fatal(err)
	}
	pid := g.(*plugin.Guest).Pid()
	stopped := make(chan string, 1)
	b.Subscribe("eventlog.stopped", func(ev bus.Event) { stopped <- string(ev.Data) })
	ready, done, runErr, stop := runGuest(t, g)
	waitReady(t, ready, done, runErr)
	const n = 1000
	for i := range n {
		b.Publish(bus.LifecycleEvent(spec.Address{Kind: spec.KindDaemon, Name: "api", Key: spec.IntKey(i)}, "started", time.Unix(0, 0), nil))
		b.Publish(bus.Event{Topic: "other.topic", Data: []byte("not subscribed")})
	}
	out := filepath.Join(dir, "events.jsonl")
	eventually(t, "the events in the file", func() bool { return len(lines(t, out)) == n })
	ls := lines(t, out)
	if !strings.Contains(ls[0], `"topic":"orch.daemon.started"`) || !strings.Contains(ls[0], `"address":"daemon.api[0]"`) ||
		!strings.Contains(ls[n-1], `"address":"daemon.api[999]"`) {
		t.Fatalf("lines: %s ... %s", ls[0], ls[n-1])
	}
	eventually(t, "the count", func() bool { v, _, _ := kv.Get("count"); return string(v) == "1000" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-stopped:
		if c != "1000" {
			t.Fatalf("eventlog.stopped %q", c)
		}
	default:
		t.Fatal("no eventlog.stopped")
	}
	waitGone(t, pid)
	if !logs.contains("info writing [orch.daemon.* orch.module.*] to " + out) {
		t.Fatalf("log:\n%s", logs)
	}
	if st := g.(*plugin.Guest).Stats(); st.Delivered != n || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A declared sha256 that differs is refused at Load, naming the module and
// both hashes; nothing runs.
func TestModuleChecksum(t *testing.T) {
	r, _ := exampleModule(t)
	sum, err := spec.FileSHA256(r.Source)
	if err != nil {
		t.Fatal(err)
	}
	r.SHA256 = strings.Repeat("0", 64)
	_, err = plugin.NewLoader(plugin.LoaderOptions{}).Load(context.Background(), module.LoadRequest{Resource: r,
		Services: module.Services{Bus: bus.NewBus()}})
	wantErr(t, err, "module.eventlog", r.SHA256, sum)
	var ce *plugin.ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("error %#v", err)
	}
	r.SHA256 = sum
	g, err := plugin.NewLoader(plugin.LoaderOptions{}).Load(context.Background(), module.LoadRequest{Resource: r,
		Services: module.Services{Bus: bus.NewBus()}})
	if err != nil {
		t.Fatal(err)
	}
	pid := g.(*plugin.Guest).Pid()
	g.Close(context.Background())
	waitGone(t, pid)
}

func misbehavingModule(t *testing.T, mode string, budget time.Duration) (*plugin.Guest, *bus.Bus, *logBuf) {
	t.Helper()
	r := &spec.Resource{Addr: spec.Address{Kind: spec.KindModule, Name: "bad"}, Source: pluginBin(t, misbehave("module", mode)),
		Config: cty.ObjectVal(map[string]cty.Value{"x": cty.NumberIntVal(1)}), Limits: spec.ModuleLimits{CallTimeout: budget}}
	b := bus.NewBus()
	logs := &logBuf{}
	g, err := plugin.NewLoader(plugin.LoaderOptions{}).Load(context.Background(), module.LoadRequest{Resource: r,
		Services: module.Services{Bus: b, KV: newKV(), Log: logs.record}})
	if err != nil {
		t.Fatal(err)
	}
	return g.(*plugin.Guest), b, logs
}

// runFails runs g and returns the error Run ends with on its own.
func runFails(t *testing.T, g *plugin.Guest, wantReady bool, trigger func()) error {
	t.Helper()
	ready, done, runErr, _ := runGuest(t, g)
	if wantReady {
		waitReady(t, ready, done, runErr)
		trigger()
	}
	select {
	case <-done:
		err := *runErr
		if err == nil {
			t.Fatal("Run returned nil")
		}
		select {
		case <-ready:
			if !wantReady {
				t.Fatal("ready was called")
			}
		default:
		}
		waitGone(t, g.Pid())
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not fail")
	}
	return nil
}

func TestModuleCrashOnStart(t *testing.T) {
	g, _, _ := misbehavingModule(t, "crash", 0)
	err := runFails(t, g, false, nil)
	wantErr(t, err, "module.bad", "crashed during start", "exit status 3", "misbehave: crashing in start")
}

func TestModuleHangOnStart(t *testing.T) {
	// The budget bounds every call, init too: under load a healthy init of
	// a plugin just launched takes more than a few hundred ms, so the
	// budget is one that only a hang passes.
	g, _, _ := misbehavingModule(t, "hang", 3*time.Second)
	err := runFails(t, g, false, nil)
	wantErr(t, err, "module.bad", "start did not return within its budget of 3s", "killed")
}

func TestModuleCrashOnEvent(t *testing.T) {
	g, b, _ := misbehavingModule(t, "crash-event", 0)
	err := runFails(t, g, true, func() { b.Publish(bus.Event{Topic: "test.x"}) })
	wantErr(t, err, "module.bad", "crashed during on_event", "exit status 3", "misbehave: crashing on an event")
}

func TestModuleHangOnEvent(t *testing.T) {
	g, b, _ := misbehavingModule(t, "hang-event", 3*time.Second)
	err := runFails(t, g, true, func() { b.Publish(bus.Event{Topic: "test.x"}) })
	wantErr(t, err, "module.bad", "on_event did not return within its budget of 3s", "killed")
}

// A hook's error fails the module with that error.
func TestModuleHookError(t *testing.T) {
	g, b, _ := misbehavingModule(t, "ok", 0)
	err := runFails(t, g, true, func() { b.Publish(bus.Event{Topic: "test.fail"}) })
	wantErr(t, err, "module.bad", "on_event: event test.fail: told to fail")
}

// Garbage on stdout before and after the handshake: the module works (it
// answers test.echo by publishing through the host) and the garbage is in
// its log.
func TestModuleGarbageOnStdout(t *testing.T) {
	g, b, logs := misbehavingModule(t, "garbage", 0)
	replies := make(chan string, 1)
	b.Subscribe("echo.reply", func(ev bus.Event) { replies <- string(ev.Data) })
	ready, done, runErr, stop := runGuest(t, g)
	waitReady(t, ready, done, runErr)
	b.Publish(bus.Event{Topic: "test.echo", Data: []byte("ping")})
	select {
	case r := <-replies:
		if r != "ping" {
			t.Fatalf("reply %q", r)
		}
	case <-done:
		t.Fatalf("Run: %v", *runErr)
	case <-time.After(20 * time.Second):
		t.Fatal("no reply")
	}
	for _, want := range []string{"garbage from init", "garbage on fd 1 from main", "garbage on os.Stdout from start", "garbage on fd 1 from on_event"} {
		eventually(t, "log line "+want, func() bool { return logs.contains(want) })
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, g.Pid())
}

// A module may not publish orch's own topics.
func TestModuleReservedTopic(t *testing.T) {
	g, b, _ := misbehavingModule(t, "ok", 0)
	err := runFails(t, g, true, func() { b.Publish(bus.Event{Topic: "test.forge"}) })
	wantErr(t, err, "module.bad", `topic "orch.daemon.started" is reserved to orch`)
}
