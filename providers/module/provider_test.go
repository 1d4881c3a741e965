package module_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/providers/wasm"
	"github.com/orch-dev/orch/providers/wasm/wasmtest"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmtest.Remove()
	os.Exit(code)
}

func hostileGuest(t *testing.T) string { return wasmtest.Guest(t, "hostile") }

type fixture struct {
	p      *module.Provider
	mu     sync.Mutex
	events []string // "module.x running", ...
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := bus.NewBus()
	// The tests share the compilation cache: one compilation in all.
	host, err := wasm.NewHost(wasm.Options{StateDir: filepath.Join(filepath.Dir(hostileGuest(t)), "state"), Bus: b, NoLifecycleEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	b.Subscribe("orch.module.*", func(ev bus.Event) {
		var l bus.Lifecycle
		json.Unmarshal(ev.Data, &l)
		f.mu.Lock()
		f.events = append(f.events, l.Address+" "+l.Event)
		f.mu.Unlock()
	})
	f.p = module.New(module.Options{Wasm: wasm.Loader{Host: host}, Bus: b})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.p.Close(ctx)
		host.Close(ctx)
	})
	return f
}

func (f *fixture) lifecycle() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func resource(t *testing.T, name, src string, config map[string]cty.Value) *spec.Resource {
	return &spec.Resource{
		Addr: spec.Address{Kind: spec.KindModule, Name: name}, Runtime: spec.ModuleRuntime, Source: src,
		Config: cty.ObjectVal(config),
		// The default budget: a guest's instantiation (the Go runtime's
		// start in wasm) under -race on a busy machine took over 300 ms.
		// A test of the budget itself sets a short one.
		Limits: spec.ModuleLimits{MemoryBytes: 64 << 20, CallTimeout: spec.DefaultCallTimeout},
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	r := resource(t, "sink", hostileGuest(t), map[string]cty.Value{"mode": cty.StringVal("sink")})
	resp, err := f.p.Start(context.Background(), providers.StartRequest{Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Observed.State != providers.StateRunning {
		t.Fatalf("started as %v", resp.Observed)
	}
	if s, ok := f.p.State(r.Addr); !ok || s != module.StateRunning {
		t.Errorf("State = %v, %v", s, ok)
	}
	handles := map[spec.Address]providers.Handle{r.Addr: resp.Handle}
	obs, _ := f.p.Observe(context.Background(), providers.ObserveRequest{Handles: handles})
	if o := obs.Objects[r.Addr]; o.State != providers.StateRunning {
		t.Errorf("observed %v", o)
	}
	w, err := f.p.Watch(context.Background(), providers.WatchRequest{Addr: r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Start(context.Background(), providers.StartRequest{Resource: r}); err == nil {
		t.Error("a second start of a running module succeeded")
	}
	stop, err := f.p.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: resp.Handle, Timeout: 5 * time.Second})
	if err != nil || stop.Observed.State != providers.StateExited || stop.Observed.ExitCode != 0 {
		t.Fatalf("stop: %v %+v", err, stop)
	}
	if o := <-w.Exited; o.State != providers.StateExited || o.Error != "" {
		t.Errorf("watch reported %+v", o)
	}
	want := "module.sink loaded,module.sink starting,module.sink running,module.sink stopping,module.sink stopped"
	if got := strings.Join(f.lifecycle(), ","); got != want {
		t.Errorf("lifecycle events:\n got %s\nwant %s", got, want)
	}
	// Stopped: its handle now names nothing, as after an engine restart.
	obs, _ = f.p.Observe(context.Background(), providers.ObserveRequest{Handles: handles})
	if o := obs.Objects[r.Addr]; o.State != providers.StateMissing {
		t.Errorf("after stop, observed %v", o)
	}
}

// A failure in a hook is an exit the restart policy handles, not a start
// error; a binary that cannot load is a start error blaming the source.
func TestFailures(t *testing.T) {
	f := newFixture(t)
	loop := resource(t, "loop", hostileGuest(t), map[string]cty.Value{"mode": cty.StringVal("loop")})
	loop.Limits.CallTimeout = 300 * time.Millisecond
	resp, err := f.p.Start(context.Background(), providers.StartRequest{Resource: loop})
	if err != nil {
		t.Fatalf("a module failing in its start hook: Start = %v, want an exit", err)
	}
	if o := resp.Observed; o.State != providers.StateExited || o.ExitCode == 0 || !strings.Contains(o.Error, "call budget of 300ms") {
		t.Errorf("observed %+v", o)
	}
	w, _ := f.p.Watch(context.Background(), providers.WatchRequest{Addr: loop.Addr, Handle: resp.Handle})
	if o := <-w.Exited; o.State != providers.StateExited || o.Error == "" {
		t.Errorf("watch reported %+v", o)
	}
	if got := f.lifecycle(); got[len(got)-1] != "module.loop failed" {
		t.Errorf("lifecycle: %v", got)
	}

	bad := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
	_, err = f.p.Start(context.Background(), providers.StartRequest{Resource: resource(t, "bad", bad, map[string]cty.Value{})})
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Attr != "source" || !strings.Contains(err.Error(), "module.bad") {
		t.Errorf("invalid binary: %v", err)
	}

	unhosted := module.New(module.Options{Unhosted: "modules run inside the engine"})
	if _, err := unhosted.Start(context.Background(), providers.StartRequest{Resource: loop}); err == nil || !strings.Contains(err.Error(), "inside the engine") {
		t.Errorf("unhosted start: %v", err)
	}
	obs, _ := unhosted.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{loop.Addr: resp.Handle}})
	if o := obs.Objects[loop.Addr]; o.State != providers.StateMissing {
		t.Errorf("another provider's handle observed as %v", o)
	}

	plugin := filepath.Join(t.TempDir(), "plugin")
	os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755)
	if _, err := f.p.Start(context.Background(), providers.StartRequest{Resource: resource(t, "p", plugin, map[string]cty.Value{})}); err == nil || !strings.Contains(err.Error(), "plugin") {
		t.Errorf("a plugin without a plugin loader: %v", err)
	}
}
