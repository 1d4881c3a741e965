package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/agent/agenttest"
	"github.com/orch-dev/orch/executor/agent/web"
)

func TestMain(m *testing.M) {
	code := m.Run()
	agenttest.Cleanup()
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const token = "s3cret-token"

func startWeb(t *testing.T) (*agenttest.Up, string) {
	port := freePort(t)
	u := agenttest.Start(t, fmt.Sprintf(`
orch {
  http {
    listen = "127.0.0.1:%d"
    token  = "%s"
  }
}
daemon "db" {
  command = ["/bin/sh", "-c", "echo db says hello; exec sleep 1000"]
  health {
    exec     = ["/bin/true"]
    interval = "100ms"
  }
}
daemon "api" {
  count      = 2
  command    = ["/bin/sleep", "1000"]
  depends_on = [daemon.db]
  restart {
    policy  = "always"
    backoff = "1ms"
  }
}
`, port, token))
	return u, fmt.Sprintf("http://127.0.0.1:%d", port)
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func post(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEndpoints asks every endpoint of the web listener of a real orch up.
func TestEndpoints(t *testing.T) {
	u, base := startWeb(t)
	t.Logf("%s: up", time.Now().Format("15:04:05.000"))
	u.Started("daemon.api[1]", 1)

	if code, body, _ := get(t, base+"/"); code != 200 || !strings.Contains(body, `<script src="/static/app.js">`) {
		t.Errorf("GET /: %d\n%s", code, body)
	}
	for _, f := range []string{"/static/app.js", "/static/style.css"} {
		if code, body, _ := get(t, base+f); code != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", f, code, len(body))
		}
	}
	if code, body, _ := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, `orch_instance_restarts_total{address="daemon.api[0]"} 0`) {
		t.Errorf("GET /metrics: %d\n%s", code, body)
	}
	var snap agent.SnapshotResponse
	agenttest.Eventually(t, "db ready in the snapshot", func() bool {
		code, body, _ := get(t, base+"/v1/snapshot")
		if code != 200 {
			t.Fatalf("GET /v1/snapshot: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &snap); err != nil {
			t.Fatal(err)
		}
		return len(snap.Instances) == 3 && snap.Instances[2].Address == "daemon.db" && snap.Instances[2].State == "ready"
	})
	if in := snap.Instances[0]; in.Address != "daemon.api[0]" || in.Pid == 0 || in.Kind != "daemon" || len(in.DependsOn) != 1 || in.DependsOn[0] != "daemon.db" {
		t.Errorf("snapshot of daemon.api[0]: %+v", in)
	}
	if code, body, _ := get(t, base+"/v1/status"); code != 200 || !strings.Contains(body, `"daemon.db"`) {
		t.Errorf("GET /v1/status: %d %s", code, body)
	}
	agenttest.Eventually(t, "db's log", func() bool {
		code, body, _ := get(t, base+"/v1/logs/daemon.db?n=5")
		return code == 200 && strings.Contains(body, "db says hello")
	})
	if code, body, _ := get(t, base+"/v1/plan/last"); code != 200 || !strings.Contains(body, "daemon.api[1] will be created") {
		t.Errorf("GET /v1/plan/last: %d %s", code, body)
	}
	code, svg, h := get(t, base+"/graph.svg")
	if code != 200 || h.Get("Content-Type") != "image/svg+xml" || !strings.Contains(svg, `data-address="daemon.api[1]"`) || strings.Count(svg, "<line ") != 2 {
		t.Errorf("GET /graph.svg: %d %s\n%s", code, h.Get("Content-Type"), svg)
	}
	code, sse, h := get(t, base+"/events?since=all&until=0s&type=started")
	if code != 200 || h.Get("Content-Type") != "text/event-stream" || strings.Count(sse, "\ndata: {\"time") != 3 ||
		!strings.Contains(sse, `"address":"daemon.db"`) || !strings.HasSuffix(sse, "event: end\ndata: {}\n\n") {
		t.Errorf("GET /events: %d %s\n%s", code, h.Get("Content-Type"), sse)
	}
	if code, _, _ := get(t, base+"/events?type=begun"); code != 400 {
		t.Errorf("GET /events?type=begun: %d, want 400", code)
	}

	// What changes state needs the token.
	restart := base + "/v1/restart/daemon.api%5B0%5D"
	if code, body := post(t, restart, ""); code != 401 || !strings.Contains(body, "Authorization: Bearer") {
		t.Errorf("POST restart without a token: %d %s", code, body)
	}
	if code, body := post(t, restart, "Bearer wrong"); code != 401 {
		t.Errorf("POST restart with a wrong token: %d %s", code, body)
	}
	if code, body := post(t, base+"/v1/signal/daemon.db", ""); code != 401 {
		t.Errorf("POST signal without a token: %d %s", code, body)
	}
	if n := len(u.Events()); u.Events()[n-1].Type == "stopping" {
		t.Fatal("a refused restart stopped something")
	}
	code, body := post(t, restart, "Bearer "+token)
	var rr agent.RestartResponse
	if json.Unmarshal([]byte(body), &rr); code != 200 || rr.Pid == 0 {
		t.Fatalf("POST restart with the token: %d %s", code, body)
	}
	if got := u.Started("daemon.api[0]", 2); got != rr.Pid {
		t.Errorf("restart answered pid %d, the engine started %d", rr.Pid, got)
	}
	// The page's stop holds the daemon stopped; its start starts it.
	stop, start := base+"/v1/stop/daemon.api%5B0%5D", base+"/v1/start/daemon.api%5B0%5D"
	if code, body := post(t, stop, ""); code != 401 {
		t.Errorf("POST stop without a token: %d %s", code, body)
	}
	if code, body := post(t, stop, "Bearer "+token); code != 200 {
		t.Fatalf("POST stop with the token: %d %s", code, body)
	}
	agenttest.Eventually(t, "daemon.api[0] held", func() bool {
		_, body, _ := get(t, base+"/v1/snapshot")
		return strings.Contains(body, `"address":"daemon.api[0]"`) && regexp.MustCompile(`"address":"daemon.api\[0\]"[^}]*"state":"held"`).MatchString(body)
	})
	if code, body := post(t, start, "Bearer "+token); code != 200 {
		t.Fatalf("POST start with the token: %d %s", code, body)
	}
	u.Started("daemon.api[0]", 3)

	// Another host name (DNS rebinding) is refused.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/snapshot", nil)
	req.Host = "attacker.example:80"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host attacker.example: %d, want 421", resp.StatusCode)
	}
}

// TestNoTokenRefusesChanges: without a token, every POST is refused
// before it reaches the agent's API.
func TestNoTokenRefusesChanges(t *testing.T) {
	srv := httptest.NewServer((&web.Server{API: &agent.Server{}}).Handler())
	defer srv.Close()
	for _, p := range []string{"/v1/restart/daemon.a", "/v1/apply", "/v1/destroy", "/v1/pause/daemon.a", "/v1/trace/daemon.a"} {
		if code, body := post(t, srv.URL+p, "Bearer "); code != http.StatusForbidden || !strings.Contains(body, "no token") {
			t.Errorf("POST %s: %d %s", p, code, body)
		}
	}
}

// TestChromium loads the page in headless Chromium after a crash: the
// instances are in the DOM, and the event stream delivered the exit.
func TestChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (Debian package chromium; make deps)")
		}
		t.Skip("chromium is not installed (Debian package chromium; make deps)")
	}
	u, base := startWeb(t)
	pid := u.Started("daemon.api[1]", 1)
	syscall.Kill(pid, syscall.SIGKILL)
	u.Started("daemon.api[1]", 2)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", base+"/?since=all&until=0s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)
	for _, want := range []string{`<tr data-address="daemon.db"`, `<tr data-address="daemon.api[0]"`, `<tr data-address="daemon.api[1]"`,
		`data-address="daemon.api[1]" class="bad">`, fmt.Sprintf("daemon.api[1] exited pid=%d signal=SIGKILL", pid), `<g class="node" data-address="daemon.db">`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM lacks %s", want)
		}
	}
	if t.Failed() {
		sc := bufio.NewScanner(strings.NewReader(dom))
		for sc.Scan() {
			if strings.Contains(sc.Text(), "daemon.") {
				t.Log(sc.Text())
			}
		}
	}
}

func netListen() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
