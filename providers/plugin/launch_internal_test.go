package plugin

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// waitPidfd waits for the end of the process, not less: a pidfd that Go's
// poller could not wait on once made every plugin look ended (and be
// relaunched, the old process left running) 5 s after its launch.
func TestWaitPidfd(t *testing.T) {
	if waitPidfd(-1) {
		t.Fatal("waitPidfd(-1) = true")
	}
	pidfd := -1
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &pidfd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if pidfd < 0 {
		t.Skip("no pidfd on this system")
	}
	done := make(chan bool, 1)
	go func() { done <- waitPidfd(pidfd) }()
	select {
	case ok := <-done:
		t.Fatalf("waitPidfd returned %v while the process runs", ok)
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Kill()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("waitPidfd = false after the process ended")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("waitPidfd did not return after the process ended")
	}
	cmd.Wait()
}
