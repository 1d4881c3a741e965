package dockertest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards a unix socket, byte stream for byte stream, to the Engine
// at Host, and can be cut and restored: it plays an Engine that goes away
// (its socket gone, every connection broken, so that calls fail and event
// streams end) and comes back on the same path. Its methods are safe for
// concurrent use.
type Proxy struct {
	tb      testing.TB
	path    string
	network string // of the Engine: "unix" or "tcp"
	target  string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // the accept loop and the copies
}

// NewProxy starts a Proxy listening on a socket in a new temporary
// directory of tb, and cuts it (Down) when tb ends. The Engine must be
// reachable over a unix socket or plain TCP (not TLS): otherwise tb is
// skipped, or failed under CI.
func NewProxy(tb testing.TB) *Proxy {
	tb.Helper()
	host := Host()
	px := &Proxy{tb: tb, conns: map[net.Conn]struct{}{}}
	switch {
	case strings.HasPrefix(host, "unix://"):
		px.network, px.target = "unix", strings.TrimPrefix(host, "unix://")
	case strings.HasPrefix(host, "tcp://") && os.Getenv("DOCKER_TLS_VERIFY") == "":
		px.network, px.target = "tcp", strings.TrimPrefix(host, "tcp://")
	default:
		if os.Getenv("CI") != "" {
			tb.Fatalf("the Engine proxy needs a unix socket or plain TCP Engine, not %s", host)
		}
		tb.Skipf("the Engine proxy needs a unix socket or plain TCP Engine, not %s", host)
	}
	dir := tb.TempDir()
	if len(dir) > 90 { // a socket path is at most 107 bytes
		d, err := os.MkdirTemp("", "orch-proxy-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	px.path = filepath.Join(dir, "engine.sock")
	px.Up()
	tb.Cleanup(func() {
		px.Down()
		px.wg.Wait()
	})
	return px
}

// Path is the proxy's socket.
func (px *Proxy) Path() string { return px.path }

// Host is the proxy's address as a runtime's host attribute (or
// DOCKER_HOST) says it: unix://<Path>.
func (px *Proxy) Host() string { return "unix://" + px.path }

// Up listens on the socket again and forwards each new connection to the
// Engine. It fails tb when the proxy is already up.
func (px *Proxy) Up() {
	px.tb.Helper()
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.ln != nil {
		px.tb.Fatal("dockertest.Proxy.Up: already up")
	}
	ln, err := net.Listen("unix", px.path)
	if err != nil {
		px.tb.Fatal(err)
	}
	px.ln = ln
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial(px.network, px.target)
			if err != nil {
				c.Close()
				continue
			}
			px.mu.Lock()
			if px.ln != ln { // cut meanwhile
				px.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			px.conns[c], px.conns[u] = struct{}{}, struct{}{}
			px.wg.Add(2)
			px.mu.Unlock()
			go px.copy(u, c)
			go px.copy(c, u)
		}
	}()
}

// copy forwards from src to dst until either ends, then closes both.
func (px *Proxy) copy(dst, src net.Conn) {
	defer px.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	px.mu.Lock()
	delete(px.conns, dst)
	delete(px.conns, src)
	px.mu.Unlock()
}

// Down takes the Engine away: it closes the listener, removes the socket
// and closes every connection it forwards, both ways. Nothing reaches the
// Engine through the proxy until Up. Down on a proxy that is down does
// nothing.
func (px *Proxy) Down() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.ln != nil {
		px.ln.Close() // removes the socket file too (unlink on close)
		px.ln = nil
		os.Remove(px.path)
	}
	for c := range px.conns {
		c.Close()
		delete(px.conns, c)
	}
}
