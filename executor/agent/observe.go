package agent

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/metrics"
	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// InstanceView is one entry of GET /v1/snapshot: the engine's books and
// what the instance uses, for orch top and the web page.
type InstanceView struct {
	Address string `json:"address"`
	Kind    string `json:"kind"`
	Runtime string `json:"runtime,omitempty"`
	// State is one word: running, starting, ready, unhealthy, paused,
	// restarting, exited, completed, failed, stopped, waiting, blocked,
	// pending; a module's own (loaded, starting, running, stopping,
	// stopped, failed).
	State      string     `json:"state"`
	Status     string     `json:"status,omitempty"`
	Health     string     `json:"health,omitempty"`
	Restarts   int        `json:"restarts"`
	Waiting    string     `json:"waiting,omitempty"`
	HeldBy     string     `json:"held_by,omitempty"` // Instance.HeldBy
	Pid        int        `json:"pid,omitempty"`
	ID         string     `json:"id,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	UptimeSec  float64    `json:"uptime_seconds,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Signal     string     `json:"signal,omitempty"`
	CPUSeconds float64    `json:"cpu_seconds,omitempty"`
	CPUPercent float64    `json:"cpu_percent,omitempty"` // of one core, since the previous sample
	RSSBytes   uint64     `json:"rss_bytes,omitempty"`
	Procs      int        `json:"processes,omitempty"`
	ProbeMs    float64    `json:"health_check_ms,omitempty"` // the last probe's duration
	DependsOn  []string   `json:"depends_on,omitempty"`
}

// SnapshotResponse is the body of GET /v1/snapshot.
type SnapshotResponse struct {
	Dir       string         `json:"dir"`
	Pid       int            `json:"pid"`
	Time      time.Time      `json:"time"`
	Instances []InstanceView `json:"instances"`
}

// LastPlanResponse is the body of GET /v1/plan/last.
type LastPlanResponse struct {
	Text string     `json:"text"` // "" before the first plan with changes
	At   *time.Time `json:"at,omitempty"`
}

// Snapshot builds the answer of GET /v1/snapshot.
func (s *Server) Snapshot(r *http.Request) (*SnapshotResponse, error) {
	snap, err := s.Engine.Snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(snap))
	for _, in := range snap {
		if in.Running && in.Pid > 0 {
			pids = append(pids, in.Pid)
		}
	}
	usage := s.sampler().Sample(pids)
	now := time.Now()
	out := &SnapshotResponse{Dir: s.Dir, Pid: os.Getpid(), Time: now, Instances: make([]InstanceView, 0, len(snap))}
	for _, in := range snap {
		v := InstanceView{Address: in.Addr.String(), Kind: in.Addr.Kind.String(), State: in.State, Status: in.Status,
			Health: in.Health, Restarts: in.Restarts, Waiting: in.Waiting, Pid: in.Pid, ID: in.ID,
			ExitCode: in.ExitCode, Signal: in.Signal}
		if !in.Runtime.IsZero() {
			v.Runtime = in.Runtime.String()
		}
		if !in.HeldBy.IsZero() {
			v.HeldBy = in.HeldBy.String()
		}
		if in.Running && !in.StartedAt.IsZero() {
			t := in.StartedAt
			v.StartedAt = &t
			v.UptimeSec = now.Sub(t).Truncate(time.Second).Seconds()
		}
		if u, ok := usage[in.Pid]; ok && in.Running && in.Pid > 0 {
			v.CPUSeconds, v.CPUPercent, v.RSSBytes, v.Procs = u.CPU.Seconds(), u.CPUPercent, u.RSS, u.Procs
		}
		if in.Probes > 0 {
			v.ProbeMs = float64(in.ProbeLast.Microseconds()) / 1000
		}
		for _, d := range in.DependsOn {
			v.DependsOn = append(v.DependsOn, d.String())
		}
		out.Instances = append(out.Instances, v)
	}
	return out, nil
}

// Usage is one running instance's entry in GET /v1/usage.
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   uint64  `json:"rss_bytes"`
	Procs      int     `json:"processes"`
}

// usage answers GET /v1/usage: what each running instance uses, by
// address; what watchers read between events (CPU and memory change
// without them), a tenth of the size of a snapshot.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	snap, err := s.Engine.Snapshot(r.Context())
	if err != nil {
		engineErr(w, err)
		return
	}
	pids := make([]int, 0, len(snap))
	for _, in := range snap {
		if in.Running && in.Pid > 0 {
			pids = append(pids, in.Pid)
		}
	}
	usage := s.sampler().Sample(pids)
	out := make(map[string]Usage, len(pids))
	for _, in := range snap {
		if u, ok := usage[in.Pid]; ok && in.Running && in.Pid > 0 {
			out[in.Addr.String()] = Usage{CPUSeconds: u.CPU.Seconds(), CPUPercent: u.CPUPercent, RSSBytes: u.RSS, Procs: u.Procs}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	out, err := s.Snapshot(r)
	if err != nil {
		engineErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) lastPlan(w http.ResponseWriter, r *http.Request) {
	text, at := s.Engine.LastPlan()
	out := LastPlanResponse{Text: text}
	if !at.IsZero() {
		out.At = &at
	}
	writeJSON(w, http.StatusOK, out)
}

// MetricsHandler serves the engine's metrics in the Prometheus text
// format (GET /metrics, here and on the web listener).
func (s *Server) MetricsHandler() http.Handler {
	s.metricsOnce.Do(func() {
		c := metrics.New(s.Engine, s.sampler())
		c.Calls = s.ModuleCalls
		s.metrics = metrics.Handler(c)
	})
	return s.metrics
}

// EventFilter selects events of GET /v1/events: each given part must
// match (types, addresses, topics: any one of each); Until ends the
// stream.
type EventFilter struct {
	Types []engine.EventType
	// Addrs: an address with a key is that instance; one without (worker)
	// is also every instance of its block (worker[0], worker[1], ...),
	// those to come included.
	Addrs []spec.Address
	// Topics are bus patterns (orders.*): they match the topic of a
	// published event, and orch.module.<state> for a module_state event.
	Topics []string
	Since  time.Time
	Until  time.Time // zero: none
}

// ParseEventFilter reads the query of GET /v1/events: since, until,
// type, addr and topic (each repeated or comma-separated).
func ParseEventFilter(q url.Values) (EventFilter, error) {
	var f EventFilter
	var err error
	if f.Since, err = parseSince(q.Get("since")); err != nil {
		return f, err
	}
	if u := q.Get("until"); u != "" {
		t, err := parseSince(u)
		if err != nil || u == "all" || u == "0" {
			return f, fmt.Errorf("until=%q: want an RFC 3339 time or a duration back from now such as 5m", u)
		}
		f.Until = t
	}
	for _, v := range list(q["type"]) {
		var t engine.EventType
		if err := t.UnmarshalText([]byte(v)); err != nil {
			return f, fmt.Errorf("type=%s: %w", v, err)
		}
		f.Types = append(f.Types, t)
	}
	for _, v := range list(q["addr"]) {
		a, err := spec.ParseAddress(v)
		if err != nil {
			return f, fmt.Errorf("addr=%s: %w", v, err)
		}
		f.Addrs = append(f.Addrs, a)
	}
	for _, v := range list(q["topic"]) {
		if !pbus.ValidPattern(v) {
			return f, fmt.Errorf("topic=%q: want a topic, or a pattern ending in * (orders.*)", v)
		}
		f.Topics = append(f.Topics, v)
	}
	return f, nil
}

// Values is the query that ParseEventFilter reads back as f (Since and
// Until as RFC 3339 times).
func (f EventFilter) Values() url.Values {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	for _, t := range f.Types {
		q.Add("type", t.String())
	}
	for _, a := range f.Addrs {
		q.Add("addr", a.String())
	}
	for _, t := range f.Topics {
		q.Add("topic", t)
	}
	return q
}

func list(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Match says whether ev passes the filter (Since and Until aside).
func (f EventFilter) Match(ev engine.Event) bool {
	if len(f.Types) > 0 {
		ok := false
		for _, t := range f.Types {
			ok = ok || ev.Type == t
		}
		if !ok {
			return false
		}
	}
	if len(f.Addrs) > 0 {
		ok := false
		for _, a := range f.Addrs {
			ok = ok || ev.Addr == a || (a.Key == spec.NoKey && !ev.Addr.IsZero() && ev.Addr.Block() == a)
		}
		if !ok {
			return false
		}
	}
	if len(f.Topics) > 0 {
		topic := ev.Topic
		if ev.Type == engine.EventModuleState {
			state, _, _ := strings.Cut(ev.Detail, ":")
			topic = pbus.ReservedPrefix + "module." + state
		}
		if topic == "" {
			return false
		}
		ok := false
		for _, p := range f.Topics {
			ok = ok || pbus.Match(p, topic)
		}
		if !ok {
			return false
		}
	}
	return true
}

// Stream calls send with the kept events the filter selects, then with
// each new one, until the client goes, the engine's server stops, the
// subscriber falls too far behind, or Until passes. It is the body of GET
// /v1/events and of the web page's server-sent events.
func (s *Server) Stream(r *http.Request, f EventFilter, send func(engine.Event) error, flush func()) {
	past, ch, cancel := s.Engine.Subscribe(f.Since)
	defer cancel()
	after := func(ev engine.Event) bool { return !f.Until.IsZero() && ev.Time.After(f.Until) }
	for _, ev := range past {
		if after(ev) {
			flush()
			return
		}
		if f.Match(ev) && send(ev) != nil {
			return
		}
	}
	flush()
	var until <-chan time.Time
	if !f.Until.IsZero() {
		if !f.Until.After(time.Now()) {
			return
		}
		t := time.NewTimer(time.Until(f.Until))
		defer t.Stop()
		until = t.C
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok || after(ev) {
				return
			}
			if !f.Match(ev) {
				continue
			}
			if send(ev) != nil {
				return
			}
			flush()
		case <-until:
			return
		case <-r.Context().Done():
			return
		}
	}
}
