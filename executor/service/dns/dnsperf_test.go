package dns

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/orch-dev/orch/executor/service"
)

// BenchmarkDnsperf: Debian's dnsperf (another process, so the figures
// are the server's) offers 20,000 queries a second (A and SRV of a
// service with 3 ready instances) for 4 s per round from 4 clients;
// -v reports each answer's latency. Each round asks orch's server and
// then, as a reference on the same machine at the same moment,
// miekg/dns's own server with the same handler (what orch served UDP
// with before its own loop), orch's with one socket (orch1), and Debian's
// dnsmasq with the same records when it is installed (a C server: the
// floor of the machine at that moment). Reported, for each: the queries answered
// per second, the share of queries lost, and the latency's 50th and 99th
// percentiles in ms over all rounds, the median over the rounds of each
// round's 99th percentile (one round that the machine's load spoiled
// weighs less), and the CPU time this process
// spent per question (user and system, while dnsperf ran: the server's,
// and what reading dnsperf's output costs, the same for both).
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
	// The reference: miekg/dns's server, a goroutine per question.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ref := &mdns.Server{PacketConn: pc, Handler: s, UDPSize: 65535}
	go ref.ActivateAndServe()
	defer ref.Shutdown()
	s1, err := listen("127.0.0.1:0", "orch.internal.", reg, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer s1.Close()
	servers := []struct{ name, addr string }{{"orch", s.Addr()}, {"orch1", s1.Addr()}, {"miekg", pc.LocalAddr().String()}}
	if addr := startDnsmasq(b); addr != "" {
		servers = append(servers, struct{ name, addr string }{"dnsmasq", addr})
	}
	// What users run: the orch binary's DNS listener under orch up, with
	// the same names (3 ready instances of api).
	servers = append(servers, struct{ name, addr string }{"orch-up", orchUpDNS(b)})
	data := filepath.Join(b.TempDir(), "queries")
	os.WriteFile(data, []byte("api.orch.internal A\napi.orch.internal SRV\n0.api.orch.internal A\n"), 0o644)
	lat := regexp.MustCompile(`(?m)^> NOERROR .* ([0-9.]+)$`)
	qps := make([]float64, len(servers))
	lost := make([]float64, len(servers))
	all := make([][]float64, len(servers))
	rounds := make([][]float64, len(servers)) // each round's p99
	cpu := make([]time.Duration, len(servers))
	tmp := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, srv := range servers {
			_, port, _ := net.SplitHostPort(srv.addr)
			// dnsperf writes its output (a line per answer, megabytes) to
			// a file: read into this process while it runs, it made
			// garbage whose collection slowed the servers in this process.
			outFile, err := os.Create(filepath.Join(tmp, "out"))
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(dnsperf, "-s", "127.0.0.1", "-p", port, "-d", data, "-l", "4", "-c", "4", "-Q", "20000", "-v")
			cmd.Stdout, cmd.Stderr = outFile, outFile
			runtime.GC()
			cpu0 := cpuTime()
			err = cmd.Run()
			cpu[j] += cpuTime() - cpu0
			outFile.Close()
			out, _ := os.ReadFile(outFile.Name())
			if err != nil {
				b.Fatalf("dnsperf: %v\n%s", err, tail(out))
			}
			if m := regexp.MustCompile(`Queries per second:\s+([0-9.]+)`).FindSubmatch(out); m != nil {
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				qps[j] += v
			}
			if m := regexp.MustCompile(`Queries lost:\s+\d+ \(([0-9.]+)%\)`).FindSubmatch(out); m != nil {
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				lost[j] += v
			}
			var round []float64
			for _, m := range lat.FindAllSubmatch(out, -1) {
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				round = append(round, v)
			}
			if len(round) > 0 {
				all[j] = append(all[j], round...)
				sort.Float64s(round)
				rounds[j] = append(rounds[j], round[len(round)*99/100])
			}
		}
	}
	b.StopTimer()
	for j, srv := range servers {
		if len(all[j]) == 0 {
			b.Fatalf("dnsperf reported no latency for %s", srv.name)
		}
		sort.Float64s(all[j])
		ms := float64(time.Second / time.Millisecond)
		b.ReportMetric(qps[j]/float64(b.N), srv.name+"-q/s")
		if srv.name != "dnsmasq" && srv.name != "orch-up" { // another process: this one's CPU says nothing of it
			b.ReportMetric(float64(cpu[j].Microseconds())/(qps[j]*4), srv.name+"-µs-cpu/q")
		}
		b.ReportMetric(lost[j]/float64(b.N), srv.name+"-%lost")
		b.ReportMetric(all[j][len(all[j])*99/100]*ms, srv.name+"-ms-p99")
		sort.Float64s(rounds[j])
		b.ReportMetric(rounds[j][len(rounds[j])/2]*ms, srv.name+"-ms-p99-median-round")
		b.ReportMetric(all[j][len(all[j])/2]*ms, srv.name+"-ms-p50")
	}
}

// startDnsmasq starts Debian's dnsmasq (a C server, one thread, one
// socket) with the same records, the floor this machine allows at the
// moment; "" when it is not installed (it is optional).
func startDnsmasq(b *testing.B) string {
	path, err := exec.LookPath("dnsmasq")
	if err != nil {
		b.Log("dnsmasq is not installed (Debian's dnsmasq-base): no reference from a C server")
		return ""
	}
	conns, ln, err := listenBoth("127.0.0.1:0", 1) // a port free for UDP and TCP
	if err != nil {
		b.Fatal(err)
	}
	addr := conns[0].LocalAddr().String()
	conns[0].Close()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-k", "--conf-file=/dev/null", "--port=" + port, "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--pid-file=", "--local=/orch.internal/", "--host-record=0.api.orch.internal,127.0.0.1"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	for i := 0; i < 3; i++ {
		args = append(args, fmt.Sprintf("--host-record=api.orch.internal,127.0.0.%d", i+1),
			fmt.Sprintf("--srv-host=api.orch.internal,%d.api.orch.internal,%d,0,1", i, 8080+i))
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	c := &mdns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	q := new(mdns.Msg)
	q.SetQuestion("api.orch.internal.", mdns.TypeA)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _, err := c.Exchange(q, addr); err == nil && len(m.Answer) == 3 {
			return addr
		}
		select {
		case err := <-exited:
			exited <- err
			b.Fatalf("dnsmasq exited: %v\n%s", err, stderr.Bytes())
		case <-time.After(10 * time.Millisecond): // polling: it says nothing when it is ready
		}
		if time.Now().After(deadline) {
			b.Fatalf("dnsmasq does not answer on %s within 30 s\n%s", addr, stderr.Bytes())
		}
	}
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func tail(b []byte) string {
	s := string(b)
	if i := strings.LastIndex(s[:max(0, len(s)-2000)], "\n"); i > 0 {
		return s[i:]
	}
	return s
}

// orchUpDNS runs the orch binary, built here, as orch up with a DNS
// listener and a daemon "api" of 3 instances publishing the service
// "api"; it returns the listener's address once the 3 are published.
// The cleanup stops orch up and its daemons.
func orchUpDNS(b *testing.B) string {
	dir := b.TempDir()
	bin := filepath.Join(dir, "orch")
	_, self, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/orch")
	build.Dir = filepath.Join(filepath.Dir(self), "..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building orch: %v\n%s", err, out)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	cfg := fmt.Sprintf(`orch {
  dns {
    listen = "127.0.0.1:%d"
    zone   = "orch.internal."
  }
}
daemon "api" {
  count   = 3
  command = ["/bin/sleep", "100000"]
  service {
    name = "api"
    port = 8080 + count.index
  }
}
`, port)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "up", "-json", dir)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &lockedBuffer{b: &out}, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		lb := cmd.Stdout.(*lockedBuffer)
		if strings.Count(lb.String(), `"type":"service_registered"`) >= 3 {
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
		select {
		case <-exited:
			b.Fatalf("orch up exited:\n%s", lb.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("orch up did not publish api's 3 instances within 30 s:\n%s", lb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
