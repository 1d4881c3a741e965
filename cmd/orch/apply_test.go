package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process/processtest"
)

// stack is a configuration of real processes: a database stand-in, an api
// that depends on it, and a worker that depends on nothing.
const stack = `
daemon "db" {
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "2s"
  }
}

daemon "api" {
  command    = ["/bin/sh", "-c", "echo api up; exec /bin/sleep 600"]
  env        = { MODE = "one" }
  depends_on = [daemon.db]
  stop {
    timeout = "2s"
  }
}

daemon "worker" {
  count   = 2
  command = ["/bin/sleep", "60${count.index}"]
  stop {
    timeout = "2s"
  }
}
`

type statusLine struct {
	Address string `json:"address"`
	State   string `json:"state"`
	Status  string `json:"status"`
	Pid     int    `json:"pid"`
}

func status(t *testing.T, dir string) map[string]statusLine {
	t.Helper()
	r := orch(t, dir, nil, "status", "-json").want(t, 0)
	var lines []statusLine
	if err := json.Unmarshal([]byte(r.stdout), &lines); err != nil {
		t.Fatalf("status -json: %v\n%s", err, r.stdout)
	}
	out := map[string]statusLine{}
	for _, l := range lines {
		out[l.Address] = l
	}
	return out
}

// project makes a config directory whose processes are all stopped when
// the test ends: orch destroy first, then SIGKILL to the process group of
// every pid orch ever reported, and to the log daemon.
func project(t *testing.T, config string) string {
	t.Helper()
	dir := writeFiles(t, map[string]string{"main.hcl": config})
	seen := map[int]bool{}
	t.Cleanup(func() {
		for _, l := range statusOrNil(t, dir) {
			seen[l.Pid] = true
		}
		// The config may not load any more (the test broke it on purpose):
		// the handles in the log directory's registry still name every pid.
		for _, pid := range registeredPids(filepath.Join(dir, ".orch")) {
			seen[pid] = true
		}
		if r := orch(t, dir, nil, "destroy", "-auto-approve"); r.code != 0 {
			t.Logf("cleanup: orch destroy failed (%d): %s", r.code, r.stderr)
		}
		for pid := range seen {
			if pid > 0 {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		processtest.RemoveCgroups(filepath.Join(dir, ".orch"))
		processtest.StopLogd(filepath.Join(dir, ".orch"))
	})
	return dir
}

func statusOrNil(t *testing.T, dir string) map[string]statusLine {
	r := orch(t, dir, nil, "status", "-json")
	var lines []statusLine
	json.Unmarshal([]byte(r.stdout), &lines)
	out := map[string]statusLine{}
	for _, l := range lines {
		out[l.Address] = l
	}
	return out
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// state is the field after the command in parentheses
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestApplyLifecycle(t *testing.T) {
	dir := project(t, stack)

	// First apply creates everything, dependencies first.
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "Apply complete! Resources: 4 added, 0 changed, 0 replaced, 0 destroyed.") {
		t.Fatalf("apply output:\n%s", r.stdout)
	}
	if strings.Index(r.stdout, "daemon.db: Creation complete") > strings.Index(r.stdout, "daemon.api: Creating...") {
		t.Fatalf("api started before db was up:\n%s", r.stdout)
	}
	st := status(t, dir)
	for _, a := range []string{"daemon.db", "daemon.api", "daemon.worker[0]", "daemon.worker[1]"} {
		if st[a].State != "running" || !alive(st[a].Pid) {
			t.Fatalf("%s not running: %+v", a, st[a])
		}
	}

	// No-op plan: exit 0 with -detailed-exitcode.
	r = orch(t, dir, nil, "plan", "-detailed-exitcode").want(t, 0)
	if !strings.Contains(r.stdout, "No changes.") {
		t.Fatalf("no-op plan:\n%s", r.stdout)
	}

	// Edit one daemon: only it is replaced, the others keep their pids.
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(strings.Replace(stack, `MODE = "one"`, `MODE = "two"`, 1)), 0o644)
	r = orch(t, dir, nil, "plan", "-detailed-exitcode", "-no-color").want(t, 2)
	if !strings.Contains(r.stdout, `~ "MODE" = "one" -> "two"`) || !strings.Contains(r.stdout, "Plan: 0 to add, 0 to change, 1 to replace, 0 to destroy.") {
		t.Fatalf("edit plan:\n%s", r.stdout)
	}
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st2 := status(t, dir)
	if st2["daemon.api"].Pid == st["daemon.api"].Pid || !alive(st2["daemon.api"].Pid) {
		t.Fatalf("api was not replaced: %+v -> %+v", st["daemon.api"], st2["daemon.api"])
	}
	waitGone(t, st["daemon.api"].Pid)
	for _, a := range []string{"daemon.db", "daemon.worker[0]", "daemon.worker[1]"} {
		if st2[a].Pid != st[a].Pid {
			t.Fatalf("%s was restarted by an edit of another daemon: %d -> %d", a, st[a].Pid, st2[a].Pid)
		}
	}

	// Kill one: the plan shows a start, apply starts it.
	syscall.Kill(st2["daemon.worker[1]"].Pid, syscall.SIGKILL)
	waitGone(t, st2["daemon.worker[1]"].Pid)
	r = orch(t, dir, nil, "plan", "-no-color", "-detailed-exitcode").want(t, 2)
	if !strings.Contains(r.stdout, "daemon.worker[1] will be started") {
		t.Fatalf("plan after kill:\n%s", r.stdout)
	}
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st3 := status(t, dir)
	if !alive(st3["daemon.worker[1]"].Pid) || st3["daemon.worker[0]"].Pid != st2["daemon.worker[0]"].Pid {
		t.Fatalf("after start: %+v", st3)
	}

	// Destroy: nothing is left.
	r = orch(t, dir, nil, "destroy", "-auto-approve").want(t, 0)
	if !strings.Contains(r.stdout, "Destroy complete! Resources: 0 added, 0 changed, 0 replaced, 4 destroyed.") {
		t.Fatalf("destroy output:\n%s", r.stdout)
	}
	if strings.Index(r.stdout, "daemon.api: Destruction complete") > strings.Index(r.stdout, "daemon.db: Destroying...") {
		t.Fatalf("db stopped before api (reverse order broken):\n%s", r.stdout)
	}
	for a, l := range st3 {
		if alive(l.Pid) {
			t.Fatalf("%s (pid %d) survived destroy", a, l.Pid)
		}
	}
	if len(status(t, dir)) != 0 {
		t.Fatalf("state not empty after destroy")
	}
}

func TestApplyConfirmation(t *testing.T) {
	dir := project(t, `daemon "a" {
  command = ["/bin/sleep", "600"]
}
`)
	r := orch(t, dir, nil, "apply") // stdin is empty: not approved
	r.want(t, 1)
	if !strings.Contains(r.stderr, "apply cancelled") || len(status(t, dir)) != 0 {
		t.Fatalf("apply without approval changed things:\n%s\n%s", r.stdout, r.stderr)
	}
}

func TestSavedPlanStale(t *testing.T) {
	dir := project(t, stack)
	planFile := filepath.Join(t.TempDir(), "p.plan")
	orch(t, dir, nil, "plan", "-out", planFile).want(t, 0)
	// The world moves: something else applies first.
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	r := orch(t, dir, nil, "apply", planFile).want(t, 1)
	if !strings.Contains(r.stderr, "Saved plan is stale") {
		t.Fatalf("stale plan accepted:\n%s\n%s", r.stdout, r.stderr)
	}
	// The config moves.
	planFile2 := filepath.Join(t.TempDir(), "p2.plan")
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(strings.Replace(stack, `MODE = "one"`, `MODE = "x"`, 1)), 0o644)
	orch(t, dir, nil, "plan", "-out", planFile2).want(t, 0)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(strings.Replace(stack, `MODE = "one"`, `MODE = "y"`, 1)), 0o644)
	r = orch(t, dir, nil, "apply", planFile2).want(t, 1)
	if !strings.Contains(r.stderr, "configuration in") {
		t.Fatalf("config change not named:\n%s", r.stderr)
	}
	// A fresh saved plan applies exactly.
	planFile3 := filepath.Join(t.TempDir(), "p3.plan")
	orch(t, dir, nil, "plan", "-out", planFile3).want(t, 0)
	r = orch(t, dir, nil, "apply", planFile3).want(t, 0)
	if !strings.Contains(r.stdout, "1 replaced") {
		t.Fatalf("saved plan apply:\n%s", r.stdout)
	}
}

func TestMissingBinary(t *testing.T) {
	dir := project(t, `daemon "ok" {
  command = ["/bin/sleep", "600"]
}

daemon "broken" {
  command = ["/no/such/program", "--flag"]
}

daemon "after" {
  command    = ["/bin/sleep", "601"]
  depends_on = [daemon.broken]
}
`)
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	// One clear error naming the daemon and where it is declared.
	if !strings.Contains(r.stderr, "Failed to create daemon.broken") || !strings.Contains(r.stderr, "main.hcl line 6") ||
		!strings.Contains(r.stderr, "/no/such/program") {
		t.Fatalf("error does not name the daemon, its file:line and the program:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "daemon.after: not applied, skipped because daemon.broken failed") {
		t.Fatalf("dependent not reported as skipped:\n%s", r.stderr)
	}
	st := status(t, dir)
	if !alive(st["daemon.ok"].Pid) {
		t.Fatalf("the independent daemon was not applied: %+v", st)
	}
	if _, ok := st["daemon.after"]; ok {
		t.Fatalf("the dependent of the failed daemon was started")
	}
	if st["daemon.broken"].Status != "failed" {
		t.Fatalf("broken not recorded as failed: %+v", st["daemon.broken"])
	}
}

func TestLockContention(t *testing.T) {
	dir := project(t, `daemon "a" {
  command = ["/bin/sleep", "600"]
}
`)
	// Hold the lock with an apply waiting for its confirmation.
	cmd := newOrchCmd(t, dir, "apply")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	asked := make(chan struct{})
	go func() {
		// Read what the first apply prints until it asks for confirmation.
		var seen []byte
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			seen = append(seen, buf[:n]...)
			if strings.Contains(string(seen), "Enter a value") {
				close(asked)
				io.Copy(io.Discard, stdout)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the first apply never asked for confirmation")
	}
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	want := "locked by pid " + strconv.Itoa(cmd.Process.Pid) + " since "
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("lock error %q does not contain %q", r.stderr, want)
	}
	// With -lock-timeout it waits for the holder to finish.
	stdin.Write([]byte("no\n"))
	orch(t, dir, nil, "plan", "-lock-timeout", "20s").want(t, 0)
}

// newOrchCmd prepares orch in dir with the same clean environment as orch().
func newOrchCmd(t *testing.T, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(orchBin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	return cmd
}

func TestStatusBeforeApply(t *testing.T) {
	dir := project(t, stack)
	r := orch(t, dir, nil, "status").want(t, 0)
	if !strings.Contains(r.stdout, "Nothing is managed by orch here yet") {
		t.Fatalf("status before any apply:\n%s\n%s", r.stdout, r.stderr)
	}
}

func TestSavedPlanCarriesItsVariables(t *testing.T) {
	dir := project(t, `variable "mode" {
  type    = string
  default = "default"
}

daemon "a" {
  command = ["/bin/sleep", "600"]
  env     = { MODE = var.mode }
}
`)
	planFile := filepath.Join(t.TempDir(), "p.plan")
	orch(t, dir, []string{"ORCH_VAR_mode=env"}, "plan", "-out", planFile).want(t, 0)
	r := orch(t, dir, nil, "apply", planFile, "-var", "mode=x").want(t, 1)
	if !strings.Contains(r.stderr, "a saved plan carries its own variables") {
		t.Fatalf("-var with a plan file:\n%s", r.stderr)
	}
	// Applied without ORCH_VAR_mode in the environment: the plan's own
	// value is used, or the plan would be stale.
	r = orch(t, dir, nil, "apply", planFile).want(t, 0)
	if !strings.Contains(r.stdout, "1 added") {
		t.Fatalf("apply of a saved plan:\n%s\n%s", r.stdout, r.stderr)
	}
	if r := orch(t, dir, []string{"ORCH_VAR_mode=env"}, "plan", "-detailed-exitcode").want(t, 0); !strings.Contains(r.stdout, "No changes") {
		t.Fatalf("the saved plan did not apply MODE=env:\n%s", r.stdout)
	}
}

// registeredPids lists the pids of the daemons and jobs the log daemon of
// stateDir registered: the handles in its registry name every process the
// process runtime started there, whatever the state or the configuration
// now say.
func registeredPids(stateDir string) []int {
	var pids []int
	b, err := os.ReadFile(filepath.Join(stateDir, "logs", "logd.registry"))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		var sc struct {
			Handle json.RawMessage `json:"handle"`
		}
		var h struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal([]byte(line), &sc) == nil && json.Unmarshal(sc.Handle, &h) == nil && h.Pid > 0 {
			pids = append(pids, h.Pid)
		}
	}
	return pids
}

// A daemon whose start failed (its program is missing) has no process to
// observe: orch status shows it missing, with its status failed and why,
// not unknown (which says that its runtime cannot be asked).
func TestStatusOfAFailedStart(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
daemon "db" {
  command = ["/nonexistent/orch-test/missing-program"]
}
`})
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	if !strings.Contains(r.stderr, "missing-program") {
		t.Fatalf("apply of a missing program:\n%s", r.stderr)
	}
	st := status(t, dir)["daemon.db"]
	if st.State != "missing" || st.Status != "failed" || st.Pid != 0 {
		t.Errorf("status of a failed start: %+v, want missing and failed", st)
	}
	orch(t, dir, nil, "destroy", "-auto-approve").want(t, 0)
}
