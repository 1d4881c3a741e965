package web_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/agent/agenttest"
)

// cpuTicks is the user and system time of pid, in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func need(b *testing.B, cmd, pkg string) string {
	p, err := exec.LookPath(cmd)
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatalf("%s is not installed (Debian package %s; make deps)", cmd, pkg)
		}
		b.Skipf("%s is not installed (Debian package %s; make deps)", cmd, pkg)
	}
	return p
}

// BenchmarkAgentIdle1000 measures the CPU of an orch up supervising 1,000
// idle daemons while orch top runs (in tmux) and the web page is open (in
// headless Chromium): the share of one core over 10 s, reported as
// %core, first alone, then watched. Target: under 1.
func BenchmarkAgentIdle1000(b *testing.B) {
	tmux := need(b, "tmux", "tmux")
	chromium := need(b, "chromium", "chromium")
	l, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	port := l
	u := agenttest.Start(b, fmt.Sprintf(`
orch {
  http { listen = "127.0.0.1:%d" }
}
daemon "s" {
  count   = 1000
  command = ["/bin/sleep", "100000"]
}
`, port))
	c := u.Client()
	agenttest.Eventually(b, "1,000 running", func() bool {
		s, err := c.Snapshot(b.Context())
		if err != nil {
			return false
		}
		n := 0
		for _, in := range s.Instances {
			if in.State == "running" {
				n++
			}
		}
		return n == 1000
	})
	const window = 10 * time.Second
	measure := func(b *testing.B) {
		for b.Loop() {
			t0 := cpuTicks(b, u.Pid())
			time.Sleep(window)
			t1 := cpuTicks(b, u.Pid())
			b.ReportMetric(float64(t1-t0)/100/window.Seconds()*100, "%core")
		}
	}
	b.Run("alone", measure)
	// What each watcher's request costs the agent, in CPU.
	perRequest := func(name string, do func()) {
		b.Run(name, func(b *testing.B) {
			t0 := cpuTicks(b, u.Pid())
			n := 0
			for b.Loop() {
				do()
				n++
			}
			b.ReportMetric(float64(cpuTicks(b, u.Pid())-t0)*10/float64(n), "agent-cpu-ms/op")
		})
	}
	perRequest("snapshot", func() {
		if _, err := c.Snapshot(b.Context()); err != nil {
			b.Fatal(err)
		}
	})
	perRequest("usage", func() {
		if _, err := c.Usage(b.Context()); err != nil {
			b.Fatal(err)
		}
	})
	perRequest("graph", func() {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/graph.svg", port))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
	sock := filepath.Join(b.TempDir(), "tmux.sock")
	shell := fmt.Sprintf("exec env -i HOME=%s PATH=%s TERM=xterm-256color %s top %s", b.TempDir(), os.Getenv("PATH"), u.Bin, u.Dir)
	if out, err := exec.Command(tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", shell).CombinedOutput(); err != nil {
		b.Fatalf("tmux: %v\n%s", err, out)
	}
	b.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	time.Sleep(2 * time.Second)
	b.Run("top", measure)
	page := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir="+b.TempDir(), "--remote-debugging-port=0", fmt.Sprintf("http://127.0.0.1:%d/", port))
	page.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := page.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-page.Process.Pid, syscall.SIGKILL)
		page.Wait()
	})
	time.Sleep(5 * time.Second) // both have loaded
	b.Run("top+page", measure)
}
