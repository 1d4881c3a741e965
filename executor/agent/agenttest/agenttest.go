// Package agenttest runs the real orch binary's `orch up` in a directory
// for the tests of what watches an agent (metrics, the web page, orch top,
// orch trace): it builds the binary once per test binary, starts it,
// reads its events, and stops it, its daemons and its log daemon by pid
// at the end of the test.
package agenttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/orch once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orch-agenttest-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "orch")
		cmd := exec.Command(goTool(), "build", "-o", binPath, "github.com/orch-dev/orch/cmd/orch")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building orch: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Cleanup removes the built binary: call it from TestMain after m.Run.
func Cleanup() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// Event is an event as orch up -json prints it.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Address  string    `json:"address"`
	Pid      int       `json:"pid"`
	ExitCode *int      `json:"exit_code"`
	Signal   string    `json:"signal"`
	Detail   string    `json:"detail"`
	Topic    string    `json:"topic"`
}

// Up is orch up -json running in Dir.
type Up struct {
	T      testing.TB
	Dir    string
	Bin    string
	Socket string
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []Event
	stderr strings.Builder
	exited chan struct{}
	err    error
}

// Env is the environment of the orch commands a test runs: a home of its
// own, PATH.
func Env(t testing.TB) []string {
	home := t.TempDir()
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
}

// Start writes config as main.hcl of a new directory, runs orch up there,
// and waits for its ready event. Its cleanup kills orch, every process
// group it reported a pid of, and the log daemon.
func Start(t testing.TB, config string, extraArgs ...string) *Up {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	u := &Up{T: t, Dir: dir, Bin: Binary(t), Socket: filepath.Join(dir, ".orch", "agent.sock"), exited: make(chan struct{})}
	args := append([]string{"up", "-json"}, extraArgs...)
	u.cmd = exec.Command(u.Bin, append(args, dir)...)
	u.cmd.Env = Env(t)
	u.cmd.Stderr = &lockedWriter{mu: &u.mu, b: &u.stderr}
	out, err := u.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = Event{Type: "unparsed", Detail: sc.Text()}
			}
			u.mu.Lock()
			u.events = append(u.events, e)
			u.mu.Unlock()
		}
		u.err = u.cmd.Wait()
		close(u.exited)
	}()
	t.Cleanup(u.kill)
	u.wait("ready", 2*time.Minute, func(e Event) bool { return e.Type == "ready" })
	return u
}

func (u *Up) kill() {
	u.cmd.Process.Kill()
	<-u.exited
	for _, e := range u.Events() {
		if e.Pid > 0 {
			syscall.Kill(-e.Pid, syscall.SIGKILL)
		}
	}
	processtest.RemoveCgroups(filepath.Join(u.Dir, ".orch"))
	if b, err := os.ReadFile(filepath.Join(u.Dir, ".orch", "logs", "logd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Stop sends SIGTERM to orch up and waits for it to exit.
func (u *Up) Stop() {
	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
}

// Pid is orch up's.
func (u *Up) Pid() int { return u.cmd.Process.Pid }

// Events returns what orch up printed so far.
func (u *Up) Events() []Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Event(nil), u.events...)
}

// Dump is orch up's events and stderr, for a failure message.
func (u *Up) Dump() string {
	var b strings.Builder
	for _, e := range u.Events() {
		fmt.Fprintf(&b, "%s %s %s pid=%d %s\n", e.Time.Format("15:04:05.000"), e.Address, e.Type, e.Pid, e.Detail)
	}
	u.mu.Lock()
	b.WriteString(u.stderr.String())
	u.mu.Unlock()
	return b.String()
}

// WaitFor waits (30 s at most) for an event for which match holds and
// returns it.
func (u *Up) WaitFor(what string, match func(Event) bool) Event {
	u.T.Helper()
	return u.wait(what, 30*time.Second, match)
}

func (u *Up) wait(what string, limit time.Duration, match func(Event) bool) Event {
	u.T.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, e := range u.Events() {
			if match(e) {
				return e
			}
		}
		select {
		case <-u.exited:
			u.T.Fatalf("orch up exited (%v) waiting for %s:\n%s", u.err, what, u.Dump())
		default:
		}
		if time.Now().After(deadline) {
			u.T.Fatalf("no %s within %v:\n%s", what, limit, u.Dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Started returns the pid of addr's nth started event (n from 1).
func (u *Up) Started(addr string, n int) int {
	u.T.Helper()
	var pid int
	Eventually(u.T, fmt.Sprintf("start %d of %s", n, addr), func() bool {
		seen := 0
		for _, e := range u.Events() {
			if e.Address == addr && e.Type == "started" {
				if seen++; seen == n {
					pid = e.Pid
					return true
				}
			}
		}
		return false
	})
	return pid
}

// Client returns a client of its agent socket.
func (u *Up) Client() *agent.Client {
	u.T.Helper()
	c, err := agent.Dial(u.Socket)
	if err != nil {
		u.T.Fatal(err)
	}
	return c
}

// Eventually polls cond every 20 ms until it holds, failing the test
// with what after 30 s.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("not within 30s: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
