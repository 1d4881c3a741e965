package engine

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of this file each hold one promise that orch up broke on a
// real stack (issue 12); each fails on the engine before that issue.

// A server that takes a while to bind is starting, not failing: its
// failing probes before the first pass do not make it unhealthy.
func TestSlowBinderIsNotKilled(t *testing.T) {
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
daemon "slow" {
  command = [%q, "-addr", "127.0.0.1:%d", "-delay", "1500ms"]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "50ms"
    timeout  = "200ms"
    retries  = 2
  }
  restart {
    backoff = "1ms"
  }
}
`, httpdBin, port, port))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.slow", "healthy") == 1 })
	if n := count(evs, "daemon.slow", "unhealthy"); n != 0 {
		t.Errorf("a starting server was declared unhealthy %d times:\n%s", n, u.dump())
	}
	if n := count(evs, "daemon.slow", "started"); n != 1 {
		t.Errorf("started %d times, want once:\n%s", n, u.dump())
	}
}

// A daemon that never passes a probe within start_timeout is unhealthy
// and restarted by its policy.
func TestStartTimeoutRestarts(t *testing.T) {
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
daemon "never" {
  command = ["/bin/sleep", "1000"]
  health {
    tcp           = "127.0.0.1:%d"
    interval      = "50ms"
    start_timeout = "300ms"
  }
  restart {
    policy  = "always"
    backoff = "1ms"
  }
}
`, port))
	evs := u.waitFor("unhealthy, then a restart", func(evs []ev) bool {
		return count(evs, "daemon.never", "unhealthy") >= 1 && count(evs, "daemon.never", "started") >= 2
	})
	i := index(evs, "daemon.never", "unhealthy", 0)
	if d := evs[i].Detail; !strings.Contains(d, "start_timeout") {
		t.Errorf("unhealthy detail %q does not say start_timeout", d)
	}
}

// Supervision begins when a daemon's start returns: its health check does
// not wait for an unrelated job of the same apply to end.
func TestSupervisionStartsAtOnce(t *testing.T) {
	port := freePort(t)
	gate := filepath.Join(t.TempDir(), "gate")
	u := startUp(t, fmt.Sprintf(`
daemon "web" {
  command = [%q, "-addr", "127.0.0.1:%d"]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
  }
}
job "long" {
  command = ["/bin/sh", "-c", "while [ ! -e %s ]; do sleep 0.02; done"]
}
`, httpdBin, port, port, gate))
	// The job runs until the gate exists; web must be healthy before.
	u.waitFor("web healthy while the job runs", func(evs []ev) bool { return count(evs, "daemon.web", "healthy") == 1 })
	evs := u.all()
	if count(evs, "job.long", "completed") != 0 {
		t.Fatalf("the job completed before the gate opened:\n%s", u.dump())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("the job completes", func(evs []ev) bool { return count(evs, "job.long", "completed") == 1 })
}

// stackConfig is db <- job.migrate <- app: the app depends on the
// database only through the migrate job.
func stackConfig(port int, appStop string) string {
	return fmt.Sprintf(`
daemon "db" {
  command = [%q, "-addr", "127.0.0.1:%d", "-delay", "400ms"]
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
daemon "app" {
  command    = ["/bin/sh", "-c", %q]
  depends_on = [job.migrate]
  stop {
    timeout = "10s"
  }
}
`, httpdBin, port, port, appStop)
}

// On shutdown, a daemon that depends on another through a job stops
// before it.
func TestShutdownOrderThroughJob(t *testing.T) {
	port := freePort(t)
	// The app takes a while to stop: a database told to stop before the
	// app has stopped is seen at once.
	u := startUp(t, stackConfig(port, `trap 'sleep 0.5; exit 0' TERM; sleep 1000 & wait`))
	u.waitFor("app started", func(evs []ev) bool { return count(evs, "daemon.app", "started") == 1 })
	u.stop()
	evs := u.all()
	appStopped, dbStopping := index(evs, "daemon.app", "stopped", 0), index(evs, "daemon.db", "stopping", 0)
	if appStopped < 0 || dbStopping < 0 || dbStopping < appStopped {
		t.Fatalf("the database was told to stop before the app (which depends on it through job.migrate) had stopped:\n%s", u.dump())
	}
}

// A warm start, with the migrate job completed in an earlier run, still
// starts the app only once the database behind the job is ready.
func TestWarmStartGatesThroughCompletedJob(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	u := startUpIn(t, dir, stackConfig(port, `sleep 1000`))
	u.waitFor("app started", func(evs []ev) bool { return count(evs, "daemon.app", "started") == 1 })
	u.stop()
	u = restartUp(t, dir)
	evs := u.waitFor("app started again", func(evs []ev) bool { return count(evs, "daemon.app", "started") == 1 })
	dbHealthy, appStarted := index(evs, "daemon.db", "healthy", 0), index(evs, "daemon.app", "started", 0)
	if dbHealthy < 0 || appStarted < dbHealthy {
		t.Fatalf("the app started before the database it reaches through the completed job was healthy:\n%s", u.dump())
	}
}

// A start that fails is retried by the restart policy, like an exit.
func TestFailedStartIsRetried(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	u := startUp(t, fmt.Sprintf(`
daemon "late" {
  command = ["/bin/sleep", "1000"]
  dir     = %q
  restart {
    policy       = "always"
    backoff      = "20ms"
    max_backoff  = "40ms"
    max_restarts = 0
  }
}
`, work))
	u.waitFor("a failed start, then a retry", func(evs []ev) bool {
		return count(evs, "daemon.late", "failed") >= 1 && count(evs, "daemon.late", "restarting") >= 1
	})
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	u.waitFor("started once its directory exists", func(evs []ev) bool { return count(evs, "daemon.late", "started") == 1 })
}

// Two SIGTERMs at once count as one: orch up stops everything and exits
// 0, leaving nothing running.
func TestDoubleSigtermStopsEverything(t *testing.T) {
	u := startUp(t, `
daemon "slowstop" {
  command = ["/bin/sh", "-c", "trap 'sleep 1; exit 0' TERM; sleep 1000 & wait"]
  stop {
    timeout = "20s"
  }
}
`)
	evs := u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.slowstop", "started") == 1 })
	pid := pids(evs)["daemon.slowstop"]
	u.cmd.Process.Signal(syscall.SIGTERM)
	// The second one once the first was taken (two sent back to back may
	// be merged by the kernel into one).
	u.waitFor("shutdown", func(evs []ev) bool { return count(evs, "", "shutdown") == 1 })
	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
	if u.err != nil {
		t.Fatalf("orch up exited with %v after two SIGTERMs:\n%s", u.err, u.dump())
	}
	if alive(pid) {
		t.Fatalf("pid %d still runs after orch up exited:\n%s", pid, u.dump())
	}
}

// A second interrupt well after the first kills what still runs, and
// orch up still exits only once nothing runs.
func TestLaterSecondSigtermKills(t *testing.T) {
	u := startUp(t, `
daemon "stubborn" {
  command = ["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait; while :; do sleep 1; done"]
  stop {
    timeout = "5m"
  }
}
`)
	evs := u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.stubborn", "started") == 1 })
	pid := pids(evs)["daemon.stubborn"]
	u.cmd.Process.Signal(syscall.SIGTERM)
	u.waitFor("stopping", func(evs []ev) bool { return count(evs, "daemon.stubborn", "stopping") == 1 })
	time.Sleep(signalCoalesceForTest + 200*time.Millisecond)
	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
	if u.err != nil {
		t.Fatalf("orch up exited with %v after a second SIGTERM:\n%s", u.err, u.dump())
	}
	if alive(pid) {
		t.Fatalf("pid %d still runs after orch up exited:\n%s", pid, u.dump())
	}
}

// signalCoalesceForTest mirrors cmd/orch/cli's signalCoalesce.
const signalCoalesceForTest = 2 * time.Second

// restart_with restarts the dependent once its dependency is healthy
// again, not as soon as it started.
func TestRestartWithWaitsForHealthy(t *testing.T) {
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
daemon "db" {
  command = [%q, "-addr", "127.0.0.1:%d", "-delay", "400ms"]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
  }
}
daemon "api" {
  command      = ["/bin/sleep", "612"]
  restart_with = [daemon.db]
  depends_on   = [daemon.db]
}
`, httpdBin, port, port))
	u.waitFor("api started", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 1 })
	cmd := exec.Command(orchBin, "restart", "db", u.dir)
	cmd.Env = cleanEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("orch restart db: %v\n%s", err, out)
	}
	evs := u.waitFor("api restarted with db", func(evs []ev) bool {
		return count(evs, "daemon.db", "healthy") == 2 && count(evs, "daemon.api", "started") == 2
	})
	if i, j := index(evs, "daemon.db", "healthy", 1), index(evs, "daemon.api", "exited", 0); i < 0 || j < i {
		t.Errorf("api was restarted before db was healthy again:\n%s", u.dump())
	}
}

// A job's restart policy applies under orch up: a failed run is retried,
// and what depends on it starts once it completes.
func TestJobRestartPolicyUnderUp(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	u := startUp(t, fmt.Sprintf(`
job "flaky" {
  command = ["/bin/sh", "-c", "test -e %s || { touch %s; echo first run fails >&2; exit 1; }"]
  restart {
    policy  = "on-failure"
    backoff = "10ms"
  }
}
daemon "app" {
  command    = ["/bin/sleep", "600"]
  depends_on = [job.flaky]
}
`, marker, marker))
	evs := u.waitFor("the job retried, then app", func(evs []ev) bool {
		return count(evs, "job.flaky", "completed") == 1 && count(evs, "daemon.app", "started") == 1
	})
	if count(evs, "job.flaky", "failed") != 1 {
		t.Errorf("want one failed run before the completed one:\n%s", u.dump())
	}
}

// orch restart job.x runs a completed job again.
func TestRestartRunsJobAgain(t *testing.T) {
	out := filepath.Join(t.TempDir(), "runs")
	u := startUp(t, fmt.Sprintf(`
job "once" {
  command = ["/bin/sh", "-c", "echo run >> %s"]
}
`, out))
	u.waitFor("completed", func(evs []ev) bool { return count(evs, "job.once", "completed") == 1 })
	cmd := exec.Command(orchBin, "restart", "job.once", u.dir)
	cmd.Env = cleanEnv(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("orch restart job.once: %v\n%s", err, b)
	}
	u.waitFor("completed again", func(evs []ev) bool { return count(evs, "job.once", "completed") == 2 })
	b, _ := os.ReadFile(out)
	if n := strings.Count(string(b), "run"); n != 2 {
		t.Errorf("the job ran %d times, want 2", n)
	}
}

// A dependent of a failed instance is shown blocked, naming it, and
// starts once it recovers.
func TestDependentOfFailedIsBlocked(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	u := startUp(t, fmt.Sprintf(`
daemon "db" {
  command = ["/bin/sleep", "1000"]
  dir     = %q
  restart {
    policy       = "always"
    backoff      = "50ms"
    max_backoff  = "100ms"
    max_restarts = 0
  }
}
daemon "app" {
  command    = ["/bin/sleep", "1000"]
  depends_on = [daemon.db]
}
`, work))
	evs := u.waitFor("app blocked", func(evs []ev) bool { return count(evs, "daemon.app", "blocked") >= 1 })
	if i := index(evs, "daemon.app", "blocked", 0); !strings.Contains(evs[i].Detail, "daemon.db") {
		t.Errorf("blocked detail %q does not name daemon.db", evs[i].Detail)
	}
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	u.waitFor("app started once db runs", func(evs []ev) bool { return count(evs, "daemon.app", "started") == 1 })
}
