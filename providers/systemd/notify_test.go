package systemd_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/orch-dev/orch/providers"
)

// TestMain makes this test binary a notify daemon when the unit starts it
// with ORCH_TEST_NOTIFY_AFTER set: it sends READY=1 from its main process
// after that long, and then never WATCHDOG=1.
func TestMain(m *testing.M) {
	if d := os.Getenv("ORCH_TEST_NOTIFY_AFTER"); d != "" {
		wait, _ := time.ParseDuration(d)
		time.Sleep(wait)
		if ok, err := sdnotify.SdNotify(false, sdnotify.SdNotifyReady); !ok || err != nil {
			os.Exit(3)
		}
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testNotify: health { notify = true } makes the unit Type=notify; its
// health is starting until its READY=1, healthy then, and unhealthy once
// systemd aborts it for a missed watchdog.
func testNotify(t *testing.T) {
	f := newFixture(t, "daemon \"d\" {\n  runtime = runtime.systemd.host\n  command = [\"/orch/test.bin\"]\n"+
		"  env = { ORCH_TEST_NOTIFY_AFTER = \"1s\" }\n  health {\n    notify = true\n    watchdog = \"2s\"\n  }\n}\n")
	t0 := time.Now()
	resp := f.start(f.r, "h")
	unit := unitOf(t, resp.Handle)
	if got := show(t, unit, "Type"); got != "notify" {
		t.Errorf("Type=%s", got)
	}
	if got := show(t, unit, "WatchdogUSec"); got != "2s" {
		t.Errorf("WatchdogUSec=%s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hr := func(wait bool, prior providers.HealthStatus) providers.HealthResponse {
		t.Helper()
		r, err := f.p.Health(ctx, providers.HealthRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp.Handle, Wait: wait, Prior: prior})
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		return r
	}
	if h := hr(false, 0); h.Status != providers.HealthStarting {
		t.Errorf("health before READY=1: %+v", h)
	}
	if h := hr(true, providers.HealthStarting); h.Status != providers.HealthHealthy {
		t.Errorf("health after READY=1: %+v", h)
	}
	if d := time.Since(t0); d < time.Second {
		t.Errorf("healthy after %s, before its READY=1", d)
	}
	if h := hr(true, providers.HealthHealthy); h.Status != providers.HealthUnhealthy || h.Detail != "missed its watchdog" {
		t.Errorf("health without WATCHDOG=1: %+v", h)
	}
	// systemd aborted it (SIGABRT; Go's runtime turns that into exit 2).
	if o := f.observe(resp.Handle); o.State != providers.StateExited || o.Error != "missed its watchdog (WATCHDOG=1)" {
		t.Errorf("observed after the watchdog: %+v", o)
	}
	f.delete(resp.Handle)
}

// testResources: resources { memory_max, cpu_max, pids_max } become the
// unit's MemoryMax, CPUQuota and TasksMax.
func testResources(t *testing.T) {
	f := newFixture(t, daemon(`exec sleep 1000`, "  resources {\n    memory_max = \"64MiB\"\n    cpu_max = 0.5\n    pids_max = 20\n  }"))
	resp := f.start(f.r, "h")
	unit := unitOf(t, resp.Handle)
	for prop, want := range map[string]string{"MemoryMax": strconv.Itoa(64 << 20), "CPUQuotaPerSecUSec": "500ms", "TasksMax": "20"} {
		if got := show(t, unit, prop); got != want {
			t.Errorf("%s=%s, want %s", prop, got, want)
		}
	}
	f.stop(resp.Handle, "SIGTERM", 5*time.Second)
	f.delete(resp.Handle)
}
