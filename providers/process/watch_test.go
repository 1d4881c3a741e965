package process_test

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

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
	h := process.HandleInfo{Pid: cmd.Process.Pid, StartTicks: start, Pgid: cmd.Process.Pid}.Encode()
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
	select {
	case o := <-resp.Exited:
		t.Fatalf("reported %+v while it runs", o)
	case <-time.After(20 * time.Millisecond):
	}
	cmd.Process.Kill()
	o, ok := waitObserved(t, resp.Exited)
	if !ok || o.State == providers.StateRunning {
		t.Fatalf("got %+v, %v; want not running", o, ok)
	}
}
