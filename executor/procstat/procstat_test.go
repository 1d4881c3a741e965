package procstat

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestGroupsCountsTheWholeGroup starts a shell that leads its own group
// and forks a busy child: the group's CPU time grows, and both members
// are counted.
func TestGroupsCountsTheWholeGroup(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	var u Usage
	deadline := time.Now().Add(10 * time.Second)
	for {
		u = Groups([]int{pid})[pid]
		if u.Procs == 2 && u.CPU >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group of %d: %+v, want 2 processes and CPU time growing", pid, u)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if u.RSS == 0 {
		t.Fatalf("group of %d: no resident memory: %+v", pid, u)
	}
	s := Sampler{MaxAge: time.Nanosecond}
	s.Sample([]int{pid})
	for {
		// The second pass runs in the background: poll until it is in.
		got := s.Sample([]int{pid})[pid]
		if got.CPUPercent > 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a busy loop uses %.1f%% of a core, want more than 10%%", got.CPUPercent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := Groups([]int{1 << 30})[1<<30]; ok {
		t.Fatal("a pid that does not exist has a usage")
	}
	self := Groups([]int{os.Getpid()})[os.Getpid()]
	if self.Procs == 0 {
		t.Fatal("the test's own process is not found")
	}
}

func BenchmarkGroups(b *testing.B) {
	pids := []int{os.Getpid()}
	for b.Loop() {
		Groups(pids)
	}
}
