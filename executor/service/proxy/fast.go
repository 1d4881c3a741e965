package proxy

// The plain-HTTP listener's fast path: HTTP/1.1 proxied on raw TCP
// connections, without net/http.
//
// net/http's server and httputil.ReverseProxy cost, per request, a
// Request with its Header map, a context, a ResponseWriter and the
// transport's bookkeeping (two goroutines per pooled connection, a
// channel hand-off per response): on 2 cores that capped the proxy at
// 0.42 of nginx's throughput on a small response. Here a request's head
// is parsed in place from the connection's buffer (nothing copied), its
// route chosen (host and longest prefix, round robin, a refusing instance
// skipped, as ServeHTTP and RoundTrip do), its head written to a pooled
// connection of the instance with the hop-by-hop headers left out and
// X-Forwarded-For/-Host/-Proto set as httputil's SetXForwarded sets them,
// then the body (Content-Length), and the response's head and body
// (Content-Length, chunked, or up to the upstream's close) copied back.
//
// Anything else is handed, with the connection, to net/http's server and
// the httputil path (ServeHTTP), from that request on: a request that is
// not HTTP/1.1, or that asks for an upgrade (WebSocket), sends Expect
// (100-continue), has a chunked body, or a head that does not fit the
// buffer or is not plainly CRLF-delimited. The hand-off gives net/http
// the bytes already read first.
//
// Refused, with 400 and the connection closed (request smuggling): a
// request with both Content-Length and Transfer-Encoding, with two
// Content-Lengths that differ or one that is not a number, with two Host
// headers, a header folded over lines (obs-fold), or a header name or
// value with bytes HTTP does not allow.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// headTimeout is how long a client connection may take to send a
// request's head (and how long it may stay idle between requests).
const headTimeout = 30 * time.Second

// bufSize is the size of each connection's read and write buffers; a
// request head longer than this goes to net/http.
const bufSize = 8 << 10

// maxIdlePerBackend is how many idle connections to one instance are kept.
const maxIdlePerBackend = 1024

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

// upConn is a connection to an instance.
type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// open says whether the instance has not closed u (nor sent anything
// unasked): a peek that does not wait.
func (u *upConn) open() bool {
	if u.br.Buffered() > 0 {
		return false
	}
	sc, ok := u.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN // nothing to read: neither data nor the end
		return true
	})
	return alive
}

func (u *upConn) close() {
	u.c.Close()
	u.br.Reset(nil)
	u.bw.Reset(nil)
	readers.Put(u.br)
	writers.Put(u.bw)
}

// getConn returns an idle connection to b (reused: true) or a new one;
// checked: only one idle for less than staleAfter that the instance has
// not closed (for a request that cannot be sent again).
func (b *backend) getConn(checked bool) (*upConn, bool, error) {
	b.poolMu.Lock()
	for n := len(b.pool); n > 0; n = len(b.pool) {
		u := b.pool[n-1]
		b.pool[n-1] = nil
		b.pool = b.pool[:n-1]
		if checked && (time.Since(u.idleSince) > staleAfter || !u.open()) {
			b.poolMu.Unlock()
			u.close()
			b.poolMu.Lock()
			continue
		}
		b.poolMu.Unlock()
		return u, true, nil
	}
	b.poolMu.Unlock()
	u, err := b.dial()
	return u, false, err
}

func (b *backend) dial() (*upConn, error) {
	c, err := b.dialer.Dial("tcp", b.addr)
	if err != nil {
		return nil, err
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c)
	return &upConn{c: c, br: br, bw: bw}, nil
}

// putConn keeps u for the next request to b, unless b was removed (its
// pool is closed once it is drained) or holds enough.
func (b *backend) putConn(u *upConn) {
	b.poolMu.Lock()
	if b.poolClosed || len(b.pool) >= maxIdlePerBackend {
		b.poolMu.Unlock()
		u.close()
		return
	}
	u.idleSince = time.Now()
	b.pool = append(b.pool, u)
	b.poolMu.Unlock()
}

// closePool closes b's idle connections; with final, none is kept after.
func (b *backend) closePool(final bool) {
	b.poolMu.Lock()
	pool := b.pool
	b.pool = nil
	if final {
		b.poolClosed = true
	}
	b.poolMu.Unlock()
	for _, u := range pool {
		u.close()
	}
}

// handoff is a listener that net/http's server serves: the connections
// the fast path hands over.
type handoff struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// bufferedConn reads what was buffered first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveFast accepts connections on ln until it is closed.
func (p *Proxy) serveFast(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		go p.serveConn(c)
	}
}

// track adds (or removes) a client connection that Close must close;
// false once closed.
func (p *Proxy) track(c net.Conn, add bool) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if add {
		if p.conns == nil {
			return false
		}
		p.conns[c] = struct{}{}
	} else if p.conns != nil {
		delete(p.conns, c)
	}
	return true
}

// request is a request's head, parsed in place (the slices point into
// the connection's buffer, valid until it is discarded).
type request struct {
	head     []byte
	method   []byte
	target   []byte
	path     []byte
	host     []byte
	length   int64 // -1: none
	close    bool  // Connection: close
	fallback bool  // net/http must serve it
	bad      string
	headers  [][2][]byte
	conn     [][]byte // Connection header values
	xff      [][]byte
	te       bool // TE: trailers
	consumed bool // the head was discarded from the buffer
}

func (p *Proxy) serveConn(c net.Conn) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c)
	handed := false
	defer func() {
		if !handed {
			c.Close()
			p.track(c, false)
		}
		br.Reset(nil)
		bw.Reset(nil)
		readers.Put(br)
		writers.Put(bw)
	}()
	var req request
	req.headers = make([][2][]byte, 0, 32)
	client := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.IP.String()
	}
	for {
		c.SetReadDeadline(time.Now().Add(headTimeout))
		head, err := readHead(br)
		if err != nil {
			return
		}
		if head == nil { // too long for the buffer: net/http reads it
			req.fallback = true
		} else {
			parseRequest(head, &req)
		}
		if req.bad != "" {
			bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
				strconv.Itoa(len(req.bad)+len("400 Bad Request: ")+1) + "\r\n\r\n400 Bad Request: " + req.bad + "\n")
			bw.Flush()
			return
		}
		if req.fallback {
			// The rest of the connection is net/http's, starting with
			// this request's bytes, still in br.
			c.SetReadDeadline(time.Time{})
			n := br.Buffered()
			buffered, _ := br.Peek(n)
			rest := io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), c)
			br.Discard(n)
			select {
			case p.hand.conns <- &bufferedConn{Conn: c, r: rest}:
				handed = true
				p.track(c, false)
			case <-p.hand.closed:
			}
			return
		}
		c.SetReadDeadline(time.Time{})
		if !p.proxyOne(c, br, bw, &req, client) {
			return
		}
	}
}

// readHead returns the head buffered in br, up to and with its blank
// line, without consuming it; nil when it does not fit the buffer or ends
// with a bare LF (net/http's lenient parser takes those).
func readHead(br *bufio.Reader) ([]byte, error) {
	for {
		n := br.Buffered()
		if n > 0 {
			b, _ := br.Peek(n)
			// The first line end followed by an empty line.
			if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (i == 0 || b[i-1] == '\r') && !bytes.Contains(b[:i], []byte("\n\n")) {
				return b[:i+3], nil
			}
			if bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n")) || n >= br.Size() {
				return nil, nil
			}
		}
		if _, err := br.Peek(n + 1); err != nil {
			return nil, err
		}
	}
}

// parseRequest parses head into req.
func parseRequest(head []byte, req *request) {
	*req = request{head: head, length: -1, headers: req.headers[:0], conn: req.conn[:0], xff: req.xff[:0]}
	eol := bytes.Index(head, []byte("\r\n"))
	if eol <= 0 {
		req.fallback = true // a bare LF, or empty lines first
		return
	}
	line := head[:eol]
	rest := head[eol+2:]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		req.fallback = true // net/http answers it (400)
		return
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		req.fallback = true
		return
	}
	req.method, req.target = line[:sp1], line[sp1+1:sp1+1+sp2]
	if string(line[sp1+2+sp2:]) != "HTTP/1.1" || req.target[0] != '/' || !isToken(req.method) || bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		req.fallback = true // another version, an absolute or * target, or oddities
		return
	}
	for _, c := range req.target {
		if c <= ' ' || c == 0x7f {
			req.fallback = true
			return
		}
	}
	req.path = req.target
	if i := bytes.IndexAny(req.target, "?#"); i >= 0 {
		req.path = req.target[:i]
	}
	if bytes.IndexByte(req.path, '%') >= 0 || bytes.Contains(req.path, []byte("/.")) || bytes.Contains(req.path, []byte("//")) {
		req.fallback = true // routed on the decoded, cleaned path by net/http's rules
		return
	}
	hosts, lengths, sawTE := 0, 0, false
	for len(rest) > 2 {
		eol := bytes.Index(rest, []byte("\r\n"))
		line := rest[:eol]
		rest = rest[eol+2:]
		if line[0] == ' ' || line[0] == '\t' {
			req.bad = "a header folded over lines"
			return
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			req.bad = "a malformed header line"
			return
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				req.bad = "a control character in header " + string(name)
				return
			}
		}
		switch {
		case eqFold(name, "host"):
			hosts++
			req.host = value
		case eqFold(name, "content-length"):
			n, err := strconv.ParseUint(string(value), 10, 62)
			if err != nil || len(value) == 0 || value[0] == '+' {
				req.bad = "Content-Length is not a number"
				return
			}
			if sawTE {
				req.bad = "both Content-Length and Transfer-Encoding"
				return
			}
			if lengths > 0 && int64(n) != req.length {
				req.bad = "two different Content-Lengths"
				return
			}
			lengths++
			req.length = int64(n)
			continue
		case eqFold(name, "transfer-encoding"):
			if lengths > 0 || hasHeader(rest, "content-length") {
				req.bad = "both Content-Length and Transfer-Encoding"
				return
			}
			sawTE = true
			req.fallback = true // chunked: net/http reads it
		case eqFold(name, "upgrade"), eqFold(name, "expect"):
			req.fallback = true
		case eqFold(name, "connection"):
			req.conn = append(req.conn, value)
			if hasToken(value, "close") {
				req.close = true
			}
			if hasToken(value, "upgrade") {
				req.fallback = true
			}
			continue
		case eqFold(name, "te"):
			req.te = hasToken(value, "trailers")
			continue
		case eqFold(name, "x-forwarded-for"):
			req.xff = append(req.xff, value)
			continue
		case eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"), eqFold(name, "proxy-authenticate"),
			eqFold(name, "proxy-authorization"), eqFold(name, "trailer"), eqFold(name, "forwarded"),
			eqFold(name, "x-forwarded-host"), eqFold(name, "x-forwarded-proto"):
			continue // hop-by-hop, or set again below
		}
		req.headers = append(req.headers, [2][]byte{name, value})
	}
	if hosts != 1 {
		if hosts == 0 {
			req.bad = "no Host header"
		} else {
			req.bad = "two Host headers"
		}
	}
}

// hasHeader says whether the rest of a head has a header named name.
func hasHeader(rest []byte, name string) bool {
	for len(rest) > 2 {
		eol := bytes.Index(rest, []byte("\r\n"))
		line := rest[:eol]
		rest = rest[eol+2:]
		if colon := bytes.IndexByte(line, ':'); colon > 0 && eqFold(bytes.TrimRight(line[:colon], " \t"), name) {
			return true
		}
	}
	return false
}

// replayable says whether req may be sent again after a connection that
// carried it failed before any of the response came: a method that is
// safe to repeat, without a body.
func (req *request) replayable() bool {
	m := string(req.method)
	return req.length <= 0 && (m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE")
}

// proxyOne proxies the request req (its head still in br) and says
// whether the connection serves another.
func (p *Proxy) proxyOne(c net.Conn, br *bufio.Reader, bw *bufio.Writer, req *request, client string) bool {
	r := p.table.Load().match(string(req.host), string(req.path))
	var status int
	var msg string
	switch {
	case r == nil:
		status, msg = 404, "orch proxy: no route for "+string(req.host)+string(req.path)
	case len(r.backends) == 0:
		status, msg = 503, "orch proxy: no ready instance of service "+r.service
	}
	if status != 0 {
		br.Discard(len(req.head))
		keep := !req.close && req.length <= 0
		writeError(bw, status, msg, !keep)
		return bw.Flush() == nil && keep
	}
	bs := r.backends
	n := len(bs)
	start := int(r.next.Add(1) - 1)
	now := time.Now().UnixNano()
	var lastErr error
	// As RoundTrip: first the instances not left out, then those left out.
tries:
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < n; i++ {
			b := bs[(start+i)%n]
			if cooling := b.failed.Load() > now; cooling != (pass == 1) {
				continue
			}
			if !b.acquire() {
				continue
			}
			keep, begun, err := b.exchange(c, br, bw, req, client)
			b.release()
			if err == nil {
				b.failed.Store(0)
				return keep
			}
			if begun {
				return false // the response was begun: only closing the connection can tell
			}
			lastErr = err
			// A request that may be repeated goes to the next instance
			// after a reset (exchange has sent it again on this one if
			// the reset came soon): the instance is not left out for it.
			stale := err == errStale && req.replayable()
			if !(dialFailed(err) || stale) || req.consumed {
				break tries
			}
			if !stale {
				b.failed.Store(time.Now().Add(failCooldown).UnixNano())
			}
		}
	}
	if !req.consumed {
		br.Discard(len(req.head))
	}
	// A body that was not (wholly) read leaves the connection unusable.
	keep := !req.close && (req.length <= 0 || req.consumed) && lastErr == nil
	if lastErr == nil {
		writeError(bw, 503, "orch proxy: no ready instance of service "+r.service, !keep)
	} else {
		writeError(bw, 502, "orch proxy: service "+r.service+": "+lastErr.Error(), !keep)
	}
	return bw.Flush() == nil && keep
}

func writeError(bw *bufio.Writer, status int, msg string, close bool) {
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + statusText(status) + "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	if close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("Content-Length: " + strconv.Itoa(len(msg)+1) + "\r\n\r\n" + msg + "\n")
}

func statusText(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// errStale is a connection that the instance closed or reset before it
// answered (a kept-alive one: before it read the request, as far as one
// can tell).
var errStale = errors.New("the instance closed the connection before it answered")

// staleAfter is how long a kept-alive connection may have been idle and
// still carry a request with a body (which cannot be sent again).
const staleAfter = 2 * time.Second

// exchange sends req to b and copies the response back: keep says
// whether the client connection serves another request; begun, whether
// any of the response reached the client's buffer (then an error can
// only close the connection).
func (b *backend) exchange(cc net.Conn, br *bufio.Reader, bw *bufio.Writer, req *request, client string) (keep, begun bool, err error) {
	// A request without a body, of a method that may be repeated, is sent
	// again on a new connection when a kept-alive one turns out closed
	// (as net/http's Transport does), and when a new one is reset or
	// closed before any of the response came (RFC 9110, 9.2.2): an
	// instance stopped by a create_before_destroy replace resets the
	// connections still queued on its listener, which the kernel may have
	// given it beside its successor's (SO_REUSEPORT, one port for both),
	// and the next connection goes to the successor. Anything else is not
	// sent twice: the instance may have acted on it.
	replayable := req.replayable()
	for attempt := 0; ; attempt++ {
		u, reused, err := b.getConn(!replayable)
		if err != nil {
			return false, false, err
		}
		sent := time.Now()
		keep, begun, reusable, err := exchangeOn(u, cc, br, bw, req, client)
		if err == nil && reusable {
			b.putConn(u)
		} else {
			u.close()
		}
		if err == errStale && attempt < 3 && (reused && (replayable || !req.consumed) || replayable && time.Since(sent) < resetRetryWithin) {
			continue
		}
		return keep, begun, err
	}
}

// resetRetryWithin bounds when a new connection's failure before any
// response sends a request again: an instance that held the request that
// long and then closed is not a listener going away, and sending it again
// would only make the client wait as long once more. (A var for a test.)
var resetRetryWithin = 2 * time.Second

// exchangeOn is one attempt of exchange, on u; reusable says whether u
// can carry another request.
func exchangeOn(u *upConn, cc net.Conn, br *bufio.Reader, bw *bufio.Writer, req *request, client string) (keep, begun, reusable bool, err error) {
	w := u.bw
	w.Write(req.method)
	w.WriteByte(' ')
	w.Write(req.target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.Write(req.host)
	w.WriteString("\r\n")
	for _, h := range req.headers {
		if eqFold(h[0], "host") || listedIn(req.conn, h[0]) {
			continue
		}
		w.Write(h[0])
		w.WriteString(": ")
		w.Write(h[1])
		w.WriteString("\r\n")
	}
	if req.te {
		w.WriteString("Te: trailers\r\n")
	}
	// As httputil's SetXForwarded.
	w.WriteString("X-Forwarded-For: ")
	for _, x := range req.xff {
		w.Write(x)
		w.WriteString(", ")
	}
	w.WriteString(client)
	w.WriteString("\r\nX-Forwarded-Host: ")
	w.Write(req.host)
	w.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	if req.length > 0 || (req.length == 0 && methodHasBody(req.method)) {
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.length, 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	isHead := string(req.method) == "HEAD"
	if req.length > 0 {
		// The head goes now, the body is streamed after it.
		if err := w.Flush(); err != nil {
			return false, false, false, errStale
		}
		br.Discard(len(req.head)) // req's slices are not valid after this
		req.consumed = true
		if _, err := io.CopyN(w, br, req.length); err != nil {
			return false, false, false, err
		}
	}
	if err := w.Flush(); err != nil {
		if !req.consumed {
			return false, false, false, errStale
		}
		return false, false, false, err
	}
	for {
		head, err := readResponseHead(u.br)
		if err != nil {
			if err == io.EOF || isReset(err) {
				return false, false, false, errStale
			}
			return false, false, false, err
		}
		if !req.consumed {
			br.Discard(len(req.head))
			req.consumed = true
		}
		status, framing, length, upClose, err := copyResponseHead(bw, head, req.close)
		u.br.Discard(len(head))
		if err != nil {
			if !begun {
				bw.Reset(cc) // what it wrote of the head: a 502 goes instead
			}
			return false, begun, false, err
		}
		begun = true
		// The head goes at once when nothing of the body came with it: a
		// response whose body comes later (a long poll, server-sent
		// events) must not wait in this buffer. (With the body at hand,
		// both go in one write.)
		if u.br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return false, begun, false, err
			}
		}
		if status == 101 {
			return false, begun, false, errors.New("the instance switched protocols unasked")
		}
		if status >= 100 && status < 200 {
			if err := bw.Flush(); err != nil {
				return false, begun, false, err
			}
			continue // an interim response: the final one follows
		}
		switch {
		case isHead || status == 204 || status == 304:
		case framing == frameLength:
			if err := copyFlushing(bw, u.br, length); err != nil {
				return false, begun, false, err
			}
		case framing == frameChunked:
			if err := copyChunked(bw, u.br); err != nil {
				return false, begun, false, err
			}
		default: // up to the instance's close; the client's connection ends too
			if err := copyFlushing(bw, u.br, -1); err != nil && err != io.EOF {
				return false, begun, false, err
			}
			return false, begun, false, bw.Flush()
		}
		if err := bw.Flush(); err != nil {
			return false, begun, false, err
		}
		return !req.close, begun, !upClose && u.br.Buffered() == 0, nil
	}
}

// methodHasBody says whether a request of method m without a body says
// Content-Length: 0 (as net/http's Transport writes it).
func methodHasBody(m []byte) bool {
	s := string(m)
	return s == "POST" || s == "PUT" || s == "PATCH"
}

const (
	frameNone = iota
	frameLength
	frameChunked
)

// readResponseHead returns the response head buffered in br (not
// consumed).
func readResponseHead(br *bufio.Reader) ([]byte, error) {
	head, err := readHead(br)
	if err == nil && head == nil {
		err = errors.New("response head too long or not CRLF-delimited")
	}
	return head, err
}

// copyResponseHead writes the response head to the client without its
// hop-by-hop headers, and says how its body is framed.
func copyResponseHead(bw *bufio.Writer, head []byte, closeClient bool) (status, framing int, length int64, upClose bool, err error) {
	eol := bytes.Index(head, []byte("\r\n"))
	line := head[:eol]
	rest := head[eol+2:]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, 0, 0, false, errors.New("malformed response from the instance")
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, 0, false, errors.New("malformed status from the instance")
	}
	upClose = line[7] == '0' // HTTP/1.0 unless it says keep-alive
	http10 := upClose
	length = -1
	var conn [4][]byte
	nconn := 0
	chunked := false // a Transfer-Encoding: the Content-Length is not passed on
	// First the Connection headers (they name others to leave out).
	for r := rest; len(r) > 2; {
		eol := bytes.Index(r, []byte("\r\n"))
		l := r[:eol]
		r = r[eol+2:]
		colon := bytes.IndexByte(l, ':')
		if colon > 0 && eqFold(l[:colon], "transfer-encoding") {
			chunked = true
		}
		if colon > 0 && eqFold(l[:colon], "connection") {
			v := bytes.Trim(l[colon+1:], " \t")
			if nconn < len(conn) {
				conn[nconn] = v
				nconn++
			}
			if hasToken(v, "close") {
				upClose = true
			}
			if http10 && hasToken(v, "keep-alive") {
				upClose = false
			}
		}
	}
	bw.WriteString("HTTP/1.1")
	bw.Write(line[8:])
	bw.WriteString("\r\n")
	for len(rest) > 2 {
		eol := bytes.Index(rest, []byte("\r\n"))
		l := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return 0, 0, 0, false, errors.New("malformed header from the instance")
		}
		name, value := l[:colon], bytes.Trim(l[colon+1:], " \t")
		switch {
		case eqFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (length >= 0 && n != length) {
				return 0, 0, 0, false, errors.New("bad Content-Length from the instance")
			}
			length = n
			if chunked {
				// Both: the instance's own smuggling; chunked wins, as
				// RFC 9112 says, and its connection is not kept.
				upClose = true
				continue
			}
			framing = frameLength
		case eqFold(name, "transfer-encoding"):
			if !eqFold(value, "chunked") {
				return 0, 0, 0, false, errors.New("unsupported Transfer-Encoding from the instance")
			}
			framing = frameChunked
		case eqFold(name, "connection"), eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"),
			eqFold(name, "proxy-authenticate"), eqFold(name, "proxy-authorization"), eqFold(name, "te"),
			eqFold(name, "upgrade"):
			continue
		}
		if listedIn(conn[:nconn], name) {
			continue
		}
		bw.Write(l)
		bw.WriteString("\r\n")
	}
	if closeClient || (framing == frameNone && status >= 200 && status != 204 && status != 304) {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	return status, framing, length, upClose, nil
}

// copyChunked copies a chunked body, its trailers and its end, as it is.
func copyChunked(bw *bufio.Writer, br *bufio.Reader) error {
	for {
		// Before waiting for the next chunk, the client gets the last.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		bw.Write(line)
		size := bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return errors.New("malformed chunk from the instance")
		}
		if n == 0 {
			// Trailers, up to the blank line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				bw.Write(line)
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := copyFlushing(bw, br, n); err != nil {
			return err
		}
		crlf, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return errors.New("malformed chunk from the instance")
		}
		bw.Write(crlf)
	}
}

// copyFlushing copies n bytes (n < 0: up to EOF, returned as io.EOF)
// from br to bw, flushing bw whenever br has nothing more buffered: what
// the instance sent reaches the client as soon as the instance pauses,
// while a body that streams in fast still goes in full buffers.
func copyFlushing(bw *bufio.Writer, br *bufio.Reader, n int64) error {
	for n != 0 {
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		k := br.Buffered() // what is there now; at least a byte, waited for
		if n > 0 && int64(k) > n {
			k = int(n)
		}
		b, err := br.Peek(max(1, k))
		if len(b) > 0 {
			if _, werr := bw.Write(b); werr != nil {
				return werr
			}
			br.Discard(len(b))
			if n > 0 {
				n -= int64(len(b))
			}
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// listedIn says whether name is a token of one of the Connection values.
func listedIn(conn [][]byte, name []byte) bool {
	for _, v := range conn {
		if hasToken(v, string(name)) {
			return true
		}
	}
	return false
}

// hasToken says whether the comma-separated list v holds tok (any case).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if eqFold(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// isToken says whether b is an HTTP token (RFC 9110's tchar).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}
