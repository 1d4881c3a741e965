package process

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"golang.org/x/sys/unix"
)

// inotifyCount counts the inotify descriptors process pid holds.
func inotifyCount(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// TestCloseLater: a descriptor handed to the log daemon (CloseLater) is
// held there, so the caller's own close is not the last, until the
// connection that handed it ends; then the log daemon closes it. Without
// a log daemon, CloseLater says so and starts none.
func TestCloseLater(t *testing.T) {
	state := t.TempDir()
	p := New(Options{})
	if err := p.CloseLater(state, 0); err == nil {
		t.Fatal("CloseLater with no log daemon running succeeded")
	}
	if _, err := os.Stat(filepath.Join(state, "logs", "logd.pid")); err == nil {
		t.Fatal("CloseLater started a log daemon")
	}
	t.Cleanup(func() {
		if pid := logdPidOf(state); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	r := &spec.Resource{Addr: spec.Address{Kind: spec.KindDaemon, Name: "a"}, Command: []string{"sleep", "60"}, Umask: spec.DefaultUmask, Log: spec.Log{MaxSize: 1 << 20, MaxFiles: 3}}
	resp, err := p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: state, Project: "proj"})
	if err != nil {
		t.Fatal(err)
	}
	hi, _ := ParseHandle(resp.Handle)
	t.Cleanup(func() { syscall.Kill(-hi.Pgid, syscall.SIGKILL) })
	logd := logdPidOf(state)
	if logd <= 0 {
		t.Fatal("no log daemon after a start")
	}

	// A connection of its own, so that the test can end it.
	logs := filepath.Join(state, "logs")
	s, err := dialLogd(logs, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, state, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	if err := logdExchange(s, logs, logdMsg{Op: "linger", Name: "descriptor"}, fd, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if n := inotifyCount(logd); n != 1 {
		t.Fatalf("the log daemon holds %d inotify descriptors after linger, want 1", n)
	}
	unix.Close(s)
	deadline := time.Now().Add(10 * time.Second)
	for inotifyCount(logd) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the log daemon still holds the descriptor 10 s after its connection ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Through the Provider's own connection.
	fd2, _ := unix.InotifyInit1(unix.IN_CLOEXEC)
	defer unix.Close(fd2)
	if err := p.CloseLater(state, fd2); err != nil {
		t.Fatal(err)
	}
	if n := inotifyCount(logd); n != 1 {
		t.Fatalf("the log daemon holds %d inotify descriptors after CloseLater, want 1", n)
	}
}
