package dns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// BenchmarkDnsperf: Debian's dnsperf (another process, so the figures
// are the server's) offers 20,000 queries a second (A and SRV of a
// service with 3 ready instances) for 4 s per round from 4 clients;
// -v reports each answer's latency. Reported: the queries answered per
// second, the share of queries lost, and the latency's 99th percentile
// in ms.
func BenchmarkDnsperf(b *testing.B) {
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal("dnsperf is not installed (Debian's dnsperf; make deps installs it)")
		}
		b.Skip("dnsperf is not installed (Debian's dnsperf; make deps installs it)")
	}
	reg := service.New()
	for i := 0; i < 3; i++ {
		reg.Set(api(i, fmt.Sprint(i), fmt.Sprintf("127.0.0.%d", i+1), 8080+i))
	}
	s, err := Listen("127.0.0.1:0", "orch.internal.", reg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_, port, _ := net.SplitHostPort(s.Addr())
	data := filepath.Join(b.TempDir(), "queries")
	os.WriteFile(data, []byte("api.orch.internal A\napi.orch.internal SRV\n0.api.orch.internal A\n"), 0o644)
	lat := regexp.MustCompile(`(?m)^> NOERROR .* ([0-9.]+)$`)
	var qps, lost float64
	var all []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := exec.Command(dnsperf, "-s", "127.0.0.1", "-p", port, "-d", data, "-l", "4", "-c", "4", "-Q", "20000", "-v").CombinedOutput()
		if err != nil {
			b.Fatalf("dnsperf: %v\n%s", err, tail(out))
		}
		if m := regexp.MustCompile(`Queries per second:\s+([0-9.]+)`).FindSubmatch(out); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			qps += v
		}
		if m := regexp.MustCompile(`Queries lost:\s+\d+ \(([0-9.]+)%\)`).FindSubmatch(out); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			lost += v
		}
		for _, m := range lat.FindAllSubmatch(out, -1) {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			all = append(all, v)
		}
	}
	b.StopTimer()
	if len(all) == 0 {
		b.Fatal("dnsperf reported no latency")
	}
	sort.Float64s(all)
	b.ReportMetric(qps/float64(b.N), "q/s")
	b.ReportMetric(lost/float64(b.N), "%lost")
	b.ReportMetric(all[len(all)*99/100]*float64(time.Second/time.Millisecond), "ms-p99")
	b.ReportMetric(all[len(all)/2]*float64(time.Second/time.Millisecond), "ms-p50")
}

func tail(b []byte) string {
	s := string(b)
	if i := strings.LastIndex(s[:max(0, len(s)-2000)], "\n"); i > 0 {
		return s[i:]
	}
	return s
}
