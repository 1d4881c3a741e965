// Package proxy is the agent's reverse proxy: HTTP (and WebSocket
// upgrades) on the orch block's proxy.listen, routed by host and longest
// path prefix to the ready instances of a service, from the service
// registry: HTTP/1.1 on a fast path of its own (fast.go), the rest
// (HTTPS, WebSocket upgrades, chunked request bodies, 100-continue) with
// net/http/httputil.
//
//   - Routing: the request's host (without its port, any case) must be a
//     route's host exactly; among that host's routes the longest path
//     prefix that matches on a segment boundary wins ("/v1" matches "/v1"
//     and "/v1/x", not "/v10"); when none does, the routes without a host
//     (any host) are tried the same way. The path is passed on unchanged.
//     No route: 404. A route without a ready instance: 503.
//   - Balancing: round robin over the route's ready instances.
//   - Passive failure detection: an instance that refuses a connection
//     (any failure to connect: nothing was sent) is skipped at once, the
//     request is tried on the next one, and it is left out for
//     failCooldown unless no other is left.
//   - Draining: an instance removed from the registry gets no new
//     request; WaitIdle (the registry's Drain) returns once the requests
//     in flight to it (a WebSocket counts until it closes) have ended.
//
// Each instance has its own connection pool, closed once it is drained:
// no kept-alive connection to an instance outlives its drain, even when
// its successor listens on the same port.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/executor/service"
)

// failCooldown is how long an instance that refused a connection is left
// out of its route (it is tried again after, or at once when every other
// one is left out too).
const failCooldown = time.Second

// TLSFiles are the certificate and key the proxy serves HTTPS with.
type TLSFiles struct{ Cert, Key string }

// Proxy routes requests to the registry's ready instances.
type Proxy struct {
	reg   *service.Registry
	table atomic.Pointer[table]
	rp    *httputil.ReverseProxy

	mu       sync.Mutex
	live     map[string]*backend   // by instance ID
	draining map[string][]*backend // removed, with requests in flight

	ln   net.Listener
	srv  *http.Server
	done chan struct{}

	// The plain listener's fast path (fast.go): its client connections,
	// and the listener of those handed to srv.
	hand   *handoff
	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	fastWG sync.WaitGroup
}

type backend struct {
	p        *Proxy
	inst     service.Instance
	addr     string
	tr       *http.Transport
	inflight atomic.Int64
	removed  atomic.Bool
	failed   atomic.Int64 // unix nanoseconds until which it is left out
	idleOnce sync.Once
	idle     chan struct{} // closed once removed with nothing in flight

	// The fast path's connections to it (fast.go).
	dialer     *net.Dialer
	poolMu     sync.Mutex
	pool       []*upConn
	poolClosed bool
}

type table struct {
	hosts map[string][]*route // by host; longest path first
}

type route struct {
	path     string
	service  string
	backends []*backend
	next     atomic.Uint64
}

type ctxKey struct{}

// New returns a proxy of reg's routes, not yet serving (Serve, Listen):
// it follows the registry from now on.
func New(reg *service.Registry) *Proxy {
	p := &Proxy{reg: reg, live: map[string]*backend{}, draining: map[string][]*backend{}, done: make(chan struct{})}
	p.table.Store(&table{hosts: map[string][]*route{}})
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host // replaced by the chosen instance in RoundTrip
			pr.Out.Host = pr.In.Host
		},
		Transport:    p,
		ErrorHandler: p.failed,
		ErrorLog:     nil,
		BufferPool:   bufPool{},
	}
	reg.Watch(p.changed)
	reg.AddDrainer(p)
	return p
}

// Listen binds addr and serves there (HTTPS when tlsFiles is set) until
// Close. An address that cannot be bound is one *service.ListenError.
func Listen(addr string, tlsFiles *TLSFiles, reg *service.Registry) (*Proxy, error) {
	return listenProxy(addr, tlsFiles, reg, false)
}

// listenProxy is Listen; with slow, net/http serves every request (as HTTPS
// does): the benchmark's reference.
func listenProxy(addr string, tlsFiles *TLSFiles, reg *service.Registry, slow bool) (*Proxy, error) {
	var cfg *tls.Config
	if tlsFiles != nil {
		cert, err := tls.LoadX509KeyPair(tlsFiles.Cert, tlsFiles.Key)
		if err != nil {
			return nil, fmt.Errorf("orch { proxy { tls { cert = %q, key = %q } } }: %w", tlsFiles.Cert, tlsFiles.Key, err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, service.NewListenError("proxy", addr, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	p := New(reg)
	p.ln = ln
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: headTimeout, ErrorLog: nil}
	if cfg != nil || slow {
		// HTTPS: net/http terminates TLS and serves every request.
		go func() {
			defer close(p.done)
			p.srv.Serve(ln)
		}()
		return p, nil
	}
	// HTTP: the fast path serves HTTP/1.1 and hands net/http the rest.
	p.hand = &handoff{conns: make(chan net.Conn), closed: make(chan struct{}), addr: ln.Addr()}
	p.conns = map[net.Conn]struct{}{}
	p.fastWG.Add(1)
	go func() {
		defer p.fastWG.Done()
		p.serveFast(ln)
	}()
	go func() {
		defer close(p.done)
		p.srv.Serve(p.hand)
	}()
	return p, nil
}

// Addr is the address served.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops serving at once and closes every pooled connection.
func (p *Proxy) Close() error {
	var err error
	if p.hand != nil {
		err = p.ln.Close()
		p.fastWG.Wait()
		p.connMu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.connMu.Unlock()
	}
	if p.srv != nil {
		if e := p.srv.Close(); err == nil {
			err = e
		}
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.live {
		b.tr.CloseIdleConnections()
		b.closePool(true)
	}
	return err
}

// changed follows the registry (with its lock held): new instances get a
// backend, removed ones stop getting requests, and the route table is
// built again.
func (p *Proxy) changed(set, removed []service.Instance, v *service.View) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inst := range removed {
		if b := p.live[inst.ID]; b != nil {
			delete(p.live, inst.ID)
			p.retire(b)
		}
	}
	for _, inst := range set {
		old := p.live[inst.ID]
		if old != nil && old.addr == inst.Endpoint() {
			old.inst = inst
			continue
		}
		if old != nil {
			p.retire(old)
		}
		p.live[inst.ID] = p.newBackend(inst)
	}
	t := &table{hosts: map[string][]*route{}}
	byKey := map[service.Route]*route{}
	for _, inst := range v.Instances {
		if inst.Route == nil {
			continue
		}
		b := p.live[inst.ID]
		if b == nil {
			continue
		}
		r := byKey[*inst.Route]
		if r == nil {
			r = &route{path: inst.Route.Path, service: inst.Service}
			byKey[*inst.Route] = r
			t.hosts[inst.Route.Host] = append(t.hosts[inst.Route.Host], r)
		}
		r.backends = append(r.backends, b)
	}
	for _, rs := range t.hosts {
		sort.Slice(rs, func(i, j int) bool { return len(rs[i].path) > len(rs[j].path) })
	}
	p.table.Store(t)
}

// retire marks b removed (with p.mu held): no new request goes to it; it
// is forgotten once nothing is in flight.
func (p *Proxy) retire(b *backend) {
	b.removed.Store(true)
	if b.inflight.Load() == 0 {
		b.markIdle()
		return
	}
	p.draining[b.inst.ID] = append(p.draining[b.inst.ID], b)
}

func (p *Proxy) newBackend(inst service.Instance) *backend {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &backend{p: p, inst: inst, addr: inst.Endpoint(), idle: make(chan struct{}), dialer: d,
		tr: &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true, ExpectContinueTimeout: time.Second}}
}

// markIdle closes b's pool once it is drained.
func (b *backend) markIdle() {
	b.idleOnce.Do(func() {
		b.tr.CloseIdleConnections()
		b.closePool(true)
		close(b.idle)
	})
}

// acquire counts a request to b; false when b was removed meanwhile.
func (b *backend) acquire() bool {
	b.inflight.Add(1)
	if b.removed.Load() {
		b.release()
		return false
	}
	return true
}

func (b *backend) release() {
	if b.inflight.Add(-1) == 0 && b.removed.Load() {
		p := b.p
		p.mu.Lock()
		if b.inflight.Load() == 0 {
			ds := p.draining[b.inst.ID]
			for i, x := range ds {
				if x == b {
					ds = append(ds[:i:i], ds[i+1:]...)
					break
				}
			}
			if len(ds) == 0 {
				delete(p.draining, b.inst.ID)
			} else {
				p.draining[b.inst.ID] = ds
			}
			b.markIdle()
		}
		p.mu.Unlock()
	}
}

// WaitIdle returns once no request is in flight to the removed instance
// id (service.Drainer), or ctx is done.
func (p *Proxy) WaitIdle(ctx context.Context, id string) {
	p.mu.Lock()
	ds := append([]*backend(nil), p.draining[id]...)
	p.mu.Unlock()
	for _, b := range ds {
		select {
		case <-b.idle:
		case <-ctx.Done():
			b.tr.CloseIdleConnections()
			b.closePool(false)
			return
		}
	}
}

// Inflight is how many requests are in flight to instance id.
func (p *Proxy) Inflight(id string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	if b := p.live[id]; b != nil {
		n += b.inflight.Load()
	}
	for _, b := range p.draining[id] {
		n += b.inflight.Load()
	}
	return n
}

// Match returns the service and path prefix of the route of host and
// path, if any.
func (p *Proxy) Match(host, path string) (svc, prefix string, ok bool) {
	r := p.table.Load().match(host, path)
	if r == nil {
		return "", "", false
	}
	return r.service, r.path, true
}

func (t *table) match(host, path string) *route {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if path == "" {
		path = "/"
	}
	// The host's own routes first, then those of any host.
	for _, h := range [2]string{strings.ToLower(strings.TrimSuffix(host, ".")), ""} {
		for _, r := range t.hosts[h] {
			if prefixMatch(r.path, path) {
				return r
			}
		}
	}
	return nil
}

func prefixMatch(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return prefix != "/" && strings.TrimSuffix(prefix, "/") == path
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := p.table.Load().match(req.Host, req.URL.Path)
	switch {
	case r == nil:
		http.Error(w, "orch proxy: no route for "+req.Host+req.URL.Path, http.StatusNotFound)
		return
	case len(r.backends) == 0:
		http.Error(w, "orch proxy: no ready instance of service "+r.service, http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), ctxKey{}, r)))
}

func (p *Proxy) failed(w http.ResponseWriter, req *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		w.WriteHeader(499) // the client went away; nobody reads this
		return
	}
	svc := ""
	if r, ok := req.Context().Value(ctxKey{}).(*route); ok {
		svc = r.service
	}
	if errors.Is(err, errNoneLeft) {
		http.Error(w, "orch proxy: no ready instance of service "+svc, http.StatusServiceUnavailable)
		return
	}
	http.Error(w, "orch proxy: service "+svc+": "+err.Error(), http.StatusBadGateway)
}

var errNoneLeft = errors.New("no ready instance left")

// RoundTrip sends req to an instance of its route: round robin, skipping
// those that refused a connection lately, and trying the next one when
// one cannot be connected to.
func (p *Proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	r, _ := req.Context().Value(ctxKey{}).(*route)
	if r == nil {
		return nil, errors.New("no route")
	}
	bs := r.backends
	n := len(bs)
	if n == 0 {
		return nil, errNoneLeft
	}
	var body *retryBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &retryBody{rc: req.Body}
		req.Body = body // the server closes the original once the handler returns
	}
	start := int(r.next.Add(1) - 1)
	now := time.Now().UnixNano()
	var lastErr error
	tried := 0
	// First the instances not left out, then (none answered) those left
	// out: a refusal is better tried again than a request failed.
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < n; i++ {
			b := bs[(start+i)%n]
			cooling := b.failed.Load() > now
			if cooling != (pass == 1) {
				continue
			}
			if !b.acquire() {
				continue
			}
			tried++
			out := *req
			u := *req.URL
			u.Host = b.addr
			out.URL = &u
			sent := time.Now()
			resp, err := b.tr.RoundTrip(&out)
			// A request that may be repeated is sent again when its
			// connection failed soon, before any response came (as the
			// fast path does: exchange).
			for attempt := 0; err != nil && !dialFailed(err) && attempt < 3 && body == nil && replayable(req) &&
				time.Since(sent) < resetRetryWithin && req.Context().Err() == nil; attempt++ {
				sent = time.Now()
				resp, err = b.tr.RoundTrip(&out)
			}
			if err == nil {
				b.failed.Store(0)
				resp.Body = wrapBody(resp, b)
				return resp, nil
			}
			b.release()
			lastErr = err
			if !dialFailed(err) || (body != nil && body.read.Load()) || req.Context().Err() != nil {
				return nil, err
			}
			b.failed.Store(time.Now().Add(failCooldown).UnixNano())
		}
	}
	if lastErr == nil {
		return nil, errNoneLeft
	}
	return nil, lastErr
}

// replayable says whether req may be sent again after its connection
// failed before any response came (RFC 9110, 9.2.2): a method that is
// safe to repeat; the caller checks it has no body.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// dialFailed says whether err is a failure to connect: nothing was sent,
// so the request may go to another instance.
func dialFailed(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// retryBody is a request body that a failed connection attempt does not
// close (the transport closes the body it is given on any error), so that
// the request can be tried on the next instance; read says whether any of
// it was consumed (then it cannot).
type retryBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *retryBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *retryBody) Close() error { return nil }

// wrapBody counts the response as in flight to b until its body is
// closed (for a WebSocket, its connection).
func wrapBody(resp *http.Response, b *backend) io.ReadCloser {
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		return &countedConn{ReadWriteCloser: rwc, b: b}
	}
	return &countedBody{ReadCloser: resp.Body, b: b}
}

type countedBody struct {
	io.ReadCloser
	b    *backend
	once sync.Once
}

func (c *countedBody) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.b.release)
	return err
}

type countedConn struct {
	io.ReadWriteCloser
	b    *backend
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.once.Do(c.b.release)
	return err
}

// bufPool lends ReverseProxy its copy buffers: without it, each request
// allocates 32 KiB.
type bufPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufPool) Put(b []byte) { buffers.Put(&b) }
