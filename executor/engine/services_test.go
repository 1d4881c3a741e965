package engine

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool returns the path of a Debian tool the test drives, failing in
// CI when it is missing (make deps installs it) and skipping elsewhere.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (Debian's %s; make deps installs it)", name, pkg)
		}
		t.Skipf("%s is not installed (Debian's %s; make deps installs it)", name, pkg)
	}
	return p
}

// servicesConfig is three instances of httpd published as service "web"
// on the proxy and in DNS, replaced create-before-destroy one at a time.
// Each version listens on ports of its own (base+3*(version-1)+index), so
// that every request after a switch goes to the new instance through the
// proxy's routes, not through a shared port. ports: base..base+5 the
// instances, base+6 the proxy, base+7 DNS.
func servicesConfig(base, version int) string {
	p := base + 3*(version-1)
	return fmt.Sprintf(`
orch {
  proxy { listen = "127.0.0.1:%d" }
  dns   { listen = "127.0.0.1:%d" }
}

daemon "web" {
  count   = 3
  command = [%q, "-delay", "200ms", "-addr", "127.0.0.1:${%d + count.index}", "-id", "v%d"]
  health {
    http          = "http://127.0.0.1:${%d + count.index}/healthz"
    interval      = "20ms"
    start_timeout = "5s"
  }
  lifecycle {
    create_before_destroy = true
    max_parallel          = 1
  }
  stop { timeout = "5s" }
  service {
    port  = %d + count.index
    route = "web.localhost/"
    drain = "5s"
  }
}
`, base+6, base+7, httpdBin, p, version, p, p)
}

func proxyGet(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func digShort(t *testing.T, dnsPort int, name, typ string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, "dig", "dnsutils"), "@127.0.0.1", "-p", strconv.Itoa(dnsPort), "+time=2", "+tries=1", "+short", name, typ).CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(sortedCopy(lines), " ")
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// wrkResult is what wrk printed: requests done, non-2xx/3xx responses and
// socket errors.
type wrkResult struct {
	requests, non2xx, sockErrs int
	out                        string
}

func parseWrk(out string) wrkResult {
	r := wrkResult{out: out}
	if m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.sockErrs += n
		}
	}
	return r
}

// A rolling replace of three instances under a wrk load through the
// proxy: not one request fails. The routes follow readiness (each new
// instance is routed once healthy) and each old one is drained before its
// stop signal.
func TestServicesRollingReplaceUnderWrk(t *testing.T) {
	wrk := needTool(t, "wrk", "wrk")
	base := freePorts(t, 8)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", base+6)
	dir := t.TempDir()
	u := startUpIn(t, dir, servicesConfig(base, 1))
	u.waitFor("three registered", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "service_registered") == 1 && count(evs, "daemon.web[1]", "service_registered") == 1 &&
			count(evs, "daemon.web[2]", "service_registered") == 1
	})
	if got := digShort(t, base+7, "web.orch.internal", "SRV"); got != fmt.Sprintf("0 1 %d 0.web.orch.internal. 0 1 %d 1.web.orch.internal. 0 1 %d 2.web.orch.internal.", base, base+1, base+2) {
		t.Errorf("SRV web before: %q", got)
	}
	cmd := exec.Command(wrk, "-t", "2", "-c", "16", "-d", "10s", "-H", "Host: web.localhost", "http://"+proxyAddr+"/")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(time.Second) // the load runs before the replace begins
	renameSave(t, dir, servicesConfig(base, 2))
	u.waitFor("three replaced", func(evs []ev) bool {
		return count(evs, "daemon.web[0]", "stopped") == 1 && count(evs, "daemon.web[1]", "stopped") == 1 &&
			count(evs, "daemon.web[2]", "stopped") == 1
	})
	// The whole rollout ran under the load: wrk had not ended.
	var ws syscall.WaitStatus
	if pid, _ := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil); pid != 0 {
		t.Fatalf("wrk ended before the rollout did (a machine this slow needs a longer load):\n%s", u.dump())
	}
	err := cmd.Wait()
	r := parseWrk(out.String())
	t.Logf("wrk:\n%s", r.out)
	if err != nil || r.requests == 0 {
		t.Fatalf("wrk: %v\n%s", err, r.out)
	}
	if r.non2xx != 0 || r.sockErrs != 0 {
		t.Errorf("%d non-2xx responses and %d socket errors of %d requests during the rolling replace:\n%s\n%s", r.non2xx, r.sockErrs, r.requests, r.out, u.dump())
	}
	evs := u.all()
	for i := 0; i < 3; i++ {
		a := fmt.Sprintf("daemon.web[%d]", i)
		// The new one registered before the old one left, and the old
		// one left (drained) before it stopped.
		reg2, dereg, stopped := index(evs, a, "service_registered", 1), index(evs, a, "service_deregistered", 0), index(evs, a, "stopped", 0)
		if reg2 < 0 || dereg < reg2 || stopped < dereg {
			t.Errorf("%s: registered again at %d, deregistered at %d, stopped at %d:\n%s", a, reg2, dereg, stopped, u.dump())
		}
		if d := evs[dereg].Detail; !strings.Contains(d, "drained") {
			t.Errorf("%s deregistered: %q", a, d)
		}
	}
	for i := 0; i < 6; i++ {
		if code, body := proxyGet(t, proxyAddr, "web.localhost"); code != 200 || body != "v2\n" {
			t.Errorf("after the replace: %d %q", code, body)
		}
	}
	if got := digShort(t, base+7, "web.orch.internal", "SRV"); got != fmt.Sprintf("0 1 %d 0.web.orch.internal. 0 1 %d 1.web.orch.internal. 0 1 %d 2.web.orch.internal.", base+3, base+4, base+5) {
		t.Errorf("SRV web after: %q", got)
	}
}

// DNS and the proxy follow readiness: an instance whose health check fails
// leaves both, and comes back once it passes again; after the agent is
// killed (SIGKILL) and started again, adoption brings every record and
// route back.
func TestServicesFollowHealthAndAgentRestart(t *testing.T) {
	base := freePorts(t, 4)
	dir := t.TempDir()
	sick := dir + "/sick1"
	conf := fmt.Sprintf(`
orch {
  dns {
    listen = "127.0.0.1:%d"
    zone   = "test.internal."
  }
  proxy { listen = "127.0.0.1:%d" }
}
daemon "api" {
  count   = 2
  command = [%q, "-addr", "127.0.0.1:${%d + count.index}", "-id", "api${count.index}", "-sick", "%s${count.index}"]
  health {
    http     = "http://127.0.0.1:${%d + count.index}/healthz"
    interval = "20ms"
    retries  = 1
  }
  restart { policy = "never" }
  service {
    route = "/"
    port  = %d + count.index
  }
}
`, base+2, base+3, httpdBin, base, dir+"/sick", base, base)
	u := startUpIn(t, dir, conf)
	u.waitFor("two registered", func(evs []ev) bool {
		return count(evs, "daemon.api[0]", "service_registered") == 1 && count(evs, "daemon.api[1]", "service_registered") == 1
	})
	if got := digShort(t, base+2, "api.test.internal", "SRV"); got != fmt.Sprintf("0 1 %d 0.api.test.internal. 0 1 %d 1.api.test.internal.", base, base+1) {
		t.Errorf("SRV: %q", got)
	}
	if got := digShort(t, base+2, "1.api.test.internal", "A"); got != "127.0.0.1" {
		t.Errorf("A 1.api: %q", got)
	}
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("api[1] deregistered", func(evs []ev) bool { return count(evs, "daemon.api[1]", "service_deregistered") == 1 })
	if got := digShort(t, base+2, "api.test.internal", "SRV"); got != fmt.Sprintf("0 1 %d 0.api.test.internal.", base) {
		t.Errorf("SRV with api[1] unhealthy: %q", got)
	}
	for i := 0; i < 4; i++ {
		if code, body := proxyGet(t, fmt.Sprintf("127.0.0.1:%d", base+3), "any.host"); code != 200 || body != "api0\n" {
			t.Errorf("proxy with api[1] unhealthy: %d %q", code, body)
		}
	}
	os.Remove(sick)
	u.waitFor("api[1] registered again", func(evs []ev) bool { return count(evs, "daemon.api[1]", "service_registered") == 2 })
	if got := digShort(t, base+2, "1.api.test.internal", "SRV"); got != fmt.Sprintf("0 1 %d 1.api.test.internal.", base+1) {
		t.Errorf("SRV 1.api back: %q", got)
	}

	// SIGKILL the agent; the daemons run on. A new one adopts them and
	// publishes them again.
	u.cmd.Process.Signal(syscall.SIGKILL)
	<-u.exited
	u2 := restartUp(t, dir)
	u2.waitFor("both registered after the restart", func(evs []ev) bool {
		return count(evs, "daemon.api[0]", "service_registered") == 1 && count(evs, "daemon.api[1]", "service_registered") == 1
	})
	if n := count(u2.all(), "daemon.api[0]", "started"); n != 0 {
		t.Errorf("api[0] was started again instead of adopted:\n%s", u2.dump())
	}
	if got := digShort(t, base+2, "api.test.internal", "A"); got != "127.0.0.1" {
		t.Errorf("A after the restart: %q", got)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		code, body := proxyGet(t, fmt.Sprintf("127.0.0.1:%d", base+3), "x")
		if code != 200 {
			t.Fatalf("proxy after the restart: %d %q", code, body)
		}
		seen[body] = true
	}
	if !seen["api0\n"] || !seen["api1\n"] {
		t.Errorf("round robin after the restart reached %v", seen)
	}
	u2.stop()
	evs := u2.all()
	if count(evs, "daemon.api[0]", "service_deregistered") != 1 || index(evs, "daemon.api[0]", "service_deregistered", 0) > index(evs, "daemon.api[0]", "stopped", 0) {
		t.Errorf("at shutdown, api[0] was not drained before it stopped:\n%s", u2.dump())
	}
}

// A listener address in use is one error naming the listener; nothing is
// started.
func TestServicesListenerInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := freePort(t)
	u := startUp(t, fmt.Sprintf(`
orch {
  proxy { listen = %q }
}
daemon "api" {
  command = [%q, "-addr", "127.0.0.1:%d"]
  service { port = %d }
}
`, ln.Addr().String(), httpdBin, port, port))
	<-u.exited
	if u.err == nil {
		t.Fatalf("orch up ran with its proxy's address in use:\n%s", u.dump())
	}
	evs := u.all()
	want := fmt.Sprintf(`orch { proxy { listen = %q } }: address already in use`, ln.Addr().String())
	n := 0
	for _, e := range evs {
		if e.Type == "error" {
			n++
			if e.Detail != want {
				t.Errorf("error %q, want %q", e.Detail, want)
			}
		}
		if e.Type == "started" {
			t.Errorf("something started: %+v", e)
		}
	}
	if n != 1 || !strings.Contains(u.stderr.String(), want) {
		t.Errorf("%d error events; stderr %q:\n%s", n, u.stderr.String(), u.dump())
	}
}

// A change of the service block applies in place: the daemon is not
// restarted, and its route moves. The daemon has a health check, so that
// its route exists once it answers (without one, a route is registered
// once it runs, and a loaded machine saw the first request refused).
func TestServiceRouteMovesInPlace(t *testing.T) {
	base := freePorts(t, 2)
	conf := func(route string) string {
		return fmt.Sprintf(`
orch {
  proxy { listen = "127.0.0.1:%d" }
}
daemon "api" {
  command = [%q, "-addr", "127.0.0.1:%d", "-id", "api"]
  health {
    http          = "http://127.0.0.1:%d/healthz"
    interval      = "20ms"
    start_timeout = "5s"
  }
  service {
    port  = %d
    route = %q
  }
}
`, base+1, httpdBin, base, base, base, route)
	}
	dir := t.TempDir()
	u := startUpIn(t, dir, conf("one.localhost/"))
	u.waitFor("registered", func(evs []ev) bool { return count(evs, "daemon.api", "service_registered") == 1 })
	proxy := fmt.Sprintf("127.0.0.1:%d", base+1)
	if code, body := proxyGet(t, proxy, "one.localhost"); code != 200 || body != "api\n" {
		t.Fatalf("one.localhost: %d %q", code, body)
	}
	renameSave(t, dir, conf("two.localhost/"))
	evs := u.waitFor("moved", func(evs []ev) bool { return count(evs, "daemon.api", "service_registered") == 2 })
	if d := evs[index(evs, "daemon.api", "service_registered", 1)].Detail; !strings.Contains(d, "route two.localhost/ (moved from 127.0.0.1:") {
		t.Errorf("moved: %q", d)
	}
	if n := count(evs, "daemon.api", "started"); n != 1 {
		t.Errorf("started %d times: a service change restarted it:\n%s", n, u.dump())
	}
	if code, _ := proxyGet(t, proxy, "one.localhost"); code != http.StatusNotFound {
		t.Errorf("the old route still answers: %d", code)
	}
	if code, body := proxyGet(t, proxy, "two.localhost"); code != 200 || body != "api\n" {
		t.Errorf("two.localhost: %d %q", code, body)
	}
}

// A liveness kill drains first, as every other stop: a daemon that turns
// unhealthy leaves the proxy, and its stop signal waits for the request
// in flight to it (a server that drops what is in flight on SIGTERM), so
// that request is answered whole.
func TestServiceLivenessKillDrains(t *testing.T) {
	base := freePorts(t, 2)
	dir := t.TempDir()
	sick := dir + "/sick"
	conf := fmt.Sprintf(`
orch {
  proxy { listen = "127.0.0.1:%d" }
}
daemon "api" {
  command = [%q, "-addr", "127.0.0.1:%d", "-sick", %q, "-abrupt"]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "20ms"
    retries  = 1
  }
  restart {
    policy  = "always"
    backoff = "10ms"
  }
  service {
    route = "/"
    port  = %d
    drain = "20s"
  }
}
`, base+1, httpdBin, base, sick, base, base)
	u := startUpIn(t, dir, conf)
	u.waitFor("api registered", func(evs []ev) bool { return count(evs, "daemon.api", "service_registered") == 1 })
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/slow?d=1500ms", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Its head came: the request is in flight. Now it turns unhealthy.
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "done\n" {
		t.Fatalf("the request in flight got %q, %v: the liveness kill did not wait for it\n%s", body, err, u.dump())
	}
	evs := u.waitFor("api killed and started again", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 2 })
	dereg, exited := index(evs, "daemon.api", "service_deregistered", 0), index(evs, "daemon.api", "exited", 0)
	if dereg < 0 || exited < 0 || dereg > exited {
		t.Fatalf("want service_deregistered before exited:\n%s", u.dump())
	}
	os.Remove(sick)
}

// A daemon with a service and no health check is routed once it listens
// on its service port, not as soon as it runs: a server that binds 600 ms
// after its start gets no request before (the proxy answered 502 to every
// request in between), and a create_before_destroy replace stops the old
// instance only once the new one listens, so that no request fails.
func TestServiceWithoutHealthCheckRoutedOnceListening(t *testing.T) {
	base := freePorts(t, 3)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", base+2)
	conf := func(version int) string {
		return fmt.Sprintf(`
orch {
  proxy { listen = %q }
}
daemon "api" {
  command = [%q, "-delay", "600ms", "-addr", "127.0.0.1:%d", "-id", "v%d"]
  lifecycle { create_before_destroy = true }
  stop { timeout = "5s" }
  service {
    port  = %d
    route = "api.localhost/"
  }
}
`, proxyAddr, httpdBin, base+version-1, version, base+version-1)
	}
	// requests asks the proxy until stop is closed, and counts what it
	// answered (0: no answer at all).
	requests := func(stop <-chan struct{}) <-chan map[int]int {
		out := make(chan map[int]int, 1)
		go func() {
			codes := map[int]int{}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					out <- codes
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+proxyAddr+"/", nil)
				req.Host = "api.localhost"
				resp, err := client.Do(req)
				if err != nil {
					codes[0]++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes[resp.StatusCode]++
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return out
	}

	dir := t.TempDir()
	u := startUpIn(t, dir, conf(1))
	// From the proxy's first answer on (it listens once orch up runs).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := proxyGet(t, proxyAddr, "api.localhost"); code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not answer within 30s\n%s", u.dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop := make(chan struct{})
	got := requests(stop)
	evs := u.waitFor("registered", func(evs []ev) bool { return count(evs, "daemon.api", "service_registered") == 1 })
	close(stop)
	codes := <-got
	if codes[http.StatusBadGateway] != 0 || codes[0] != 0 {
		t.Errorf("while the server bound: %v (502: routed before it listened)\n%s", codes, u.dump())
	}
	if code, body := proxyGet(t, proxyAddr, "api.localhost"); code != 200 || body != "v1\n" {
		t.Fatalf("once registered: %d %q", code, body)
	}
	if started, reg := index(evs, "daemon.api", "started", 0), index(evs, "daemon.api", "service_registered", 0); started < 0 || reg < started {
		t.Errorf("started at %d, registered at %d:\n%s", started, reg, u.dump())
	}

	// The old instance is stopped only once the new one listens (600 ms
	// after its start): the requests run across the whole switch.
	stop = make(chan struct{})
	got = requests(stop)
	renameSave(t, dir, conf(2))
	u.waitFor("replaced", func(evs []ev) bool { return count(evs, "daemon.api", "stopped") == 1 })
	close(stop)
	codes = <-got
	if len(codes) != 1 || codes[200] == 0 {
		t.Errorf("during the replace: %v, want only 200 (the old instance stopped before the new one listened)\n%s", codes, u.dump())
	}
	if code, body := proxyGet(t, proxyAddr, "api.localhost"); code != 200 || body != "v2\n" {
		t.Errorf("after the replace: %d %q", code, body)
	}
}
