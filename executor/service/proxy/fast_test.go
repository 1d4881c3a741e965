package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// rawExchange writes raw to a new connection to p and returns everything
// read until the proxy closes it (or the deadline).
func rawExchange(t *testing.T, p *Proxy, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, raw)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the proxy closes the connection: %v (read %q)", err, b)
	}
	return string(b)
}

// Request smuggling: a request whose body length is ambiguous is refused
// with 400 and the connection closed; nothing reaches the instance.
func TestSmugglingRefused(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	u := startUpstream(t, "api", nil)
	reg.Set(inst(u, "0", "api.localhost", "/"))
	for _, c := range []struct{ name, head string }{
		{"CL and TE", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"},
		{"TE and CL", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"},
		{"two CLs", "Content-Length: 5\r\nContent-Length: 6\r\n"},
		{"CL not a number", "Content-Length: 5x\r\n"},
		{"CL with a sign", "Content-Length: +5\r\n"},
		{"space before the colon", "Content-Length : 5\r\n"},
		{"obs-fold", "X-A: 1\r\n folded\r\n"},
		{"two Hosts", "Host: other.localhost\r\n"},
	} {
		raw := "POST / HTTP/1.1\r\nHost: api.localhost\r\n" + c.head + "\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.localhost\r\n\r\n"
		out := rawExchange(t, p, raw)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || strings.Count(out, "HTTP/1.1") != 1 {
			t.Errorf("%s: got\n%s\nwant one 400 and the connection closed", c.name, out)
		}
	}
	if n := u.hits.Load(); n != 0 {
		t.Errorf("the instance got %d requests", n)
	}
	// The same length twice is one length.
	out := rawExchange(t, p, "POST /same HTTP/1.1\r\nHost: api.localhost\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "api api.localhost /same") {
		t.Errorf("two equal Content-Lengths: %q", out)
	}
}

// Bodies both ways and the ways a message ends: a request body by
// Content-Length (fast path) and chunked (net/http), curl's Expect:
// 100-continue, a chunked response, HEAD, 204, 304, and several requests
// on one kept-alive connection, over a few kept-alive connections to the
// instance.
func TestBodiesAndFraming(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	var upConns sync.Map // the instance's clients (the proxy's connections), by address
	u := startUpstream(t, "api", func(w http.ResponseWriter, r *http.Request) {
		upConns.Store(r.RemoteAddr, true)
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %q %v", r.Method, r.ContentLength, b, r.TransferEncoding)
		case "/chunked":
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "part %d;", i)
				w.(http.Flusher).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("X-Up", "1")
			io.WriteString(w, "hello")
		}
	})
	reg.Set(inst(u, "0", "api.localhost", "/"))

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	do := func(raw string, method string) (*http.Response, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%q: body: %v", raw, err)
		}
		return resp, string(b)
	}
	for i := 0; i < 3; i++ {
		if resp, body := do("POST /echo HTTP/1.1\r\nHost: api.localhost\r\nContent-Length: 11\r\n\r\nhello world", "POST"); resp.StatusCode != 200 || body != `POST 11 "hello world" []` {
			t.Errorf("POST by length: %d %q", resp.StatusCode, body)
		}
		if resp, body := do("GET /chunked HTTP/1.1\r\nHost: api.localhost\r\n\r\n", "GET"); resp.StatusCode != 200 || body != "part 0;part 1;part 2;" || resp.TransferEncoding == nil {
			t.Errorf("chunked response: %d %q %v", resp.StatusCode, body, resp.TransferEncoding)
		}
		if resp, body := do("HEAD / HTTP/1.1\r\nHost: api.localhost\r\n\r\n", "HEAD"); resp.StatusCode != 200 || body != "" || resp.Header.Get("X-Up") != "1" {
			t.Errorf("HEAD: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp, body := do("GET /empty HTTP/1.1\r\nHost: api.localhost\r\n\r\n", "GET"); resp.StatusCode != 204 || body != "" {
			t.Errorf("204: %d %q", resp.StatusCode, body)
		}
		if resp, body := do("GET /cached HTTP/1.1\r\nHost: api.localhost\r\nIf-None-Match: \"x\"\r\n\r\n", "GET"); resp.StatusCode != 304 || body != "" {
			t.Errorf("304: %d %q", resp.StatusCode, body)
		}
	}
	// A chunked request body: net/http takes the connection from here on.
	if resp, body := do("POST /echo HTTP/1.1\r\nHost: api.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "POST"); resp.StatusCode != 200 || body != `POST -1 "hello world" [chunked]` {
		t.Errorf("chunked POST: %d %q", resp.StatusCode, body)
	}
	if resp, body := do("GET / HTTP/1.1\r\nHost: api.localhost\r\n\r\n", "GET"); resp.StatusCode != 200 || body != "hello" {
		t.Errorf("after the hand-off: %d %q", resp.StatusCode, body)
	}
	n := 0
	upConns.Range(func(any, any) bool { n++; return true })
	if n > 2 {
		t.Errorf("%d connections to the instance for 17 sequential requests: not kept alive", n)
	}
	// curl sends Expect: 100-continue with a body over 1 MiB.
	big := strings.Repeat("x", 1<<20+1)
	cmd := exec.Command("curl", "-sS", "-H", "Host: api.localhost", "-H", "Expect: 100-continue", "--data-binary", "@-",
		"-w", " %{http_code}", "http://"+p.Addr()+"/echo")
	cmd.Stdin = strings.NewReader(big)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if want := fmt.Sprintf("POST %d %q [] 200", len(big), big); string(out) != want {
		t.Errorf("100-continue: %d bytes back, want %d", len(out), len(want))
	}
}

// X-Forwarded-For gets the client's address after the ones it had; the
// headers the Connection header names, and hop-by-hop ones, stay behind.
func TestForwardedHeaders(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	u := startUpstream(t, "api", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%q host=%q proto=%q secret=%q ka=%q", r.Header.Values("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Secret"), r.Header.Get("Keep-Alive"))
	})
	reg.Set(inst(u, "0", "api.localhost", "/"))
	out := rawExchange(t, p, "GET / HTTP/1.1\r\nHost: api.localhost\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"+
		"Connection: X-Secret, close\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\r\n")
	want := `xff=["10.0.0.1, 127.0.0.1"] host="api.localhost" proto="http" secret="" ka=""`
	if !strings.HasSuffix(out, want) {
		t.Errorf("got\n%s\nwant the body %s", out, want)
	}
}

// An instance that closes a kept-alive connection after each answer,
// without saying so: a GET is sent again on a new connection, a POST
// does not go on a closed one; none fails. (Each request waits until the
// instance closed the last connection: a close that crosses a request
// with a body in flight fails it, as it does with nginx and net/http.)
func TestClosedKeptAliveConnection(t *testing.T) {
	var served atomic.Int64
	closed := make(chan struct{}, 100)
	p := routeAPI(t, connUpstream(t, func(c net.Conn, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		served.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close()
		closed <- struct{}{}
	}))
	for i := 0; i < 20; i++ {
		method, body := "GET", io.Reader(nil)
		if i%2 == 1 {
			method, body = "POST", strings.NewReader("payload")
		}
		req, _ := http.NewRequest(method, "http://"+p.Addr()+"/", body)
		req.Host = "api.localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %d: %v", method, i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("%s %d: %d %q", method, i, resp.StatusCode, b)
		}
		select {
		case <-closed:
		case <-time.After(20 * time.Second):
			t.Fatal("the instance did not close its connection")
		}
	}
	if n := served.Load(); n != 20 {
		t.Errorf("the instance served %d of 20", n)
	}
}

// A response without a length ends with the instance's connection; the
// client's ends with it, and has the whole body.
func TestResponseUntilClose(t *testing.T) {
	port := rawUpstream(t, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"+strings.Repeat("y", 100000))
	reg := service.New()
	p := listen(t, reg)
	reg.Set(service.Instance{ID: "old#0", Addr: "daemon.old[0]", Service: "old", Label: "0", Host: "127.0.0.1",
		Port: port, Route: &service.Route{Host: "old.localhost", Path: "/"}})
	out := rawExchange(t, p, "GET / HTTP/1.1\r\nHost: old.localhost\r\n\r\n")
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 OK") || !strings.Contains(head, "Connection: close") || body != strings.Repeat("y", 100000) {
		t.Errorf("head %q, %d bytes of body", head, len(body))
	}
}

// connUpstream is an instance on 127.0.0.1 that reads the first request of
// each connection and hands it to serve, which answers it and closes the
// connection; it returns the instance's port.
func connUpstream(t *testing.T, serve func(c net.Conn, req *http.Request)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					c.Close()
					return
				}
				serve(c, req)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// rawUpstream answers every request on a connection with resp, then
// closes it.
func rawUpstream(t *testing.T, resp string) int {
	t.Helper()
	return connUpstream(t, func(c net.Conn, _ *http.Request) {
		defer c.Close()
		io.WriteString(c, resp)
	})
}

// routeAPI is a proxy that routes api.localhost/ to the instance on port.
func routeAPI(t *testing.T, port int) *Proxy {
	t.Helper()
	reg := service.New()
	p := listen(t, reg)
	reg.Set(service.Instance{ID: "api#0", Addr: "daemon.api[0]", Service: "api", Label: "0", Host: "127.0.0.1",
		Port: port, Route: &service.Route{Host: "api.localhost", Path: "/"}})
	return p
}

// What an instance answers ambiguously or wrongly does not reach the
// client as it is: both Content-Length and chunked go on as chunked only;
// a malformed response is a 502. A request ending in bare LFs (which
// net/http takes) is served, not waited on.
func TestUpstreamFramingAndBareLF(t *testing.T) {
	reg := service.New()
	p := listen(t, reg)
	both := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	bad := rawUpstream(t, "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
	reg.Set(service.Instance{ID: "both#0", Service: "both", Label: "0", Host: "127.0.0.1", Port: both, Route: &service.Route{Host: "both.localhost", Path: "/"}})
	reg.Set(service.Instance{ID: "bad#0", Service: "bad", Label: "0", Host: "127.0.0.1", Port: bad, Route: &service.Route{Host: "bad.localhost", Path: "/"}})
	out := rawExchange(t, p, "GET / HTTP/1.1\r\nHost: both.localhost\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || strings.Contains(strings.ToLower(out), "content-length") || !strings.HasSuffix(out, "\r\n\r\n5\r\nhello\r\n0\r\n\r\n") {
		t.Errorf("CL and chunked from the instance:\n%q", out)
	}
	out = rawExchange(t, p, "GET / HTTP/1.1\r\nHost: bad.localhost\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502 ") || !strings.Contains(out, "service bad") {
		t.Errorf("a malformed response:\n%q", out)
	}
	u := startUpstream(t, "api", nil)
	reg.Set(inst(u, "0", "api.localhost", "/"))
	out = rawExchange(t, p, "GET /lf HTTP/1.1\nHost: api.localhost\nConnection: close\n\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "api api.localhost /lf") {
		t.Errorf("bare LFs:\n%q", out)
	}
}

// HTTPS: net/http terminates TLS and the httputil path serves it; curl
// checks the certificate it was given.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.localhost"},
		DNSNames: []string{"api.localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	reg := service.New()
	p, err := Listen("127.0.0.1:0", &TLSFiles{Cert: cert, Key: keyFile}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u := startUpstream(t, "api", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), r.URL.Path)
	})
	reg.Set(inst(u, "0", "api.localhost", "/"))
	_, port, _ := net.SplitHostPort(p.Addr())
	out, err := exec.Command("curl", "-sS", "--cacert", cert, "--resolve", "api.localhost:"+port+":127.0.0.1",
		"https://api.localhost:"+port+"/secure").CombinedOutput()
	if err != nil || string(out) != "https /secure" {
		t.Errorf("curl over HTTPS: %v %q", err, out)
	}
}

// A response whose body comes later reaches the client as it comes: its
// head at once, each piece of a streamed body when the instance sends
// it (a long poll, server-sent events), with Content-Length, chunked or
// up to the close. The instance sends the next piece only once the
// client has the one before, so a proxy that held a piece back would
// never finish.
func TestStreamedResponsesFlow(t *testing.T) {
	for _, c := range []struct{ name, head, piece, end string }{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "ab", ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "2\r\nab\r\n", "0\r\n\r\n"},
		{"close", "HTTP/1.0 200 OK\r\n\r\n", "ab", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 16) // what the client has read, each time
			go func() {
				uc, err := ln.Accept()
				if err != nil {
					return
				}
				defer uc.Close()
				if _, err := http.ReadRequest(bufio.NewReader(uc)); err != nil {
					return
				}
				io.WriteString(uc, c.head)
				for i := 0; i < 6; i++ {
					select {
					case <-got:
					case <-time.After(10 * time.Second):
						return
					}
					io.WriteString(uc, c.piece)
				}
				io.WriteString(uc, c.end)
			}()
			reg := service.New()
			p := listen(t, reg)
			reg.Set(service.Instance{ID: "s#0", Addr: "daemon.s[0]", Service: "s", Label: "0", Host: "127.0.0.1",
				Port: ln.Addr().(*net.TCPAddr).Port, Route: &service.Route{Host: "s.localhost", Path: "/"}})
			conn, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: s.localhost\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no head: %v", err)
			}
			got <- "head"
			body := ""
			buf := make([]byte, 64)
			for len(body) < 12 {
				n, err := resp.Body.Read(buf)
				body += string(buf[:n])
				if n > 0 && len(body)%2 == 0 && len(body) < 12 {
					got <- body
				}
				if err != nil {
					break
				}
			}
			if body != "abababababab" {
				t.Fatalf("the client got %q of a streamed body: the proxy held a piece back", body)
			}
		})
	}
}

// TestResetBeforeResponseRetried: an instance that resets a new
// connection after reading its request, before any response (what an
// instance stopped by a create_before_destroy replace does to the
// connections queued on a listener it shares with its successor through
// SO_REUSEPORT): a GET is sent again and answered, on the fast path and
// on net/http's; a POST, which the instance may have acted on, is a 502.
func TestResetBeforeResponseRetried(t *testing.T) {
	var resetNext, late atomic.Bool
	var resets, served atomic.Int64
	p := routeAPI(t, connUpstream(t, func(c net.Conn, req *http.Request) {
		defer c.Close()
		if resetNext.CompareAndSwap(true, false) {
			resets.Add(1)
			if late.Load() {
				// It holds the request past resetRetryWithin first.
				time.Sleep(150 * time.Millisecond)
			}
			c.(*net.TCPConn).SetLinger(0) // the close sends RST
			return
		}
		io.Copy(io.Discard, req.Body)
		served.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	}))

	resetNext.Store(true)
	out := rawExchange(t, p, "GET / HTTP/1.1\r\nHost: api.localhost\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "ok") {
		t.Fatalf("GET on the fast path after a reset: %q", out)
	}
	resetNext.Store(true)
	out = rawExchange(t, p, "GET / HTTP/1.0\r\nHost: api.localhost\r\n\r\n")
	if !strings.Contains(out, " 200 ") || !strings.HasSuffix(out, "ok") {
		t.Fatalf("GET through net/http after a reset: %q", out)
	}
	if r := resets.Load(); r != 2 {
		t.Fatalf("the instance reset %d connections, want 2", r)
	}
	resetNext.Store(true)
	out = rawExchange(t, p, "POST / HTTP/1.1\r\nHost: api.localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502 ") {
		t.Fatalf("POST after a reset: %q, want a 502 (it is not sent twice)", out)
	}
	if s := served.Load(); s != 2 {
		t.Errorf("the instance answered %d requests, want the two GETs", s)
	}
	// A reset long after the request was sent (an instance that held it,
	// then gave up) does not send it again: the client would wait as
	// long once more.
	defer func(d time.Duration) { resetRetryWithin = d }(resetRetryWithin)
	resetRetryWithin = 50 * time.Millisecond
	late.Store(true)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		resetNext.Store(true)
		before := resets.Load()
		out = rawExchange(t, p, "GET / "+proto+"\r\nHost: api.localhost\r\nConnection: close\r\n\r\n")
		if !strings.Contains(out, " 502 ") {
			t.Fatalf("%s GET reset after 150 ms: %q, want a 502 (not sent again)", proto, out)
		}
		if r := resets.Load() - before; r != 1 {
			t.Fatalf("%s: %d resets, want 1", proto, r)
		}
	}
	if s := served.Load(); s != 2 {
		t.Errorf("the instance answered %d requests, want the two GETs: a late reset was sent again", s)
	}
}
