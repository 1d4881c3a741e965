package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate"
	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
)

func init() { etcdstate.Register() }

// etcdEnv is the ORCH_BACKEND setting naming the cluster's etcd, at
// prefix.
func etcdEnv(c *etcdtest.Cluster, prefix string) string {
	var hosts []string
	for _, ep := range c.Endpoints() {
		hosts = append(hosts, strings.TrimPrefix(ep, "http://"))
	}
	return "ORCH_BACKEND=etcd://" + strings.Join(hosts, ",") + prefix
}

// TestStateMigrate1000 moves the state of 1,000 applied jobs from the
// state file to etcd and back, with orch state migrate, and checks that
// orch plan prints the same bytes before and after each move.
func TestStateMigrate1000(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cfg := "orch {\n  name = \"mig\"\n}\njob \"j\" {\n  count   = 1000\n  command = [\"/bin/true\"]\n}\n"
	dir := project(t, cfg)
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	// A plan that reads every record: 990 to replace (their stored
	// configuration is shown), 10 to destroy.
	changed := strings.Replace(strings.Replace(cfg, "1000", "990", 1), `["/bin/true"]`, `["/bin/true", "again"]`, 1)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	before := orch(t, dir, nil, "plan", "-no-color").want(t, 0).stdout
	if !strings.Contains(before, "Plan: 0 to add, 0 to change, 990 to replace, 10 to destroy.") {
		t.Fatalf("plan before:\n%s", tail(before, 2000))
	}
	beforeJSON := orch(t, dir, nil, "plan", "-json").want(t, 0).stdout

	env := []string{etcdEnv(c, "/orch/mig")}
	out := orch(t, dir, env, "state", "migrate", "-to", "etcd").want(t, 0).stdout
	if !strings.Contains(out, "Moved 1000 records to etcd") {
		t.Fatalf("migrate -to etcd: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".orch", "state.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state.db still there after the migration: %v", err)
	}
	if got := orch(t, dir, env, "plan", "-no-color").want(t, 0).stdout; got != before {
		t.Fatalf("plan on etcd differs from the plan on the file:\n%s", firstDiff(before, got))
	}
	if got := orch(t, dir, env, "plan", "-json").want(t, 0).stdout; got != beforeJSON {
		t.Fatalf("plan -json on etcd differs:\n%s", firstDiff(beforeJSON, got))
	}
	// Without the setting, the pointer in the state directory leads there.
	if got := orch(t, dir, nil, "plan", "-no-color").want(t, 0).stdout; got != before {
		t.Fatalf("plan through the pointer differs:\n%s", firstDiff(before, got))
	}
	if got := orch(t, dir, nil, "state", "list").want(t, 0).stdout; strings.Count(got, "\n") != 1000 {
		t.Fatalf("state list through the pointer: %d lines", strings.Count(got, "\n"))
	}
	// Again: the prefix holds a state now.
	r := orch(t, dir, env, "state", "migrate", "-to", "etcd").want(t, 1)
	if !strings.Contains(r.stderr, "already in etcd") {
		t.Fatalf("second migrate -to etcd: %s", r.stderr)
	}

	out = orch(t, dir, nil, "state", "migrate", "-to", "file").want(t, 0).stdout
	if !strings.Contains(out, "Moved 1000 records to ") {
		t.Fatalf("migrate -to file: %s", out)
	}
	if got := orch(t, dir, nil, "plan", "-no-color").want(t, 0).stdout; got != before {
		t.Fatalf("plan on the file again differs:\n%s", firstDiff(before, got))
	}
	if got := orch(t, dir, nil, "plan", "-json").want(t, 0).stdout; got != beforeJSON {
		t.Fatalf("plan -json on the file again differs:\n%s", firstDiff(beforeJSON, got))
	}
	// The etcd prefix says where the state went; with ORCH_BACKEND still
	// set, orch refuses rather than start an empty state there.
	r = orch(t, dir, env, "plan").want(t, 1)
	if !strings.Contains(r.stderr, "still in") {
		t.Fatalf("plan with ORCH_BACKEND after moving back: %s", r.stderr)
	}
	orch(t, dir, nil, "state", "check").want(t, 0)
}

// TestEtcdLockHolderNamed: while another process holds the etcd lock,
// orch apply fails at once naming it, or waits with -lock-timeout.
func TestEtcdLockHolderNamed(t *testing.T) {
	c := etcdtest.Start(t, 3)
	dir := project(t, "orch {\n  name = \"lk\"\n}\njob \"j\" {\n  command = [\"/bin/true\"]\n}\n")
	env := []string{etcdEnv(c, "/orch/lk")}
	orch(t, dir, env, "apply", "-auto-approve").want(t, 0)

	cfg := state.BackendConfig{Kind: etcdstate.Kind, Endpoints: c.Endpoints(), Prefix: "/orch/lk"}
	holder, err := etcdstate.Open(cfg, state.Options{Operation: "apply"}, false)
	if err != nil {
		t.Fatal(err)
	}
	r := orch(t, dir, env, "apply", "-auto-approve").want(t, 1)
	if !strings.Contains(r.stderr, fmt.Sprintf("state locked by pid %d", os.Getpid())) || !strings.Contains(r.stderr, "/orch/lk/lock") {
		t.Fatalf("second apply: %s", r.stderr)
	}
	go func() {
		time.Sleep(time.Second)
		holder.Close()
	}()
	orch(t, dir, env, "apply", "-auto-approve", "-lock-timeout", "30s").want(t, 0)
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d lines", len(al), len(bl))
}

// TestEtcdMemberAndQuorumLoss runs orch apply with the state in etcd
// (declared in HCL) while members go away: with one of three killed,
// apply goes on; with two, apply refuses to change anything (no new
// daemon starts) and the running daemons keep running; once the members
// are back, apply goes on with the same daemons.
func TestEtcdMemberAndQuorumLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := `"` + strings.Join(c.Endpoints(), `", "`) + `"`
	head := "orch {\n  name = \"q\"\n  backend \"etcd\" {\n    endpoints = [" + eps + "]\n    lock_ttl = \"2s\"\n  }\n}\n"
	daemon := func(name string) string {
		return "daemon \"" + name + "\" {\n  command = [\"/bin/sleep\", \"600\"]\n  stop {\n    timeout = \"2s\"\n  }\n}\n"
	}
	dir := project(t, head+daemon("a"))
	write := func(cfg string) {
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	pidA := status(t, dir)["daemon.a"].Pid
	if !alive(pidA) {
		t.Fatalf("daemon.a not running: pid %d", pidA)
	}

	c.Members[0].Stop()
	// When the stopped member led, the others elect a leader first; on a
	// busy machine that can take longer than orch's 5 s per request.
	if err := c.WaitHealthy(time.Minute); err != nil {
		t.Fatalf("the two members left never agreed: %v", err)
	}
	write(head + daemon("a") + daemon("b"))
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	pidB := status(t, dir)["daemon.b"].Pid
	if !alive(pidB) || status(t, dir)["daemon.a"].Pid != pidA {
		t.Fatalf("with one member down: a=%d b=%d", status(t, dir)["daemon.a"].Pid, pidB)
	}

	c.Members[1].Stop()
	before := len(registeredPids(filepath.Join(dir, ".orch")))
	write(head + daemon("a") + daemon("b") + daemon("c"))
	r := orch(t, dir, nil, "apply", "-auto-approve").want(t, 1)
	if !strings.Contains(r.stderr, "majority of the etcd members") {
		t.Fatalf("apply without quorum: %s", r.stderr)
	}
	if n := len(registeredPids(filepath.Join(dir, ".orch"))); n != before {
		t.Fatalf("apply without quorum started something: %d registered pids, %d before", n, before)
	}
	if !alive(pidA) || !alive(pidB) {
		t.Fatal("a daemon stopped while etcd had no quorum")
	}

	c.Members[0].Restart(t)
	c.Members[1].Restart(t)
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	orch(t, dir, nil, "apply", "-auto-approve").want(t, 0)
	st := status(t, dir)
	if st["daemon.a"].Pid != pidA || st["daemon.b"].Pid != pidB || !alive(st["daemon.c"].Pid) {
		t.Fatalf("after quorum came back: %+v", st)
	}
}

// TestEtcdPausedApplyIsFenced: an orch apply waiting at its prompt holds
// the etcd lock; it is paused (SIGSTOP) past its lease, another orch apply
// takes the lock and starts the daemon; the first, resumed (SIGCONT) and
// approved, starts nothing and writes nothing, naming the new holder.
// Exactly one process runs the daemon afterwards.
func TestEtcdPausedApplyIsFenced(t *testing.T) {
	c := etcdtest.Start(t, 3)
	eps := `"` + strings.Join(c.Endpoints(), `", "`) + `"`
	cfg := "orch {\n  name = \"fence\"\n  backend \"etcd\" {\n    endpoints = [" + eps + "]\n    lock_ttl = \"1s\"\n  }\n}\n" +
		"daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n  stop {\n    timeout = \"2s\"\n  }\n}\n"
	dir := project(t, cfg)

	first := exec.Command(orchBin, "apply")
	first.Dir = dir
	home := t.TempDir()
	first.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	stdin, _ := first.StdinPipe()
	var out syncBuffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Kill(); first.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Enter a value") {
		if time.Now().After(deadline) {
			t.Fatalf("the first apply never asked:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The second apply waits for the first's lease (1s) to lapse.
	orch(t, dir, nil, "apply", "-auto-approve", "-lock-timeout", "60s").want(t, 0)
	pid := status(t, dir)["daemon.a"].Pid
	pids := len(registeredPids(filepath.Join(dir, ".orch")))

	first.Process.Signal(syscall.SIGCONT)
	io.WriteString(stdin, "yes\n")
	err := first.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("the resumed apply: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "lock was lost") || !strings.Contains(out.String(), "Nothing was started or stopped") {
		t.Fatalf("the resumed apply's output:\n%s", out.String())
	}
	if n := len(registeredPids(filepath.Join(dir, ".orch"))); n != pids {
		t.Fatalf("the resumed apply started something: %d registered pids, %d before", n, pids)
	}
	st := status(t, dir)
	if st["daemon.a"].Pid != pid || !alive(pid) {
		t.Fatalf("daemon.a after the resumed apply: %+v (was pid %d)", st["daemon.a"], pid)
	}
	if r := orch(t, dir, nil, "plan", "-detailed-exitcode"); r.code != 0 {
		t.Fatalf("plan after: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
