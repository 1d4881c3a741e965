package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTraceShowsOpenatAndDetaches traces a daemon that opens a file
// again and again (through a child it forks each time): the openat line
// comes, prefixed by a pid; after Ctrl-C (SIGINT to orch trace) the
// daemon is no longer traced and runs on.
func TestTraceShowsOpenatAndDetaches(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("strace is not installed (Debian package strace; make deps)")
		}
		t.Skip("strace is not installed (Debian package strace; make deps)")
	}
	e := newEngineTest(t, `
daemon "opener" {
  command = ["/bin/sh", "-c", "while :; do cat /etc/hostname >/dev/null; sleep 0.1; done"]
}
`)
	p := e.start("up")
	pid := e.allRunning(p, "daemon.opener")["daemon.opener"].Pid

	cmd := newOrchCmd(t, e.dir, "trace", "-e", "trace=openat,execve", "opener", e.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("orch trace ended: %v\n%s\n%s", cmd.Wait(), strings.Join(seen, "\n"), stderr.String())
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, "[pid ") && strings.Contains(l, `openat(AT_FDCWD, "/etc/hostname"`) {
				break wait
			}
		case <-deadline:
			t.Fatalf("no openat of /etc/hostname within 30s:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
		}
	}
	for _, l := range seen {
		if !strings.HasPrefix(l, "[pid ") && !strings.HasPrefix(l, "# tracing daemon.opener") {
			t.Errorf("a line without its pid: %q", l)
		}
	}
	// Ctrl-C: orch trace ends, and the agent detaches strace.
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("orch trace after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("orch trace did not end on Ctrl-C")
	}
	e.waitFor(p, "the daemon no longer traced", func() bool { return tracerPid(pid) == "0" })
	time.Sleep(300 * time.Millisecond)
	st := e.status()["daemon.opener"]
	if st.State != "running" || st.Pid != pid || !alive(pid) {
		t.Fatalf("after the trace, daemon.opener: %+v (was pid %d)", st, pid)
	}
	if state := procState(pid); state == "t" || state == "T" {
		t.Fatalf("daemon.opener is left stopped (state %s)", state)
	}
	if r := orch(t, e.dir, nil, "trace", "daemon.nothere", e.dir); r.code != 1 || !strings.Contains(r.stderr, "daemon.nothere") {
		t.Errorf("trace of an unknown daemon: %d %q", r.code, r.stderr)
	}
}

func tracerPid(pid int) string {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		return "gone"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return strings.Fields(s[i+1:])[0]
}

// orch trace -ebpf counts the daemon's system calls with bpftrace for
// -for, then prints them ("openat: N"). Where bpftrace cannot attach (a
// container without tracefs, as the machine these tests were written on)
// it must say so: exit 1 with bpftrace's own error, never a silent empty
// count. Either way the daemon runs on.
func TestTraceEBPF(t *testing.T) {
	if _, err := exec.LookPath("bpftrace"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bpftrace is not installed (Debian package bpftrace; make deps)")
		}
		t.Skip("bpftrace is not installed (Debian package bpftrace; make deps)")
	}
	e := newEngineTest(t, `
daemon "opener" {
  command = ["/bin/sh", "-c", "while :; do cat /etc/hostname >/dev/null; sleep 0.1; done"]
}
`)
	p := e.start("up")
	pid := e.allRunning(p, "daemon.opener")["daemon.opener"].Pid
	r := orch(t, e.dir, nil, "trace", "-ebpf", "-for", "2s", "opener", e.dir)
	switch r.code {
	case 0:
		if !regexp.MustCompile(`(?m)^openat: [1-9]\d*$`).MatchString(r.stdout) {
			t.Errorf("no count of openat:\n%s%s", r.stdout, r.stderr)
		}
	case 1:
		if !strings.Contains(r.stderr, "cannot trace daemon.opener: bpftrace ended") || !strings.Contains(r.stdout, "ERROR") {
			t.Errorf("bpftrace failed without saying why:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		}
		t.Logf("bpftrace cannot attach here; orch said:\n%s%s", r.stdout, r.stderr)
	default:
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !alive(pid) {
		t.Fatalf("daemon.opener (pid %d) did not survive the trace", pid)
	}
}
