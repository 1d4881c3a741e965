package metrics_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/agent/agenttest"
	"github.com/orch-dev/orch/providers/wasm/wasmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agenttest.Cleanup()
	wasmtest.Remove()
	os.Exit(code)
}

const config = `
daemon "crashy" {
  command = ["/bin/sleep", "1000"]
  restart {
    policy  = "always"
    backoff = "1ms"
  }
}
daemon "web" {
  count   = 2
  command = ["/bin/sh", "-c", "exec sleep 1000"]
  health {
    exec     = ["/bin/true"]
    interval = "50ms"
  }
}
`

// sample returns the value of the series with exactly these labels.
func sample(t *testing.T, text, name, labels string) (float64, bool) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s%s: %v", name, labels, err)
	}
	return v, true
}

// TestScrapeAfterCrash kills a daemon and scrapes the agent: the restart,
// the signal it died of, the health probes, CPU and memory are there, and
// promtool (Debian's prometheus package) finds nothing wrong with the
// text.
func TestScrapeAfterCrash(t *testing.T) {
	u := agenttest.Start(t, config)
	c := u.Client()
	pid := u.Started("daemon.crashy", 1)
	syscall.Kill(pid, syscall.SIGKILL)
	u.Started("daemon.crashy", 2)
	ctx := context.Background()
	var text string
	agenttest.Eventually(t, "the restart and the health probes in /metrics", func() bool {
		var err error
		if text, err = c.Metrics(ctx); err != nil {
			t.Fatal(err)
		}
		r, _ := sample(t, text, "orch_instance_restarts_total", `{address="daemon.crashy"}`)
		p, _ := sample(t, text, "orch_health_check_duration_seconds_count", `{address="daemon.web[1]"}`)
		return r == 1 && p >= 2
	})
	for _, want := range []struct {
		name, labels string
		value        float64
	}{
		{"orch_instance_last_exit_code", `{address="daemon.crashy"}`, 128 + 9},
		{"orch_instance_exits_total", `{address="daemon.crashy"}`, 1},
		{"orch_instance_ready", `{address="daemon.web[0]"}`, 1},
		{"orch_instance_state", `{address="daemon.web[0]",kind="daemon",runtime="runtime.process.default",state="ready"}`, 1},
		{"orch_instance_state", `{address="daemon.crashy",kind="daemon",runtime="runtime.process.default",state="running"}`, 1},
		{"orch_config_reloads_total", `{result="valid"}`, 0},
	} {
		got, ok := sample(t, text, want.name, want.labels)
		if !ok || got != want.value {
			t.Errorf("%s%s = %v (found: %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	if rss, _ := sample(t, text, "orch_instance_memory_rss_bytes", `{address="daemon.web[1]"}`); rss <= 0 {
		t.Errorf("no memory for daemon.web[1]:\n%s", grep(text, "daemon.web"))
	}
	if _, ok := sample(t, text, "orch_instance_cpu_seconds_total", `{address="daemon.web[1]"}`); !ok {
		t.Errorf("no CPU time for daemon.web[1]")
	}
	if n, _ := sample(t, text, "orch_applies_total", ""); n < 2 {
		t.Errorf("orch_applies_total = %v, want the first apply and the restart", n)
	}
	if n, _ := sample(t, text, "orch_events_total", `{type="exited"}`); n != 1 {
		t.Errorf(`orch_events_total{type="exited"} = %v, want 1`, n)
	}
	if _, ok := sample(t, text, "orch_apply_duration_seconds_count", ""); !ok {
		t.Errorf("no apply duration histogram")
	}
	if t.Failed() {
		t.Log(text)
	}
	promtool(t, text)
}

// promtool runs promtool check metrics on text; missing, it fails under
// CI=true and skips otherwise.
func promtool(t *testing.T, text string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (Debian package prometheus; make deps)")
		}
		t.Skip("promtool is not installed (Debian package prometheus; make deps)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkScrape1000 scrapes an orch up supervising 1,000 daemons over
// its socket: the whole answer, read.
func BenchmarkScrape1000(b *testing.B) {
	u := agenttest.Start(b, `
daemon "s" {
  count   = 1000
  command = ["/bin/sleep", "1000"]
}
`)
	c := u.Client()
	ctx := context.Background()
	agenttest.Eventually(b, "1,000 running", func() bool {
		text, err := c.Metrics(ctx)
		return err == nil && strings.Count(text, `state="running"`) == 1000
	})
	time.Sleep(100 * time.Millisecond)
	for b.Loop() {
		text, err := c.Metrics(ctx)
		if err != nil || len(text) < 1000 {
			b.Fatal(err)
		}
	}
}

// TestModuleCallLatency hosts a real WebAssembly module (eventcount, built
// with GOOS=wasip1) that counts daemons' lifecycle events: its init and
// start hooks and one event call per event it was sent show in
// orch_module_call_duration_seconds, a histogram promtool accepts.
func TestModuleCallLatency(t *testing.T) {
	wasm := wasmtest.Guest(t, "eventcount")
	u := agenttest.Start(t, `
daemon "crashy" {
  command = ["/bin/sleep", "1000"]
  restart {
    policy  = "always"
    backoff = "1ms"
  }
}
module "eventcount" {
  source = "`+wasm+`"
  config = { events = ["started", "exited"] }
}
`)
	c := u.Client()
	pid := u.Started("daemon.crashy", 1)
	calls := func() (text string, n float64) {
		text, err := c.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n, _ = sample(t, text, "orch_module_call_duration_seconds_count", `{address="module.eventcount",hook="event"}`)
		return text, n
	}
	var text string
	agenttest.Eventually(t, "the module running", func() bool {
		text, _ = calls()
		_, ok := sample(t, text, "orch_module_call_duration_seconds_count", `{address="module.eventcount",hook="start"}`)
		return ok
	})
	_, before := calls()
	syscall.Kill(pid, syscall.SIGKILL)
	u.Started("daemon.crashy", 2)
	// The crash and the restart reach it (in one call or two: events go
	// to a WebAssembly module in batches).
	agenttest.Eventually(t, "the module's event calls of the crash in /metrics", func() bool {
		var n float64
		text, n = calls()
		return n > before
	})
	for _, hook := range []string{"init", "start"} {
		n, ok := sample(t, text, "orch_module_call_duration_seconds_count", `{address="module.eventcount",hook="`+hook+`"}`)
		if !ok || n != 1 {
			t.Errorf("%s hook calls = %v (found: %v), want 1", hook, n, ok)
		}
	}
	sum, _ := sample(t, text, "orch_module_call_duration_seconds_sum", `{address="module.eventcount",hook="event"}`)
	inf, _ := sample(t, text, "orch_module_call_duration_seconds_bucket", `{address="module.eventcount",hook="event",le="+Inf"}`)
	cnt, _ := sample(t, text, "orch_module_call_duration_seconds_count", `{address="module.eventcount",hook="event"}`)
	if sum <= 0 || inf != cnt {
		t.Errorf("event calls: sum %v s, +Inf bucket %v, count %v: want a positive sum and the +Inf bucket equal to the count", sum, inf, cnt)
	}
	if t.Failed() {
		t.Log(grep(text, "orch_module_call"))
	}
	promtool(t, text)
}
