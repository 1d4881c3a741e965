package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var timeNow = time.Now

func TestRestartPolicies(t *testing.T) {
	u := startUp(t, `
daemon "always" {
  command = ["/bin/sh", "-c", "exit 0"]
  restart {
    policy       = "always"
    backoff      = "1ms"
    max_backoff  = "5ms"
    max_restarts = 0
  }
}
daemon "onfailure" {
  command = ["/bin/sh", "-c", "exit 1"]
  restart {
    policy       = "on-failure"
    backoff      = "1ms"
    max_backoff  = "5ms"
    max_restarts = 0
  }
}
daemon "clean" {
  command = ["/bin/sh", "-c", "exit 0"]
  restart {
    policy  = "on-failure"
    backoff = "1ms"
  }
}
daemon "never" {
  command = ["/bin/sh", "-c", "exit 1"]
  restart {
    policy  = "never"
    backoff = "1ms"
  }
}
daemon "loop" {
  command = ["/bin/sh", "-c", "exit 2"]
  restart {
    backoff      = "1ms"
    max_backoff  = "2ms"
    max_restarts = 2
    window       = "1h"
  }
}
`)
	evs := u.waitFor("restarts and a crash loop", func(evs []ev) bool {
		return count(evs, "daemon.always", "started") >= 4 && count(evs, "daemon.onfailure", "started") >= 4 &&
			count(evs, "daemon.loop", "failed") == 1 && count(evs, "daemon.never", "exited") == 1 &&
			count(evs, "daemon.clean", "exited") == 1
	})
	for _, a := range []string{"daemon.never", "daemon.clean"} {
		if n := count(evs, a, "started"); n != 1 {
			t.Errorf("%s started %d times, want once:\n%s", a, n, u.dump())
		}
		if n := count(evs, a, "restarting"); n != 0 {
			t.Errorf("%s restarting %d times:\n%s", a, n, u.dump())
		}
	}
	if i := index(evs, "daemon.never", "exited", 0); *evs[i].ExitCode != 1 {
		t.Errorf("never exited with %d, want 1", *evs[i].ExitCode)
	}
	// The crash loop: started, then restarted twice, then failed.
	if n := count(evs, "daemon.loop", "started"); n != 3 {
		t.Errorf("loop started %d times, want 3:\n%s", n, u.dump())
	}
	if i := index(evs, "daemon.loop", "failed", 0); !strings.Contains(evs[i].Detail, "crash loop") {
		t.Errorf("failed detail: %q", evs[i].Detail)
	}
	// Each restart is a new process with its own pid.
	seen := map[int]bool{}
	for _, e := range evs {
		if e.Address == "daemon.onfailure" && e.Type == "started" {
			if seen[e.Pid] {
				t.Errorf("pid %d started twice", e.Pid)
			}
			seen[e.Pid] = true
		}
	}
}

// sickServer is the body of a daemon block running the test server on
// port, whose health check (every 20 ms, unhealthy after 2 failures)
// fails while the file sick exists; restarted after 1 ms, stopped
// within 2 s.
func sickServer(port int, sick string) string {
	return fmt.Sprintf(`  command = [%q, "-addr", "127.0.0.1:%d", "-sick", %q]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
    timeout  = "1s"
    retries  = 2
  }
  restart {
    backoff = "1ms"
  }
  stop {
    timeout = "2s"
  }
`, httpdBin, port, sick, port)
}

func TestUnhealthyIsRestarted(t *testing.T) {
	sick := filepath.Join(t.TempDir(), "sick")
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
daemon "web" {
%s}
`, sickServer(port, sick)))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.web", "healthy") == 1 })
	first := pids(evs)["daemon.web"]
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	evs = u.waitFor("unhealthy, then a restart", func(evs []ev) bool {
		return count(evs, "daemon.web", "unhealthy") >= 1 && count(evs, "daemon.web", "started") >= 2
	})
	if pids(evs)["daemon.web"] == first {
		t.Fatal("restarted with the same pid")
	}
	// Its exit says that orch stopped it, and why: a code of 0 alone
	// reads as the daemon's own end.
	for _, e := range evs {
		if e.Address == "daemon.web" && e.Type == "exited" && e.Pid == first && e.Detail != "orch was stopping it: unhealthy" {
			t.Errorf("the exit of the unhealthy pid %d: detail %q, want %q", first, e.Detail, "orch was stopping it: unhealthy")
		}
	}
	if alive(first) {
		t.Errorf("unhealthy pid %d still runs", first)
	}
	os.Remove(sick)
	u.waitFor("healthy again", func(evs []ev) bool {
		i := index(evs, "daemon.web", "started", count(evs, "daemon.web", "started")-1)
		for _, e := range evs[i:] {
			if e.Address == "daemon.web" && e.Type == "healthy" {
				return true
			}
		}
		return false
	})
}

func TestDependentsWaitForHealthy(t *testing.T) {
	port := freePort(t)
	// db answers 503 until the test removes this file: whatever the
	// machine's load, daemon.free must start while db cannot be healthy.
	sick := filepath.Join(t.TempDir(), "sick")
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, fmt.Sprintf(`
daemon "db" {
  command = [%q, "-addr", "127.0.0.1:%d", "-delay", "200ms", "-sick", %q]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
    retries  = 1000
  }
}
job "migrate" {
  command    = ["/bin/sh", "-c", "exit 0"]
  depends_on = [daemon.db]
}
daemon "api" {
  command    = ["/bin/sleep", "600"]
  depends_on = [job.migrate]
}
daemon "free" {
  command = ["/bin/sleep", "600"]
}
`, httpdBin, port, sick, port))
	evs := u.waitFor("daemon.free started", func(evs []ev) bool { return count(evs, "daemon.free", "started") == 1 })
	if index(evs, "daemon.db", "healthy", 0) >= 0 || index(evs, "daemon.api", "started", 0) >= 0 {
		t.Fatalf("db healthy, or api started, while db answers 503:\n%s", u.dump())
	}
	os.Remove(sick)
	evs = u.waitFor("api started", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 1 })
	healthy := index(evs, "daemon.db", "healthy", 0)
	migrated := index(evs, "job.migrate", "completed", 0)
	api := index(evs, "daemon.api", "started", 0)
	if healthy < 0 || migrated < healthy || api < migrated {
		t.Fatalf("order: db healthy at %d, migrate completed at %d, api started at %d:\n%s", healthy, migrated, api, u.dump())
	}
	if index(evs, "job.migrate", "waiting", 0) < 0 {
		t.Errorf("no waiting event for job.migrate:\n%s", u.dump())
	}
	if index(evs, "daemon.free", "waiting", 0) >= 0 {
		t.Errorf("daemon.free (no dependency) waited:\n%s", u.dump())
	}
}

const threeSleepers = `
daemon "a" {
  command = ["/bin/sleep", "601"]
}
daemon "b" {
  command = ["/bin/sleep", "602"]
}
daemon "c" {
  command = ["/bin/sleep", "%d"]
}
`

func TestEditRestartsOnlyTheEditedDaemon(t *testing.T) {
	u := startUp(t, fmt.Sprintf(threeSleepers, 603))
	evs := u.waitFor("ready", func(evs []ev) bool { return count(evs, "", "ready") == 1 })
	before := pids(evs)

	// An invalid edit is reported; everything keeps running.
	renameSave(t, u.dir, fmt.Sprintf(threeSleepers, 603)+"daemon \"broken\" {\n  command = 42\n")
	evs = u.waitFor("config_invalid", func(evs []ev) bool { return count(evs, "", "config_invalid") == 1 })
	if d := evs[index(evs, "", "config_invalid", 0)].Detail; !strings.Contains(d, "main.hcl") {
		t.Errorf("diagnostics do not name the file: %q", d)
	}
	// Writing the old content back changes nothing, and says the
	// configuration is valid again (the last word is not left at
	// config_invalid); a touch after it says nothing (it may be coalesced
	// with the next edit by the debounce).
	renameSave(t, u.dir, fmt.Sprintf(threeSleepers, 603))
	u.waitFor("config_valid", func(evs []ev) bool { return count(evs, "", "config_valid") == 1 })
	os.Chtimes(filepath.Join(u.dir, "main.hcl"), timeNow(), timeNow())

	// A rename-save that changes c replaces c only.
	renameSave(t, u.dir, fmt.Sprintf(threeSleepers, 604))
	evs = u.waitFor("c replaced", func(evs []ev) bool {
		return count(evs, "daemon.c", "started") == 2 && count(evs, "", "plan_applied") >= 1
	})
	after := pids(evs)
	if after["daemon.c"] == before["daemon.c"] || alive(before["daemon.c"]) {
		t.Errorf("c not replaced: pid %d -> %d", before["daemon.c"], after["daemon.c"])
	}
	for _, a := range []string{"daemon.a", "daemon.b"} {
		if count(evs, a, "started") != 1 || count(evs, a, "stopped") != 0 || !alive(before[a]) {
			t.Errorf("%s was touched:\n%s", a, u.dump())
		}
	}
	if n := count(evs, "", "config_valid"); n != 1 {
		t.Errorf("%d config_valid events, want 1 (after the invalid save only):\n%s", n, u.dump())
	}
	if n := count(evs, "", "config_reloaded"); n != 1 {
		t.Errorf("%d reloads, want 1 (the touch and the invalid edit change nothing):\n%s", n, u.dump())
	}
	if i := index(evs, "", "plan", 0); i < 0 || !strings.Contains(evs[i].Detail, `daemon "c"`) || strings.Contains(evs[i].Detail, `daemon "a"`) {
		t.Errorf("printed plan:\n%s", u.dump())
	}
}

func TestSigtermStopsInReverseOrder(t *testing.T) {
	u := startUp(t, `
daemon "db" {
  command = ["/bin/sleep", "601"]
}
daemon "api" {
  command    = ["/bin/sleep", "602"]
  depends_on = [daemon.db]
}
daemon "web" {
  command    = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.01; done"]
  depends_on = [daemon.api]
}
daemon "other" {
  command = ["/bin/sleep", "603"]
}
`)
	evs := u.waitFor("ready", func(evs []ev) bool { return count(evs, "", "ready") == 1 })
	running := pids(evs)

	// orch up holds the lock: another writer goes through its agent API
	// (nothing to do here), a reader works too.
	apply := exec.Command(orchBin, "apply", "-auto-approve", u.dir)
	apply.Env = cleanEnv(t)
	if out, err := apply.CombinedOutput(); err != nil || !strings.Contains(string(out), "No changes") {
		t.Errorf("apply during up: %v\n%s", err, out)
	}
	if out, err := orchOutput(t, "status", "-json", u.dir); err != nil {
		t.Errorf("status during up: %v\n%s", err, out)
	}

	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
	if u.err != nil {
		t.Fatalf("orch up exited with %v after SIGTERM:\n%s", u.err, u.dump())
	}
	evs = u.all()
	for _, pair := range [][2]string{{"daemon.web", "daemon.api"}, {"daemon.api", "daemon.db"}} {
		stopped, next := index(evs, pair[0], "stopped", 0), index(evs, pair[1], "stopping", 0)
		if stopped < 0 || next < 0 || stopped > next {
			t.Errorf("%s stopped at %d, %s stopping at %d:\n%s", pair[0], stopped, pair[1], next, u.dump())
		}
	}
	if i := index(evs, "daemon.web", "stopped", 0); i < 0 || evs[i].ExitCode == nil || *evs[i].ExitCode != 0 {
		t.Errorf("web did not exit 0 on SIGTERM:\n%s", u.dump())
	}
	for a, pid := range running {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs", a, pid)
		}
	}
	// The records stay, marked stopped.
	out, err := orchOutput(t, "status", "-json", u.dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []struct{ Address, Status string }
	json.Unmarshal(out, &lines)
	if len(lines) != 4 {
		t.Fatalf("status after up: %s", out)
	}
	for _, l := range lines {
		if l.Status != StatusStopped.String() {
			t.Errorf("%s recorded %q, want stopped", l.Address, l.Status)
		}
	}
}

func TestRestartWithRestartsTheDependent(t *testing.T) {
	u := startUp(t, `
daemon "db" {
  command = ["/bin/sleep", "611"]
}
daemon "api" {
  command      = ["/bin/sleep", "612"]
  restart_with = [daemon.db]
}
daemon "other" {
  command    = ["/bin/sleep", "613"]
  depends_on = [daemon.db]
}
`)
	evs := u.waitFor("ready", func(evs []ev) bool { return count(evs, "", "ready") == 1 })
	before := pids(evs)
	// A restart asked through the agent API (orch restart) counts as the
	// engine restarting db.
	cmd := exec.Command(orchBin, "restart", "db", u.dir)
	cmd.Env = cleanEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("orch restart db: %v\n%s", err, out)
	}
	evs = u.waitFor("api restarted with db", func(evs []ev) bool {
		return count(evs, "daemon.db", "started") == 2 && count(evs, "daemon.api", "started") == 2
	})
	if n := count(evs, "daemon.other", "started"); n != 1 {
		t.Errorf("other (depends_on only) started %d times, want once:\n%s", n, u.dump())
	}
	after := pids(evs)
	if after["daemon.api"] == before["daemon.api"] || alive(before["daemon.api"]) {
		t.Errorf("api not restarted: pid %d, was %d", after["daemon.api"], before["daemon.api"])
	}
	if i, j := index(evs, "daemon.db", "started", 1), index(evs, "daemon.api", "exited", 0); i < 0 || j < i {
		t.Errorf("api stopped (%d) before db started again (%d):\n%s", j, i, u.dump())
	}
}

// TestDependentStartsBesideApplyInFlight: a dependent starts as soon as
// its dependency is healthy, while an apply of the round that started
// earlier (a job, which runs until told to end) is still in flight. The
// job is what makes db2 healthy, so db2 turns healthy only then.
func TestDependentStartsBesideApplyInFlight(t *testing.T) {
	tmp := t.TempDir()
	done, running := filepath.Join(tmp, "done"), filepath.Join(tmp, "running")
	u := startUp(t, fmt.Sprintf(`
daemon "db1" {
  command = ["/bin/sh", "-c", "exec sleep 300"]
  health {
    exec     = ["/bin/sh", "-c", "exit 0"]
    interval = "20ms"
  }
}
job "long" {
  command    = ["/bin/sh", "-c", "touch %s; while [ ! -e %s ]; do sleep 0.02; done"]
  depends_on = [daemon.db1]
}
daemon "db2" {
  command = ["/bin/sh", "-c", "exec sleep 300"]
  health {
    exec     = ["/bin/sh", "-c", "test -e %s"]
    interval = "20ms"
    retries  = 1000
  }
}
daemon "api" {
  command    = ["/bin/sh", "-c", "exec sleep 300"]
  depends_on = [daemon.db2]
}
`, running, done, running))
	evs := u.waitFor("api started", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 1 })
	if n := count(evs, "job.long", "completed"); n != 0 {
		t.Errorf("api started only once the job had completed:\n%s", u.dump())
	}
	if index(evs, "daemon.db2", "healthy", 0) > index(evs, "daemon.api", "started", 0) {
		t.Errorf("api started before db2 was healthy:\n%s", u.dump())
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("the job completed, then ready", func(evs []ev) bool {
		return count(evs, "job.long", "completed") == 1 && count(evs, "", "ready") == 1
	})
	u.stop()
}
