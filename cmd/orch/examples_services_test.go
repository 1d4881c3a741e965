package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// consecutivePorts returns n consecutive TCP and UDP ports of 127.0.0.1
// that were free a moment ago, below the ephemeral range.
func consecutivePorts(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		base := 20000 + rand.IntN(12000-n)
		ok := true
		for i := 0; i < n && ok; i++ {
			addr := fmt.Sprintf("127.0.0.1:%d", base+i)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no consecutive free ports")
	return 0
}

// TestExampleServices runs examples/services (on free ports, through
// ORCH_VAR_*) until both instances are registered, then asks DNS with dig
// and the proxy with curl, as its comments say a user would.
func TestExampleServices(t *testing.T) {
	for _, tool := range []string{"python3", "dig", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (make deps installs it)", tool)
			}
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
	root := filepath.Join(t.TempDir(), "services")
	copyExample(t, filepath.Join("..", "..", "examples", "services"), root)
	base := consecutivePorts(t, 4) // dns, proxy, web[0], web[1]
	e := engineTestIn(t, root)
	e.env = []string{fmt.Sprintf("ORCH_VAR_dns_port=%d", base), fmt.Sprintf("ORCH_VAR_proxy_port=%d", base+1),
		fmt.Sprintf("ORCH_VAR_web_port=%d", base+2)}
	p := e.start("up")
	e.waitFor(p, "both instances registered", func() bool {
		n := 0
		for _, ev := range upEvents(p.output()) {
			e.pids.add(ev.Pid)
			if ev.Type == "service_registered" {
				n++
			}
		}
		return n == 2
	})
	out, err := exec.Command("dig", "@127.0.0.1", "-p", strconv.Itoa(base), "+short", "+time=2", "+tries=1", "web.orch.internal", "SRV").CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	want := fmt.Sprintf("0 1 %d 0.web.orch.internal.|0 1 %d 1.web.orch.internal.", base+2, base+3)
	if err != nil || strings.Join(lines, "|") != want {
		t.Errorf("dig SRV: %v %q, want %q", err, out, want)
	}
	body, err := exec.Command("curl", "-sS", "-H", "Host: web.localhost", fmt.Sprintf("http://127.0.0.1:%d/", base+1)).CombinedOutput()
	if err != nil || !strings.Contains(string(body), "Hello from orch") {
		t.Errorf("curl through the proxy: %v %q", err, body)
	}
	p.signalAndWait(t, syscall.SIGTERM, 60*time.Second)
	for _, ev := range upEvents(p.output()) {
		if ev.Type == "failed" || ev.Type == "error" || ev.Type == "config_invalid" {
			t.Errorf("%s %s: %s\n%s", ev.Address, ev.Type, ev.Detail, p.output())
		}
	}
	// orch status names each instance's service and route.
	st := orch(t, root, e.env, "status", root).want(t, 0)
	for _, l := range strings.Split(st.stdout, "\n") {
		if strings.HasPrefix(l, "daemon.web[") && !strings.Contains(l, " web ") || strings.HasPrefix(l, "daemon.web[") && !strings.HasSuffix(strings.TrimSpace(l), "web.localhost/") {
			t.Errorf("status line without its service and route: %q", l)
		}
	}
	if !strings.Contains(st.stdout, "SERVICE") {
		t.Errorf("status:\n%s", st.stdout)
	}
}
