package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEventsFilters runs orch up with a counted daemon, another daemon and
// the eventcount module (which publishes eventcount.updated), and reads
// the kept events back through each filter of orch events.
func TestEventsFilters(t *testing.T) {
	wasm, err := filepath.Abs(filepath.Join("..", "..", "examples", "modules", "eventcount", "eventcount.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEngineTest(t, `
daemon "worker" {
  count   = 2
  command = ["/bin/sleep", "1000"]
}
daemon "api" {
  command = ["/bin/sleep", "1000"]
}
module "eventcount" {
  source = "`+wasm+`"
}
`)
	p := e.start("up")
	e.allRunning(p, "daemon.worker[0]", "daemon.worker[1]", "daemon.api")
	type event struct {
		Type    string `json:"type"`
		Address string `json:"address"`
		Detail  string `json:"detail"`
		Topic   string `json:"topic"`
	}
	read := func(args ...string) []event {
		t.Helper()
		r := orch(t, e.dir, nil, append(append([]string{"events", "-json", "-since", "all", "-until", "0s"}, args...), e.dir)...).want(t, 0)
		var out []event
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if l == "" {
				continue
			}
			var ev event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("not one JSON object a line: %q: %v", l, err)
			}
			out = append(out, ev)
		}
		return out
	}
	// Compiling the module may take long on a busy machine: once it runs,
	// a restart of api is a start it sees and counts, and it publishes
	// the count.
	slowly := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 2 minutes", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	slowly("module.eventcount running", func() bool {
		for _, ev := range read("-type", "module_state", "-addr", "module.eventcount") {
			if ev.Detail == "running" {
				return true
			}
		}
		return false
	})
	orch(t, e.dir, nil, "restart", "api", e.dir).want(t, 0)
	e.pids.add(e.status()["daemon.api"].Pid)
	slowly("eventcount's first publication", func() bool { return len(read("-topic", "eventcount.*")) > 0 })

	got := read("-type", "started", "-addr", "worker")
	if len(got) != 2 {
		t.Fatalf("-type started -addr worker: %+v, want the starts of worker[0] and worker[1]", got)
	}
	for _, ev := range got {
		if ev.Type != "started" || !strings.HasPrefix(ev.Address, "daemon.worker[") {
			t.Errorf("-type started -addr worker let %+v through", ev)
		}
	}
	if got := read("-type", "started,adopted", "-addr", "api", "-addr", "daemon.worker[1]"); len(got) != 3 {
		t.Errorf("-addr api -addr daemon.worker[1]: %+v, want api's two starts and worker[1]'s", got)
	}
	for _, ev := range read("-topic", "eventcount.*") {
		if ev.Type != "published" || ev.Topic != "eventcount.updated" || !strings.Contains(ev.Detail, `"count"`) {
			t.Errorf("-topic eventcount.*: %+v", ev)
		}
	}
	states := map[string]bool{}
	for _, ev := range read("-type", "module_state", "-addr", "module.eventcount") {
		states[ev.Detail] = true
	}
	if !states["running"] {
		t.Errorf("the module's own states: %v, want running among them", states)
	}
	if got := read("-topic", "orch.module.running"); len(got) != 1 || got[0].Type != "module_state" {
		t.Errorf("-topic orch.module.running: %+v, want the module's running state", got)
	}
	if got := read("-until", "1h"); len(got) != 0 {
		t.Errorf("-until an hour ago: %+v, want nothing", got)
	}
	r := orch(t, e.dir, nil, "events", "-type", "begun", e.dir)
	if r.code == 0 || !strings.Contains(r.stderr, `unknown event type "begun"`) {
		t.Errorf("-type begun: exit %d, stderr %q", r.code, r.stderr)
	}
}
