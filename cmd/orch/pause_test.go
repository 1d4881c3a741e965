package main

import (
	"testing"
)

// orch pause and orch resume through the agent of orch up: every
// instance of a counted daemon is paused, status says so, resume
// continues them.
func TestPauseResumeCommands(t *testing.T) {
	e := newEngineTest(t, `
daemon "worker" {
  count   = 2
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}
`)
	p := e.start("up")
	e.allRunning(p, "daemon.worker[0]", "daemon.worker[1]")
	r := orch(t, e.dir, nil, "pause", "worker", e.dir).want(t, 0)
	if r.stdout != "daemon.worker[0] paused\ndaemon.worker[1] paused\n" {
		t.Errorf("pause printed %q", r.stdout)
	}
	st := e.status()
	for _, a := range []string{"daemon.worker[0]", "daemon.worker[1]"} {
		if st[a].State != "paused" {
			t.Errorf("%s: state %q after pause, want paused", a, st[a].State)
		}
	}
	orch(t, e.dir, nil, "resume", "worker[1]", e.dir).want(t, 0)
	st = e.status()
	if st["daemon.worker[1]"].State != "running" || st["daemon.worker[0]"].State != "paused" {
		t.Errorf("after resume of worker[1]: %+v", st)
	}
}
