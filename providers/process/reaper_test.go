package process

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// fdCount is how many descriptors the process's table (the main thread's,
// as /proc/self/fd shows it) holds.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// watchPid watches pid through the reaper's thread (watchLater), as a
// Watch of a stranger does, calling fired at its exit.
func watchPid(pid int, fired func(exited bool)) (cancel func(), err error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	cancel, ok := watchLater(fd, fired)
	if !ok {
		return nil, errors.New("the watch did not reach the reaper's thread")
	}
	return cancel, nil
}

func startSleep(t *testing.T) *os.Process {
	t.Helper()
	p, err := os.StartProcess("/bin/sleep", []string{"sleep", "60"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The reaper's pidfds live in its own thread's table, not in the one every
// fork copies: children it waits for cost the process no descriptor, and
// each is still reaped with how it ended.
func TestReaperHoldsNoDescriptorOfTheProcess(t *testing.T) {
	type ended struct {
		pid int
		ws  *syscall.WaitStatus
	}
	got := make(chan ended, 100)
	watch := func(p *os.Process) {
		pid := p.Pid
		if !reapLater(pid, func(ws *syscall.WaitStatus) { got <- ended{pid, ws} }) {
			t.Fatal("no reaper on this kernel")
		}
		p.Release()
	}
	first := startSleep(t)
	firstPid := first.Pid // Release sets Pid to -1, and kill(-1) reaches everything
	watch(first)          // the reaper runs from here on
	syscall.Kill(firstPid, syscall.SIGKILL)
	<-got
	before := fdCount(t)
	const n = 3000
	pids := map[int]bool{}
	for i := 0; i < n; i++ {
		p := startSleep(t)
		pids[p.Pid] = true // before watch releases p
		watch(p)
	}
	defer func() {
		for pid := range pids {
			if pid > 1 {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	}()
	// Held in the process's table, the pidfds would be n more. A few
	// more than before may be another goroutine's, open for a moment.
	if after := fdCount(t); after >= before+n/2 {
		t.Fatalf("the process holds %d descriptors with %d children waited for, %d before", after, n, before)
	}
	for pid := range pids {
		if pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	deadline := time.After(30 * time.Second)
	for len(pids) > 0 {
		select {
		case e := <-got:
			if !pids[e.pid] {
				t.Fatalf("reaped %d, not one of ours", e.pid)
			}
			if e.ws == nil || !e.ws.Signaled() || e.ws.Signal() != syscall.SIGKILL {
				t.Fatalf("pid %d: wait status %v, want killed by SIGKILL", e.pid, e.ws)
			}
			delete(pids, e.pid)
		case <-deadline:
			t.Fatalf("%d children never reported reaped", len(pids))
		}
	}
	if after := fdCount(t); after >= before+n/2 {
		t.Fatalf("the process holds %d descriptors after its children were reaped, %d before", after, before)
	}
}

// What the process had open when the reaper's thread copied the table is
// not kept open by that copy: a lock file locked then, closed after, is
// unlocked. Run in a process of its own, whose reaper starts after the
// lock is taken.
func TestReaperKeepsNothingOpen(t *testing.T) {
	if path := os.Getenv("ORCH_TEST_REAPER_LOCK"); path != "" {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		p := startSleep(t)
		pid := p.Pid // Release sets Pid to -1, and kill(-1) reaches everything
		ok := reapLater(pid, func(*syscall.WaitStatus) {})
		p.Release()
		syscall.Kill(pid, syscall.SIGKILL)
		if !ok {
			t.Fatal("no reaper on this kernel")
		}
		unix.Close(fd)
		// Another open file description of the same file locks it only
		// if no copy of the first still holds the lock.
		fd2, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd2)
		if err := unix.Flock(fd2, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("the lock is still held once its only descriptor is closed: %v", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReaperKeepsNothingOpen$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ORCH_TEST_REAPER_LOCK="+t.TempDir()+"/lock."+strconv.Itoa(os.Getpid()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// startOrphan starts a sleep that is not a child of this process (its
// parent, a shell, exits at once) and returns its pid. It sleeps an hour,
// and the test's cleanup kills it: it must outlive the test however slow
// the machine (with a minute, TestReaperWatchesStrangers's first orphans
// ended before the 3,000th was started, under -race on 2 cores kept busy,
// and their watches fired before they were counted).
func startOrphan(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "/bin/sleep 3600 </dev/null >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid of the orphan: %q", out)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// A watch of a process that is not a child (Watch of an adopted daemon,
// through watchLater) holds no descriptor of the process's table, fires
// when the process exits, and never fires once cancelled.
func TestReaperWatchesStrangers(t *testing.T) {
	cancelled := startOrphan(t)
	// The reaper runs before the count: a watch cancelled at once.
	late := make(chan bool, 1)
	cancel, err := watchPid(cancelled, func(exited bool) { late <- exited })
	if err != nil {
		t.Fatal(err)
	}
	watches := func() int { // of strangers: children of other tests may be reaped meanwhile
		reaper.mu.Lock()
		defer reaper.mu.Unlock()
		n := 0
		for _, w := range reaper.waits {
			if w.pid == 0 {
				n++
			}
		}
		return n
	}
	before, held := fdCount(t), watches()

	const n = 3000
	p := New(Options{})
	var pids []int
	var exited []<-chan providers.Observed
	for i := 0; i < n; i++ {
		pid := startOrphan(t)
		st, ok := readStat(pid)
		if !ok {
			t.Fatal("no stat of the stranger")
		}
		h := HandleInfo{Pid: pid, StartTicks: st.StartTicks, Pgid: pid}.Encode()
		resp, err := p.Watch(context.Background(), providers.WatchRequest{
			Addr: spec.Address{Kind: spec.KindDaemon, Name: "stranger" + strconv.Itoa(i)}, Handle: h})
		if err != nil {
			t.Fatal(err)
		}
		pids, exited = append(pids, pid), append(exited, resp.Exited)
	}
	// Once the reaper holds the watches, each pidfd Watch opened is
	// closed. Held in the process's table instead, they would be n more;
	// a few more than before may be another goroutine's, for a moment.
	deadline := time.Now().Add(30 * time.Second)
	for watches() < held+n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d watches of strangers reached the reaper", watches()-held, n)
		}
		time.Sleep(time.Millisecond)
	}
	if after := fdCount(t); after >= before+n/2 {
		t.Fatalf("the process holds %d descriptors while %d strangers are watched, %d before", after, n, before)
	}
	cancel()
	syscall.Kill(cancelled, syscall.SIGKILL)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i, ch := range exited {
		select {
		case o := <-ch:
			if o.State == providers.StateRunning {
				t.Fatalf("stranger %d: reported %+v", i, o)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the watch of stranger %d, killed, never fired", i)
		}
	}
	select {
	case <-late:
		t.Fatal("a cancelled watch fired")
	default:
	}
}

// Senders that meet the reaper's socket full wait for it one at a time:
// orch up's start registers a watch of every adopted daemon, and its
// shutdown cancels them all at once. When each sender polled the full
// socket on a thread of its own, the senders woke one another 10 ms at a
// time: adopting 10,000 daemons took 28 s, and their shutdown 148 s. Here
// the socket's buffer is made small, so that 1,000 watches registered at
// once and then cancelled at once fill it often.
func TestReaperSendersWaitInTurn(t *testing.T) {
	p := startSleep(t)
	defer func() {
		p.Kill()
		p.Wait()
	}()
	// The reaper runs before its buffer is made small.
	cancel, err := watchPid(p.Pid, func(bool) {})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	size, err := unix.GetsockoptInt(reaper.sock, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(reaper.sock, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	defer unix.SetsockoptInt(reaper.sock, unix.SOL_SOCKET, unix.SO_SNDBUF, size/2) // the kernel doubles what is set
	waited := reaper.waited.Load()
	reaper.overlapped.Store(false)

	const n = 1000
	cancels := make([]func(), n)
	var wg sync.WaitGroup
	at := func(f func(i int)) {
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				f(i)
			}()
		}
		close(start)
		wg.Wait()
	}
	at(func(i int) {
		cancel, err := watchPid(p.Pid, func(bool) {})
		if err != nil {
			t.Error(err)
			return
		}
		cancels[i] = cancel
	})
	if t.Failed() {
		t.FailNow()
	}
	at(func(i int) { cancels[i]() })
	if reaper.waited.Load() == waited {
		t.Fatal("no sender met the socket full: the test proves nothing")
	}
	if reaper.overlapped.Load() {
		t.Fatal("senders waited for the reaper's socket at once")
	}
	// Every cancel reached the thread: a watch registered now is
	// served, after them.
	fired := make(chan bool, 1)
	cancel, err = watchPid(p.Pid, func(exited bool) { fired <- exited })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	p.Kill()
	select {
	case exited := <-fired:
		if !exited {
			t.Fatal("the last watch fired without an exit")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the last watch never fired")
	}
}
