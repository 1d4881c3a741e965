package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// orch apply reports a daemon that died at once: exit 1, its name, how it
// ended and its last log lines, never "Apply complete!".
func TestApplyReportsDaemonThatDied(t *testing.T) {
	dir := project(t, `
daemon "crash" {
  command = ["/bin/sh", "-c", "echo 'listen: address already in use' >&2; exit 3"]
  restart {
    policy = "never"
  }
}
daemon "fine" {
  command = ["/bin/sleep", "600"]
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	out := r.stdout + r.stderr
	for _, want := range []string{"daemon.crash", "code 3", "address already in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Apply complete!") {
		t.Errorf("apply said complete though daemon.crash died:\n%s", out)
	}
}

// The last log lines of a daemon that died at once are those of this
// start: its earlier starts, written to the same log file, are not told
// as its own. The lines of a diagnostic's detail that quote the log keep
// their indentation, unwrapped however long.
func TestApplyQuotesThisStartsLog(t *testing.T) {
	dir := project(t, `
daemon "crash" {
  command = ["/bin/sh", "-c", "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo attempt-$n $(printf 'x%.0s' $(seq 150)); exit 3"]
  restart {
    policy = "never"
  }
  # never passes: the exit is told as a diagnostic ("exited before it was
  # ready"), whose detail is wrapped
  health {
    exec     = ["/bin/false"]
    interval = "50ms"
  }
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	if !strings.Contains(r.stdout+r.stderr, "attempt-1 ") {
		t.Fatalf("first apply lacks its start's log line:\n%s%s", r.stdout, r.stderr)
	}
	r = orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	out := r.stdout + r.stderr
	if !strings.Contains(out, "\n    attempt-2 "+strings.Repeat("x", 150)+"\n") {
		t.Errorf("second apply lacks its start's log line, whole on one line:\n%s", out)
	}
	if strings.Contains(out, "attempt-1") {
		t.Errorf("second apply quotes the first start's log as its own:\n%s", out)
	}
}

// orch apply starts a dependent only once its dependency is ready: the
// migrate job finds the database's ready mark.
func TestApplyWaitsForReadiness(t *testing.T) {
	dir := project(t, `
daemon "db" {
  command = ["/bin/sh", "-c", "sleep 0.7; touch ready; exec sleep 600"]
  health {
    exec     = ["/bin/test", "-e", "ready"]
    interval = "50ms"
  }
  stop {
    timeout = "2s"
  }
}
job "migrate" {
  command    = ["/bin/test", "-e", "ready"]
  depends_on = [daemon.db]
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "Apply complete!") {
		t.Errorf("apply did not complete:\n%s%s", r.stdout, r.stderr)
	}
}

// A daemon that never becomes ready fails orch apply with the reason,
// and what depends on it is not started.
func TestApplyNeverReady(t *testing.T) {
	dir := project(t, `
daemon "db" {
  command = ["/bin/sleep", "600"]
  health {
    exec          = ["/bin/false"]
    interval      = "50ms"
    start_timeout = "400ms"
  }
  stop {
    timeout = "2s"
  }
}
daemon "app" {
  command    = ["/bin/sleep", "600"]
  depends_on = [daemon.db]
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	out := r.stdout + r.stderr
	if !strings.Contains(out, "not ready within start_timeout") {
		t.Errorf("apply output lacks the reason:\n%s", out)
	}
	if st := status(t, dir)["daemon.app"]; st.Pid != 0 {
		t.Errorf("daemon.app started (pid %d) though daemon.db never became ready", st.Pid)
	}
}

// orch apply waits for a daemon declared with health { notify = true } to
// say READY=1 (notifyd, speaking sd_notify through go-systemd): the job
// that depends on it finds what the daemon made before it said so. One
// that never says it fails the apply with the reason.
func TestApplyWaitsForNotifyReady(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "notifyd")
	if out, err := exec.Command(goTool(), "build", "-o", bin, "../../executor/engine/testdata/notifyd").CombinedOutput(); err != nil {
		t.Fatalf("building notifyd: %v\n%s", err, out)
	}
	dir := project(t, fmt.Sprintf(`
daemon "db" {
  command = ["/bin/sh", "-c", "sleep 0.7; touch ready; exec %s -status 'accepting connections'"]
  health {
    notify = true
  }
  stop {
    timeout = "2s"
  }
}
job "migrate" {
  command    = ["/bin/test", "-e", "ready"]
  depends_on = [daemon.db]
}
`, bin))
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "Apply complete!") {
		t.Errorf("apply did not complete:\n%s%s", r.stdout, r.stderr)
	}

	silent := project(t, `
daemon "quiet" {
  command = ["/bin/sleep", "600"]
  health {
    notify        = true
    start_timeout = "500ms"
  }
  stop {
    timeout = "2s"
  }
}
`)
	r = orch(t, silent, nil, "apply", "-auto-approve").want(t, 1)
	if out := r.stdout + r.stderr; !strings.Contains(out, "daemon.quiet not ready within start_timeout 500ms; no READY=1 on its notify socket") {
		t.Errorf("apply output lacks the reason:\n%s", out)
	}
}

// A runtime that cannot be reached holds back nothing else: orch apply
// warns at the runtime's block, applies the rest, and fails at its end
// naming what it could not apply.
func TestApplyAroundUnreachableRuntime(t *testing.T) {
	dir := project(t, `
runtime "docker" "away" {
  host = "unix:///nonexistent/docker.sock"
}
daemon "web" {
  runtime = runtime.docker.away
  image   = "nginx:latest"
}
daemon "api" {
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	for _, want := range []string{"Warning: Runtime unreachable", "main.hcl line 2", "runtime.docker.away is unreachable", "not applied: daemon.web", "Everything else was applied"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("apply's errors lack %q:\n%s", want, r.stderr)
		}
	}
	if st := status(t, dir)["daemon.api"]; st.Pid == 0 || !alive(st.Pid) {
		t.Errorf("daemon.api does not run (%+v): the unreachable runtime held it back", st)
	}
	if strings.Contains(r.stdout, "complete!") || !strings.Contains(r.stdout, "Apply incomplete: a runtime was unreachable. Done: 1 added") {
		t.Errorf("apply's summary does not say it is incomplete:\n%s", r.stdout)
	}
	r = orch(t, dir, nil, "plan").want(t, 0)
	if !strings.Contains(r.stderr, "Warning: Runtime unreachable") {
		t.Errorf("plan does not warn of the unreachable runtime:\n%s%s", r.stdout, r.stderr)
	}
}

// orch apply's create_before_destroy replace of a server whose check is
// on the port it shares with the old instance: the new one cannot bind
// beside it (no SO_REUSEPORT), and its check, which the old one answers,
// is not taken for its readiness. The apply fails, the old one keeps
// serving. (Before, the old one was stopped on the strength of its own
// answer, the new one died on "address already in use", and the apply
// said complete.)
func TestApplyReplaceWaitsForItsOwnListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := func(version int) string {
		return fmt.Sprintf(`
daemon "web" {
  command = ["python3", "-c", "import time, http.server as h; time.sleep(0.3); h.HTTPServer(('127.0.0.1', %d), h.SimpleHTTPRequestHandler).serve_forever()"]
  env = {
    VERSION = "%d"
  }
  health {
    http          = "http://127.0.0.1:%d/"
    interval      = "50ms"
    start_timeout = "5s"
  }
  lifecycle {
    create_before_destroy = true
  }
  stop {
    timeout = "2s"
  }
}
`, port, version, port)
	}
	dir := project(t, cfg(1))
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	old := status(t, dir)["daemon.web"].Pid
	if old == 0 {
		t.Fatal("daemon.web not running after the first apply")
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	out := r.stdout + r.stderr
	if strings.Contains(out, "Apply complete!") || !strings.Contains(out, "daemon.web") {
		t.Errorf("apply output:\n%s", out)
	}
	if !alive(old) {
		t.Fatalf("the old instance (pid %d) was stopped:\n%s", old, out)
	}
	if st := status(t, dir)["daemon.web"]; st.Pid != old {
		t.Errorf("daemon.web runs as pid %d after the failed replace, want the old %d", st.Pid, old)
	}
}
