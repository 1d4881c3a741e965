package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func countEvents(evs []upEvent, typ, addr string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ && ev.Address == addr {
			n++
		}
	}
	return n
}

const stopConfig = `
daemon "db" {
  command = ["/bin/sleep", "600"]
  restart {
    policy  = "always"
    backoff = "10ms"
  }
  stop {
    timeout = "2s"
  }
}

daemon "api" {
  command    = ["/bin/sleep", "600"]
  depends_on = [daemon.db]
  stop {
    timeout = "2s"
  }
}

# Something unrelated that ends every second: its exits are the clock of
# the test (each comes long after db's 10ms backoff).
daemon "tick" {
  command = ["/bin/sh", "-c", "sleep 1; exit 3"]
  restart {
    policy       = "always"
    backoff      = "10ms"
    max_restarts = 0
  }
}
`

// orch stop under orch up keeps a daemon stopped: its restart policy
// (always, 10ms backoff) does not start it again while unrelated daemons
// go through two more exits, an edit of its configuration does not start
// it, a new dependent is shown blocked by it, what depends on it and runs
// is left running; orch start brings it back with the edit and the
// dependent follows.
func TestStopStaysStoppedUntilStart(t *testing.T) {
	e := newEngineTest(t, stopConfig)
	p := e.start("up")
	st := e.allRunning(p, "daemon.db", "daemon.api", "daemon.tick")
	dbPid, apiPid := st["daemon.db"].Pid, st["daemon.api"].Pid

	// One clear error for what cannot be stopped.
	if r := orch(t, e.dir, nil, "stop", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, "daemon.nosuch is not declared") {
		t.Errorf("orch stop nosuch: exit %d, stderr %q", r.code, r.stderr)
	}
	r := orch(t, e.dir, nil, "stop", "db").want(t, 0)
	if r.stdout != "daemon.db stopped\n" {
		t.Errorf("orch stop printed %q", r.stdout)
	}
	st = e.status()
	if s := st["daemon.db"]; s.Status != "held" || s.State == "running" || s.Pid != 0 {
		t.Errorf("daemon.db after orch stop: %+v, want status held, not running", s)
	}
	if s := st["daemon.api"]; s.State != "running" || s.Pid != apiPid {
		t.Errorf("daemon.api after orch stop of its dependency: %+v, want still running as pid %d", s, apiPid)
	}
	// Its output reaches the test through a pipe: the event printed before
	// orch stop answered may still be on its way.
	e.waitFor(p, "the stopped event of daemon.db", func() bool {
		return countEvents(upEvents(p.output()), "stopped", "daemon.db") == 1
	})
	evs := upEvents(p.output())
	startedBefore := countEvents(evs, "started", "daemon.db")
	ticks := countEvents(evs, "exited", "daemon.tick")

	// Two more exits of tick (two seconds and more, a hundred backoffs of
	// db), and db is still down.
	e.waitFor(p, "two more exits of daemon.tick", func() bool {
		return countEvents(upEvents(p.output()), "exited", "daemon.tick") >= ticks+2
	})
	evs = upEvents(p.output())
	if n := countEvents(evs, "started", "daemon.db"); n != startedBefore {
		t.Fatalf("daemon.db was started again after orch stop (%d started events, %d before):\n%s", n, startedBefore, p.output())
	}
	if n := countEvents(evs, "restarting", "daemon.db"); n != 0 {
		t.Errorf("daemon.db: %d restarting events after orch stop:\n%s", n, p.output())
	}
	if s := e.status()["daemon.db"]; s.Status != "held" || s.Pid != 0 {
		t.Fatalf("daemon.db two ticks after orch stop: %+v", s)
	}

	// An edit of db, and a new dependent: db stays held, the dependent
	// is blocked by it.
	cfg := strings.Replace(stopConfig, `command = ["/bin/sleep", "600"]
  restart {`, `command = ["/bin/sleep", "601"]
  restart {`, 1) + `
daemon "late" {
  command    = ["/bin/sleep", "600"]
  depends_on = [daemon.db]
  stop {
    timeout = "2s"
  }
}
`
	if err := os.WriteFile(filepath.Join(e.dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(p, "daemon.late blocked by daemon.db", func() bool {
		for _, ev := range upEvents(p.output()) {
			if ev.Type == "blocked" && ev.Address == "daemon.late" && strings.Contains(ev.Detail, "daemon.db, which was stopped by user") {
				return true
			}
		}
		return false
	})
	if s := e.status(); s["daemon.db"].Status != "held" || s["daemon.late"].Status != "blocked" {
		t.Errorf("after the edit: db %+v, late %+v; want held and blocked", s["daemon.db"], s["daemon.late"])
	}
	if n := countEvents(upEvents(p.output()), "started", "daemon.db"); n != startedBefore {
		t.Fatalf("the edit started the held daemon.db:\n%s", p.output())
	}

	r = orch(t, e.dir, nil, "start", "db", "-json").want(t, 0)
	if strings.TrimSpace(r.stdout) != `[{"address":"daemon.db","held":false}]` && !strings.Contains(r.stdout, `"held": false`) {
		t.Errorf("orch start -json printed %q", r.stdout)
	}
	st = e.allRunning(p, "daemon.db", "daemon.late", "daemon.api")
	if st["daemon.db"].Pid == dbPid || st["daemon.db"].Status != "running" {
		t.Errorf("daemon.db after orch start: %+v (pid before orch stop %d)", st["daemon.db"], dbPid)
	}
	if !strings.Contains(string(mustRead(t, "/proc/"+itoa(st["daemon.db"].Pid)+"/cmdline")), "601") {
		t.Errorf("daemon.db was not started with the edit made while it was held")
	}
	if strings.Contains(p.output(), "internal: supervisor") {
		t.Errorf("the engine asked its supervisor for an illegal transition:\n%s", p.output())
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
