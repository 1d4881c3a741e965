package engine

import (
	"context"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/orch-dev/orch/spec"
)

// TestStaleReloadIsLoadedAgain: a reload whose result is no longer
// current when the engine takes it (an agent's assignment changed in
// between) is loaded again, instead of undoing what runs: here the stale
// reading declares daemon.b, the current one daemon.a, which keeps
// running.
func TestStaleReloadIsLoadedAgain(t *testing.T) {
	ip := newInProc(t, "daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n")
	stale, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte("daemon \"b\" {\n  command = [\"/bin/sleep\", \"601\"]\n}\n")}},
		ip.dir, spec.Options{Schemas: ip.provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	events := ip.events
	eng, _ := ip.run(t, Options{})
	ctx := context.Background()
	var pid int
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
						ip.own(pid)
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
