package process_test

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
)

func waitObserved(t *testing.T, ch <-chan providers.Observed) (providers.Observed, bool) {
	t.Helper()
	select {
	case o, ok := <-ch:
		return o, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return providers.Observed{}, false
}

// A child of the Provider is reported with its exit code, through its reaper.
func TestWatchChild(t *testing.T) {
	e := newEnv(t, process.Options{})
	h, _ := e.start(res("watched", "/bin/sh", "-c", "sleep 0.05; exit 3"))
	resp, err := e.p.Watch(context.Background(), providers.WatchRequest{Addr: addr("watched"), Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	o, ok := waitObserved(t, resp.Exited)
	if !ok || o.State != providers.StateExited || o.ExitCode != 3 {
		t.Fatalf("got %+v, %v; want exited with code 3", o, ok)
	}
	if _, ok := <-resp.Exited; ok {
		t.Fatal("channel not closed after the notification")
	}
}

// A process this Provider did not start is watched through a pidfd; a
// cancelled watch closes its channel without a value.
func TestWatchStranger(t *testing.T) {
	cmd, h := startStranger(t)
	p := process.New(process.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	resp, err := p.Watch(ctx, providers.WatchRequest{Addr: addr("stranger"), Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if o, ok := waitObserved(t, resp.Exited); ok {
		t.Fatalf("cancelled watch reported %+v", o)
	}

	resp, err = p.Watch(context.Background(), providers.WatchRequest{Addr: addr("stranger"), Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	toldNothing(t, resp.Exited, 20*time.Millisecond, "while it runs")
	cmd.Process.Kill()
	cmd.Wait() // its parent (this test) reaps it: the end is told then
	o, ok := waitObserved(t, resp.Exited)
	if !ok || o.State == providers.StateRunning {
		t.Fatalf("got %+v, %v; want not running", o, ok)
	}
}

// toldNothing fails the test if ch carries anything within d: what a watch
// must not tell (a process that runs, a zombie not reaped yet) has no
// event to wait for, only a window in which nothing may come.
func toldNothing(t *testing.T, ch <-chan providers.Observed, d time.Duration, when string) {
	t.Helper()
	select {
	case o := <-ch:
		t.Fatalf("told %+v %s", o, when)
	case <-time.After(d):
	}
}

// notified is a NotifyExit's callback for a test: it counts its calls and
// hands each observation over.
type notified struct {
	calls atomic.Int32
	ch    chan providers.Observed
}

func newNotified() *notified { return &notified{ch: make(chan providers.Observed, 4)} }

func (n *notified) exited(o providers.Observed) {
	n.calls.Add(1)
	n.ch <- o
}

// TestNotifyExit: NotifyExit (providers.ExitNotifier) tells of a child's
// end with its exit code, once; of a process this Provider did not start
// (a pidfd) once it ends and not before; at once of what already ended;
// never after a cancel that came first; and parks no goroutine per watch
// (supervising 10,000 daemons parked 10,000 in Watch).
func TestNotifyExit(t *testing.T) {
	e := newEnv(t, process.Options{})
	var p providers.ExitNotifier = e.p

	h, _ := e.start(res("code", "/bin/sh", "-c", "sleep 0.05; exit 3"))
	n := newNotified()
	if _, err := p.NotifyExit(providers.WatchRequest{Addr: addr("code"), Handle: h}, n.exited); err != nil {
		t.Fatal(err)
	}
	if o, _ := waitObserved(t, n.ch); o.State != providers.StateExited || o.ExitCode != 3 {
		t.Fatalf("got %+v; want exited with code 3", o)
	}
	// Ended: a watch now is told at once.
	again := newNotified()
	if _, err := p.NotifyExit(providers.WatchRequest{Addr: addr("code"), Handle: h}, again.exited); err != nil {
		t.Fatal(err)
	}
	if o, _ := waitObserved(t, again.ch); o.ExitCode != 3 {
		t.Fatalf("a watch after the end got %+v", o)
	}

	// Cancelled before the end: never called.
	h2, hi2 := e.start(res("cancelled", "/bin/sleep", "600"))
	quiet := newNotified()
	cancel, err := p.NotifyExit(providers.WatchRequest{Addr: addr("cancelled"), Handle: h2}, quiet.exited)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	told := newNotified()
	if _, err := p.NotifyExit(providers.WatchRequest{Addr: addr("cancelled"), Handle: h2}, told.exited); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(-hi2.Pgid, syscall.SIGKILL)
	if o, _ := waitObserved(t, told.ch); o.State == providers.StateRunning {
		t.Fatalf("got %+v after the kill", o)
	}
	if c := quiet.calls.Load(); c != 0 {
		t.Fatalf("a cancelled watch was called %d times", c)
	}

	// A stranger, through a pidfd on the reaper's thread.
	cmd, sh := startStranger(t)
	var fresh providers.ExitNotifier = process.New(process.Options{})
	strangerQuiet, stranger := newNotified(), newNotified()
	cancel, err = fresh.NotifyExit(providers.WatchRequest{Addr: addr("stranger"), Handle: sh}, strangerQuiet.exited)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := fresh.NotifyExit(providers.WatchRequest{Addr: addr("stranger"), Handle: sh}, stranger.exited); err != nil {
		t.Fatal(err)
	}
	toldNothing(t, stranger.ch, 20*time.Millisecond, "while it runs")
	cmd.Process.Kill()
	// A zombie until its parent (this test) reaps it: its pid is still
	// taken, and its end is held back (a restart meanwhile would find it
	// in a pid file, alive to kill(pid, 0)).
	exitedUnreaped(t, cmd.Process.Pid)
	toldNothing(t, stranger.ch, 300*time.Millisecond, "while its zombie awaits its parent")
	cmd.Wait()
	if o, _ := waitObserved(t, stranger.ch); o.State == providers.StateRunning {
		t.Fatalf("got %+v; want not running", o)
	}
	if c, s := strangerQuiet.calls.Load(), stranger.calls.Load(); c != 0 || s != 1 {
		t.Fatalf("the cancelled watch of the stranger was called %d times, the other %d", c, s)
	}

	// No goroutine parked per watch: 40 running children, watched.
	var hs []providers.Handle
	for i := 0; i < 40; i++ {
		h, _ := e.start(res(fmt.Sprintf("many%d", i), "/bin/sleep", "600"))
		hs = append(hs, h)
	}
	before := runtime.NumGoroutine()
	var cancels []func()
	for i, h := range hs {
		c, err := p.NotifyExit(providers.WatchRequest{Addr: addr(fmt.Sprintf("many%d", i)), Handle: h}, func(providers.Observed) {})
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, c)
	}
	if after := runtime.NumGoroutine(); after-before >= len(hs)/2 {
		t.Fatalf("%d goroutines more for %d watches", after-before, len(hs))
	}
	for _, c := range cancels {
		c()
	}
}

// startStranger starts a sleep as a child of the test, not of any
// Provider (a stranger to a Provider, as an adopted daemon is), in a
// process group of its own, and returns it with its handle.
func startStranger(t *testing.T) (*exec.Cmd, providers.Handle) {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	_, _, _, start, ok := stat(cmd.Process.Pid)
	if !ok {
		t.Fatal("no stat")
	}
	return cmd, process.HandleInfo{Pid: cmd.Process.Pid, StartTicks: start, Pgid: cmd.Process.Pid}.Encode()
}

// exitedUnreaped waits until child pid has exited, leaving it a zombie
// (waitid with WNOWAIT): its parent, the test, reaps it later.
func exitedUnreaped(t *testing.T, pid int) {
	t.Helper()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}
