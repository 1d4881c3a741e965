package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestJobStartedEvent: a job under orch up says "started", with its pid,
// once its process runs, not only how it ended: a job that runs for
// minutes (a migration) is seen running, and its dependents waiting for
// it. It ends with "completed" after that.
func TestJobStartedEvent(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ip := newInProc(t, fmt.Sprintf(`
job "migrate" {
  command = ["sh", "-c", "read line < %s"]
}
daemon "app" {
  command    = ["/bin/sleep", "600"]
  depends_on = [job.migrate]
}
`, fifo))
	_, stop := ip.run(t, Options{})
	defer stop()
	deadline := time.After(waitDeadline)
	next := func(what string) Event { t.Helper(); return ip.next(t, deadline, what) }
	var started Event
	for started.Type != EventStarted || started.Addr.String() != "job.migrate" {
		started = next("started event of job.migrate")
		if started.Type == EventCompleted || started.Addr.String() == "daemon.app" && started.Type == EventStarted {
			t.Fatalf("%s %s before job.migrate started", started.Addr, started.Type)
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", started.Pid))
	if started.Pid <= 0 || err != nil || !strings.Contains(string(cmdline), "read line") {
		t.Fatalf("job.migrate started with pid %d, whose command line is %q (%v)", started.Pid, cmdline, err)
	}
	// It runs until told: let it end.
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("done\n")
	f.Close()
	for {
		ev := next("completed event of job.migrate")
		if ev.Addr.String() == "job.migrate" && ev.Type == EventCompleted {
			break
		}
		if ev.Addr.String() == "job.migrate" && ev.Type != EventWaiting {
			t.Fatalf("job.migrate: %s %s after it started", ev.Type, ev.Detail)
		}
	}
	for ev := next("started event of daemon.app"); ev.Type != EventStarted || ev.Addr.String() != "daemon.app"; ev = next("started event of daemon.app") {
	}
}
