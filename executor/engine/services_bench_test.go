package engine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/orch-dev/orch/providers/process/processtest"
)

// BenchmarkReadyToRouted: an instance turns ready (its health check
// passes: the healthy event) until it is resolvable in DNS (a UDP query
// answered with its A record) and routed (a request through the proxy
// answered by it). Each round makes it unhealthy first (it leaves DNS and
// the proxy), then healthy again. Reported: the medians of both, in ms.
func BenchmarkReadyToRouted(b *testing.B) {
	base := freePorts(b, 3)
	sick := filepath.Join(b.TempDir(), "sick")
	be := newBenchEnv(b, fmt.Sprintf(`
orch {
  dns {
    listen = "127.0.0.1:%d"
  }
  proxy {
    listen = "127.0.0.1:%d"
  }
}
daemon "api" {
  command = [%q, "-addr", "127.0.0.1:%d", "-sick", %q]
  health {
    http     = "http://127.0.0.1:%d/healthz"
    interval = "5ms"
    retries  = 1
  }
  restart { policy = "never" }
  service {
    port  = %d
    route = "/"
  }
}
`, base+1, base+2, httpdBin, base, sick, base, base))
	r := be.run()
	defer r.stop(b)
	r.wait(b, "registered", func(ev Event) bool { return ev.Type == EventServiceRegistered })
	dnsc := &dns.Client{Net: "udp", Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion("api.orch.internal.", dns.TypeA)
	resolvable := func() bool {
		m, _, err := dnsc.Exchange(q, fmt.Sprintf("127.0.0.1:%d", base+1))
		return err == nil && len(m.Answer) == 1
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", base+2)
	routed := func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	var toDNS, toRoute []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.WriteFile(sick, nil, 0o644)
		r.wait(b, "deregistered", func(ev Event) bool { return ev.Type == EventServiceDeregistered })
		if resolvable() {
			b.Fatal("still in DNS once deregistered")
		}
		os.Remove(sick)
		ev := r.wait(b, "healthy", func(ev Event) bool { return ev.Type == EventHealthy })
		var dnsAt, routeAt time.Time
		for dnsAt.IsZero() || routeAt.IsZero() {
			if dnsAt.IsZero() && resolvable() {
				dnsAt = time.Now()
			}
			if routeAt.IsZero() && routed() {
				routeAt = time.Now()
			}
			if time.Since(ev.Time) > 10*time.Second {
				b.Fatal("not resolvable and routed within 10s of turning healthy")
			}
		}
		toDNS = append(toDNS, dnsAt.Sub(ev.Time))
		toRoute = append(toRoute, routeAt.Sub(ev.Time))
	}
	b.StopTimer()
	reportMedian(b, "ms-median-to-dns", toDNS)
	reportMedian(b, "ms-median-to-routed", toRoute)
}

// BenchmarkAgentRestartToRouted: orch up (the built binary) publishes two
// instances; it is killed with SIGKILL (its DNS server and proxy go with it;
// the daemons run on) and started again.
// Reported: the median from the new orch up's exec to its DNS answering
// both instances and its proxy answering, in ms (the bound: 1 s
// from the restart).
func BenchmarkAgentRestartToRouted(b *testing.B) {
	base := freePorts(b, 4)
	dir := b.TempDir()
	conf := fmt.Sprintf(`
orch {
  dns {
    listen = "127.0.0.1:%d"
  }
  proxy {
    listen = "127.0.0.1:%d"
  }
}
daemon "api" {
  count   = 2
  command = [%q, "-addr", "127.0.0.1:${%d + count.index}"]
  health {
    http     = "http://127.0.0.1:${%d + count.index}/healthz"
    interval = "1s"
  }
  service {
    port  = %d + count.index
    route = "/"
  }
}
`, base+2, base+3, httpdBin, base, base, base)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	var procs []*exec.Cmd
	var mu sync.Mutex
	pids := map[int]bool{}
	defer func() {
		for _, c := range procs {
			c.Process.Kill()
			c.Wait()
		}
		mu.Lock()
		defer mu.Unlock()
		for pid := range pids {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		processtest.StopLogd(filepath.Join(dir, ".orch"))
	}()
	up := func() *exec.Cmd {
		c := exec.Command(orchBin, "up", "-json", dir)
		c.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
		out, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var e ev
				if json.Unmarshal(sc.Bytes(), &e) == nil && e.Pid > 0 && e.Type == "started" {
					mu.Lock()
					pids[e.Pid] = true
					mu.Unlock()
				}
			}
		}()
		procs = append(procs, c)
		return c
	}
	dnsc := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("api.orch.internal.", dns.TypeSRV)
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	back := func() bool {
		m, _, err := dnsc.Exchange(q, fmt.Sprintf("127.0.0.1:%d", base+2))
		if err != nil || len(m.Answer) != 2 {
			return false
		}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", base+3))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitBack := func(limit time.Duration) time.Duration {
		t0 := time.Now()
		for !back() {
			if time.Since(t0) > limit {
				b.Fatalf("not back within %s", limit)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(t0)
	}
	c := up()
	waitBack(30 * time.Second)
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		t0 := time.Now()
		c = up()
		waitBack(30 * time.Second)
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportMedian(b, "ms-median-restart-to-routed", ds)
}
