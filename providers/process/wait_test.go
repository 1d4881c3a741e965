package process

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestGroupIndex: one scan of /proc serves the Stops of every group
// already there when it was made; a group younger than the scan (its
// leader started after it) makes another, so its members are seen.
func TestGroupIndex(t *testing.T) {
	hz := readBootInfo().clockHz
	var x groupIndex
	self, _ := readStat(1)
	x.members(1, member{1, self.StartTicks}, hz)
	for pid := 2; pid < 50; pid++ {
		x.members(pid, member{pid, 0}, hz) // older groups, or none: no scan
	}
	if x.scans != 1 {
		t.Fatalf("%d scans of /proc for groups older than the index, want 1", x.scans)
	}
	cmd := exec.Command("sh", "-c", "sleep 100 & exec sleep 100")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for len(scanGroups()[pid]) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("group %d never had its two members", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, _ := readStat(pid)
	if ms := x.members(pid, member{pid, st.StartTicks}, hz); len(ms) != 2 {
		t.Fatalf("members of a group younger than the index: %v, want the leader and its child", ms)
	}
	if x.scans != 2 {
		t.Fatalf("%d scans, want 2", x.scans)
	}
}
