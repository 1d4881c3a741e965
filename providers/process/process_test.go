package process_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// TestMain makes the test binary serve as orch's own command: the provider
// runs it as `<test binary> __exec ...` and `<test binary> __logd ...`.
// In "apply" mode it plays an `orch apply` that starts one daemon, prints
// its handle and exits, leaving the daemon (and logd) running.
func TestMain(m *testing.M) {
	if os.Getenv(process.HelperEnv) != "" {
		if code, ok := process.HelperMain(os.Args[1:]); ok {
			os.Exit(code)
		}
	}
	if os.Getenv("ORCH_TEST_APPLY") != "" {
		os.Exit(applyMain())
	}
	os.Exit(m.Run())
}

func applyMain() int {
	var r spec.Resource
	if err := json.Unmarshal([]byte(os.Getenv("ORCH_TEST_APPLY")), &r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r.Addr = spec.Address{Kind: spec.KindDaemon, Name: "writer"}
	p := process.New(process.Options{})
	resp, err := p.Start(context.Background(), providers.StartRequest{Resource: &r, StateDir: os.Getenv("ORCH_TEST_STATE")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(resp.Handle)
	return 0
}

// env is a test's provider and state directory; its cleanups stop every
// process the test started (by process group) and the log daemon (by the
// pid in its pid file).
type env struct {
	t     *testing.T
	p     *process.Provider
	state string
}

func newEnv(t *testing.T, opts process.Options) *env {
	t.Helper()
	e := &env{t: t, p: process.New(opts), state: t.TempDir()}
	t.Cleanup(func() { stopLogd(t, e.state) }) // runs before TempDir's removal
	return e
}

func stopLogd(t *testing.T, state string) {
	b, err := os.ReadFile(filepath.Join(state, "logs", "logd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, 5*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
}

func res(name string, cmd ...string) *spec.Resource {
	return &spec.Resource{
		Addr:    spec.Address{Kind: spec.KindDaemon, Name: name},
		Command: cmd,
		Umask:   spec.DefaultUmask,
		Log:     spec.Log{MaxSize: 1 << 20, MaxFiles: 3},
	}
}

func (e *env) start(r *spec.Resource) (providers.Handle, process.HandleInfo) {
	e.t.Helper()
	resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state, Project: "proj", ConfigHash: "hash-" + r.Addr.Name})
	if err != nil {
		e.t.Fatalf("start %s: %v", r.Addr, err)
	}
	hi, err := process.ParseHandle(resp.Handle)
	if err != nil {
		e.t.Fatal(err)
	}
	killGroupAtCleanup(e.t, hi.Pgid)
	if resp.Observed.State != providers.StateRunning || resp.Observed.Pid != hi.Pid {
		e.t.Fatalf("start observed %+v", resp.Observed)
	}
	return resp.Handle, hi
}

func killGroupAtCleanup(t *testing.T, pgid int) {
	g := daemonCgroup(pgid)
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		waitGone(pgid, 5*time.Second)
		if g != nil {
			g.Remove()
		}
	})
}

// stat returns the state, pgid, sid and start time of pid from /proc.
func stat(pid int) (state byte, pgid, sid int, start uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	pgid, _ = strconv.Atoi(f[2])
	sid, _ = strconv.Atoi(f[3])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], pgid, sid, start, true
}

func alive(pid int) bool {
	st, _, _, _, ok := stat(pid)
	return ok && st != 'Z' && st != 'X'
}

func waitGone(pid int, d time.Duration) bool {
	return poll(d, func() bool { return !alive(pid) })
}

// poll calls cond until it holds or d passes.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, g, _, _, ok := stat(pid); ok && g == pgid && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readLog(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func waitLog(t *testing.T, path, want string) {
	t.Helper()
	if !poll(10*time.Second, func() bool { return strings.Contains(readLog(t, path), want) }) {
		t.Fatalf("log %s never contained %q; it has:\n%s", path, want, readLog(t, path))
	}
}

func addr(name string) spec.Address { return spec.Address{Kind: spec.KindDaemon, Name: name} }

func TestStartObserveStop(t *testing.T) {
	e := newEnv(t, process.Options{})
	r := res("sleeper", "sleep", "60")
	r.Env = map[string]string{"GREETING": "hello"}
	h, hi := e.start(r)
	// The log exists once the start returns (logd opens it before it
	// answers), though the daemon wrote nothing yet.
	if _, err := os.Stat(filepath.Join(e.state, "logs", "daemon.sleeper.log")); err != nil {
		t.Fatalf("log after start: %v", err)
	}

	if _, pgid, sid, _, _ := stat(hi.Pid); pgid != hi.Pid || sid != hi.Pid {
		t.Fatalf("daemon pgid %d sid %d, want its own session and group %d", pgid, sid, hi.Pid)
	}
	envb, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", hi.Pid))
	if err != nil {
		t.Fatal(err)
	}
	gotEnv := strings.Split(strings.TrimRight(string(envb), "\x00"), "\x00")
	wantEnv := []string{"GREETING=hello", "PATH=" + os.Getenv("PATH")}
	if strings.Join(gotEnv, "\n") != strings.Join(wantEnv, "\n") {
		t.Fatalf("daemon env %q, want exactly %q", gotEnv, wantEnv)
	}

	obs, err := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{addr("sleeper"): h}})
	if err != nil {
		t.Fatal(err)
	}
	if o := obs.Objects[addr("sleeper")]; o.State != providers.StateRunning || o.Pid != hi.Pid || o.StartedAt.IsZero() {
		t.Fatalf("observed %+v", o)
	}

	sresp, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("sleeper"), Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sresp.Killed || sresp.Observed.State != providers.StateExited || sresp.Observed.Signal != "SIGTERM" {
		t.Fatalf("stop: %+v", sresp)
	}
	if alive(hi.Pid) {
		t.Fatal("daemon still alive after stop")
	}
	obs, _ = e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{addr("sleeper"): h}})
	if o := obs.Objects[addr("sleeper")]; o.State == providers.StateRunning {
		t.Fatalf("observed after stop %+v", o)
	}
	// Stop is idempotent.
	if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("sleeper"), Handle: h, Signal: spec.SIGTERM, Timeout: time.Second}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	// Delete drops the registry entry (Adopt no longer finds it), keeps
	// the log.
	if _, err := e.p.Delete(context.Background(), providers.DeleteRequest{Addr: addr("sleeper"), Handle: h}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.p.Adopt(context.Background(), providers.AdoptRequest{StateDir: e.state}); err != nil || len(got.Objects) != 0 {
		t.Errorf("adopt after delete: %+v, %v", got.Objects, err)
	}
	if _, err := os.Stat(filepath.Join(e.state, "logs", "daemon.sleeper.log")); err != nil {
		t.Errorf("log removed by delete: %v", err)
	}
	// A start creates no file but its log: the logs directory holds the
	// log, the registry and logd's own files only.
	names, _ := filepath.Glob(filepath.Join(e.state, "logs", "daemon.*"))
	if len(names) != 1 || filepath.Base(names[0]) != "daemon.sleeper.log" {
		t.Errorf("daemon files in logs: %v", names)
	}
}

func TestExitCodeOfChild(t *testing.T) {
	e := newEnv(t, process.Options{})
	h, _ := e.start(res("fails", "sh", "-c", "echo bye; exit 3"))
	var o providers.Observed
	ok := poll(10*time.Second, func() bool {
		obs, _ := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{addr("fails"): h}})
		o = obs.Objects[addr("fails")]
		return o.State == providers.StateExited
	})
	if !ok || o.ExitCode != 3 || o.Signal != "" {
		t.Fatalf("observed %+v, want exited with code 3", o)
	}
	waitLog(t, filepath.Join(e.state, "logs", "daemon.fails.log"), "bye\n")
}

func TestStopKillsGroupAfterTimeout(t *testing.T) {
	t.Run("child", func(t *testing.T) { testStopKillsGroup(t, false) })
	// A Provider that did not start it waits on a pidfd instead.
	t.Run("adopted", func(t *testing.T) { testStopKillsGroup(t, true) })
}

func testStopKillsGroup(t *testing.T, fresh bool) {
	e := newEnv(t, process.Options{})
	// sh ignores SIGTERM and so do its children (an ignored signal stays
	// ignored across exec): a grandchild in the background, one in front.
	h, hi := e.start(res("stubborn", "sh", "-c", `trap "" TERM; sleep 1000 & sleep 1000; echo never`))
	var members []int
	if !poll(10*time.Second, func() bool { members = groupMembers(hi.Pgid); return len(members) >= 3 }) {
		t.Fatalf("group %d has members %v, want sh and two sleeps", hi.Pgid, members)
	}
	p := e.p
	if fresh {
		p = process.New(process.Options{})
	}
	resp, err := p.Stop(context.Background(), providers.StopRequest{Addr: addr("stubborn"), Handle: h, Signal: spec.SIGTERM, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Killed || (!fresh && resp.Observed.Signal != "SIGKILL") {
		t.Fatalf("stop: %+v, want killed by SIGKILL", resp)
	}
	for _, pid := range members {
		if !waitGone(pid, 5*time.Second) {
			t.Errorf("group member %d survived stop", pid)
		}
	}
}

func TestStopSweepsGroupWhenLeaderExited(t *testing.T) {
	e := newEnv(t, process.Options{})
	// The leader exits on SIGTERM; its background child ignores it.
	h, hi := e.start(res("leaver", "sh", "-c", `(trap "" TERM; exec sleep 1000) & sleep 1000`))
	var members []int
	// Both sleeps have been exec'd (so the subshell's trap is set: under
	// load, a SIGTERM before it would end the subshell too).
	sleeps := func() int {
		n := 0
		for _, pid := range members {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "sleep" {
				n++
			}
		}
		return n
	}
	if !poll(10*time.Second, func() bool { members = groupMembers(hi.Pgid); return len(members) >= 3 && sleeps() >= 2 }) {
		t.Fatalf("group %d has members %v", hi.Pgid, members)
	}
	resp, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("leaver"), Handle: h, Signal: spec.SIGTERM, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Killed {
		t.Fatalf("stop: %+v, want the lingering member killed", resp)
	}
	if m := groupMembers(hi.Pgid); len(m) > 0 {
		t.Fatalf("members %v left", m)
	}
}

func TestMissingProgram(t *testing.T) {
	e := newEnv(t, process.Options{})
	notExec := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"/no/such/prog", []string{`"/no/such/prog"`, "no such file"}},
		{"no-such-prog-orch", []string{`"no-such-prog-orch"`, "not found", "PATH"}},
		{notExec, []string{strconv.Quote(notExec), "not executable"}},
		{"/tmp", []string{`"/tmp"`, "directory"}},
	} {
		_, err := e.p.Start(context.Background(), providers.StartRequest{Resource: res("ghost", tc.cmd), StateDir: e.state})
		if err == nil {
			t.Fatalf("start %s: no error", tc.cmd)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("start %s: error %q does not mention %s", tc.cmd, err, w)
			}
		}
		if providers.IsRetryable(err) {
			t.Errorf("start %s: a missing program is not retryable", tc.cmd)
		}
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Attr != "command" {
			t.Errorf("start %s: the error does not blame the command attribute: %#v", tc.cmd, err)
		}
	}
	r := res("nodir", "sleep", "1")
	r.Dir = "/no/such/dir"
	var pe *providers.Error
	if _, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state}); err == nil || !strings.Contains(err.Error(), "/no/such/dir") || !errors.As(err, &pe) || pe.Attr != "dir" {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestUmaskAndRlimits(t *testing.T) {
	e := newEnv(t, process.Options{})
	r := res("limited", "sh", "-c", "umask; ulimit -n; exec sleep 60")
	r.Umask = 0o027
	r.Rlimits = map[string]uint64{"nofile": 1234}
	_, hi := e.start(r)
	log := filepath.Join(e.state, "logs", "daemon.limited.log")
	waitLog(t, log, "0027\n1234\n")

	// After exec: the same pid, now sleep, keeps them.
	if !poll(10*time.Second, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", hi.Pid))
		return string(b) == "sleep\n"
	}) {
		t.Fatal("sh never exec'd sleep")
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", hi.Pid))
	if !strings.Contains(string(status), "Umask:\t0027") {
		t.Errorf("status: %s", status)
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", hi.Pid))
	if !strings.Contains(strings.Join(strings.Fields(string(limits)), " "), "Max open files 1234 1234") {
		t.Errorf("limits: %s", limits)
	}

	// A limit the kernel refuses is an error from Start, not a dead process.
	r2 := res("overlimit", "sleep", "60")
	r2.Rlimits = map[string]uint64{"nofile": 1 << 40}
	_, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r2, StateDir: e.state})
	if err == nil || !strings.Contains(err.Error(), "setrlimit nofile") {
		t.Fatalf("over-limit start: %v", err)
	}
}

func TestUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	e := newEnv(t, process.Options{})
	for _, umask := range []os.FileMode{spec.DefaultUmask, 0o077} { // direct, then through the wrapper
		r := res("nobody", "sleep", "60")
		r.User = "nobody"
		r.Umask = umask
		h, hi := e.start(r)
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", hi.Pid))
		if !strings.Contains(string(status), "Uid:\t"+u.Uid+"\t") {
			t.Errorf("umask %o: status: %s", umask, status)
		}
		e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("nobody"), Handle: h, Signal: spec.SIGTERM, Timeout: 5 * time.Second})
	}
	// A working directory the user may not enter: the error says so,
	// beside the kernel's "permission denied".
	closed := t.TempDir() // 0700, root's
	for _, umask := range []os.FileMode{spec.DefaultUmask, 0o077} {
		r := res("shut", "sleep", "60")
		r.User, r.Dir, r.Umask = "nobody", closed, umask
		resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state})
		if err == nil {
			e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("shut"), Handle: resp.Handle, Signal: spec.SIGTERM, Timeout: 5 * time.Second})
		}
		var pe *providers.Error
		shut := filepath.Dir(closed) // t.TempDir's parent, 0700 too
		if err == nil || !errors.As(err, &pe) || pe.Attr != "user" ||
			!strings.Contains(err.Error(), "the working directory "+closed+" is not open to user nobody: "+shut+" (mode drwx------, owner root) cannot be entered") {
			t.Errorf("umask %o: start as nobody in a directory closed to it: %v", umask, err)
		}
	}
	r := res("nouser", "sleep", "60")
	r.User = "no-such-user-orch"
	if _, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state}); err == nil || !strings.Contains(err.Error(), "no-such-user-orch") {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestSignal(t *testing.T) {
	e := newEnv(t, process.Options{})
	h, hi := e.start(res("hup", "sh", "-c", `trap "echo got HUP" HUP; echo ready; while :; do sleep 0.05; done`))
	log := filepath.Join(e.state, "logs", "daemon.hup.log")
	waitLog(t, log, "ready\n")
	if ign := sigMask(t, hi.Pid, "SigIgn"); ign&(1<<(syscall.SIGHUP-1)) != 0 {
		t.Fatalf("the daemon ignores SIGHUP (SigIgn %x)", ign)
	}
	hup, _ := spec.ParseSignal("HUP")
	if _, err := e.p.Signal(context.Background(), providers.SignalRequest{Addr: addr("hup"), Handle: h, Signal: hup}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "got HUP\n")
	lr, err := e.p.Logs(context.Background(), providers.LogsRequest{Addr: addr("hup"), Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(lr.Log)
	lr.Log.Close()
	if !strings.HasPrefix(string(b), "ready\n") {
		t.Fatalf("Logs: %q", b)
	}
}

func TestReusedPidIsNotOurs(t *testing.T) {
	e := newEnv(t, process.Options{})
	// A process that is not ours, in its own group.
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	_, _, _, start, ok := stat(pid)
	if !ok {
		t.Fatal("no stat")
	}
	h := process.HandleInfo{Pid: pid, StartTicks: start + 1, Pgid: pid}.Encode()
	obs, _ := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{addr("x"): h}})
	if o := obs.Objects[addr("x")]; o.State != providers.StateMissing {
		t.Fatalf("reused pid observed as %v", o.State)
	}
	kill, _ := spec.ParseSignal("KILL")
	resp, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: addr("x"), Handle: h, Signal: kill, Timeout: time.Second})
	if err != nil || resp.Killed {
		t.Fatalf("stop of a reused pid: %+v %v", resp, err)
	}
	if _, err := e.p.Signal(context.Background(), providers.SignalRequest{Addr: addr("x"), Handle: h, Signal: kill}); err == nil {
		t.Fatal("signal of a reused pid succeeded")
	}
	if !alive(pid) {
		t.Fatal("the stranger was killed")
	}
	// The same pid with its true start time is running.
	h = process.HandleInfo{Pid: pid, StartTicks: start, Pgid: pid}.Encode()
	obs, _ = e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{addr("x"): h}})
	if o := obs.Objects[addr("x")]; o.State != providers.StateRunning {
		t.Fatalf("true handle observed as %v", o.State)
	}
}

// handles1000 starts four sleeps and makes 1000 handles: half on the live
// ones, a quarter with a wrong start time, a quarter on free pids.
func handles1000(e *env) map[spec.Address]providers.Handle {
	var live []process.HandleInfo
	for i := 0; i < 4; i++ {
		_, hi := e.start(res("s"+strconv.Itoa(i), "sleep", "600"))
		live = append(live, hi)
	}
	pidMax := 4194304
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		pidMax, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	hs := map[spec.Address]providers.Handle{}
	for i := 0; i < 1000; i++ {
		hi := live[i%4]
		switch {
		case i >= 750:
			hi = process.HandleInfo{Pid: pidMax - 1 - i, StartTicks: 1, Pgid: pidMax - 1 - i}
		case i >= 500:
			hi.StartTicks++
		}
		hs[spec.Address{Kind: spec.KindDaemon, Name: "d", Key: spec.IntKey(i)}] = hi.Encode()
	}
	return hs
}

func TestObserve1000(t *testing.T) {
	e := newEnv(t, process.Options{})
	hs := handles1000(e)
	obs, err := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: hs})
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Objects) != 1000 {
		t.Fatalf("%d objects", len(obs.Objects))
	}
	for a, o := range obs.Objects {
		want := providers.StateRunning
		if a.Key.Int >= 500 {
			want = providers.StateMissing
		}
		if o.State != want {
			t.Fatalf("%s: %v, want %v", a, o.State, want)
		}
	}
}

func TestAdoptAfterRestart(t *testing.T) {
	e := newEnv(t, process.Options{})
	h1, _ := e.start(res("a", "sleep", "60"))
	e.start(res("b", "sleep", "60"))

	fresh := process.New(process.Options{}) // orch restarted: knows nothing
	got, err := fresh.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: e.state})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Objects) != 2 || got.Objects[0].Addr != addr("a") || got.Objects[1].Addr != addr("b") ||
		got.Objects[0].ConfigHash != "hash-a" || got.Objects[0].Observed.State != providers.StateRunning {
		t.Fatalf("adopt: %+v", got.Objects)
	}
	if string(got.Objects[0].Handle) != string(h1) {
		t.Fatalf("adopted handle %s, want %s", got.Objects[0].Handle, h1)
	}
	// What the state knows is left out (orch observes it from its handle).
	known := func(a spec.Address) bool { return a == addr("a") }
	if got, err := fresh.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: e.state, Known: known}); err != nil ||
		len(got.Objects) != 1 || got.Objects[0].Addr != addr("b") {
		t.Fatalf("adopt with a known: %+v, %v", got.Objects, err)
	}
	// The fresh instance stops what it did not start (pidfd wait); how
	// it ended is not its to know.
	sresp, err := fresh.Stop(context.Background(), providers.StopRequest{Addr: addr("a"), Handle: h1, Signal: spec.SIGTERM, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sresp.Observed.State != providers.StateMissing || sresp.Observed.Ended() != "its exit status is unknown" {
		t.Fatalf("stop of an adopted daemon: %+v (%s), want its exit status unknown", sresp.Observed, sresp.Observed.Ended())
	}
	got, _ = fresh.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: e.state})
	if len(got.Objects) != 1 || got.Objects[0].Addr != addr("b") {
		t.Fatalf("adopt after stop: %+v", got.Objects)
	}
	got, _ = fresh.Adopt(context.Background(), providers.AdoptRequest{Project: "other", StateDir: e.state})
	if len(got.Objects) != 0 {
		t.Fatalf("adopt of another project: %+v", got.Objects)
	}
}

// TestLogsOutliveOrch plays `orch apply` in another process that starts a
// chatty daemon and exits; the log keeps growing and rotating without it.
func TestLogsOutliveOrch(t *testing.T) {
	state := t.TempDir()
	t.Cleanup(func() { stopLogd(t, state) })
	r := spec.Resource{
		Command: []string{"sh", "-c", `i=0; while :; do echo "line $i ................................................"; i=$((i+1)); sleep 0.002; done`},
		Umask:   spec.DefaultUmask,
		Log:     spec.Log{MaxSize: 4096, MaxFiles: 2},
	}
	rj, _ := json.Marshal(r)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ORCH_TEST_APPLY="+string(rj), "ORCH_TEST_STATE="+state)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	hi, err := process.ParseHandle(out)
	if err != nil {
		t.Fatal(err)
	}
	killGroupAtCleanup(t, hi.Pgid)

	logs := filepath.Join(state, "logs")
	pidb, err := os.ReadFile(filepath.Join(logs, "logd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	logd, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if _, _, sid, _, ok := stat(logd); !ok || sid != logd {
		t.Fatalf("logd %d is not its own session leader (sid %d)", logd, sid)
	}
	// Two rotations at least: .log.1 and .log.2 exist, never .log.3.
	base := filepath.Join(logs, "daemon.writer.log")
	if !poll(20*time.Second, func() bool {
		_, err := os.Stat(base + ".2")
		return err == nil
	}) {
		t.Fatal("log never rotated twice")
	}
	lastLine := func(path string) int {
		f, err := os.Open(path)
		if err != nil {
			return -1
		}
		defer f.Close()
		n := -1
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "line %d", &i); err == nil {
				n = i
			}
		}
		return n
	}
	seen := lastLine(base + ".1")
	if !poll(20*time.Second, func() bool { return lastLine(base+".1") > seen }) {
		t.Fatal("log stopped rotating after orch exited")
	}
	if _, err := os.Stat(base + ".3"); err == nil {
		t.Fatal(".log.3 exists with max_files = 2")
	}
	for _, f := range []string{base + ".1", base + ".2"} {
		b, _ := os.ReadFile(f)
		if len(b) > 4096 || len(b) == 0 {
			t.Errorf("%s has %d bytes, want 1..4096", f, len(b))
		}
		if !strings.HasPrefix(string(b), "line ") || !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s does not hold whole lines", f)
		}
	}
}

// TestLogdIdleExitAndRestart lets logd exit once no daemon writes, then
// starts another daemon: a new logd serves it.
func TestLogdIdleExitAndRestart(t *testing.T) {
	e := newEnv(t, process.Options{LogdIdle: 100 * time.Millisecond})
	e.start(res("once", "sh", "-c", "echo first"))
	logs := filepath.Join(e.state, "logs")
	waitLog(t, filepath.Join(logs, "daemon.once.log"), "first\n")
	pidb, _ := os.ReadFile(filepath.Join(logs, "logd.pid"))
	first, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if first == 0 || !waitGone(first, 10*time.Second) {
		t.Fatalf("logd %d did not exit when idle", first)
	}
	e.start(res("twice", "sh", "-c", "echo second; exec sleep 60"))
	waitLog(t, filepath.Join(logs, "daemon.twice.log"), "second\n")
}

func BenchmarkStart(b *testing.B) {
	e := &env{p: process.New(process.Options{}), state: b.TempDir()}
	b.Cleanup(func() { stopLogd(nil, e.state) })
	r := res("bench", "sleep", "600")
	kill, _ := spec.ParseSignal("KILL")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: resp.Handle, Signal: kill, Timeout: 5 * time.Second}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObserve1000(b *testing.B)  { benchObserve(b, 1000) }
func BenchmarkObserve10000(b *testing.B) { benchObserve(b, 10000) }

// benchObserve observes n handles spread over four live sleeps.
func benchObserve(b *testing.B, n int) {
	e := &env{p: process.New(process.Options{}), state: b.TempDir()}
	b.Cleanup(func() { stopLogd(nil, e.state) })
	var pgids []int
	hs := map[spec.Address]providers.Handle{}
	for i := 0; i < 4; i++ {
		resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: res("s"+strconv.Itoa(i), "sleep", "600"), StateDir: e.state})
		if err != nil {
			b.Fatal(err)
		}
		hi, _ := process.ParseHandle(resp.Handle)
		pgids = append(pgids, hi.Pgid)
		for j := 0; j < n/4; j++ {
			hs[spec.Address{Kind: spec.KindDaemon, Name: "d", Key: spec.IntKey(i*n/4 + j)}] = resp.Handle
		}
	}
	b.Cleanup(func() {
		for _, g := range pgids {
			killGroup(g)
		}
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: hs}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLogdHandoverUnderChurn starts short-lived daemons from several
// goroutines while logd keeps exiting when idle: no daemon's output is
// lost between one logd and the next.
func TestLogdHandoverUnderChurn(t *testing.T) {
	e := newEnv(t, process.Options{LogdIdle: 5 * time.Millisecond})
	const workers, each = 4, 10
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				name := fmt.Sprintf("churn%d_%d", w, i)
				r := res(name, "sh", "-c", "echo out-"+name)
				resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state})
				if err != nil {
					errs <- err
					return
				}
				hi, _ := process.ParseHandle(resp.Handle)
				killGroupAtCleanup(t, hi.Pgid)
				if i%3 == 0 {
					time.Sleep(time.Duration(i) * time.Millisecond) // vary the interleaving with logd's exits
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for w := 0; w < workers; w++ {
		for i := 0; i < each; i++ {
			name := fmt.Sprintf("churn%d_%d", w, i)
			waitLog(t, filepath.Join(e.state, "logs", "daemon."+name+".log"), "out-"+name+"\n")
		}
	}
}

// TestLogdKilledLosesNoDaemon: a log daemon killed with SIGKILL while a
// daemon writes leaves that daemon running (its pipe is read-write for it:
// no SIGPIPE; it holds what is written meanwhile), and the next log daemon
// takes its pipe back from the registry and /proc: the log goes on, with
// the lines written in between.
func TestLogdKilledLosesNoDaemon(t *testing.T) {
	e := newEnv(t, process.Options{})
	r := res("chatty", "sh", "-c", `i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.01; done`)
	_, hi := e.start(r)
	logs := filepath.Join(e.state, "logs")
	logPath := filepath.Join(logs, "daemon.chatty.log")
	waitLog(t, logPath, "tick 3\n")
	pidb, _ := os.ReadFile(filepath.Join(logs, "logd.pid"))
	first, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if first == 0 {
		t.Fatal("no logd pid")
	}
	syscall.Kill(first, syscall.SIGKILL)
	if !waitGone(first, 10*time.Second) {
		t.Fatalf("logd %d survived SIGKILL", first)
	}
	before, _ := os.ReadFile(logPath)
	// The daemon goes on writing, into its pipe, with nobody reading: wait
	// until the pipe holds something (FIONREAD through a reader of its own
	// that reads nothing).
	pipe, err := unix.Open(fmt.Sprintf("/proc/%d/fd/1", hi.Pid), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !poll(10*time.Second, func() bool {
		n, err := unix.IoctlGetInt(pipe, unix.TIOCINQ) // FIONREAD
		return err == nil && n > 0
	}) {
		t.Fatal("nothing written into the pipe while no log daemon read it")
	}
	unix.Close(pipe)
	if !alive(hi.Pid) {
		t.Fatal("the daemon died with its log daemon")
	}
	// The next start brings a log daemon back; it recovers the pipe.
	e.start(res("other", "sh", "-c", "echo other; exec sleep 60"))
	waitLog(t, filepath.Join(logs, "daemon.other.log"), "other\n")
	if !poll(10*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return len(b) > len(before)+200
	}) {
		t.Fatal("the chatty daemon's log stopped with the killed log daemon")
	}
	// Nothing was lost in between: the ticks are consecutive.
	b, _ := os.ReadFile(logPath)
	want := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line != fmt.Sprintf("tick %d", want) {
			t.Fatalf("line %q where %q was due", line, fmt.Sprintf("tick %d", want))
		}
		want++
	}
}

// An orch started with SIGHUP ignored (nohup) starts its daemons with
// the default disposition: the daemon can trap SIGHUP, and orch signal
// reaches it (it was ignored across exec, and a shell cannot trap a
// signal ignored on entry).
func TestDaemonsDoNotInheritIgnoredSignals(t *testing.T) {
	signal.Ignore(syscall.SIGHUP)
	// Reset leaves the kernel's disposition ignored while Go's
	// bookkeeping says it is not: a later New must still give its
	// daemons the default (TestSignal after this test, -count=2).
	t.Cleanup(func() { signal.Reset(syscall.SIGHUP) })
	e := newEnv(t, process.Options{})
	h, hi := e.start(res("hup", "sh", "-c", `trap "echo got HUP" HUP; echo ready; while :; do sleep 0.05; done`))
	log := filepath.Join(e.state, "logs", "daemon.hup.log")
	waitLog(t, log, "ready\n")
	if ign := sigMask(t, hi.Pid, "SigIgn"); ign&(1<<(syscall.SIGHUP-1)) != 0 {
		t.Errorf("the daemon ignores SIGHUP (SigIgn %x)", ign)
	}
	hup, _ := spec.ParseSignal("HUP")
	if _, err := e.p.Signal(context.Background(), providers.SignalRequest{Addr: addr("hup"), Handle: h, Signal: hup}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "got HUP\n")
}

// sigMask reads a signal mask (SigIgn, SigCgt, ...) of pid.
func sigMask(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestPresignal: Presignal sends each daemon its stop signal at once (a
// sleep is gone before its Stop is called), and the Stop that follows
// does not send it a second time (a daemon that logs each SIGTERM and
// lingers a second after the first logs one).
func TestPresignal(t *testing.T) {
	e := newEnv(t, process.Options{})
	lingerer := `trap 'echo term; n=1' TERM; echo ready; while [ -z "$n" ]; do sleep 0.02; done; i=0; while [ $i -lt 50 ]; do sleep 0.02; i=$((i+1)); done`
	type started struct {
		name string
		h    providers.Handle
		hi   process.HandleInfo
	}
	var ds []started
	for _, name := range []string{"t1", "t2"} {
		h, hi := e.start(res(name, "sh", "-c", lingerer))
		waitLog(t, filepath.Join(e.state, "logs", "daemon."+name+".log"), "ready\n")
		ds = append(ds, started{name, h, hi})
	}
	h, hi := e.start(res("plain", "sleep", "600"))
	ds = append(ds, started{"plain", h, hi})
	var reqs []providers.StopRequest
	for _, d := range ds {
		reqs = append(reqs, providers.StopRequest{Addr: addr(d.name), Handle: d.h, Signal: spec.SIGTERM, Timeout: 10 * time.Second})
	}
	e.p.Presignal(context.Background(), reqs)
	if !waitGone(hi.Pid, 10*time.Second) {
		t.Fatalf("the sleep (pid %d) still runs after Presignal", hi.Pid)
	}
	for _, r := range reqs {
		resp, err := e.p.Stop(context.Background(), r)
		if err != nil {
			t.Fatalf("stop %s: %v", r.Addr, err)
		}
		if resp.Killed {
			t.Errorf("%s was killed: its SIGTERM was not sent", r.Addr)
		}
	}
	for _, d := range ds[:2] {
		// (sh may also say "Terminated" of its sleep, in the same group.)
		if got := readLog(t, filepath.Join(e.state, "logs", "daemon."+d.name+".log")); strings.Count(got, "term\n") != 1 {
			t.Errorf("%s logged %q, want one SIGTERM (one term line)", d.name, got)
		}
	}
}

// TestPresignalAdopted: a Provider that did not start a daemon (orch up
// after orch apply) presignals it too, once it has found the pid still
// its own; its Stop then sends nothing more. A daemon that ignores its
// signal is killed when the timeout counted from the presignal ends: the
// Stop, called after that, does not wait a timeout of its own (its
// context ends before one would pass).
func TestPresignalAdopted(t *testing.T) {
	e := newEnv(t, process.Options{})
	lingerer := `trap 'echo term; n=1' TERM; echo ready; while [ -z "$n" ]; do sleep 0.02; done; i=0; while [ $i -lt 50 ]; do sleep 0.02; i=$((i+1)); done`
	deaf := `trap 'echo term' TERM; echo ready; while :; do sleep 0.02; done`
	h1, _ := e.start(res("linger", "sh", "-c", lingerer))
	h2, hi2 := e.start(res("deaf", "sh", "-c", deaf))
	for _, n := range []string{"linger", "deaf"} {
		waitLog(t, filepath.Join(e.state, "logs", "daemon."+n+".log"), "ready\n")
	}
	other := process.New(process.Options{}) // not their parent
	const timeout = 3 * time.Second
	reqs := []providers.StopRequest{
		{Addr: addr("linger"), Handle: h1, Signal: spec.SIGTERM, Timeout: timeout},
		{Addr: addr("deaf"), Handle: h2, Signal: spec.SIGTERM, Timeout: timeout},
	}
	other.Presignal(context.Background(), reqs)
	for _, n := range []string{"linger", "deaf"} {
		waitLog(t, filepath.Join(e.state, "logs", "daemon."+n+".log"), "term\n")
	}
	resp, err := other.Stop(context.Background(), reqs[0])
	if err != nil {
		t.Fatalf("stop linger: %v", err)
	}
	if resp.Killed {
		t.Error("linger was killed: its presignalled SIGTERM did not count")
	}
	if got := readLog(t, filepath.Join(e.state, "logs", "daemon.linger.log")); strings.Count(got, "term\n") != 1 {
		t.Errorf("linger logged %q, want one SIGTERM", got)
	}
	// Past the timeout since the presignal: the Stop kills at once.
	time.Sleep(timeout + 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), timeout-time.Second)
	defer cancel()
	resp, err = other.Stop(ctx, reqs[1])
	if err != nil {
		t.Fatalf("stop deaf, its timeout from the presignal over: %v (it waited a timeout of its own)", err)
	}
	if !resp.Killed {
		t.Error("deaf was not killed")
	}
	if !waitGone(hi2.Pid, 10*time.Second) {
		t.Fatalf("deaf (pid %d) still runs", hi2.Pid)
	}
	if got := readLog(t, filepath.Join(e.state, "logs", "daemon.deaf.log")); strings.Count(got, "term\n") != 1 {
		t.Errorf("deaf logged %q, want one SIGTERM, then SIGKILL", got)
	}
}

// A log the log daemon cannot open fails the start, named, and leaves no
// process behind.
func TestStartFailsWhenLogCannotOpen(t *testing.T) {
	e := newEnv(t, process.Options{})
	e.start(res("first", "sleep", "60")) // the log daemon runs
	// A directory where the log file goes: open(O_WRONLY) fails.
	if err := os.Mkdir(filepath.Join(e.state, "logs", "daemon.blocked.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := res("blocked", "sleep", "60")
	resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state, Project: "proj"})
	if err == nil {
		if hi, perr := process.ParseHandle(resp.Handle); perr == nil {
			killGroupAtCleanup(t, hi.Pgid)
		}
		t.Fatal("start succeeded with a log that cannot be opened")
	}
	if !strings.Contains(err.Error(), "daemon.blocked") || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("error %q: want the daemon named and the cause", err)
	}
	if got, err := e.p.Adopt(context.Background(), providers.AdoptRequest{StateDir: e.state}); err != nil {
		t.Fatal(err)
	} else {
		for _, o := range got.Objects {
			if o.Addr == addr("blocked") {
				t.Fatalf("adopt finds the refused daemon: %+v", o)
			}
		}
	}
}
