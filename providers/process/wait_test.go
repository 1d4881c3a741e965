package process

import (
	"context"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
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

// TestObserveScanServesStops: an Observe of at least observeScanMin
// daemons that are most of the machine's processes reads every process's
// stat once; it observes as reading each daemon's would (running, gone,
// a pid now someone else's), and the Stops after it find their groups'
// members in that read: none scans /proc again. A group with a member
// besides its leader is still waited for.
func TestObserveScanServesStops(t *testing.T) {
	p := New(Options{})
	start := func(script string) HandleInfo {
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
		go cmd.Wait() // reaped as soon as it exits, as by init
		st, ok := readStat(pid)
		if !ok {
			t.Fatalf("no stat for %d", pid)
		}
		return HandleInfo{Pid: pid, StartTicks: st.StartTicks, Pgid: pid, BootID: p.boot.bootID}
	}
	lone := start("exec sleep 100")
	pair := start("trap '' TERM; (trap '' TERM; exec sleep 100) & wait")
	deadline := time.Now().Add(10 * time.Second)
	for len(scanGroups()[pair.Pgid]) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the pair's group never had its two members")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := HandleInfo{Pid: cmd.Process.Pid, StartTicks: 1, Pgid: cmd.Process.Pid, BootID: p.boot.bootID}
	for {
		if _, ok := readStat(gone.Pid); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process that exits at once is still there")
		}
		time.Sleep(5 * time.Millisecond)
	}
	other := lone
	other.StartTicks++ // the pid, started at another time: someone else's

	// The scan comes a tick after the starts at least (a group as young
	// as the scan is scanned again).
	for bootTicks(p.boot.clockHz) <= max(lone.StartTicks, pair.StartTicks) {
		time.Sleep(5 * time.Millisecond)
	}
	// Enough daemons to scan: many addresses share these handles.
	pids := len(listPids())
	n := max(observeScanMin, pids)
	handles := map[spec.Address]providers.Handle{}
	want := map[spec.Address]providers.State{}
	for i := 0; i < n; i++ {
		hi, st := lone, providers.StateRunning
		switch i % 4 {
		case 1:
			hi = pair
		case 2:
			hi, st = gone, providers.StateMissing
		case 3:
			hi, st = other, providers.StateMissing
		}
		a := spec.Address{Kind: spec.KindDaemon, Name: "d" + strconv.Itoa(i)}
		handles[a], want[a] = hi.Encode(), st
	}
	resp, err := p.Observe(context.Background(), providers.ObserveRequest{Handles: handles, NoUsage: true})
	if err != nil {
		t.Fatal(err)
	}
	for a, st := range want {
		if got := resp.Objects[a].State; got != st {
			t.Fatalf("%s: observed %v, want %v", a, got, st)
		}
		hi, err := ParseHandle(handles[a])
		if err != nil {
			t.Fatal(err)
		}
		if one := p.observeInfo(hi); one.State != resp.Objects[a].State {
			t.Fatalf("%s: observed %v from the scan, %v read alone", a, resp.Objects[a].State, one.State)
		}
	}
	p.groups.mu.Lock()
	offered := p.groups.stats != nil
	p.groups.mu.Unlock()
	if !offered {
		t.Fatalf("an Observe of %d daemons among %d processes did not scan", n, pids)
	}

	// The children of a Provider (orch up's daemons) are known without
	// /proc: observing as many of them reads nothing.
	up := New(Options{})
	up.children[childKey{lone.Pid, lone.StartTicks}] = &child{done: make(chan struct{})}
	kids := map[spec.Address]providers.Handle{}
	for i := 0; i < n; i++ {
		kids[spec.Address{Kind: spec.KindDaemon, Name: "k" + strconv.Itoa(i)}] = lone.Encode()
	}
	resp, err = up.Observe(context.Background(), providers.ObserveRequest{Handles: kids, NoUsage: true})
	if err != nil {
		t.Fatal(err)
	}
	for a, o := range resp.Objects {
		if o.State != providers.StateRunning {
			t.Fatalf("child %s observed %v", a, o.State)
		}
	}
	up.groups.mu.Lock()
	scanned := up.groups.stats != nil
	up.groups.mu.Unlock()
	if scanned {
		t.Fatalf("an Observe of %d children of the Provider read every process", n)
	}

	stop := func(name string, hi HandleInfo, timeout time.Duration) providers.StopResponse {
		resp, err := p.Stop(context.Background(), providers.StopRequest{Addr: spec.Address{Kind: spec.KindDaemon, Name: name}, Handle: hi.Encode(), Timeout: timeout})
		if err != nil {
			t.Fatalf("stop %s: %v", name, err)
		}
		return resp
	}
	if r := stop("lone", lone, 10*time.Second); r.Killed {
		t.Fatal("a daemon alone in its group had to be killed")
	}
	if p.groups.scans != 0 {
		t.Fatalf("%d scans of /proc for a Stop after an Observe that read it all, want 0", p.groups.scans)
	}
	// (after its SIGKILL, the pair's group may be scanned again: its
	// killed member's zombie waits for init)
	if r := stop("pair", pair, 300*time.Millisecond); !r.Killed {
		t.Fatal("a member that ignored SIGTERM was not killed: its group was reported empty")
	}
}

// TestWarmStats: a scan of /proc made ahead (WarmStats, as orch plan does
// while its configuration loads) is what the next Observe of as many
// daemons takes instead of scanning again, once; a process started after
// it is read alone, and observed running; a scan older than warmTTL is
// not taken.
func TestWarmStats(t *testing.T) {
	ReleaseWarmStats()
	t.Cleanup(ReleaseWarmStats)
	// Whether a scan is taken may not depend on how busy the machine is
	// between the scan and the Observe (under make test-busy that was
	// more than the 2 s of warmTTL): a scan is fresh for an hour here,
	// and one made stale is made older than that.
	ttl := warmTTL
	warmTTL = time.Hour
	t.Cleanup(func() { warmTTL = ttl })
	p := New(Options{})
	start := func() HandleInfo {
		cmd := exec.Command("sleep", "100")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); cmd.Wait() })
		st, ok := readStat(pid)
		if !ok {
			t.Fatalf("no stat for %d", pid)
		}
		return HandleInfo{Pid: pid, StartTicks: st.StartTicks, Pgid: pid, BootID: p.boot.bootID}
	}
	early := start()
	n := max(observeScanMin, 4*len(listPids())) // a scan whatever else starts meanwhile
	WarmStats(n)
	warmed.Lock()
	scanned, at := warmed.stats != nil, warmed.at
	_, sawEarly := warmed.stats[early.Pid]
	warmed.Unlock()
	if !scanned || !sawEarly {
		t.Fatalf("WarmStats(%d) made no scan (%v), or one without the process started before it (%v)", n, scanned, sawEarly)
	}
	late := start()
	handles := map[spec.Address]providers.Handle{}
	for i := 0; i < n; i++ {
		hi := early
		if i%2 == 1 {
			hi = late
		}
		handles[spec.Address{Kind: spec.KindDaemon, Name: "d" + strconv.Itoa(i)}] = hi.Encode()
	}
	observe := func() {
		t.Helper()
		resp, err := p.Observe(context.Background(), providers.ObserveRequest{Handles: handles, NoUsage: true})
		if err != nil {
			t.Fatal(err)
		}
		for a, o := range resp.Objects {
			if o.State != providers.StateRunning {
				t.Fatalf("%s: observed %v, want running", a, o.State)
			}
		}
	}
	observe()
	p.groups.mu.Lock()
	took := p.groups.stats != nil && p.groups.at.Equal(at)
	p.groups.mu.Unlock()
	warmed.Lock()
	left := warmed.stats != nil
	warmed.Unlock()
	if !took || left {
		t.Fatalf("the Observe did not take the scan made ahead (taken %v, still there %v)", took, left)
	}

	// Too old: the Observe scans for itself.
	WarmStats(n)
	warmed.Lock()
	warmed.at = warmed.at.Add(-warmTTL)
	stale := warmed.at
	warmed.Unlock()
	observe()
	p.groups.mu.Lock()
	fresh := p.groups.at.After(stale.Add(warmTTL))
	p.groups.mu.Unlock()
	if !fresh {
		t.Fatal("an Observe took a scan made ahead older than warmTTL")
	}
}
