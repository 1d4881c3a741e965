package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/procstat"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/spec"
)

// Server serves one engine's API. Set every field but Load, which may be
// nil (plan and apply then use the engine's configuration).
type Server struct {
	Engine *engine.Engine
	// Dir is the configuration directory, reported by GET /v1/status.
	Dir string
	// Load reads the configuration directory again for POST /v1/plan,
	// /v1/apply and /v1/destroy: they act on what is on disk now.
	Load func() engine.LoadResult
	// LogPath returns the current log file of an instance (rotated ones
	// are LogPath + ".1", ".2", ...).
	LogPath func(spec.Address) string
	// Sampler reads the CPU and memory of what runs, shared by every
	// watcher (metrics, snapshot, the web page); nil: one of its own.
	Sampler *procstat.Sampler
	// ModuleCalls reads the hosted modules' calls for /metrics
	// (*module.Provider's CallStats); nil: none.
	ModuleCalls func() map[spec.Address]map[module.Hook]module.CallHistogram

	samplerOnce sync.Once
	metricsOnce sync.Once
	metrics     http.Handler
}

func (s *Server) sampler() *procstat.Sampler {
	s.samplerOnce.Do(func() {
		if s.Sampler == nil {
			s.Sampler = &procstat.Sampler{}
		}
	})
	return s.Sampler
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/snapshot", s.snapshot)
	mux.HandleFunc("GET /v1/usage", s.usage)
	mux.HandleFunc("GET /v1/plan/last", s.lastPlan)
	mux.HandleFunc("POST /v1/trace/{addr}", s.trace)
	mux.Handle("GET /metrics", s.MetricsHandler())
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("GET /v1/logs/{addr}", s.logs)
	mux.HandleFunc("POST /v1/restart/{addr}", s.restart)
	mux.HandleFunc("POST /v1/signal/{addr}", s.signal)
	mux.HandleFunc("POST /v1/pause/{addr}", func(w http.ResponseWriter, r *http.Request) { s.pause(w, r, true) })
	mux.HandleFunc("POST /v1/resume/{addr}", func(w http.ResponseWriter, r *http.Request) { s.pause(w, r, false) })
	mux.HandleFunc("POST /v1/stop/{addr}", func(w http.ResponseWriter, r *http.Request) { s.hold(w, r, true) })
	mux.HandleFunc("POST /v1/start/{addr}", func(w http.ResponseWriter, r *http.Request) { s.hold(w, r, false) })
	mux.HandleFunc("POST /v1/plan", s.plan)
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, r *http.Request) { s.apply(w, r, false) })
	mux.HandleFunc("POST /v1/destroy", func(w http.ResponseWriter, r *http.Request) { s.apply(w, r, true) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (this agent speaks %s)", r.Method, r.URL.Path, APIVersion))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No sensitive value of the configuration leaves in an answer
		// (a status's last_error, an event, a failed apply's
		// diagnostics); a log is the daemon's own output, served as is.
		if !strings.HasPrefix(r.URL.Path, "/v1/logs/") && s.Engine != nil {
			w = redactingWriter{ResponseWriter: w, redact: s.Engine.Redact}
		}
		mux.ServeHTTP(w, r)
	})
}

// redactingWriter removes sensitive values from each write of an answer
// (the JSON encoder writes each value whole).
type redactingWriter struct {
	http.ResponseWriter
	redact func(string) string
}

func (w redactingWriter) Write(p []byte) (int, error) {
	red := w.redact(string(p))
	if _, err := io.WriteString(w.ResponseWriter, red); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w redactingWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// Serve answers requests on ln until ctx is done, then closes ln (which
// removes the socket) and ends every request in flight, streams included.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), BaseContext: func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	ln.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

func engineErr(w http.ResponseWriter, err error) {
	code := http.StatusConflict
	switch {
	case errors.Is(err, engine.ErrStopping):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return
	}
	writeError(w, code, err)
}

func pathAddr(w http.ResponseWriter, r *http.Request) (spec.Address, bool) {
	a, err := spec.ParseAddress(r.PathValue("addr"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return a, false
	}
	return a, true
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	sts, err := s.Engine.Status(r.Context())
	if err != nil {
		engineErr(w, err)
		return
	}
	now := time.Now()
	out := StatusResponse{Dir: s.Dir, Pid: os.Getpid(), Instances: make([]Instance, 0, len(sts))}
	for _, st := range sts {
		in := Instance{Address: st.Addr.String(), State: st.Observed.State.String(), Status: st.Status,
			Supervised: st.Supervised, Health: st.Health, Restarts: st.Restarts, Waiting: st.Waiting,
			ConfigHash: st.ConfigHash, LastError: st.LastError, ID: st.Observed.ID,
			MemoryBytes: st.Observed.Memory, CPUSeconds: st.Observed.CPU.Seconds(), Says: st.Observed.Says,
			Service: st.Service, Route: st.Route, Registered: st.Registered, Unpublished: st.Unpublished}
		if !st.HeldBy.IsZero() {
			in.HeldBy = st.HeldBy.String()
		}
		switch planner.ParseStatus(st.Status) {
		case planner.StatusWaiting, planner.StatusBlocked, planner.StatusPending:
			in.State = "-" // not started: nothing to observe
		}
		if st.Paused && st.Observed.State.String() == "running" {
			in.State = "paused"
		}
		if !st.Runtime.IsZero() {
			in.Runtime = st.Runtime.String()
		}
		if !st.UpdatedAt.IsZero() {
			u := st.UpdatedAt
			in.UpdatedAt = &u
		}
		switch st.Observed.State {
		case providers.StateRunning:
			in.Pid = st.Observed.Pid
			if t := st.Observed.StartedAt; !t.IsZero() {
				in.StartedAt = &t
				in.UptimeSec = now.Sub(t).Truncate(time.Second).Seconds()
			}
		case providers.StateExited:
			if st.Observed.Signal != "" {
				in.Signal = st.Observed.Signal
			} else {
				c := st.Observed.ExitCode
				in.ExitCode = &c
			}
		}
		out.Instances = append(out.Instances, in)
	}
	writeJSON(w, http.StatusOK, out)
}

// parseSince reads ?since=: an RFC 3339 time, a duration back from now
// ("5m"), or "all" (every event kept).
func parseSince(s string) (time.Time, error) {
	switch s {
	case "":
		return time.Time{}, nil
	case "all", "0":
		return time.Unix(0, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since=%q: want an RFC 3339 time, a duration such as 5m, or all", s)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	f, err := ParseEventFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	s.Stream(r, f, func(ev engine.Event) error { return enc.Encode(ev) }, func() {
		if fl != nil {
			fl.Flush()
		}
	})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	n := 10
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("n=%q is not a number", v))
			return
		}
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	path := s.LogPath(a)
	if !follow {
		if _, err := os.Stat(path); err != nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("%s has no log: %w", a, err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	Tail(r.Context(), path, n, follow, flushWriter{w})
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	_, ch, cancel := s.Engine.Subscribe(time.Time{})
	defer cancel()
	resp := RestartResponse{Address: a.String()}
	if r.URL.Query().Get("cascade") == "1" {
		deps, err := s.Engine.RestartCascade(waitNotice(w, r), a)
		if err != nil {
			engineErr(w, err)
			return
		}
		for _, d := range deps {
			resp.Cascade = append(resp.Cascade, d.String())
		}
	} else if err := s.Engine.Restart(waitNotice(w, r), a); err != nil {
		engineErr(w, err)
		return
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				writeJSON(w, http.StatusAccepted, resp)
				return
			}
			if ev.Addr != a && (a.Key != spec.NoKey || ev.Addr.Block() != a) {
				continue // not a, nor (-cascade of a block) one of its instances
			}
			resp.Address = ev.Addr.String() // of a block: the instance restarted first
			switch {
			case ev.Type == engine.EventStarted && a.Kind == spec.KindJob:
				resp.Pid = ev.Pid // a job: answered once it has run again to completion
			case ev.Type == engine.EventStarted:
				resp.Pid = ev.Pid
				writeJSON(w, http.StatusOK, resp)
				return
			case ev.Type == engine.EventCompleted:
				writeJSON(w, http.StatusOK, resp)
				return
			case ev.Type == engine.EventFailed:
				writeError(w, http.StatusInternalServerError, fmt.Errorf("%s: restart failed: %s", a, ev.Detail))
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) signal(w http.ResponseWriter, r *http.Request) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	var req SignalRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want {\"signal\": \"HUP\"}: %w", err))
		return
	}
	sig, err := spec.ParseSignal(req.Signal)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.Engine.SignalMain(waitNotice(w, r), a, sig, req.Main); err != nil {
		engineErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Address string `json:"address"`
		Signal  string `json:"signal"`
	}{a.String(), sig.Name})
}

// load reads the configuration directory again; on errors it answers 422
// and returns nil.
func (s *Server) load(w http.ResponseWriter) (*engine.LoadResult, bool) {
	if s.Load == nil {
		return &engine.LoadResult{}, true
	}
	lr := s.Load()
	if lr.Diags.HasErrors() || lr.Config == nil {
		writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{Error: "the configuration is invalid", Diagnostics: renderDiags(lr.Diags, lr.Files)})
		return nil, false
	}
	return &lr, true
}

func renderDiags(diags hcl.Diagnostics, files map[string]*hcl.File) string {
	if len(diags) == 0 {
		return ""
	}
	var b bytes.Buffer
	hcl.NewDiagnosticTextWriter(&b, files, 100, false).WriteDiagnostics(diags)
	return strings.TrimRight(b.String(), "\n")
}

// sameVariables answers 409 and returns false when the caller's variables
// (their hash, when given) differ from those of the configuration the
// agent loaded.
func sameVariables(w http.ResponseWriter, caller string, cfg *spec.Config) bool {
	if caller == "" || cfg == nil || caller == cfg.VariablesHash() {
		return true
	}
	writeJSON(w, http.StatusConflict, ErrorResponse{Error: "the engine running for this directory plans and applies with the variable values it was started with, and this command's (-var, -var-file, ORCH_VAR_*) differ: restart orch up or orch agent with these values, or stop it to plan and apply without it"})
	return false
}

func planResponse(p *planner.Plan, diags hcl.Diagnostics, files map[string]*hcl.File) *PlanResponse {
	return &PlanResponse{Text: planner.Render(p, planner.RenderOptions{}), Plan: planner.ToJSON(p),
		HasChanges: p.HasChanges(), Diagnostics: renderDiags(diags, files)}
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	var req PlanRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	lr, ok := s.load(w)
	if !ok || !sameVariables(w, req.Variables, lr.Config) {
		return
	}
	p, diags, err := s.Engine.Plan(r.Context(), lr.Config, req.Destroy)
	if err != nil {
		engineErr(w, err)
		return
	}
	if diags.HasErrors() {
		writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{Error: "the plan has errors", Diagnostics: renderDiags(diags, lr.Files)})
		return
	}
	writeJSON(w, http.StatusOK, planResponse(p, diags, lr.Files))
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request, destroy bool) {
	var req ApplyRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	lr, ok := s.load(w)
	if !ok || !sameVariables(w, req.Variables, lr.Config) {
		return
	}
	_, ch, cancel := s.Engine.Subscribe(time.Time{})
	defer cancel()
	plans := make(chan *planner.Plan, 1)
	type done struct {
		res *engine.ApplyResult
		err error
	}
	result := make(chan done, 1)
	go func() {
		res, err := s.Engine.Apply(r.Context(), engine.ApplyRequest{Config: lr.Config, Files: lr.Files, Destroy: destroy,
			Fingerprint: req.Fingerprint, OnPlan: func(p *planner.Plan) { plans <- p }})
		result <- done{res, err}
	}()
	started := false
	var (
		enc *json.Encoder
		fl  http.Flusher
	)
	begin := func() {
		started = true
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		fl, _ = w.(http.Flusher)
		enc = json.NewEncoder(w)
		enc.SetEscapeHTML(false)
	}
	line := func(l ApplyLine) {
		enc.Encode(l)
		if fl != nil {
			fl.Flush()
		}
	}
	failed := map[string]bool{}
	var order []string
	event := func(ev engine.Event) {
		if ev.Type == engine.EventFailed || ev.Type == engine.EventSkipped {
			if a := ev.Addr.String(); !failed[a] {
				failed[a] = true
				order = append(order, a)
			}
		}
		b, _ := json.Marshal(ev)
		line(ApplyLine{Event: b})
	}
	for {
		select {
		case p := <-plans:
			begin()
			line(ApplyLine{Plan: planResponse(p, nil, lr.Files)})
		case ev, ok := <-ch:
			if !ok {
				ch = nil
				continue
			}
			if started {
				event(ev)
			}
		case d := <-result:
			if d.err != nil && !started {
				if d.res != nil && errors.Is(d.err, engine.ErrStalePlan) {
					writeJSON(w, http.StatusConflict, ErrorResponse{Error: d.err.Error()})
					return
				}
				engineErr(w, d.err)
				return
			}
			if !started {
				if d.res != nil && d.res.Diags.HasErrors() {
					writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{Error: "the plan has errors", Diagnostics: renderDiags(d.res.Diags, lr.Files)})
					return
				}
				begin()
				if d.res != nil && d.res.Plan != nil {
					line(ApplyLine{Plan: planResponse(d.res.Plan, d.res.Diags, lr.Files)})
				}
			}
			for drained := false; !drained && ch != nil; {
				select {
				case ev, ok := <-ch:
					if !ok {
						drained = true
						break
					}
					event(ev)
				default:
					drained = true
				}
			}
			out := &ApplyResult{}
			if d.err != nil {
				out.Error = d.err.Error()
			}
			if d.res != nil {
				out.Add, out.Change, out.Replace, out.Destroy = d.res.Summary.Add, d.res.Summary.Change, d.res.Summary.Replace, d.res.Summary.Destroy
				if d.res.Err != "" && out.Error == "" {
					out.Error = d.res.Err
				}
			}
			out.Failed = order
			out.OK = out.Error == "" && len(order) == 0
			line(ApplyLine{Result: out})
			return
		}
	}
}

// pause pauses (or resumes) a daemon: POST /v1/pause/{addr},
// /v1/resume/{addr}; the answer is {"address": ..., "paused": bool}.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, pause bool) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	var err error
	if pause {
		err = s.Engine.Pause(waitNotice(w, r), a)
	} else {
		err = s.Engine.Resume(waitNotice(w, r), a)
	}
	if err != nil {
		engineErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PauseResponse{Address: a.String(), Paused: pause})
}

// HoldResponse is the body of the answer to POST /v1/stop/{addr} and
// /v1/start/{addr}.
type HoldResponse struct {
	Address string `json:"address"`
	// Held: stopped by the user, and kept stopped (restart policies,
	// edits) until a start.
	Held bool `json:"held"`
}

// hold stops a daemon and holds it stopped (POST /v1/stop/{addr},
// answered once it stopped), or releases the hold and starts it (POST
// /v1/start/{addr}, answered once the start is under way).
func (s *Server) hold(w http.ResponseWriter, r *http.Request, stop bool) {
	a, ok := pathAddr(w, r)
	if !ok {
		return
	}
	var err error
	if stop {
		err = s.Engine.Stop(waitNotice(w, r), a)
	} else {
		err = s.Engine.Start(waitNotice(w, r), a)
	}
	if err != nil {
		engineErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, HoldResponse{Address: a.String(), Held: stop})
}

// WaitingHeader names, in an informational answer (102 Processing) that
// precedes the final one, the instance whose change in flight a pause,
// resume, stop, start or restart waits for (engine.WithWaitNotice).
const WaitingHeader = "Orch-Waiting"

// waitNotice is r's context, with a notice that sends the client a 102
// Processing answer naming the instance waited for (WaitingHeader). The
// engine calls it on the handler's own goroutine, before the final answer.
func waitNotice(w http.ResponseWriter, r *http.Request) context.Context {
	return engine.WithWaitNotice(r.Context(), func(a spec.Address) {
		w.Header().Set(WaitingHeader, a.String())
		w.WriteHeader(http.StatusProcessing)
		w.Header().Del(WaitingHeader)
	})
}
