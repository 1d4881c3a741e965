package process

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as a process may choose.
	line := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n"
	st, ok := parseStat([]byte(line))
	if !ok || st.State != 'S' || st.Pgid != 4242 || st.Sid != 4242 || st.StartTicks != 987654 {
		t.Fatalf("parseStat = %+v, %v", st, ok)
	}
	// A real zombie: a child not waited for yet.
	cmd := exec.Command("/bin/sh", "-c", "exit 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok = readStat(cmd.Process.Pid)
		if ok && st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no zombie: %+v %v", st, ok)
		}
		time.Sleep(time.Millisecond)
	}
	if !st.HasExit || syscall.WaitStatus(st.ExitStatus).ExitStatus() != 5 {
		t.Fatalf("zombie stat %+v, want exit status 5", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"} {
		if _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) ok", bad)
		}
	}
	if st, ok := readStat(os.Getpid()); !ok || st.State == 'Z' || st.StartTicks == 0 {
		t.Fatalf("readStat(self) = %+v, %v", st, ok)
	}
	if _, ok := readStat(0); ok {
		t.Fatal("readStat(0) ok")
	}
}

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		`daemon.api`:            "daemon.api",
		`daemon.api[1]`:         "daemon.api[1]",
		`daemon.api["eu west"]`: "daemon.api[%22eu%20west%22]",
		`daemon.api["a/b%"]`:    "daemon.api[%22a%2Fb%25%22]",
	} {
		a, err := parseAddr(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := FileName(a); got != want {
			t.Errorf("FileName(%s) = %q, want %q", in, got, want)
		}
	}
}

func parseAddr(s string) (spec.Address, error) { return spec.ParseAddress(s) }

// TestWaitExit covers both ways of waiting for a process that is not our
// child to exit: pidfd and, where pidfd_open is missing, polling /proc.
func TestWaitExit(t *testing.T) {
	p := New(Options{})
	for _, wait := range []func(context.Context, HandleInfo, func(HandleInfo) procIdentity, time.Time) bool{waitExit, waitExitPolling} {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		st, _ := readStat(cmd.Process.Pid)
		hi := HandleInfo{Pid: cmd.Process.Pid, StartTicks: st.StartTicks}
		if wait(context.Background(), hi, p.identify, time.Now().Add(20*time.Millisecond)) {
			t.Fatal("a running process counted as exited")
		}
		cmd.Process.Kill()
		// Not reaped: the zombie counts as exited.
		if !wait(context.Background(), hi, p.identify, time.Now().Add(10*time.Second)) {
			t.Fatal("exit not seen")
		}
		cmd.Wait()
	}
}

// TestReadStatFile: a short first read ending with a newline is the whole
// file; anything else is read on to the end.
func TestReadStatFile(t *testing.T) {
	dir := t.TempDir()
	for _, text := range []string{"1 (sleep) S 1\n", "no newline at the end", strings.Repeat("x", 100)} {
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := openRO(path)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := readStatFile(fd, buf)
		unix.Close(fd)
		want := min(len(text), len(buf))
		if err != nil || n != want || string(buf[:n]) != text[:want] {
			t.Errorf("readStatFile of %q = %d, %v (%q); want %d", text, n, err, buf[:n], want)
		}
	}
}
