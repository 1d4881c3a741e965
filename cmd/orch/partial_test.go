package main

import (
	"path/filepath"
	"strings"
	"testing"
)

const partialConfig = `
daemon "db" {
  command = ["sleep", "600"]
}
daemon "api" {
  count      = 2
  command    = ["sleep", "601"]
  depends_on = [daemon.db]
}
daemon "cache" {
  command = ["sleep", "602"]
}
`

// TestTargetAndReplace: apply -target starts only the target and what it
// needs; plan -replace -out saves a replacement of an unchanged instance
// that apply PLANFILE performs (a new pid); destroy -target removes the
// target and its dependents only; an unknown address is an error; both
// flags are refused while an agent runs.
func TestTargetAndReplace(t *testing.T) {
	dir := project(t, partialConfig)
	r := orch(t, dir, nil, "apply", "-auto-approve", "-target", "api[1]", dir).want(t, 0)
	if !strings.Contains(r.stderr+r.stdout, "Resource targeting is in effect") {
		t.Errorf("no targeting warning:\n%s%s", r.stdout, r.stderr)
	}
	st := status(t, dir)
	if st["daemon.api[1]"].Pid == 0 || st["daemon.db"].Pid == 0 || st["daemon.api[0]"].Pid != 0 || st["daemon.cache"].Pid != 0 {
		t.Fatalf("after apply -target api[1]: %+v", st)
	}
	orch(t, dir, nil, "apply", "-auto-approve", dir).want(t, 0)
	before := status(t, dir)

	plan := filepath.Join(t.TempDir(), "replace.plan")
	r = orch(t, dir, nil, "plan", "-replace", "daemon.api[0]", "-out", plan, dir).want(t, 0)
	if !strings.Contains(r.stdout, "daemon.api[0] must be replaced (as requested with -replace)") ||
		!strings.Contains(r.stdout, "1 to replace") {
		t.Fatalf("plan -replace:\n%s", r.stdout)
	}
	if r := orch(t, dir, nil, "apply", "-replace", "cache", plan).want(t, 1); !strings.Contains(r.stderr, "part of a saved plan") {
		t.Errorf("apply -replace PLANFILE:\n%s", r.stderr)
	}
	orch(t, dir, nil, "apply", plan).want(t, 0)
	after := status(t, dir)
	if after["daemon.api[0]"].Pid == before["daemon.api[0]"].Pid || after["daemon.api[0]"].Pid == 0 {
		t.Errorf("api[0] not replaced: pid %d -> %d", before["daemon.api[0]"].Pid, after["daemon.api[0]"].Pid)
	}
	for _, a := range []string{"daemon.api[1]", "daemon.db", "daemon.cache"} {
		if after[a].Pid != before[a].Pid {
			t.Errorf("%s changed: pid %d -> %d", a, before[a].Pid, after[a].Pid)
		}
	}

	r = orch(t, dir, nil, "plan", "-target", "daemon.nope", dir).want(t, 1)
	if !strings.Contains(r.stderr, "No such instance") {
		t.Errorf("unknown target:\n%s", r.stderr)
	}

	orch(t, dir, nil, "destroy", "-auto-approve", "-target", "db", dir).want(t, 0)
	st = status(t, dir)
	if _, ok := st["daemon.db"]; ok || st["daemon.cache"].Pid != after["daemon.cache"].Pid {
		t.Errorf("after destroy -target db: %+v", st)
	}
	for _, a := range []string{"daemon.api[0]", "daemon.api[1]"} {
		if _, ok := st[a]; ok {
			t.Errorf("%s, which depends on db, survived destroy -target db", a)
		}
	}

	e := engineTestIn(t, dir)
	p := e.start("up")
	r = orch(t, dir, nil, "apply", "-auto-approve", "-target", "cache", dir).want(t, 1)
	if !strings.Contains(r.stderr, "-target and -replace do not apply") {
		t.Errorf("apply -target with an agent:\n%s", r.stderr)
	}
	e.status()
	p.interrupt(t)
}
