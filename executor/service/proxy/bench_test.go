package proxy

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// nginxConf serves the upstream (a small fixed response on up) and, on
// px, nginx's own reverse proxy to it, with kept-alive upstream
// connections as a tuned nginx has them.
const nginxConf = `
daemon off;
master_process on;
worker_processes auto;
user root root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream app {
    server 127.0.0.1:%[2]d;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:%[2]d;
    location / { return 200 "hello from the upstream\n"; }
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`

func freeTCPPort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tool(b *testing.B, name, pkg string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatalf("%s is not installed (Debian's %s; make deps installs it)", name, pkg)
		}
		b.Skipf("%s is not installed (Debian's %s; make deps installs it)", name, pkg)
	}
	return p
}

// wrkRPS runs wrk against url for d and returns its requests per second;
// a non-2xx response or a socket error fails the benchmark.
func wrkRPS(b *testing.B, wrk, url string, d time.Duration) float64 {
	out, err := exec.Command(wrk, "-t", "2", "-c", "64", "-d", d.String(), "--timeout", "10s", "-H", "Host: app.localhost", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	if regexp.MustCompile(`Non-2xx|Socket errors`).Match(out) {
		b.Fatalf("wrk saw failures:\n%s", out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("wrk:\n%s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// BenchmarkVsNginx: the proxy's throughput on a small response against
// nginx's reverse proxy (Debian's, tuned with upstream keepalive) to the
// same upstream (an nginx server block), measured side by side in one
// run: wrk (2 threads, 64 connections) goes, in each of b.N rounds, to
// nginx, to orch's proxy, and to orch's proxy serving every request with
// net/http and httputil (what it did before its fast path, and still does
// for HTTPS and upgrades), 3 s each. Reported: the median over the rounds
// of each one's requests per second, and the ratios of the medians.
func BenchmarkVsNginx(b *testing.B) {
	nginx, wrk := tool(b, "nginx", "nginx"), tool(b, "wrk", "wrk")
	dir := b.TempDir()
	up, px := freeTCPPort(b), freeTCPPort(b)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, up, px)), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", px)); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			b.Fatal("nginx does not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reg := service.New()
	p, err := Listen("127.0.0.1:0", nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	slow, err := listenProxy("127.0.0.1:0", nil, reg, true)
	if err != nil {
		b.Fatal(err)
	}
	defer slow.Close()
	reg.Set(service.Instance{ID: "app#0", Addr: "daemon.app", Service: "app", Label: "0", Host: "127.0.0.1", Port: up,
		Route: &service.Route{Host: "app.localhost", Path: "/"}})
	upPort := orchUp(b, up)
	targets := []struct{ name, url string }{
		{"nginx", fmt.Sprintf("http://127.0.0.1:%d/", px)},
		{"orch", "http://" + p.Addr() + "/"},
		{"orch-httputil", "http://" + slow.Addr() + "/"},
		{"orch-up", fmt.Sprintf("http://127.0.0.1:%d/", upPort)},
	}
	const d = 3 * time.Second
	for _, t := range targets {
		wrkRPS(b, wrk, t.url, time.Second) // warm each
	}
	rps := make([][]float64, len(targets))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, t := range targets {
			rps[j] = append(rps[j], wrkRPS(b, wrk, t.url, d))
		}
	}
	b.StopTimer()
	med := make([]float64, len(targets))
	for j, t := range targets {
		sort.Float64s(rps[j])
		med[j] = rps[j][len(rps[j])/2]
		if len(rps[j])%2 == 0 {
			med[j] = (rps[j][len(rps[j])/2-1] + rps[j][len(rps[j])/2]) / 2
		}
		b.ReportMetric(med[j], t.name+"-req/s")
	}
	b.ReportMetric(med[1]/med[0], "ratio")
	b.ReportMetric(med[2]/med[0], "httputil-ratio")
	b.ReportMetric(med[3]/med[0], "orch-up-ratio")
}

// orchUp runs what users run: the orch binary, built here, as orch up
// with a proxy listener and one daemon whose service routes "/" to the
// upstream's port (the daemon itself only holds the service: the
// upstream is nginx's, the same as nginx's proxy uses). It returns the
// proxy's port once the route is published; the cleanup stops orch up
// and the daemon.
func orchUp(b *testing.B, upstream int) int {
	dir := b.TempDir()
	bin := filepath.Join(dir, "orch")
	_, self, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/orch")
	build.Dir = filepath.Join(filepath.Dir(self), "..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building orch: %v\n%s", err, out)
	}
	port := freeTCPPort(b)
	cfg := fmt.Sprintf(`orch {
  proxy { listen = "127.0.0.1:%d" }
}
daemon "app" {
  command = ["/bin/sleep", "100000"]
  service {
    route = "/"
    port  = %d
  }
}
`, port, upstream)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "up", "-json", dir)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	routed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), `"type":"service_registered"`) {
				once = true
				close(routed)
			}
		}
	}()
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
	select {
	case <-routed:
	case <-exited:
		b.Fatal("orch up exited before it published the route")
	case <-time.After(30 * time.Second):
		b.Fatal("orch up did not publish the route within 30 s")
	}
	return port
}
