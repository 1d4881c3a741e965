package process

import (
	"context"
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
	x.members(1, member{1, self.StartTicks}, hz, time.Time{})
	for pid := 2; pid < 50; pid++ {
		x.members(pid, member{pid, 0}, hz, time.Time{}) // older groups, or none: no scan
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
	if ms := x.members(pid, member{pid, st.StartTicks}, hz, time.Time{}); len(ms) != 2 {
		t.Fatalf("members of a group younger than the index: %v, want the leader and its child", ms)
	}
	if x.scans != 2 {
		t.Fatalf("%d scans, want 2", x.scans)
	}
}

// TestGroupWaitSeesLateMember: a member forked into a group after the
// index was made, whose leader then exited and was reaped, keeps the group
// alive for waitGroupGone (kill(-pgid, 0) finds a member no zombie leader
// explains: the index is made again).
func TestGroupWaitSeesLateMember(t *testing.T) {
	p := New(Options{})
	cmd := exec.Command("sh", "-c", "read x; sleep 100 & exit 0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	st, _ := readStat(pid)
	leader := member{pid, st.StartTicks}
	// The index is made after the leader started (a tick later at least).
	for bootTicks(p.boot.clockHz) <= leader.start {
		time.Sleep(5 * time.Millisecond)
	}
	if ms := p.groups.members(pid, leader, p.boot.clockHz, time.Time{}); len(ms) != 1 {
		t.Fatalf("members before the fork: %v", ms)
	}
	in.Write([]byte("go\n"))
	cmd.Wait() // the leader is gone, reaped
	deadline := time.Now().Add(10 * time.Second)
	for len(scanGroups()[pid]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background sleep never showed up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.waitGroupGone(context.Background(), pid, leader, time.Now().Add(200*time.Millisecond)) {
		t.Fatal("group reported empty while a member it gained after the index runs")
	}
}
