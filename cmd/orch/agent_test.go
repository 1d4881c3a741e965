package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/providers/process/processtest"
)

// engineProc is `orch up` or `orch agent` running as a subprocess.
type engineProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	out    strings.Builder
}

func (p *engineProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct{ p *engineProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// pidSet remembers every daemon pid a test saw, for its cleanup.
type pidSet struct {
	mu   sync.Mutex
	pids map[int]bool
}

func (s *pidSet) add(pids ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pids {
		if p > 0 {
			s.pids[p] = true
		}
	}
}

// engineTest is one configuration directory driven through orch up or
// orch agent. Its cleanup kills every engine it started, the process
// group of every daemon pid it saw, and the log daemon.
type engineTest struct {
	t    *testing.T
	dir  string
	pids *pidSet
	// env is added to the environment of the engines start runs.
	env []string
}

func newEngineTest(t *testing.T, config string) *engineTest {
	return engineTestIn(t, writeFiles(t, map[string]string{"main.hcl": config}))
}

// engineTestIn is an engineTest of the configuration directory dir.
func engineTestIn(t *testing.T, dir string) *engineTest {
	e := &engineTest{t: t, dir: dir, pids: &pidSet{pids: map[int]bool{}}}
	t.Cleanup(func() {
		// A test that failed before it saw a pid: the log daemon's
		// registry still names it.
		e.pids.add(registeredPids(filepath.Join(dir, ".orch"))...)
		e.pids.mu.Lock()
		for pid := range e.pids.pids {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		e.pids.mu.Unlock()
		processtest.RemoveCgroups(filepath.Join(dir, ".orch"))
		processtest.StopLogd(filepath.Join(dir, ".orch"))
	})
	return e
}

func (e *engineTest) socket() string { return filepath.Join(e.dir, ".orch", "agent.sock") }

// start runs orch <verb> -json DIR (verb: up or agent) and waits until its
// socket answers.
func (e *engineTest) start(verb string) *engineProc {
	t := e.t
	t.Helper()
	p := &engineProc{exited: make(chan struct{})}
	p.cmd = newOrchCmd(t, e.dir, verb, "-json", e.dir)
	p.cmd.Env = append(p.cmd.Env, e.env...)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	e.waitFor(p, "the agent socket", func() bool {
		c, err := agent.Dial(e.socket())
		return err == nil && c != nil
	})
	return p
}

// waitFor polls cond with a deadline; p, when set, must keep running.
func (e *engineTest) waitFor(p *engineProc, what string, cond func() bool) {
	e.t.Helper()
	// A bound on a hang, not a measure of speed: under make test-busy
	// with other work on the 2 cores (load 15-50), a cold wazero compile
	// of a test's wasm modules in a -race binary took 11-14 s before
	// anything could happen.
	deadline := time.Now().Add(waitDeadline)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 20*time.Millisecond) {
		if p != nil {
			select {
			case <-p.exited:
				e.t.Fatalf("orch exited while waiting for %s:\n%s", what, p.output())
			default:
			}
		}
		if time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.output()
			}
			e.t.Fatalf("timed out waiting for %s:\n%s", what, out)
		}
		time.Sleep(wait)
	}
}

type agentStatus struct {
	Address    string `json:"address"`
	State      string `json:"state"`
	Status     string `json:"status"`
	Pid        int    `json:"pid"`
	Supervised bool   `json:"supervised"`
	Restarts   *int   `json:"restarts"`
}

// status runs orch status -json and remembers the pids.
func (e *engineTest) status() map[string]agentStatus {
	e.t.Helper()
	r := orch(e.t, e.dir, nil, "status", "-json", e.dir).want(e.t, 0)
	var lines []agentStatus
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil {
		e.t.Fatalf("status -json: %v\n%s", err, r.stdout)
	}
	out := map[string]agentStatus{}
	for _, l := range lines {
		out[l.Address] = l
		e.pids.add(l.Pid)
	}
	return out
}

// allRunning waits until every address runs (supervised by the agent).
func (e *engineTest) allRunning(p *engineProc, addrs ...string) map[string]agentStatus {
	var st map[string]agentStatus
	e.waitFor(p, strings.Join(addrs, ", ")+" running", func() bool {
		st = e.status()
		for _, a := range addrs {
			if s := st[a]; s.State != "running" || s.Pid == 0 || !s.Supervised {
				return false
			}
		}
		return true
	})
	return st
}

// stream runs a streaming orch command and hands its lines to fn until fn
// returns true; then it stops the command.
func (e *engineTest) stream(what string, fn func(line string) bool, args ...string) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := newOrchCmd(t, e.dir, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
	}()
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("orch %v ended before %s:\n%s\nstderr: %s", args, what, strings.Join(seen, "\n"), stderr.String())
			}
			seen = append(seen, l)
			if fn(l) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s from orch %v:\n%s", what, args, strings.Join(seen, "\n"))
		}
	}
}

const agentConfig = `
daemon "db" {
  command = ["/bin/sh", "-c", "trap 'echo got-hup' HUP; echo db-up; while :; do sleep 0.05; done"]
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
`

func TestAgentAPI(t *testing.T) {
	e := newEngineTest(t, agentConfig)
	p := e.start("agent")

	fi, err := os.Lstat(e.socket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent socket mode %v, want a socket with 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(e.socket())); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v %v, want 0700", di.Mode(), err)
	}

	st := e.allRunning(p, "daemon.db", "daemon.api")
	if r := st["daemon.api"].Restarts; r == nil || *r != 0 {
		t.Errorf("status through the agent: restarts %v, want 0", r)
	}

	// events: the kept history is replayed with -since all.
	e.stream("the ready event", func(l string) bool {
		var ev struct{ Type string }
		json.Unmarshal([]byte(l), &ev)
		return ev.Type == "ready"
	}, "events", "-json", "-since", "all", e.dir)

	// logs, without and with -f; signal shows in the log.
	e.waitFor(p, "db's log", func() bool {
		return strings.Contains(orch(t, e.dir, nil, "logs", "db", e.dir).stdout, "db-up")
	})
	orch(t, e.dir, nil, "signal", "db", "HUP", e.dir).want(t, 0)
	e.stream("got-hup in logs -f", func(l string) bool { return l == "got-hup" }, "logs", "-f", "-n", "5", "db", e.dir)

	// restart: a new pid, counted.
	old := st["daemon.api"].Pid
	r := orch(t, e.dir, nil, "restart", "api", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "daemon.api restarted [pid=") {
		t.Errorf("restart printed %q", r.stdout)
	}
	waitGone(t, old)
	st = e.allRunning(p, "daemon.db", "daemon.api")
	if s := st["daemon.api"]; s.Pid == old || s.Restarts == nil || *s.Restarts != 1 {
		t.Errorf("after restart: pid %d (was %d), restarts %v", s.Pid, old, s.Restarts)
	}
	if st["daemon.db"].Pid == 0 || *st["daemon.db"].Restarts != 0 {
		t.Errorf("db touched by api's restart: %+v", st["daemon.db"])
	}

	// errors of the API reach the command.
	if r := orch(t, e.dir, nil, "signal", "nope", "HUP", e.dir); r.code != 1 || !strings.Contains(r.stderr, "daemon.nope is not running") {
		t.Errorf("signal of an unknown daemon: %d %q", r.code, r.stderr)
	}

	// SIGTERM: everything stops, the socket is removed.
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if _, err := os.Lstat(e.socket()); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean exit: %v", err)
	}
	if r := orch(t, e.dir, nil, "events", e.dir); r.code != 1 || !strings.Contains(r.stderr, "no agent or orch up is running for") {
		t.Errorf("events without an agent: %d %q", r.code, r.stderr)
	}
	// Run in the directory itself, the commands name it in full, not ".".
	for _, args := range [][]string{{"events"}, {"top"}, {"stop", "api"}, {"pause", "api"}, {"trace", "api"}} {
		want := "running for " + e.dir + " "
		if args[0] != "events" && args[0] != "top" {
			want = "no agent runs for " + e.dir + ":"
		}
		if r := orch(t, e.dir, nil, args...); r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("orch %s without an agent, in its directory: %d %q, want it to say %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
}

func TestApplyRoutedToAgent(t *testing.T) {
	e := newEngineTest(t, agentConfig)
	p := e.start("up")
	st := e.allRunning(p, "daemon.db", "daemon.api")

	r := orch(t, e.dir, nil, "plan", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "No changes") {
		t.Errorf("plan through the agent: %s", r.stdout)
	}
	r = orch(t, e.dir, nil, "destroy", "-auto-approve", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "Destroy complete through the agent! Resources: 0 added, 0 changed, 0 replaced, 2 destroyed.") {
		t.Errorf("destroy through the agent:\n%s\n%s", r.stdout, r.stderr)
	}
	for a, s := range st {
		waitGone(t, s.Pid)
		_ = a
	}
	if n := len(e.status()); n != 0 {
		t.Errorf("%d instances left after destroy", n)
	}
	r = orch(t, e.dir, nil, "apply", "-auto-approve", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "Apply complete through the agent! Resources: 2 added") {
		t.Errorf("apply through the agent:\n%s\n%s", r.stdout, r.stderr)
	}
	e.allRunning(p, "daemon.db", "daemon.api")
}

// procsWith counts the live processes whose argv contains token, not
// counting a matching process's children (a shell's fork before it execs
// a command carries the shell's argv for a moment).
func procsWith(t testing.TB, token string) int {
	return len(procsByArg(t, token)[token])
}

// procsByArg maps each argv element that starts with prefix to the live
// processes whose argv holds it, leaving out a matching process's
// children, as procsWith counts them.
func procsByArg(t testing.TB, prefix string) map[string][]int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	type match struct{ pid, parent int }
	byArg := map[string][]match{}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if err != nil || !alive(pid) {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if strings.HasPrefix(arg, prefix) {
				byArg[arg] = append(byArg[arg], match{pid, ppid(pid)})
				break
			}
		}
	}
	out := map[string][]int{}
	for arg, ms := range byArg {
		for _, m := range ms {
			child := false
			for _, o := range ms {
				child = child || o.pid == m.parent
			}
			if !child {
				out[arg] = append(out[arg], m.pid)
			}
		}
	}
	return out
}

func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

func TestKilledEngineAdoptsOnRestart(t *testing.T) {
	token := fmt.Sprintf("orch-adopt-%d-%d", os.Getpid(), time.Now().UnixNano())
	names := []string{"a", "b", "c"}
	var cfg strings.Builder
	for _, n := range names {
		fmt.Fprintf(&cfg, `
daemon %q {
  command = ["/bin/sh", "-c", "while :; do sleep 0.05; done", "%s-%s"]
  stop {
    timeout = "2s"
  }
}
`, n, token, n)
	}
	e := newEngineTest(t, cfg.String())
	p := e.start("up")
	addrs := []string{"daemon.a", "daemon.b", "daemon.c"}
	before := e.allRunning(p, addrs...)

	// SIGKILL orch up; the daemons run on. Kill c too: it must be started
	// again, and only it.
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	syscall.Kill(-before["daemon.c"].Pid, syscall.SIGKILL)
	waitGone(t, before["daemon.c"].Pid)
	for _, n := range []string{"a", "b"} {
		if !alive(before["daemon."+n].Pid) {
			t.Fatalf("daemon.%s died with orch up", n)
		}
	}
	if _, err := os.Lstat(e.socket()); err != nil {
		t.Fatalf("want the stale socket of the killed orch up: %v", err)
	}

	p2 := e.start("up") // replaces the stale socket
	after := e.allRunning(p2, addrs...)
	for _, n := range []string{"a", "b"} {
		if a, b := after["daemon."+n].Pid, before["daemon."+n].Pid; a != b {
			t.Errorf("daemon.%s: pid %d after the restart of orch up, want %d (adopted)", n, a, b)
		}
	}
	if after["daemon.c"].Pid == before["daemon.c"].Pid {
		t.Errorf("daemon.c was not started again")
	}
	for _, n := range names {
		if k := procsWith(t, token+"-"+n); k != 1 {
			t.Errorf("daemon.%s runs %d times, want once", n, k)
		}
	}
	out := p2.output()
	if strings.Count(out, `"type":"adopted"`) != 2 || strings.Count(out, `"type":"started"`) != 1 {
		t.Errorf("want 2 adopted and 1 started:\n%s", out)
	}

	p2.cmd.Process.Signal(syscall.SIGTERM)
	<-p2.exited
	for _, s := range after {
		waitGone(t, s.Pid)
	}
}

// An adopted daemon is stopped, when orch up stops it (here: unhealthy),
// with the stop settings it was applied with, read from its record's
// configuration, which orch up's reload lists without (records.go in
// executor/engine): the daemon ignores SIGTERM and leaves a mark on its
// stop signal, SIGINT.
func TestAdoptedStoppedAsApplied(t *testing.T) {
	marks := t.TempDir()
	sick, mark := filepath.Join(marks, "sick"), filepath.Join(marks, "stopped-by")
	token := fmt.Sprintf("orch-adoptstop-%d-%d", os.Getpid(), time.Now().UnixNano())
	e := newEngineTest(t, fmt.Sprintf(`
daemon "a" {
  command = ["/bin/sh", "-c", "trap '' TERM; trap 'echo INT > %s; exit 0' INT; while :; do sleep 0.05; done", "%s"]
  stop {
    signal  = "SIGINT"
    timeout = "3s"
  }
  health {
    exec     = ["/bin/sh", "-c", "test ! -e %s"]
    interval = "100ms"
    retries  = 2
  }
}
`, mark, token, sick))
	p := e.start("up")
	before := e.allRunning(p, "daemon.a")["daemon.a"].Pid
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited

	p2 := e.start("up")
	defer func() {
		p2.cmd.Process.Signal(syscall.SIGTERM)
		<-p2.exited
	}()
	if pid := e.allRunning(p2, "daemon.a")["daemon.a"].Pid; pid != before {
		t.Fatalf("daemon.a: pid %d after the restart of orch up, want %d (adopted)", pid, before)
	}
	e.waitFor(p2, "daemon.a adopted and healthy", func() bool {
		out := p2.output()
		return strings.Contains(out, `"type":"adopted"`) && strings.Contains(out, `"type":"healthy"`)
	})
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(p2, "the unhealthy daemon.a stopped", func() bool { return !alive(before) })
	os.Remove(sick)
	b, err := os.ReadFile(mark)
	if err != nil || strings.TrimSpace(string(b)) != "INT" {
		t.Errorf("daemon.a was not stopped with SIGINT, the signal it was applied with (mark %q, %v):\n%s", b, err, p2.output())
	}
}

// TestKilledUpAdoptsStartsNewerThanTheirRecords: orch up in a directory
// where an earlier orch up stopped everything (every record says
// stopped), SIGKILLed in the middle of a chain of starts. A start's
// record is released (it may not be written yet when its dependent
// starts), so some daemons run whose records still name the process the
// earlier orch up stopped. The next orch up adopts every daemon that
// still runs, the newest as well as the recorded: it neither stops nor
// starts again any of them, and none runs twice.
func TestKilledUpAdoptsStartsNewerThanTheirRecords(t *testing.T) {
	token := fmt.Sprintf("orch-newer-%d-%d-", os.Getpid(), time.Now().UnixNano())
	const n = 40
	var cfg strings.Builder
	addrs := make([]string, n)
	for i := 0; i < n; i++ {
		addrs[i] = fmt.Sprintf("daemon.d%d", i)
		fmt.Fprintf(&cfg, "daemon \"d%d\" {\n  command = [\"/bin/sh\", \"-c\", \"sleep 600\", \"%s%d\"]\n", i, token, i)
		if i > 0 {
			fmt.Fprintf(&cfg, "  depends_on = [daemon.d%d]\n", i-1)
		}
		cfg.WriteString("  stop {\n    timeout = \"2s\"\n  }\n}\n")
	}
	e := newEngineTest(t, cfg.String())
	p1 := e.start("up")
	e.allRunning(p1, addrs...)
	p1.cmd.Process.Signal(syscall.SIGTERM)
	<-p1.exited
	if left := procsByArg(t, token); len(left) != 0 {
		t.Fatalf("%d daemons outlived orch up's stop", len(left))
	}

	// Killed once a quarter of the chain runs: the last starts are the
	// ones whose records may not be written yet.
	p2 := e.start("up")
	e.waitFor(p2, "a quarter of the chain running", func() bool { return len(procsByArg(t, token)) >= n/4 })
	p2.cmd.Process.Signal(syscall.SIGKILL)
	<-p2.exited
	// What runs its program now must run on; a start the killed orch up
	// had forked that runs its program later is adopted too (below).
	before := procsByArg(t, token)

	p3 := e.start("up")
	e.allRunning(p3, addrs...)
	after := procsByArg(t, token)
	for arg, pids := range before {
		if got := after[arg]; len(got) != 1 || got[0] != pids[0] {
			t.Errorf("%s: pids %v after orch up ran again, want %v (adopted)", arg, got, pids)
		}
	}
	for i := 0; i < n; i++ {
		if got := after[fmt.Sprintf("%s%d", token, i)]; len(got) != 1 {
			t.Errorf("daemon.d%d runs %d times, want once", i, len(got))
		}
	}
	// At least those: one the killed orch up had forked may have run its
	// program only after the look above, and is adopted too.
	if got := strings.Count(p3.output(), `"type":"adopted"`); got < len(before) {
		t.Errorf("%d adopted, want at least the %d that ran after the kill:\n%s", got, len(before), p3.output())
	}
	p3.cmd.Process.Signal(syscall.SIGTERM)
	<-p3.exited
	if left := procsByArg(t, token); len(left) != 0 {
		t.Errorf("%d daemons outlived the last orch up's stop", len(left))
	}
}

// TestRoutedPlanRefusesOtherVariables: orch plan and apply go to the
// engine that runs for the directory, which plans with the variables it
// was started with; a command whose -var values differ is refused with one
// clear error instead of being planned without them, and one with the same
// values goes through.
func TestRoutedPlanRefusesOtherVariables(t *testing.T) {
	e := newEngineTest(t, `
variable "msg" {
  type    = string
  default = "a"
}

daemon "echo" {
  command = ["/bin/sh", "-c", "echo ${var.msg}; exec sleep 600"]
  stop {
    timeout = "2s"
  }
}
`)
	p := e.start("up")
	e.allRunning(p, "daemon.echo")

	for _, verb := range [][]string{{"plan"}, {"apply", "-auto-approve"}} {
		r := orch(t, e.dir, nil, append(verb, "-var", "msg=b", e.dir)...).want(t, 1)
		if !strings.Contains(r.stderr, "plans and applies with the variable values it was started with") {
			t.Errorf("%s -var msg=b through the agent: %q", verb[0], r.stderr)
		}
	}
	r := orch(t, e.dir, nil, "plan", "-var", "msg=a", e.dir).want(t, 0)
	if !strings.Contains(r.stdout, "No changes") {
		t.Errorf("plan with the engine's own value: %s", r.stdout)
	}
	orch(t, e.dir, nil, "plan", e.dir).want(t, 0)
}

// waitDeadline bounds each wait of a test on orch's events.
const waitDeadline = 60 * time.Second
