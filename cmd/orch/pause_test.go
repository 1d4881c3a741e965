package main

import (
	"fmt"
	"strings"
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

// orch restart without an agent prints the pid of the new process (it
// printed [pid=0]).
func TestRestartWithoutAgentPrintsPid(t *testing.T) {
	dir := project(t, `
daemon "a" {
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}
`)
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	r := orch(t, dir, nil, "restart", "a").want(t, 0)
	if strings.Contains(r.stdout, "[pid=0]") || !strings.Contains(r.stdout, "[pid=") {
		t.Errorf("orch restart printed %q", r.stdout)
	}
	if pid := status(t, dir)["daemon.a"].Pid; pid == 0 || !strings.Contains(r.stdout, fmt.Sprintf("[pid=%d]", pid)) {
		t.Errorf("orch restart printed %q; status says pid %d", r.stdout, pid)
	}
}
