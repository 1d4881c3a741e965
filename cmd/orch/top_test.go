package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmuxPane runs a command in a detached tmux session of a server of its
// own (its socket in a temporary directory), 100x30.
type tmuxPane struct {
	t    *testing.T
	sock string
	// more, when set, tells what else to show when a wait fails (what
	// orch itself says of the instances).
	more func() string
}

func newTmux(t *testing.T, env []string, argv ...string) *tmuxPane {
	t.Helper()
	bin, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed (Debian package tmux; make deps)")
		}
		t.Skip("tmux is not installed (Debian package tmux; make deps)")
	}
	p := &tmuxPane{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	shell := "exec env -i"
	for _, kv := range append(env, "TERM=xterm-256color") {
		shell += " '" + kv + "'"
	}
	for _, a := range argv {
		shell += " '" + a + "'"
	}
	cmd := exec.Command(bin, "-S", p.sock, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", shell)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(bin, "-S", p.sock, "kill-server").Run() })
	return p
}

func (p *tmuxPane) capture() string {
	out, err := exec.Command("tmux", "-S", p.sock, "capture-pane", "-p").Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func (p *tmuxPane) keys(keys ...string) {
	p.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"-S", p.sock, "send-keys"}, keys...)...).CombinedOutput(); err != nil {
		p.t.Fatalf("tmux send-keys %v: %v\n%s", keys, err, out)
	}
}

// waitFor polls the pane until cond holds on it (30 s at most) and returns
// how long that took.
func (p *tmuxPane) waitFor(what string, cond func(screen string) bool) time.Duration {
	p.t.Helper()
	start := time.Now()
	for {
		s := p.capture()
		if cond(s) {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			extra := ""
			if p.more != nil {
				extra = p.more()
			}
			p.t.Fatalf("orch top never showed %s; the screen:\n%s\n%s", what, s, extra)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// row returns the cells of the screen line of addr, by column header
// (every cell is one word: an empty one is "-").
func row(screen, addr string) map[string]string {
	var head []string
	for _, l := range strings.Split(screen, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "ADDRESS" {
			head = f
		}
		if len(f) > 0 && f[0] == addr && len(f) == len(head) {
			out := map[string]string{}
			for i, h := range head {
				out[h] = f[i]
			}
			return out
		}
	}
	return nil
}

// TestTopUnderTmux uses orch top as a person would, in a terminal: it
// shows the instances, shows a crash and its restart as they happen, and
// restarts the selected daemon on r.
func TestTopUnderTmux(t *testing.T) {
	e := newEngineTest(t, `
daemon "worker" {
  count   = 2
  command = ["/bin/sleep", "1000"]
  restart {
    policy  = "always"
    backoff = "1ms"
  }
}
daemon "api" {
  command = ["/bin/sleep", "1000"]
}
`)
	p := e.start("up")
	st := e.allRunning(p, "daemon.worker[0]", "daemon.worker[1]", "daemon.api")
	home := t.TempDir()
	pane := newTmux(t, []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}, orchBin, "top", e.dir)
	pane.more = func() string {
		r := orch(t, e.dir, nil, "status", e.dir)
		return "orch status:\n" + r.stdout + r.stderr + "\norch up's output:\n" + p.output()
	}
	// 100 columns: ADDRESS KIND STATE RST PID/ID UPTIME CPU MEM
	pane.waitFor("the three daemons running", func(s string) bool {
		for _, a := range []string{"daemon.api", "daemon.worker[0]", "daemon.worker[1]"} {
			if r := row(s, a); r["STATE"] != "running" {
				return false
			}
		}
		return strings.Contains(s, "3 instances")
	})

	old := st["daemon.worker[1]"].Pid
	syscall.Kill(old, syscall.SIGKILL)
	took := pane.waitFor("worker[1]'s restart", func(s string) bool {
		r := row(s, "daemon.worker[1]")
		return r["RST"] == "1" && r["PID/ID"] != "-" && r["PID/ID"] != itoa(old)
	})
	t.Logf("orch top showed the crash and restart %v after the kill", took)
	e.pids.add(e.status()["daemon.worker[1]"].Pid)

	// The cursor starts on the first row, daemon.api (sorted by address).
	apiPid := st["daemon.api"].Pid
	pane.keys("r")
	pane.waitFor("daemon.api restarted", func(s string) bool {
		r := row(s, "daemon.api")
		return r["RST"] == "1" && r["PID/ID"] != "-" && r["PID/ID"] != itoa(apiPid)
	})
	if alive(apiPid) {
		t.Errorf("daemon.api's old process %d still runs after r", apiPid)
	}
	e.pids.add(e.status()["daemon.api"].Pid)

	// x stops it and holds it stopped; t starts it again.
	pane.keys("x")
	pane.waitFor("daemon.api held", func(s string) bool {
		r := row(s, "daemon.api")
		return r["STATE"] == "held" && r["PID/ID"] == "-"
	})
	pane.keys("t")
	pane.waitFor("daemon.api started again", func(s string) bool {
		r := row(s, "daemon.api")
		return r["STATE"] == "running" && r["PID/ID"] != "-"
	})
	e.pids.add(e.status()["daemon.api"].Pid)

	// Enter follows the log; q goes back; / filters.
	pane.keys("/", "w", "o", "r", "k", "e", "r", "Enter")
	pane.waitFor("the filter", func(s string) bool {
		return row(s, "daemon.api") == nil && row(s, "daemon.worker[0]") != nil && strings.Contains(s, `filter "worker"`)
	})
	pane.keys("Enter")
	pane.waitFor("the log view", func(s string) bool { return strings.Contains(s, "log of daemon.worker[0]") })
	pane.keys("q")
	pane.waitFor("the list again", func(s string) bool { return row(s, "daemon.worker[1]") != nil })
	pane.keys("q")
	pane.waitFor("orch top gone", func(s string) bool { return !strings.Contains(s, "orch top") })
}

func itoa(n int) string { return strconv.Itoa(n) }
