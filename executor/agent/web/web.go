// Package web is the agent's local web page and its HTTP listener
// (orch { http { listen = "127.0.0.1:7777", token = ... } }, off by
// default): what orch top shows, the dependency graph drawn, the live
// event stream (server-sent events), a log tail per instance and the last
// plan, in plain HTML, CSS and JavaScript embedded in the binary; and
// /metrics for Prometheus.
//
// Reading is open to whoever can connect to the listener (keep it on a
// loopback address); anything that changes state (every POST: restart,
// signal, pause, resume, plan, apply, destroy, trace) needs the token
// (Authorization: Bearer <token>), and is refused when none is declared.
// Requests whose Host is not the listener's own address are refused, so
// that a web site cannot reach the page through DNS rebinding.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/engine"
)

//go:embed static
var static embed.FS

// Server is the web listener's handler.
type Server struct {
	// API is the agent's server: the page reads its /v1/ endpoints.
	API *agent.Server
	// Token, when set, allows the requests that change state.
	Token string
	// Listen is the address the listener was bound to (host:port): with
	// localhost names, the Host headers accepted.
	Listen string
}

// Handler returns the routes of the web listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.Handle("GET /metrics", s.API.MetricsHandler())
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /graph.svg", s.graph)
	api := s.API.Handler()
	mux.Handle("GET /v1/", api)
	mux.Handle("POST /v1/", s.authorized(api))
	return s.hostCheck(mux)
}

// hostCheck refuses requests for another host name than the listener's.
func (s *Server) hostCheck(next http.Handler) http.Handler {
	allowed := map[string]bool{}
	if host, port, err := net.SplitHostPort(s.Listen); err == nil {
		for _, h := range []string{host, "localhost", "127.0.0.1", "::1"} {
			allowed[net.JoinHostPort(h, port)] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(allowed) > 0 && !allowed[r.Host] {
			http.Error(w, fmt.Sprintf("this is orch's web page for %s; Host %q is not it", s.Listen, r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized lets through only requests that carry the token.
func (s *Server) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Token == "" {
			writeError(w, http.StatusForbidden, "this request changes state, and the web listener has no token: declare orch { http { token = ... } } and send it as Authorization: Bearer <token>")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="orch"`)
			writeError(w, http.StatusUnauthorized, "this request changes state: send the token of orch { http { token } } as Authorization: Bearer <token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(agent.ErrorResponse{Error: msg})
}

// events streams the engine's events as server-sent events: each is one
// "data:" line holding the JSON of GET /v1/events, and the query takes the
// same filters (since, until, type, addr, topic). The browser's
// EventSource reconnects by itself when a stream ends, so one that ends
// because until passed ends with an "end" event.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	f, err := agent.ParseEventFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	fmt.Fprint(w, ": orch events\n\n")
	flush()
	send := func(ev engine.Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "data: %s\n\n", s.API.Engine.Redact(string(b)))
		return err
	}
	s.API.Stream(r, f, send, flush)
	if !f.Until.IsZero() && r.Context().Err() == nil {
		// Ended because until passed: say so, or EventSource would
		// connect again and again.
		fmt.Fprint(w, "event: end\ndata: {}\n\n")
		flush()
	}
}

// Serve answers on ln until ctx is done, then closes ln and ends every
// request in flight (event streams included).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), BaseContext: func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
