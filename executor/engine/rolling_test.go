package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rollingConfig is three instances of a server that binds with
// SO_REUSEPORT after a delay, behind a health check on an admin port of
// each instance's own, replaced create-before-destroy; version (1 or 2)
// changes their env (a replace). base is 9 free ports: the 3 shared
// service ports, then the admin ports of version 1, then of version 2.
func rollingConfig(base int, version int, extra string) string {
	h := base + 3*version
	return fmt.Sprintf(`
daemon "web" {
  count   = 3
  command = [%q, "-reuseport", "-delay", "300ms", "-addr", "127.0.0.1:${%d + count.index}", "-health-addr", "127.0.0.1:${%d + count.index}", "-id", "v%d"%s]
  env = {
    VERSION = "%d"
  }
  health {
    http          = "http://127.0.0.1:${%d + count.index}/healthz"
    interval      = "20ms"
    start_timeout = "3s"
  }
  lifecycle {
    create_before_destroy = true
  }
  stop {
    timeout = "5s"
  }
}
`, httpdBin, base, h, version, extra, version, h)
}

// freePorts returns n consecutive free ports of 127.0.0.1, below the
// kernel's ephemeral range (32768 and up by default): ports that the
// outgoing connections of the other tests running meanwhile are never
// given, so that none is taken between this check and the test's use.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		base := 20000 + rand.IntN(12000-n)
		ok := true
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no consecutive free ports")
	return 0
}

// load sends requests to the ports round robin until stop, counting
// those refused (no listener at all) and other failures.
type load struct {
	mu      sync.Mutex
	ok      int
	refused int
	other   []string
	stop    chan struct{}
	done    chan struct{}
}

func startLoad(base, n int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", base+i%n))
			l.mu.Lock()
			switch {
			case err == nil:
				resp.Body.Close()
				l.ok++
			case errors.Is(err, syscall.ECONNREFUSED):
				l.refused++
			default:
				l.other = append(l.other, err.Error())
			}
			l.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

func (l *load) end() (ok, refused int, other []string) {
	close(l.stop)
	<-l.done
	return l.ok, l.refused, l.other
}

// A create_before_destroy replace of count = 3 is rolling: one instance at
// a time, the old one stopped only once the new one is healthy, and no
// request is refused meanwhile.
func TestRollingReplaceRefusesNothing(t *testing.T) {
	base := freePorts(t, 9)
	dir := t.TempDir()
	u := startUpIn(t, dir, rollingConfig(base, 1, ""))
	u.waitFor("three healthy", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "healthy") == 1 && count(evs, "daemon.web[1]", "healthy") == 1 &&
			count(evs, "daemon.web[2]", "healthy") == 1
	})
	l := startLoad(base, 3)
	renameSave(t, dir, rollingConfig(base, 2, ""))
	evs := u.waitFor("three replaced", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "stopped") == 1 && count(evs, "daemon.web[1]", "stopped") == 1 &&
			count(evs, "daemon.web[2]", "stopped") == 1
	})
	ok, refused, other := l.end()
	t.Logf("%d requests answered, %d refused, %d other failures %v", ok, refused, len(other), other)
	if refused != 0 {
		t.Errorf("%d of %d requests refused during the rolling replace:\n%s", refused, ok+refused, u.dump())
	}
	// One at a time: instance i+1's new process starts after instance i's
	// old one stopped, and each old one stops after its successor is
	// healthy.
	for i := 0; i < 3; i++ {
		a := fmt.Sprintf("daemon.web[%d]", i)
		newHealthy, oldStopped := index(evs, a, "healthy", 1), index(evs, a, "stopped", 0)
		if newHealthy < 0 || oldStopped < newHealthy {
			t.Errorf("%s: the old instance stopped before the new one was healthy:\n%s", a, u.dump())
		}
		if i > 0 {
			prev := fmt.Sprintf("daemon.web[%d]", i-1)
			if index(evs, a, "started", 1) < index(evs, prev, "stopped", 0) {
				t.Errorf("%s was replaced alongside %s (max_parallel 1):\n%s", a, prev, u.dump())
			}
		}
	}
}

// When the new instance of a create_before_destroy replace never becomes
// ready, it is stopped and the old one keeps serving (auto-revert), with
// the reason reported; the rollout stops there.
func TestReplaceRevertsWhenNeverReady(t *testing.T) {
	base := freePorts(t, 9)
	dir := t.TempDir()
	sick := filepath.Join(dir, "sick")
	u := startUpIn(t, dir, rollingConfig(base, 1, ""))
	evs := u.waitFor("three healthy", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "healthy") == 1 && count(evs, "daemon.web[1]", "healthy") == 1 &&
			count(evs, "daemon.web[2]", "healthy") == 1
	})
	old := pids(evs)
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoad(base, 3)
	renameSave(t, dir, rollingConfig(base, 2, fmt.Sprintf(", \"-sick\", %q", sick)))
	evs = u.waitFor("the replace reverted", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "failed") == 1
	})
	ok, refused, _ := l.end()
	i := index(evs, "daemon.web[0]", "failed", 0)
	if !strings.Contains(evs[i].Detail, "did not become ready") {
		t.Errorf("failed detail %q", evs[i].Detail)
	}
	for j := 0; j < 3; j++ {
		a := fmt.Sprintf("daemon.web[%d]", j)
		if !alive(old[a]) {
			t.Errorf("%s: the old instance (pid %d) was stopped:\n%s", a, old[a], u.dump())
		}
		if j > 0 && count(evs, a, "started") != 1 {
			t.Errorf("%s was replaced though the rollout failed at web[0]:\n%s", a, u.dump())
		}
	}
	if refused != 0 {
		t.Errorf("%d of %d requests refused during the reverted replace", refused, ok+refused)
	}
	// It stays reverted: no crash loop of the new configuration, and the
	// old instance is checked as it was applied (its own admin port), so
	// that past start_timeout (3s) it is not taken for a dead one.
	time.Sleep(3500 * time.Millisecond)
	evs = u.all()
	if n := count(evs, "daemon.web[0]", "started"); n != 2 {
		t.Errorf("web[0] started %d times, want 2 (the first, the reverted one):\n%s", n, u.dump())
	}
	if !alive(old["daemon.web[0]"]) || count(evs, "daemon.web[0]", "exited") != 0 {
		t.Errorf("the old web[0] (pid %d), kept by the revert, was stopped afterwards:\n%s", old["daemon.web[0]"], u.dump())
	}
}

// BenchmarkRollingReplace3: three instances behind a request loop, all
// replaced create-before-destroy (one at a time, each old one stopped once
// its successor is healthy); the time of a whole rollout and the requests
// refused during it (must be 0).
func BenchmarkRollingReplace3(b *testing.B) {
	base := freePorts(b, 9)
	be := newBenchEnv(b, rollingConfig(base, 1, ""))
	r := be.run()
	defer r.stop(b)
	for healthy := 0; healthy < 3; {
		r.wait(b, "healthy", func(ev Event) bool { return ev.Type == EventHealthy })
		healthy++
	}
	var lat []time.Duration
	refusedTotal, answered := 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		version := 2 - i%2 // 2, 1, 2, ...
		l := startLoad(base, 3)
		tmp := filepath.Join(be.dir, "main.hcl.tmp")
		os.WriteFile(tmp, []byte(rollingConfig(base, version, "")), 0o644)
		t0 := time.Now()
		os.Rename(tmp, filepath.Join(be.dir, "main.hcl"))
		for stopped := 0; stopped < 3; {
			r.wait(b, "an old instance stopped", func(ev Event) bool { return ev.Type == EventStopped })
			stopped++
		}
		lat = append(lat, time.Since(t0))
		ok, refused, _ := l.end()
		refusedTotal += refused
		answered += ok
	}
	b.StopTimer()
	reportMedian(b, "ms-median-rollout", lat)
	b.ReportMetric(float64(refusedTotal), "refused-total")
	b.ReportMetric(float64(answered), "answered-total")
}

// Without create_before_destroy, lifecycle { max_parallel = 1 } still
// rolls: the next instance is stopped only once the one replaced before it
// is ready again (a proxy in front always has one to send to).
func TestRollingStopFirst(t *testing.T) {
	base := freePorts(t, 2)
	conf := func(v int) string {
		return fmt.Sprintf(`
daemon "app" {
  count   = 2
  command = [%q, "-delay", "500ms", "-addr", "127.0.0.1:${%d + count.index}"]
  env     = { VERSION = "%d" }
  health {
    http     = "http://127.0.0.1:${%d + count.index}/healthz"
    interval = "20ms"
  }
  lifecycle {
    max_parallel = 1
  }
}
`, httpdBin, base, v, base)
	}
	dir := t.TempDir()
	u := startUpIn(t, dir, conf(1))
	u.waitFor("two healthy", func(evs []ev) bool {
		return count(evs, "daemon.app[0]", "healthy") == 1 && count(evs, "daemon.app[1]", "healthy") == 1
	})
	renameSave(t, dir, conf(2))
	evs := u.waitFor("both replaced and healthy", func(evs []ev) bool {
		return count(evs, "daemon.app[0]", "healthy") == 2 && count(evs, "daemon.app[1]", "healthy") == 2
	})
	if h0, s1 := index(evs, "daemon.app[0]", "healthy", 1), index(evs, "daemon.app[1]", "stopped", 0); s1 < h0 {
		t.Fatalf("app[1] was stopped before the new app[0] was healthy:\n%s", u.dump())
	}
}

// sharedPortConfig is one instance of the test server whose health check
// is on its service port (no admin port of its own), replaced
// create-before-destroy; reuse makes it bind with SO_REUSEPORT, so that a
// new instance can listen beside the old one.
func sharedPortConfig(port, version int, reuse bool) string {
	return replaceConfig(port, port, version, reuse)
}

// replaceConfig is one instance of the test server listening on port,
// checked on checkPort, replaced create-before-destroy.
func replaceConfig(port, checkPort, version int, reuse bool) string {
	flag := ""
	if reuse {
		flag = `"-reuseport", `
	}
	return fmt.Sprintf(`
daemon "web" {
  command = [%q, %s"-delay", "300ms", "-addr", "127.0.0.1:%d", "-id", "v%d"]
  env = {
    VERSION = "%d"
  }
  health {
    http          = "http://127.0.0.1:%d/healthz"
    interval      = "20ms"
    start_timeout = "3s"
  }
  lifecycle {
    create_before_destroy = true
  }
}
`, httpdBin, flag, port, version, version, checkPort)
}

// TestReplaceWaitsForItsOwnListener: the new instance of a
// create_before_destroy replace whose check is on the port it shares with
// the old one is ready only once it listens there itself. The old one,
// still running, passed the new one's check: a new instance that could
// not bind beside it (no SO_REUSEPORT) was taken for ready, the old one
// stopped, and the port refused connections until a restart. Now that
// replace reverts, the old one serving throughout; with SO_REUSEPORT the
// new one binds beside it and the replace goes through.
func TestReplaceWaitsForItsOwnListener(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuseport=%v", reuse), func(t *testing.T) {
			port := freePorts(t, 1)
			dir := t.TempDir()
			u := startUpIn(t, dir, sharedPortConfig(port, 1, reuse))
			evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.web", "healthy") == 1 })
			old := pids(evs)["daemon.web"]
			l := startLoad(port, 1)
			renameSave(t, dir, sharedPortConfig(port, 2, reuse))
			if !reuse {
				evs = u.waitFor("the replace reverted", func(evs []ev) bool { return count(evs, "daemon.web", "failed") == 1 })
				ok, refused, _ := l.end()
				i := index(evs, "daemon.web", "failed", 0)
				if !strings.Contains(evs[i].Detail, "did not become ready") {
					t.Errorf("failed detail %q", evs[i].Detail)
				}
				if !alive(old) {
					t.Errorf("the old instance (pid %d) was stopped:\n%s", old, u.dump())
				}
				if refused != 0 {
					t.Errorf("%d of %d requests refused during the reverted replace:\n%s", refused, ok+refused, u.dump())
				}
				return
			}
			u.waitFor("replaced", func(evs []ev) bool { return count(evs, "daemon.web", "stopped") == 1 })
			ok, refused, _ := l.end()
			if alive(old) {
				t.Errorf("the old instance (pid %d) still runs after the replace:\n%s", old, u.dump())
			}
			if refused != 0 {
				t.Errorf("%d of %d requests refused during the replace:\n%s", refused, ok+refused, u.dump())
			}
		})
	}
}

// TestReplaceCheckThroughAnotherPort: a check that reaches a port the old
// instance does not listen on (another daemon serves it: a proxy in
// front, say) leaves no doubt for the new instance's own listener to
// lift: the replace goes through.
func TestReplaceCheckThroughAnotherPort(t *testing.T) {
	base := freePorts(t, 2)
	cfg := func(version int) string {
		return fmt.Sprintf(`
daemon "front" {
  command = [%q, "-addr", "127.0.0.1:%d", "-id", "front"]
}
`, httpdBin, base+1) + replaceConfig(base, base+1, version, true)
	}
	dir := t.TempDir()
	u := startUpIn(t, dir, cfg(1))
	evs := u.waitFor("healthy", func(evs []ev) bool { return count(evs, "daemon.web", "healthy") == 1 })
	old := pids(evs)["daemon.web"]
	renameSave(t, dir, cfg(2))
	u.waitFor("replaced", func(evs []ev) bool { return count(evs, "daemon.web", "stopped") == 1 })
	if alive(old) {
		t.Errorf("the old instance (pid %d) still runs after the replace:\n%s", old, u.dump())
	}
	if n := count(u.all(), "daemon.web", "failed"); n != 0 {
		t.Errorf("the replace failed:\n%s", u.dump())
	}
}
