package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process/processtest"
)

// The commands that operate on what runs (status, logs, events, restart,
// signal) against a running engine or a one-shot apply.

const workerConfig = `
daemon "worker" {
  count   = 2
  command = ["/bin/sh", "-c", "trap 'echo hup-${count.index}' HUP; echo worker-${count.index}-up; while :; do sleep 0.05; done"]
  stop {
    timeout = "2s"
  }
}
`

type restartLine struct {
	Address string `json:"address"`
	Pid     int    `json:"pid"`
}

// TestCountNamesThroughAgent: a name without a key addresses every
// instance of a counted daemon (logs, signal, restart, status), worker[1]
// just one. Before, logs said "no log yet", restart "not declared" and
// signal "not running".
func TestCountNamesThroughAgent(t *testing.T) {
	e := newEngineTest(t, workerConfig)
	p := e.start("up")
	st := e.allRunning(p, "daemon.worker[0]", "daemon.worker[1]")

	e.waitFor(p, "both workers' logs", func() bool {
		out := orch(t, e.dir, nil, "logs", "worker", e.dir).stdout
		return strings.Contains(out, "daemon.worker[0] | worker-0-up") && strings.Contains(out, "daemon.worker[1] | worker-1-up")
	})
	// One instance: no prefix.
	if r := orch(t, e.dir, nil, "logs", "worker[1]", e.dir).want(t, 0); strings.TrimSpace(r.stdout) != "worker-1-up" {
		t.Errorf("logs worker[1]: %q", r.stdout)
	}

	r := orch(t, e.dir, nil, "signal", "worker", "HUP", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "HUP sent to daemon.worker[0]") || !strings.Contains(r.stdout, "HUP sent to daemon.worker[1]") {
		t.Errorf("signal worker HUP: %q", r.stdout)
	}
	e.waitFor(p, "both workers' hup", func() bool {
		out := orch(t, e.dir, nil, "logs", "-json", "-n", "-1", "worker", e.dir).stdout
		return strings.Contains(out, `{"address":"daemon.worker[0]","line":"hup-0"}`) && strings.Contains(out, `{"address":"daemon.worker[1]","line":"hup-1"}`)
	})

	r = orch(t, e.dir, nil, "status", "-json", e.dir, "worker[1]").want(t, 0)
	var lines []agentStatus
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil || len(lines) != 1 || lines[0].Address != "daemon.worker[1]" {
		t.Errorf("status DIR worker[1]: %v %s", err, r.stdout)
	}

	r = orch(t, e.dir, nil, "status", e.dir, "nope").want(t, 1)
	if !strings.Contains(r.stderr, "matches daemon.nope") {
		t.Errorf("status DIR nope: %q", r.stderr)
	}

	// apply -json through the agent: the agent's plan, then the summary.
	r = orch(t, e.dir, nil, "apply", "-json", "-auto-approve", e.dir).want(t, 0)
	if !strings.HasPrefix(r.stdout, `{"type":"plan","plan":{`) || !strings.HasSuffix(r.stdout, `{"type":"summary","ok":true,"add":0,"change":0,"replace":0,"destroy":0}`+"\n") {
		t.Errorf("apply -json through the agent:\n%s", r.stdout)
	}

	r = orch(t, e.dir, nil, "restart", "-json", "worker", e.dir).want(t, 0)
	var restarted []restartLine
	if err := json.Unmarshal([]byte(r.stdout), &restarted); err != nil || len(restarted) != 2 {
		t.Fatalf("restart -json worker: %v %s", err, r.stdout)
	}
	for i, rl := range restarted {
		old := st[rl.Address].Pid
		if rl.Address != []string{"daemon.worker[0]", "daemon.worker[1]"}[i] || old == 0 {
			t.Errorf("restart -json worker: %s", r.stdout)
			continue
		}
		waitGone(t, old)
	}
	after := e.allRunning(p, "daemon.worker[0]", "daemon.worker[1]")
	for a, s := range after {
		if s.Pid == st[a].Pid || s.Restarts == nil || *s.Restarts != 1 {
			t.Errorf("%s after restart worker: pid %d (was %d), restarts %v", a, s.Pid, st[a].Pid, s.Restarts)
		}
	}
}

// TestCountNamesWithoutAgent: the same names without an engine, through
// the state and the runtimes.
func TestCountNamesWithoutAgent(t *testing.T) {
	dir := project(t, workerConfig)
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st := statusOrNil(t, dir)
	var logs string
	waitUntil(t, "both workers' logs", func() bool {
		logs = orch(t, dir, nil, "logs", "worker").stdout
		return strings.Contains(logs, "daemon.worker[0] | worker-0-up") && strings.Contains(logs, "daemon.worker[1] | worker-1-up")
	})
	r := orch(t, dir, nil, "signal", "worker", "HUP").want(t, 0)
	if strings.Count(r.stdout, "HUP sent to daemon.worker[") != 2 {
		t.Errorf("signal worker HUP: %q", r.stdout)
	}
	r = orch(t, dir, nil, "signal", "-json", "worker[0]", "cont").want(t, 0)
	var sent []struct{ Address, Signal string }
	if err := json.Unmarshal([]byte(r.stdout), &sent); err != nil || len(sent) != 1 || sent[0].Address != "daemon.worker[0]" || sent[0].Signal != "SIGCONT" {
		t.Errorf("signal -json worker[0] cont: %v %q", err, r.stdout)
	}
	r = orch(t, dir, nil, "restart", "worker[1]").want(t, 0)
	if !strings.HasPrefix(r.stdout, "daemon.worker[1] restarted [pid=") || strings.Contains(r.stdout, "worker[0]") {
		t.Errorf("restart worker[1]: %q", r.stdout)
	}
	waitGone(t, st["daemon.worker[1]"].Pid)
	if !alive(st["daemon.worker[0]"].Pid) {
		t.Errorf("restart worker[1] stopped worker[0]")
	}
}

// TestOperateWhileConfigInvalid: while a bad edit is on disk, orch up runs
// on, and status, logs, events, restart and signal keep working, each
// saying once on stderr that the configuration does not load. Before, they
// printed the diagnostics and exited 1, and events said no agent ran.
func TestOperateWhileConfigInvalid(t *testing.T) {
	e := newEngineTest(t, agentConfig)
	p := e.start("up")
	st := e.allRunning(p, "daemon.db", "daemon.api")
	if err := os.WriteFile(filepath.Join(e.dir, "main.hcl"), []byte(agentConfig+"\ndaemon \"broken\" {\n  command = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oneWarning := func(what string, r result) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "Warning: the configuration in "+e.dir+" does not load ("+filepath.Join(e.dir, "main.hcl")+":19:1: ") {
			t.Errorf("%s: want one line saying the configuration does not load, got:\n%s", what, r.stderr)
		}
	}

	r := orch(t, e.dir, nil, "status", "-json", e.dir).want(t, 0)
	oneWarning("status", r)
	var lines []agentStatus
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil || len(lines) != 2 || !lines[0].Supervised {
		t.Errorf("status: %v %s", err, r.stdout)
	}
	e.waitFor(p, "db's log", func() bool {
		return strings.Contains(orch(t, e.dir, nil, "logs", "db", e.dir).stdout, "db-up")
	})
	oneWarning("logs", orch(t, e.dir, nil, "logs", "db", e.dir).want(t, 0))
	e.stream("the ready event", func(l string) bool {
		var ev struct{ Type string }
		json.Unmarshal([]byte(l), &ev)
		return ev.Type == "ready"
	}, "events", "-json", "-since", "all", e.dir)
	r = orch(t, e.dir, nil, "signal", "db", "HUP", e.dir).want(t, 0)
	oneWarning("signal", r)
	r = orch(t, e.dir, nil, "restart", "api", e.dir).want(t, 0)
	oneWarning("restart", r)
	if !strings.Contains(r.stdout, "daemon.api restarted [pid=") {
		t.Errorf("restart: %q", r.stdout)
	}
	waitGone(t, st["daemon.api"].Pid)
	e.allRunning(p, "daemon.api")

	// Without the engine, status reads the state: nothing runs any more.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	r = orch(t, e.dir, nil, "status", "-json", e.dir).want(t, 0)
	oneWarning("status without an agent", r)
	lines = nil
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil {
		t.Errorf("status without an agent: %v %s", err, r.stdout)
	}
	// restart without an agent needs the configuration: one clear error.
	r = orch(t, e.dir, nil, "restart", "api", e.dir).want(t, 1)
	if !strings.Contains(r.stderr, "which does not load") {
		t.Errorf("restart without an agent: %q", r.stderr)
	}
}

const secretConfig = `
variable "token" {
  type      = string
  sensitive = true
}

daemon "svc" {
  command = ["/bin/sh", "-c", "echo svc-up; while :; do sleep 0.05; done"]
  env     = { TOKEN = var.token }
  stop {
    timeout = "2s"
  }
}
`

// TestOperateWithoutRequiredVariable: logs, status and events work without
// the value of a required sensitive variable, and so does graph (which
// needs the configuration, not the values). Before, all four refused.
func TestOperateWithoutRequiredVariable(t *testing.T) {
	e := newEngineTest(t, secretConfig)
	e.env = []string{"ORCH_VAR_token=s3cret"}
	p := e.start("up")
	e.allRunning(p, "daemon.svc")
	e.waitFor(p, "svc's log", func() bool {
		r := orch(t, e.dir, nil, "logs", "svc", e.dir)
		return r.code == 0 && strings.Contains(r.stdout, "svc-up") && strings.Contains(r.stderr, "No value for required variable")
	})
	orch(t, e.dir, nil, "status", e.dir).want(t, 0)
	e.stream("the ready event", func(l string) bool { return strings.Contains(l, `"type":"ready"`) }, "events", "-json", "-since", "all", e.dir)
	r := orch(t, e.dir, nil, "graph", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "daemon.svc") || strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Errorf("graph without the variable's value:\n%s\n%s", r.stdout, r.stderr)
	}
}

// TestLogsOfModule: a module's log is the file the engine writes; orch
// logs module.x prints it. Before, it said the runtime cannot show logs.
func TestLogsOfModule(t *testing.T) {
	root := filepath.Join(t.TempDir(), "modules")
	copyExample(t, filepath.Join("..", "..", "examples", "modules"), root)
	e := engineTestIn(t, root)
	p := e.start("up")
	e.waitFor(p, "the transform module's log", func() bool {
		r := orch(t, root, nil, "logs", "module.transform", root)
		return r.code == 0 && strings.Contains(r.stdout, "transformed")
	})
	r := orch(t, root, nil, "logs", "-json", "module.transform", root).want(t, 0)
	if !strings.Contains(r.stdout, `{"address":"module.transform","line":`) {
		t.Errorf("logs -json module.transform: %s", r.stdout)
	}
	for _, s := range e.status() {
		e.pids.add(s.Pid)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
}

// waitUntil polls cond until it holds, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(wait)
	}
}

// TestStateDirWhileConfigInvalid: without an agent, the commands on what
// runs find the state through orch { state_dir } when it can still be
// read, and through -state-dir when it cannot.
func TestStateDirWhileConfigInvalid(t *testing.T) {
	const cfg = `
orch {
  state_dir = "run"
}

daemon "svc" {
  command = ["/bin/sh", "-c", "echo svc-up; exec sleep 600"]
}
`
	dir := writeFiles(t, map[string]string{"main.hcl": cfg})
	run := filepath.Join(dir, "run")
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644)
		os.Remove(filepath.Join(dir, "broken.hcl"))
		orch(t, dir, nil, "destroy", "-auto-approve")
		processtest.RemoveCgroups(run)
		processtest.StopLogd(run)
	})
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st := statusOrNil(t, dir)
	pid := st["daemon.svc"].Pid
	if pid == 0 {
		t.Fatalf("daemon.svc not running: %v", st)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })

	// A syntax error in another file: orch { state_dir } still reads.
	os.WriteFile(filepath.Join(dir, "broken.hcl"), []byte("daemon \"x\" {\n"), 0o644)
	r := orch(t, dir, nil, "status", "-json").want(t, 0)
	if !strings.Contains(r.stderr, "going on with the state in "+run) || !strings.Contains(r.stdout, `"daemon.svc"`) {
		t.Errorf("status with broken.hcl:\n%s\n%s", r.stdout, r.stderr)
	}
	waitUntil(t, "svc's log", func() bool {
		return strings.Contains(orch(t, dir, nil, "logs", "svc").stdout, "svc-up")
	})
	orch(t, dir, nil, "signal", "svc", "CONT").want(t, 0)

	// state_dir from a variable without a value: -state-dir finds it.
	os.Remove(filepath.Join(dir, "broken.hcl"))
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(strings.Replace(cfg, `state_dir = "run"`, "state_dir = var.sd", 1)+"variable \"sd\" {\n  type = string\n}\n"), 0o644)
	r = orch(t, dir, nil, "status", "-state-dir", "run", "-json").want(t, 0)
	if !strings.Contains(r.stdout, `"daemon.svc"`) || !strings.Contains(r.stderr, "No value for required variable") {
		t.Errorf("status -state-dir run:\n%s\n%s", r.stdout, r.stderr)
	}
	r = orch(t, dir, []string{"ORCH_STATE_DIR=" + run}, "logs", "svc").want(t, 0)
	if !strings.Contains(r.stdout, "svc-up") {
		t.Errorf("logs with ORCH_STATE_DIR:\n%s\n%s", r.stdout, r.stderr)
	}
}
