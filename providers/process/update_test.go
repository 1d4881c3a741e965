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
)

// TestUpdateLogRotation: a running daemon's log rotation settings change in
// place (no restart) and the log daemon applies them.
func TestUpdateLogRotation(t *testing.T) {
	e := newEnv(t, process.Options{})
	r := res("chatty", "/bin/sh", "-c", "while true; do echo 0123456789012345678901234567890123456789012345678; sleep 0.01; done")
	h, hi := e.start(r)
	logPath := filepath.Join(e.state, "logs", process.FileName(r.Addr)+".log")
	waitLog(t, logPath, "0123456789")

	r.Log.MaxSize, r.Log.MaxFiles = 4096, 2
	if _, err := e.p.Update(context.Background(), providers.UpdateRequest{Resource: r, Handle: h, StateDir: e.state}); err != nil {
		t.Fatal(err)
	}
	reg, _ := os.ReadFile(filepath.Join(e.state, "logs", "logd.registry"))
	if !strings.Contains(string(reg), `"max_size":4096`) {
		t.Fatalf("registry not updated: %s", reg)
	}
	// At the old 1 MiB limit this output would take minutes to rotate.
	if !poll(20*time.Second, func() bool { _, err := os.Stat(logPath + ".1"); return err == nil }) {
		t.Fatalf("the log was not rotated at the new size")
	}
	if st, err := os.Stat(logPath + ".1"); err != nil || st.Size() > 4096 {
		t.Fatalf("rotated file %v, %v: larger than the new max_size", st.Size(), err)
	}
	if !alive(hi.Pid) {
		t.Fatal("the daemon was restarted or stopped by an update")
	}
}

// TestLogdExitsWhenItsDirectoryIsRemoved: a project directory deleted
// while its log daemon idles must not leave the log daemon behind.
func TestLogdExitsWhenItsDirectoryIsRemoved(t *testing.T) {
	e := newEnv(t, process.Options{LogdIdle: 100 * time.Millisecond})
	r := res("brief", "sh", "-c", "echo bye")
	e.start(r)
	logs := filepath.Join(e.state, "logs")
	waitLog(t, filepath.Join(logs, process.FileName(r.Addr)+".log"), "bye\n")
	pidb, _ := os.ReadFile(filepath.Join(logs, "logd.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if pid == 0 {
		t.Fatal("no logd pid")
	}
	if err := os.RemoveAll(e.state); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, 10*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("logd %d outlived its removed directory", pid)
	}
}
