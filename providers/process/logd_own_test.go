package process_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
