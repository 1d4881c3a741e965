package engine

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
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
