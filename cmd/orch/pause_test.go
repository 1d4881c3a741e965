package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// orch pause of a daemon whose round still runs (a job beside it, held
// by the test) says that it waits for that change, and pauses the daemon
// once the round has ended, instead of being refused.
func TestPauseCommandWaitsForTheRound(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	e := newEngineTest(t, fmt.Sprintf(`
daemon "svc" {
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}
job "slow" {
  command = ["/bin/sh", "-c", "while [ ! -e %s ]; do sleep 0.01; done"]
}
`, release))
	p := e.start("up")
	e.allRunning(p, "daemon.svc")
	cmd := newOrchCmd(t, e.dir, "pause", "svc", e.dir)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The job is let go only once orch pause has said that it waits: the
	// pause met the round in flight.
	e.waitFor(p, "orch pause to say that it waits", func() bool {
		return strings.Contains(stderr.String(), "daemon.svc is being changed right now")
	})
	select {
	case err := <-done:
		t.Fatalf("orch pause ended while the round ran (%v): %s %s", err, stdout.String(), stderr.String())
	default:
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("orch pause: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if stdout.String() != "daemon.svc paused\n" {
		t.Errorf("pause printed %q", stdout.String())
	}
	if st := e.status()["daemon.svc"].State; st != "paused" {
		t.Errorf("daemon.svc: state %q after pause, want paused", st)
	}
}

// orch status -json during a round lists what the round has not started
// yet as pending, and leaves out the record's fields it has none of (no
// "0001-01-01" updated_at, no empty config_hash).
func TestStatusJSONListsPending(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	e := newEngineTest(t, fmt.Sprintf(`
job "slow" {
  command = ["/bin/sh", "-c", "while [ ! -e %s ]; do sleep 0.01; done"]
}
daemon "after" {
  command    = ["/bin/sleep", "600"]
  depends_on = [job.slow]
}
`, release))
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	p := e.start("up")
	var raw []map[string]any
	e.waitFor(p, "job.slow running in orch status", func() bool {
		r := orch(t, e.dir, nil, "status", "-json", e.dir).want(t, 0)
		raw = nil
		if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
			t.Fatalf("status -json: %v\n%s", err, r.stdout)
		}
		for _, in := range raw {
			if in["address"] == "job.slow" && in["status"] == "running" {
				return true
			}
		}
		return false
	})
	var after map[string]any
	for _, in := range raw {
		if in["address"] == "daemon.after" {
			after = in
		}
	}
	if after == nil || after["status"] != "pending" || after["state"] != "-" {
		t.Fatalf("daemon.after in status -json during the round: %v, want status pending, state -", after)
	}
	for _, k := range []string{"updated_at", "config_hash"} {
		if v, ok := after[k]; ok {
			t.Errorf("daemon.after has %s %v without a record", k, v)
		}
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.allRunning(p, "daemon.after")
}
