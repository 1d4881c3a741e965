package process_test

import (
	"context"
	"fmt"
	"os"
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

func logdPid(t *testing.T, logs string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(logs, "logd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func startIn(t *testing.T, p *process.Provider, state, name string) (providers.Handle, error) {
	t.Helper()
	resp, err := p.Start(context.Background(), providers.StartRequest{Resource: res(name, "sleep", "60"), StateDir: state, Project: "proj"})
	if err == nil {
		hi, _ := process.ParseHandle(resp.Handle)
		killGroupAtCleanup(t, hi.Pgid)
	}
	return resp.Handle, err
}

// TestLogdRemovesOnlyItsOwnFiles is issue 19 (a): the logs directory is
// removed (orch destroy, rm -r .orch) while its log daemon lingers, and a
// new apply starts a new log daemon there. When the old one exits, it
// must not remove the new one's socket and pid file: starts go on working.
func TestLogdRemovesOnlyItsOwnFiles(t *testing.T) {
	state := t.TempDir()
	logs := filepath.Join(state, "logs")
	t.Cleanup(func() { stopLogd(t, state) })
	p1 := process.New(process.Options{LogdIdle: 2 * time.Second})
	h, err := startIn(t, p1, state, "one")
	if err != nil {
		t.Fatal(err)
	}
	old := logdPid(t, logs)
	t.Cleanup(func() { syscall.Kill(old, syscall.SIGKILL) })
	if _, err := p1.Stop(context.Background(), providers.StopRequest{Addr: addr("one"), Handle: h, Signal: spec.SIGTERM, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(logs); err != nil {
		t.Fatal(err)
	}
	// A new orch: a new directory, a new log daemon.
	if _, err := startIn(t, process.New(process.Options{}), state, "two"); err != nil {
		t.Fatal(err)
	}
	cur := logdPid(t, logs)
	if cur == old {
		t.Fatalf("the new start used the old log daemon %d", old)
	}
	if !waitGone(old, 30*time.Second) {
		t.Fatalf("the old log daemon %d never exited", old)
	}
	for _, name := range []string{"logd.sock", "logd.pid"} {
		if _, err := os.Lstat(filepath.Join(logs, name)); err != nil {
			t.Errorf("the old log daemon removed the new one's %s: %v", name, err)
		}
	}
	if got := logdPid(t, logs); got != cur {
		t.Errorf("logd.pid says %d, want the new log daemon %d", got, cur)
	}
	if _, err := startIn(t, process.New(process.Options{LogdStartTimeout: 5 * time.Second}), state, "three"); err != nil {
		t.Fatalf("a start after the old log daemon exited: %v", err)
	}
}

// TestLogdOutOfDescriptors is issue 19 (b): a log daemon with no
// descriptor left refuses a daemon's pipe with an error naming the
// daemon and its limit, and the daemon is not left running; every daemon
// it took has its log.
func TestLogdOutOfDescriptors(t *testing.T) {
	e := newEnv(t, process.Options{})
	e.start(res("first", "sleep", "60"))
	logd := logdPid(t, filepath.Join(e.state, "logs"))
	const limit = 40
	if err := unix.Prlimit(logd, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	var started []string
	var failure error
	var failedName string
	for i := 0; i < 3*limit && failure == nil; i++ {
		name := fmt.Sprintf("d%d", i)
		r := res(name, "sh", "-c", "echo hello-"+name+"; exec sleep 60")
		resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state, Project: "proj"})
		if err != nil {
			failure, failedName = err, name
			break
		}
		hi, _ := process.ParseHandle(resp.Handle)
		killGroupAtCleanup(t, hi.Pgid)
		started = append(started, name)
	}
	if failure == nil {
		t.Fatalf("%d daemons started with a log daemon limited to %d descriptors", len(started), limit)
	}
	t.Logf("%d started; then: %v", len(started), failure)
	if msg := failure.Error(); !strings.Contains(msg, "daemon."+failedName) || !strings.Contains(msg, "RLIMIT_NOFILE") || !strings.Contains(msg, strconv.Itoa(limit)) {
		t.Errorf("error %q does not name the daemon and the limit %d", msg, limit)
	}
	// Not half-started: nothing of the refused daemon runs.
	if !poll(10*time.Second, func() bool { return len(procsWithArg("hello-"+failedName)) == 0 }) {
		t.Errorf("the refused daemon runs: %v", procsWithArg("hello-"+failedName))
	}
	// Every daemon it took writes to its log.
	for _, name := range started {
		waitLog(t, filepath.Join(e.state, "logs", "daemon."+name+".log"), "hello-"+name)
	}
}

// procsWithArg lists the live processes one of whose arguments contains s.
func procsWithArg(s string) []int {
	names, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range names {
		pid, _ := strconv.Atoi(filepath.Base(d))
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && strings.Contains(string(b), s) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
