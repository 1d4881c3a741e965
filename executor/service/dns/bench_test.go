package dns

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
)

// BenchmarkQueries: clients on UDP sockets of their own ask A and SRV
// questions of a service with 3 ready instances, each client waiting for
// its answer before the next question (so the latency is the server's
// turnaround). Reported: queries per second and the 99th percentile of
// the latency, in ms.
func BenchmarkQueries(b *testing.B) {
	for _, clients := range []int{4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			reg := service.New()
			for i := 0; i < 3; i++ {
				reg.Set(api(i, fmt.Sprint(i), fmt.Sprintf("127.0.0.%d", i+1), 8080+i))
			}
			s, err := Listen("127.0.0.1:0", "orch.internal.", reg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			conns := make([]*mdns.Conn, clients)
			for i := range conns {
				c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
				conn, err := c.Dial(s.Addr())
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				conns[i] = conn
			}
			per := b.N/clients + 1
			lat := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			var fail sync.Once
			var failure error
			b.ResetTimer()
			t0 := time.Now()
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
					q := new(mdns.Msg)
					ls := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						if i%2 == 0 {
							q.SetQuestion("api.orch.internal.", mdns.TypeA)
						} else {
							q.SetQuestion("api.orch.internal.", mdns.TypeSRV)
						}
						start := time.Now()
						m, _, err := c.ExchangeWithConn(q, conns[w])
						if err != nil || len(m.Answer) != 3 {
							fail.Do(func() { failure = fmt.Errorf("query: %v %v", err, m) })
							return
						}
						ls = append(ls, time.Since(start))
					}
					lat[w] = ls
				}(w)
			}
			wg.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			if failure != nil {
				b.Fatal(failure)
			}
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "q/s")
			b.ReportMetric(float64(all[len(all)*99/100])/float64(time.Millisecond), "ms-p99")
		})
	}
}

// BenchmarkBuildTable: building the table of packed replies (after each
// change of the registry) for 1,000 ready instances of 100 services.
func BenchmarkBuildTable(b *testing.B) {
	reg := service.New()
	for i := 0; i < 1000; i++ {
		reg.Set(service.Instance{ID: fmt.Sprintf("svc%d#%d", i/10, i), Service: fmt.Sprintf("svc%d", i/10), Label: fmt.Sprint(i % 10),
			Host: "127.0.0.1", Port: 8000 + i})
	}
	s := &Server{zone: DefaultZone, reg: reg}
	b.ReportAllocs()
	for b.Loop() {
		s.buildTable(reg.View())
	}
}
