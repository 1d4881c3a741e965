package engine

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// TestStaleReloadIsLoadedAgain: a reload whose result is no longer
// current when the engine takes it (an agent's assignment changed in
// between) is loaded again, instead of undoing what runs: here the stale
// reading declares daemon.b, the current one daemon.a, which keeps
// running.
func TestStaleReloadIsLoadedAgain(t *testing.T) {
	dir := t.TempDir()
	const withA = "daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(withA), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, ".orch")
	provs := executor.Providers{process.Kind: process.New(process.Options{SelfCommand: []string{orchBin}})}
	st, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	current, diags := spec.Load(dir, spec.Options{Schemas: provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	stale, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte("daemon \"b\" {\n  command = [\"/bin/sleep\", \"601\"]\n}\n")}},
		dir, spec.Options{Schemas: provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	events := make(chan Event, 256)
	eng := New(Options{Dir: dir, Config: current, Providers: provs, Store: st, StateDir: stateDir,
		Load: func() LoadResult { return LoadResult{Config: current} },
		Out:  func(ev Event) { events <- ev }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var pid int
	defer func() {
		cancel()
		<-done
		if pid > 0 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		if b, err := os.ReadFile(filepath.Join(stateDir, "logs", "logd.pid")); err == nil {
			if lp, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && lp > 0 {
				syscall.Kill(lp, syscall.SIGKILL)
			}
		}
	}()
	wait := func(what string, match func(Event) bool) {
		t.Helper()
		deadline := time.After(waitDeadline)
		for {
			select {
			case ev := <-events:
				if ev.Type == EventStopped || ev.Type == EventDestroyed {
					t.Fatalf("waiting for %s: %s", what, ev)
				}
				if match(ev) {
					if ev.Type == EventStarted {
						pid = ev.Pid
					}
					return
				}
			case <-deadline:
				t.Fatalf("no %s", what)
			}
		}
	}
	wait("daemon.a started", func(ev Event) bool { return ev.Type == EventStarted && ev.Addr.String() == "daemon.a" })
	wait("ready", func(ev Event) bool { return ev.Type == EventReady })
	// A reading made before the assignment the engine runs now.
	eng.post(func() { eng.reloaded(LoadResult{Config: stale, Current: func() bool { return false }}) })
	// The engine's answer to a question asked after the reload shows
	// that it is done with it.
	if _, err := eng.Status(ctx); err != nil {
		t.Fatal(err)
	}
	// (Out is called on the controller: what the reload said is in
	// events by now; a stale reading taken would have said
	// config_reloaded, then destroyed daemon.a.)
	for drained := false; !drained; {
		select {
		case ev := <-events:
			if ev.Type == EventConfigReloaded || ev.Type == EventStopped || ev.Type == EventDestroyed {
				t.Fatalf("a stale reload was taken: %s", ev)
			}
		default:
			drained = true
		}
	}
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("daemon.a (pid %d) no longer runs after a stale reload", pid)
	}
}
