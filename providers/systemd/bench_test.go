package systemd_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/providers/systemd/systemdtest"
)

// benchInMachine runs benchmark name inside a systemd machine when this
// process is outside one, and reports its metrics as this benchmark's;
// it says whether the caller is inside and should measure.
func benchInMachine(b *testing.B, name string) bool {
	if systemdtest.Inside() {
		return true
	}
	m := systemdtest.Boot(b)
	m.BuildOrch(b)
	n := "5x" // iterations inside; ORCH_SYSTEMD_BENCHTIME overrides
	if v := os.Getenv("ORCH_SYSTEMD_BENCHTIME"); v != "" {
		n = v
	}
	out := m.RunSelf(b, pkg, "-test.run=^$", "-test.bench=^"+name+"$", "-test.benchtime="+n, "-test.timeout=30m")
	// "BenchmarkX  5  123 ns/op  4.5 ms/100-units ..."
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], name) {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b.ReportMetric(v, f[i+1])
			}
		}
	}
	return false
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkStart100 starts 100 transient units through the provider, one
// after the other, each returned once systemd has executed its command
// (Type=exec: ready), and then the same 100 with systemd-run (-p
// Type=exec, which also waits for the start job) in the same iteration.
// Reported: the median time for 100 (ms/100-units), systemd-run's
// (systemd-run-ms/100-units) and their ratio (x-systemd-run); and the
// median for 100 started 8 at a time, as the engine starts independent
// daemons (8-at-once-ms/100-units).
func BenchmarkStart100(b *testing.B) {
	if !benchInMachine(b, "BenchmarkStart100") {
		return
	}
	project := fmt.Sprintf("bench%d", os.Getpid()%10000)
	dir := filepath.Join(os.TempDir(), project)
	os.MkdirAll(dir, 0o755)
	var body strings.Builder
	body.WriteString("daemon \"d\" {\n  count = 100\n  runtime = runtime.systemd.host\n  command = [\"/bin/sleep\", \"1000\"]\n}\n")
	cfg := loadB(b, project, body.String())
	rt := cfg.Runtimes[0]
	for _, r := range cfg.Runtimes {
		if r.Kind == systemd.Kind {
			rt = r
		}
	}
	p := systemd.New(systemd.Options{})
	defer p.Close()
	ctx := context.Background()
	clean := func() {
		exec.Command("systemctl", "stop", "orch-"+project+"-*", "sdrun-"+project+"-*").Run()
		exec.Command("systemctl", "reset-failed", "orch-"+project+"-*", "sdrun-"+project+"-*").Run()
	}
	defer clean()
	var orch, par, sdrun []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for _, r := range cfg.Resources {
			if _, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: project, ConfigHash: "h"}); err != nil {
				b.Fatal(err)
			}
		}
		orch = append(orch, time.Since(t0))
		b.StopTimer()
		clean()
		b.StartTimer()
		// As the engine starts independent daemons: several at once.
		t0 = time.Now()
		var g errgroup.Group
		g.SetLimit(8)
		for _, r := range cfg.Resources {
			g.Go(func() error {
				_, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: project, ConfigHash: "h"})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		par = append(par, time.Since(t0))
		t0 = time.Now()
		for j := range 100 {
			out, err := exec.Command("systemd-run", "--quiet", "-p", "Type=exec", "--unit", fmt.Sprintf("sdrun-%s-%d", project, j), "/bin/sleep", "1000").CombinedOutput()
			if err != nil {
				b.Fatalf("systemd-run: %v: %s", err, out)
			}
		}
		sdrun = append(sdrun, time.Since(t0))
		b.StopTimer()
		clean()
		b.StartTimer()
	}
	mo, ms := median(orch), median(sdrun)
	b.ReportMetric(float64(mo)/float64(time.Millisecond), "ms/100-units")
	b.ReportMetric(float64(ms)/float64(time.Millisecond), "systemd-run-ms/100-units")
	b.ReportMetric(float64(mo)/float64(ms), "x-systemd-run")
	b.ReportMetric(float64(median(par))/float64(time.Millisecond), "8-at-once-ms/100-units")
}

// BenchmarkCrashRestart: orch up supervises one unit; each iteration
// kills its main process (SIGKILL) and waits until a new process of the
// unit runs, started by orch's restart policy (backoff and max_backoff
// 1ms: the restart path, not its policy's delay). Reported:
// the median from the kill to the new process (ms/restart).
func BenchmarkCrashRestart(b *testing.B) {
	if !benchInMachine(b, "BenchmarkCrashRestart") {
		return
	}
	project := fmt.Sprintf("crash%d", os.Getpid()%10000)
	dir := filepath.Join(os.TempDir(), project)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(fmt.Sprintf(`orch {
  name = %q
}
runtime "systemd" "host" {}
daemon "w" {
  runtime = runtime.systemd.host
  command = ["/bin/sleep", "1000"]
  restart {
    backoff      = "1ms"
    max_backoff  = "1ms"
    max_restarts = 0
  }
}
`, project)), 0o644)
	cmd := exec.Command(orchBin, "up", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	unit := "orch-" + project + "-daemon-w.service"
	pidOf := func() int {
		out, _ := exec.Command("systemctl", "show", "-p", "MainPID", "--value", unit).Output()
		n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for pidOf() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("the unit did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		old := pidOf()
		t0 := time.Now()
		syscall.Kill(old, syscall.SIGKILL)
		for {
			if p := pidOf(); p != 0 && p != old {
				break
			}
			if time.Since(t0) > time.Minute {
				b.Fatal("not restarted within a minute")
			}
		}
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(float64(median(ds))/float64(time.Millisecond), "ms/restart")
}
