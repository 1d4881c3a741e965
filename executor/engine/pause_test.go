package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentCall sends method path to the agent of orch up in dir and returns
// the status code and body.
func agentCall(t *testing.T, dir, method, path string) (int, string) {
	t.Helper()
	code, body, err := agentRequest(dir, method, path, "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// agentRequest is agentCall without a test, for a goroutine of its own
// (timeout 0: none).
func agentRequest(dir, method, path, body string, timeout time.Duration) (int, string, error) {
	return agentRequestCtx(context.Background(), dir, method, path, body, timeout)
}

// inBackground sends POST path to the agent of orch up in dir from a
// goroutine of its own, without a timeout. waiting is closed when the
// agent says that the request waits for a change in flight (its 102
// Processing); answered gets "" once it answers 200, else what it
// answered.
func inBackground(dir, path string) (waiting <-chan struct{}, answered <-chan string) {
	w, a := make(chan struct{}), make(chan string, 1)
	var once sync.Once
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(int, textproto.MIMEHeader) error {
			once.Do(func() { close(w) })
			return nil
		}})
	go func() {
		code, body, err := agentRequestCtx(ctx, dir, "POST", path, "", 0)
		switch {
		case err != nil:
			a <- err.Error()
		case code != 200:
			a <- fmt.Sprintf("%d %s", code, body)
		default:
			a <- ""
		}
	}()
	return w, a
}

// waitForFile waits until path exists, which what the test starts makes.
func waitForFile(t *testing.T, path, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s within 30s", what)
		}
	}
}

func agentRequestCtx(ctx context.Context, dir, method, path, body string, timeout time.Duration) (int, string, error) {
	sock := filepath.Join(dir, ".orch", "agent.sock")
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent/v1"+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// A pause of a daemon reported started while the rest of its round still
// runs (a job beside it, held by the test) waits for the round instead of
// being refused with "is being changed right now; try again", and takes
// effect once the round has ended.
func TestPauseWaitsForTheRoundInFlight(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	u := startUp(t, fmt.Sprintf(`
daemon "svc" {
  command = ["sleep", "300"]
}
job "slow" {
  command = ["sh", "-c", "while [ ! -e %s ]; do sleep 0.01; done"]
}
`, release))
	u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.svc", "started") == 1 })
	waiting, answered := inBackground(u.dir, "/pause/daemon.svc")
	// The job is let go only once the agent has said that the pause
	// waits: it met the round in flight.
	select {
	case <-waiting:
	case msg := <-answered:
		t.Fatalf("the pause answered while the round ran: %q", msg)
	case <-time.After(60 * time.Second):
		t.Fatal("the pause neither waited nor answered within 60s")
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-answered:
		if msg != "" {
			t.Fatalf("pause during the round: %s", msg)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the pause did not answer within 60s of the round's end")
	}
	evs := u.waitFor("paused", func(evs []ev) bool { return count(evs, "daemon.svc", "paused") == 1 })
	done, paused := -1, -1
	for i, e := range evs {
		switch {
		case e.Address == "job.slow" && e.Type == "completed" && done < 0:
			done = i
		case e.Address == "daemon.svc" && e.Type == "paused" && paused < 0:
			paused = i
		}
	}
	if done < 0 || paused < done {
		t.Fatalf("paused (event %d) before the round's job completed (event %d)", paused, done)
	}
	u.stop()
}

// procState is the state letter of pid in /proc (T: stopped).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// Pause is a state: the daemon's group is stopped, status says paused,
// and its health check does not kill it; resume continues it.
func TestPauseIsAState(t *testing.T) {
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
daemon "web" {
  command = [%q, "-addr", "127.0.0.1:%d"]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
    timeout  = "100ms"
    retries  = 2
  }
  restart {
    backoff = "1ms"
  }
}
`, httpdBin, port, port))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.web", "healthy") == 1 })
	pid := pids(evs)["daemon.web"]
	if code, body := agentCall(t, u.dir, "POST", "/pause/daemon.web"); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	u.waitFor("paused", func(evs []ev) bool { return count(evs, "daemon.web", "paused") == 1 })
	// The stop takes effect when the process next enters the kernel.
	// Stopped (SIGSTOP) without a cgroup, frozen with one (cgroup_test.go).
	for deadline := time.Now().Add(10 * time.Second); procState(pid) != "T" && !frozen(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is in state %q after pause, want T (stopped) or its cgroup frozen", pid, procState(pid))
		}
	}
	// Several health intervals and probe timeouts pass: a paused daemon is
	// not taken for a dead one.
	time.Sleep(500 * time.Millisecond)
	_, body := agentCall(t, u.dir, "GET", "/status")
	var st struct {
		Instances []struct {
			Address, State, Health string
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status: %v: %s", err, body)
	}
	for _, in := range st.Instances {
		if in.Address == "daemon.web" && (in.State != "paused" || in.Health != "paused") {
			t.Errorf("status of a paused daemon: state %q health %q, want paused", in.State, in.Health)
		}
	}
	evs = u.all()
	if n := count(evs, "daemon.web", "unhealthy") + count(evs, "daemon.web", "exited"); n != 0 {
		t.Fatalf("the paused daemon was declared unhealthy or stopped:\n%s", u.dump())
	}
	if code, body := agentCall(t, u.dir, "POST", "/resume/daemon.web"); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	u.waitFor("resumed", func(evs []ev) bool { return count(evs, "daemon.web", "resumed") == 1 })
	if st := procState(pid); st == "T" || st == "" || frozen(pid) {
		t.Fatalf("pid %d is in state %q after resume", pid, st)
	}
	time.Sleep(100 * time.Millisecond)
	if n := count(u.all(), "daemon.web", "started"); n != 1 {
		t.Errorf("started %d times, want once:\n%s", n, u.dump())
	}
}

// A pause sent while a restart stops the old process waits for the new
// one and pauses it: it does not freeze the old process on its way out
// (which then could not act on its stop signal) while the new one runs
// on unpaused.
func TestPauseDuringRestartPausesTheNewProcess(t *testing.T) {
	termed := filepath.Join(t.TempDir(), "termed")
	u := startUp(t, fmt.Sprintf(`
daemon "slowstop" {
  command = ["sh", "-c", "trap 'touch %s; sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"]
}
`, termed))
	evs := u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.slowstop", "started") == 1 })
	old := pids(evs)["daemon.slowstop"]
	_, restarted := inBackground(u.dir, "/restart/daemon.slowstop")
	// The old process has its SIGTERM and takes 0.5 s more to exit: the
	// pause meets the restart under way.
	waitForFile(t, termed, "the restart did not signal the old process")
	if code, body := agentCall(t, u.dir, "POST", "/pause/daemon.slowstop"); code != 200 {
		t.Fatalf("pause during the restart: %d %s", code, body)
	}
	if msg := <-restarted; msg != "" {
		t.Fatalf("restart: %s", msg)
	}
	evs = u.waitFor("paused", func(evs []ev) bool { return count(evs, "daemon.slowstop", "paused") == 1 })
	started, paused, newPid := -1, -1, 0
	for i, e := range evs {
		if e.Address != "daemon.slowstop" {
			continue
		}
		switch {
		case e.Type == "started" && e.Pid != old && started < 0:
			started, newPid = i, e.Pid
		case e.Type == "paused" && paused < 0:
			paused = i
		}
	}
	if started < 0 || paused < started {
		t.Fatalf("paused (event %d) before the new process started (event %d): %+v", paused, started, evs)
	}
	for deadline := time.Now().Add(10 * time.Second); procState(newPid) != "T" && !frozen(newPid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the new process %d is in state %q after the pause, want T (stopped) or its cgroup frozen", newPid, procState(newPid))
		}
	}
	u.stop()
}

// A signal sent while a restart stops the old process goes to the new
// one: the old one, on its way out, would take it for nothing, and the
// new one would miss it (a SIGHUP to reread a file edited meanwhile).
// For a daemon with a health check it goes once the new one's check
// passed.
func TestSignalDuringRestartReachesTheNewProcess(t *testing.T) {
	tmp := t.TempDir()
	termed, hups, ready := filepath.Join(tmp, "termed"), filepath.Join(tmp, "hups"), filepath.Join(tmp, "ready")
	// ready exists while a process of it has its traps set: the old
	// process removes it on SIGTERM, the new one makes it once its HUP
	// trap is set, and its health check passes only then. The new one
	// (termed exists) takes 0.5 s to set its traps, as a server takes
	// time to set up: a HUP sent once it runs, before its check passed,
	// would end it (so it did on a slow machine, without the pause).
	u := startUp(t, fmt.Sprintf(`
daemon "hup" {
  command = ["sh", "-c", "[ -f %[1]s ] && sleep 0.5; trap 'rm -f %[3]s; touch %[1]s; sleep 0.5; exit 0' TERM; trap 'echo $$ >> %[2]s' HUP; touch %[3]s; while :; do sleep 0.05; done"]
  health {
    exec     = ["test", "-f", %[3]q]
    interval = "50ms"
  }
}
`, termed, hups, ready))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.hup", "healthy") == 1 })
	old := pids(evs)["daemon.hup"]
	_, restarted := inBackground(u.dir, "/restart/daemon.hup")
	waitForFile(t, termed, "the restart did not signal the old process")
	if code, body, err := agentRequest(u.dir, "POST", "/signal/daemon.hup", `{"signal": "HUP"}`, 30*time.Second); err != nil || code != 200 {
		t.Fatalf("signal during the restart: %d %s %v", code, body, err)
	}
	if msg := <-restarted; msg != "" {
		t.Fatalf("restart: %s", msg)
	}
	evs = u.waitFor("the new process started", func(evs []ev) bool { return count(evs, "daemon.hup", "started") == 2 })
	newPid := 0
	for _, e := range evs {
		if e.Address == "daemon.hup" && e.Type == "started" && e.Pid != old {
			newPid = e.Pid
		}
	}
	want := fmt.Sprintf("%d\n", newPid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, _ := os.ReadFile(hups)
		if string(got) == want {
			break
		}
		if time.Now().After(deadline) || len(got) > len(want) || len(got) > 0 && string(got) != want {
			t.Fatalf("the HUP reached %q, want only the new process %d (the old was %d)", got, newPid, old)
		}
	}
	u.stop()
}

// A health check that fails while a restart stops the daemon (a server
// on its way out stops answering) does not turn the restart into a
// crash: the exit is the restart's, and the new process starts at once,
// not after a backoff counted as a failure.
func TestFailingCheckDuringRestartKeepsTheRestart(t *testing.T) {
	tmp := t.TempDir()
	ready := filepath.Join(tmp, "ready")
	// On SIGTERM it stops being ready at once, and exits 1 s later: the
	// check (every 50 ms) fails meanwhile.
	u := startUp(t, fmt.Sprintf(`
daemon "srv" {
  command = ["sh", "-c", "trap 'rm -f %[1]s; sleep 1; exit 0' TERM; touch %[1]s; while :; do sleep 0.05; done"]
  health {
    exec     = ["test", "-f", %[1]q]
    interval = "50ms"
  }
  restart {
    policy  = "always"
    backoff = "5s"
  }
}
`, ready))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.srv", "healthy") == 1 })
	old := pids(evs)["daemon.srv"]
	if code, body, err := agentRequest(u.dir, "POST", "/restart/daemon.srv", "", 30*time.Second); err != nil || code != 200 {
		t.Fatalf("restart: %d %s %v", code, body, err)
	}
	evs = u.waitFor("the new process healthy", func(evs []ev) bool { return count(evs, "daemon.srv", "healthy") == 2 })
	for _, e := range evs {
		if e.Address != "daemon.srv" {
			continue
		}
		if e.Type == "exited" && e.Pid == old && e.Detail != "restart requested" {
			t.Errorf("the old process's exit: %+v, want the restart's (detail %q)", e, "restart requested")
		}
		if e.Type == "restarting" && strings.HasPrefix(e.Detail, "in ") {
			t.Errorf("the restart became a crash restarted after a backoff: %+v", e)
		}
	}
	u.stop()
}

// A restart whose start fails leaves nothing for a later signal to wait
// for: once the restart policy has started the daemon again, a signal
// goes at once, as to any daemon started by its policy, rather than
// waiting (up to start_timeout) for a first verdict that the restart's
// own process never got.
func TestSignalAfterAFailedRestartDoesNotWait(t *testing.T) {
	tmp := t.TempDir()
	script := filepath.Join(tmp, "srv.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nwhile :; do sleep 0.05; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The check never passes: no verdict before start_timeout (60 s).
	u := startUp(t, fmt.Sprintf(`
daemon "srv" {
  command = [%q]
  health {
    exec     = ["test", "-f", %q]
    interval = "50ms"
  }
  restart {
    policy  = "always"
    backoff = "300ms"
  }
}
`, script, filepath.Join(tmp, "never")))
	u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.srv", "started") == 1 })
	// The restart's start fails: its program is no longer executable.
	if err := os.Chmod(script, 0o644); err != nil {
		t.Fatal(err)
	}
	// It answers with the start's failure.
	if code, body, err := agentRequest(u.dir, "POST", "/restart/daemon.srv", "", 30*time.Second); err != nil || !strings.Contains(body, "not executable") {
		t.Fatalf("restart: %d %s %v, want its start's failure", code, body, err)
	}
	u.waitFor("the restart's start failed", func(evs []ev) bool { return count(evs, "daemon.srv", "failed") >= 1 })
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	u.waitFor("started again by its policy", func(evs []ev) bool { return count(evs, "daemon.srv", "started") == 2 })
	// SIGWINCH: ignored by default, so whether the shell has set anything
	// up yet does not matter; what is tested is that the request does not
	// wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, body, err := agentRequestCtx(ctx, u.dir, "POST", "/signal/daemon.srv", `{"signal": "WINCH"}`, 10*time.Second); err != nil || code != 200 {
		t.Fatalf("signal after a failed restart: %d %s %v (it waited for a verdict that cannot come)", code, body, err)
	}
	u.stop()
}
