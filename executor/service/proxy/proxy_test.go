package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// upstream is a real HTTP server on 127.0.0.1 that answers its name.
type upstream struct {
	name string
	srv  *http.Server
	ln   net.Listener
	hits atomic.Int64
	port int
}

func startUpstream(t testing.TB, name string, h http.HandlerFunc) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{name: name, ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s %s", name, r.Host, r.URL.Path) }
	}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	})}
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func inst(u *upstream, label, host, path string) service.Instance {
	return service.Instance{ID: u.name + "#" + label, Addr: "daemon." + u.name + "[" + label + "]", Service: u.name,
		Label: label, Host: "127.0.0.1", Port: u.port, Route: &service.Route{Host: host, Path: path}}
}

func listen(t testing.TB, reg *service.Registry) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

var client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}

func get(t testing.TB, p *Proxy, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.Addr()+path, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRoutesByHostAndLongestPrefix(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	root, v1, v1x, other := startUpstream(t, "root", nil), startUpstream(t, "v1", nil), startUpstream(t, "v1x", nil), startUpstream(t, "other", nil)
	reg.Set(inst(root, "0", "api.localhost", "/"))
	reg.Set(inst(v1, "0", "api.localhost", "/v1"))
	reg.Set(inst(v1x, "0", "api.localhost", "/v1/x/"))
	reg.Set(inst(other, "0", "web.localhost", "/static"))
	for _, c := range []struct{ host, path, want string }{
		{"api.localhost", "/", "root api.localhost /"},
		{"API.localhost:8080", "/v1", "v1 API.localhost:8080 /v1"},
		{"api.localhost", "/v1/users", "v1 api.localhost /v1/users"},
		{"api.localhost", "/v10", "root api.localhost /v10"},
		{"api.localhost", "/v1/x/y", "v1x api.localhost /v1/x/y"},
		{"api.localhost", "/v1/x", "v1x api.localhost /v1/x"},
		{"web.localhost", "/static/a.css", "other web.localhost /static/a.css"},
	} {
		if code, body := get(t, p, c.host, c.path); code != 200 || body != c.want {
			t.Errorf("%s%s: %d %q, want %q", c.host, c.path, code, body, c.want)
		}
	}
	if code, _ := get(t, p, "nope.localhost", "/"); code != http.StatusNotFound {
		t.Errorf("unknown host: %d", code)
	}
	// A route without a host takes any host that has no route of its own
	// for the path.
	anyHost := startUpstream(t, "any", nil)
	reg.Set(inst(anyHost, "0", "", "/health"))
	if code, body := get(t, p, "nope.localhost", "/health/x"); code != 200 || body != "any nope.localhost /health/x" {
		t.Errorf("any host: %d %q", code, body)
	}
	if code, body := get(t, p, "api.localhost", "/health"); code != 200 || !strings.HasPrefix(body, "root ") {
		t.Errorf("api.localhost's own / before any host's /health: %d %q", code, body)
	}
	if code, _ := get(t, p, "web.localhost", "/"); code != http.StatusNotFound {
		t.Errorf("web.localhost/ outside its prefix: %d", code)
	}
	reg.Remove("other#0")
	if code, _ := get(t, p, "web.localhost", "/static/x"); code != http.StatusNotFound {
		t.Errorf("after the route's only instance left: %d", code)
	}
	// curl, as a user would, with the Host given by --resolve-like header.
	if out, err := exec.Command("curl", "-sS", "-H", "Host: api.localhost", "http://"+p.Addr()+"/v1/curl").CombinedOutput(); err != nil || string(out) != "v1 api.localhost /v1/curl" {
		t.Errorf("curl: %v %q", err, out)
	}
}

func TestRoundRobin(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	var us []*upstream
	for i := 0; i < 3; i++ {
		u := startUpstream(t, "api", nil)
		us = append(us, u)
		in := inst(u, fmt.Sprint(i), "api.localhost", "/")
		reg.Set(in)
	}
	for i := 0; i < 30; i++ {
		if code, _ := get(t, p, "api.localhost", "/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	for i, u := range us {
		if n := u.hits.Load(); n != 10 {
			t.Errorf("instance %d got %d of 30 requests, want 10", i, n)
		}
	}
}

// An instance that refuses connections is skipped at once: no request
// fails, and it is left out after its first refusal.
func TestRefusingInstanceSkipped(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	a, b := startUpstream(t, "api", nil), startUpstream(t, "api", nil)
	dead := startUpstream(t, "api", nil)
	dead.srv.Close() // its port refuses connections now
	reg.Set(inst(a, "0", "api.localhost", "/"))
	reg.Set(inst(dead, "1", "api.localhost", "/"))
	reg.Set(inst(b, "2", "api.localhost", "/"))
	for i := 0; i < 30; i++ {
		if code, body := get(t, p, "api.localhost", "/"); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if a.hits.Load()+b.hits.Load() != 30 {
		t.Errorf("answered %d+%d of 30", a.hits.Load(), b.hits.Load())
	}
	// A POST with a body is tried on the next instance too.
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("POST", "http://"+p.Addr()+"/post", strings.NewReader("payload"))
		req.Host = "api.localhost"
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	// Only one left, and it refuses: 502 naming the service.
	reg.Remove("api#0")
	reg.Remove("api#2")
	if code, body := get(t, p, "api.localhost", "/"); code != http.StatusBadGateway || !strings.Contains(body, "service api") {
		t.Errorf("all refusing: %d %q", code, body)
	}
}

// A WebSocket upgrade goes through, both ways, and counts as in flight
// until it closes.
func TestWebSocketUpgrade(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	u := startUpstream(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("echo " + line)
			rw.Flush()
		}
	})
	reg.Set(inst(u, "0", "ws.localhost", "/"))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	for _, msg := range []string{"hello", "again"} {
		fmt.Fprintf(c, "%s\n", msg)
		line, err := br.ReadString('\n')
		if err != nil || line != "echo "+msg+"\n" {
			t.Fatalf("echo: %q %v", line, err)
		}
	}
	if n := p.Inflight("ws#0"); n != 1 {
		t.Errorf("in flight during the WebSocket: %d, want 1", n)
	}
	c.Close()
	for p.Inflight("ws#0") != 0 {
		time.Sleep(time.Millisecond)
	}
}

// Drain: the instance gets no new request, and Drain returns only once the
// request in flight to it has been answered.
func TestDrainWaitsForInflight(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	release := make(chan struct{})
	var answered atomic.Bool
	slow := startUpstream(t, "api", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
			answered.Store(true)
		}
		w.Write([]byte("slow"))
	})
	fast := startUpstream(t, "api", nil)
	si := inst(slow, "0", "api.localhost", "/")
	si.Drain = time.Minute
	reg.Set(si)
	fi := inst(fast, "1", "api.localhost", "/")
	reg.Set(fi)
	var wg sync.WaitGroup
	wg.Add(1)
	var slowCode int
	go func() {
		defer wg.Done()
		slowCode, _ = get(t, p, "api.localhost", "/slow") // round robin: the first goes to slow
	}()
	for p.Inflight(si.ID) != 1 || slow.hits.Load() != 1 { // in flight, and arrived
		time.Sleep(time.Millisecond)
	}
	drained := make(chan struct{})
	go func() {
		reg.Drain(context.Background(), si.ID)
		close(drained)
	}()
	// Meanwhile every new request goes to the other instance. (Get takes
	// the registry's lock, held until the watchers, the proxy's among
	// them, have followed the removal.)
	for {
		if _, ok := reg.Get(si.ID); !ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	before := slow.hits.Load()
	for i := 0; i < 10; i++ {
		if code, body := get(t, p, "api.localhost", "/"); code != 200 || !strings.HasPrefix(body, "api") {
			t.Fatalf("%d %q", code, body)
		}
	}
	if slow.hits.Load() != before {
		t.Errorf("a draining instance got new requests")
	}
	select {
	case <-drained:
		t.Fatal("Drain returned while a request was in flight")
	default:
	}
	close(release)
	<-drained
	if !answered.Load() {
		t.Error("Drain returned before the request in flight was answered")
	}
	wg.Wait()
	if slowCode != 200 {
		t.Errorf("the drained request: %d", slowCode)
	}
	// Nothing in flight: Drain returns at once (it would wait a minute).
	reg.Set(si)
	done := make(chan struct{})
	go func() { reg.Drain(context.Background(), si.ID); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Drain of an idle instance waited")
	}
}

func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), nil, service.New())
	var le *service.ListenError
	if !errors.As(err, &le) || le.Listener != "proxy" || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("got %v", err)
	}
	if want := `orch { proxy { listen = "` + ln.Addr().String() + `" } }: address already in use`; err.Error() != want {
		t.Errorf("%q, want %q", err, want)
	}
}

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("curl"); err != nil {
		fmt.Fprintln(os.Stderr, "curl is required (Debian's curl)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}
