package engine

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	notifydOnce sync.Once
	notifydBin  string
	notifydErr  error
)

// notifyd builds testdata/notifyd (a daemon speaking sd_notify through
// go-systemd) once per test binary.
func notifyd(t *testing.T) string {
	t.Helper()
	notifydOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orch-notifyd-")
		if err != nil {
			notifydErr = err
			return
		}
		notifydBin = filepath.Join(dir, "notifyd")
		out, err := exec.Command(goTool(), "build", "-o", notifydBin, "./testdata/notifyd").CombinedOutput()
		if err != nil {
			notifydErr = fmt.Errorf("building notifyd: %v\n%s", err, out)
		}
	})
	if notifydErr != nil {
		t.Fatal(notifydErr)
	}
	return notifydBin
}

// A daemon that says READY=1 after 2s gates its dependent until then: the
// dependent starts after the daemon is healthy, and the daemon is healthy
// only after it said so (its own mark, written once READY=1 was sent,
// names the pid that started).
func TestNotifyReadyGatesDependents(t *testing.T) {
	bin := notifyd(t)
	mark := filepath.Join(t.TempDir(), "mark")
	u := startUp(t, fmt.Sprintf(`
daemon "slow" {
  command = [%q, "-ready-after", "2s", "-status", "warming done", "-mark", %q]
  health {
    notify = true
  }
}

daemon "dep" {
  command    = ["sleep", "600"]
  depends_on = [daemon.slow]
}
`, bin, mark))
	evs := u.waitFor("dep started", func(evs []ev) bool { return count(evs, "daemon.dep", "started") == 1 })
	started, healthy, depStarted := index(evs, "daemon.slow", "started", 0), index(evs, "daemon.slow", "healthy", 0), index(evs, "daemon.dep", "started", 0)
	if started < 0 || healthy < 0 || !(started < healthy && healthy < depStarted) {
		t.Fatalf("want slow started < slow healthy < dep started:\n%s", u.dump())
	}
	b, err := os.ReadFile(mark)
	if err != nil {
		t.Fatalf("daemon.slow became healthy but never sent READY=1 (%v):\n%s", err, u.dump())
	}
	if want := fmt.Sprintf("ready %d ", pids(evs)["daemon.slow"]); !strings.HasPrefix(string(b), want) {
		t.Fatalf("mark %q, want %q...", b, want)
	}
	if n := count(u.all(), "daemon.slow", "exited") + count(u.all(), "daemon.slow", "restarting"); n != 0 {
		t.Fatalf("restarted:\n%s", u.dump())
	}
	// Its STATUS= is in the status.
	_, body := agentCall(t, u.dir, "GET", "/status")
	if !strings.Contains(body, `"says":"warming done"`) {
		t.Fatalf("STATUS=warming done is not in the status: %s", body)
	}
}

// A daemon that stops sending WATCHDOG=1 is unhealthy once the watchdog
// passes and is restarted by its policy; the new instance gets
// WATCHDOG_USEC and keeps its watchdog.
func TestNotifyWatchdogRestarts(t *testing.T) {
	bin := notifyd(t)
	u := startUp(t, fmt.Sprintf(`
daemon "dog" {
  command = [%q, "-watchdog-every", "50ms", "-watchdog-stop-after", "300ms"]
  health {
    notify   = true
    watchdog = "400ms"
  }
  restart {
    backoff = "1ms"
  }
}
`, bin))
	evs := u.waitFor("restarted after the watchdog", func(evs []ev) bool { return count(evs, "daemon.dog", "started") >= 2 })
	i := index(evs, "daemon.dog", "unhealthy", 0)
	if i < 0 || index(evs, "daemon.dog", "healthy", 0) > i || !strings.Contains(evs[i].Detail, "WATCHDOG=1") {
		t.Fatalf("want healthy, then unhealthy for the watchdog, then a second start:\n%s", u.dump())
	}
	if index(evs, "daemon.dog", "started", 1) < i {
		t.Fatalf("started again before it was unhealthy:\n%s", u.dump())
	}
}

// A daemon that keeps its watchdog is never restarted by it.
func TestNotifyWatchdogKept(t *testing.T) {
	bin := notifyd(t)
	u := startUp(t, fmt.Sprintf(`
daemon "dog" {
  command = [%q]
  health {
    notify   = true
    watchdog = "300ms"
  }
}
`, bin))
	u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.dog", "healthy") == 1 })
	// Several watchdog periods, fed at half of WATCHDOG_USEC by notifyd.
	time.Sleep(1500 * time.Millisecond)
	if n := count(u.all(), "daemon.dog", "unhealthy"); n != 0 {
		t.Fatalf("a fed watchdog fired:\n%s", u.dump())
	}
}
