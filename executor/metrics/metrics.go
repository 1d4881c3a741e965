// Package metrics exposes a running engine in the Prometheus text format
// (github.com/prometheus/client_golang): what every instance does (state,
// readiness, restarts, exits, health-check latency, CPU and memory) and
// what the engine did (applies, reloads, events). It is served on the
// agent's socket (GET /metrics) and, when declared, on the web listener
// (orch { http { listen } }).
//
// A scrape reads the engine's books (engine.Snapshot, which observes
// nothing) and the last pass of a shared procstat.Sampler over /proc,
// which a scrape refreshes in the background when older than 3 s: a
// scrape never waits for the providers or for /proc.
package metrics

import (
	"bufio"
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/procstat"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/spec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// Source is what the collector reads: *engine.Engine.
type Source interface {
	Snapshot(ctx context.Context) ([]engine.InstanceSnapshot, error)
	Stats() engine.Stats
}

// Collector gathers one engine's metrics straight into metric families,
// in order (the snapshot is sorted by address): going through
// prometheus.NewConstMetric and a Registry's checks and sorting tripled
// the cost of a scrape of 1,000 instances.
type Collector struct {
	src     Source
	sampler *procstat.Sampler
	// Calls, when set, reads the hosted modules' calls (module call
	// latency): *module.Provider's CallStats.
	Calls func() map[spec.Address]map[module.Hook]module.CallHistogram
}

// New returns a collector of src; sampler, shared with the engine's other
// watchers, may be nil (then one of its own).
func New(src Source, sampler *procstat.Sampler) *Collector {
	if sampler == nil {
		sampler = &procstat.Sampler{}
	}
	return &Collector{src: src, sampler: sampler}
}

// family is one metric family under construction.
type family struct {
	*dto.MetricFamily
}

func newFamily(name, help string, t dto.MetricType, n int) family {
	return family{&dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: t.Enum(),
		Metric: make([]*dto.Metric, 0, n)}}
}

func (f family) add(v float64, labels ...*dto.LabelPair) {
	m := &dto.Metric{Label: labels}
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: &v}
	default:
		m.Gauge = &dto.Gauge{Value: &v}
	}
	f.Metric = append(f.Metric, m)
}

func label(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
}

// Gather reads the engine and returns its metric families, sorted by name.
func (c *Collector) Gather() ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := c.src.Snapshot(ctx)
	n := len(snap)
	scrape := newFamily("orch_scrape_error", "1 when the engine could not be read for this scrape (it is stopping), else 0.", dto.MetricType_GAUGE, 1)
	scrape.add(b2f(err != nil))
	var (
		state = newFamily("orch_instance_state",
			"1 for the state the instance is in (running, starting, ready, unhealthy, paused, restarting, exited, completed, failed, stopped, waiting, blocked, pending; a module's own), with its kind and runtime.",
			dto.MetricType_GAUGE, n)
		ready = newFamily("orch_instance_ready",
			"1 when the instance runs and its health check passes (or it has none), else 0.", dto.MetricType_GAUGE, n)
		restarts = newFamily("orch_instance_restarts_total",
			"Restarts by this engine: by restart policy, for liveness, and requested.", dto.MetricType_COUNTER, n)
		exits = newFamily("orch_instance_exits_total",
			"Times the instance ended (exited or completed) under this engine.", dto.MetricType_COUNTER, n)
		exitCode = newFamily("orch_instance_last_exit_code",
			"How the instance last ended under this engine: its exit code, or 128 plus the number of the signal that killed it.", dto.MetricType_GAUGE, 0)
		start = newFamily("orch_instance_start_time_seconds",
			"When this engine saw the running instance start, or took it under supervision, in seconds since the epoch.", dto.MetricType_GAUGE, n)
		probe = newFamily("orch_health_check_duration_seconds",
			"Health probes of the instance by this engine, and their total duration.", dto.MetricType_SUMMARY, 0)
		probeLast = newFamily("orch_health_check_last_duration_seconds",
			"How long the instance's last health probe took.", dto.MetricType_GAUGE, 0)
		probeFail = newFamily("orch_health_check_failures_total",
			"Health probes of the instance that failed.", dto.MetricType_COUNTER, 0)
		cpu = newFamily("orch_instance_cpu_seconds_total",
			"CPU time (user and system) of the live processes of the instance's process group, from /proc.", dto.MetricType_COUNTER, n)
		mem = newFamily("orch_instance_memory_rss_bytes",
			"Resident memory of the live processes of the instance's process group, from /proc.", dto.MetricType_GAUGE, n)
	)
	pids := make([]int, 0, n)
	for _, s := range snap {
		if s.Running && s.Pid > 0 {
			pids = append(pids, s.Pid)
		}
	}
	usage := c.sampler.Sample(pids)
	for _, s := range snap {
		a := label("address", s.Addr.String())
		rt := ""
		if !s.Runtime.IsZero() {
			rt = s.Runtime.String()
		}
		state.add(1, a, label("kind", s.Addr.Kind.String()), label("runtime", rt), label("state", s.State))
		ready.add(b2f(s.Running && (s.Health == "" || s.Health == "healthy")), a)
		restarts.add(float64(s.Restarts), a)
		exits.add(float64(s.Exits), a)
		if s.Signal != "" {
			if sig, err := spec.ParseSignal(s.Signal); err == nil {
				exitCode.add(float64(128+sig.Num), a)
			}
		} else if s.ExitCode != nil {
			exitCode.add(float64(*s.ExitCode), a)
		}
		if s.Running && !s.StartedAt.IsZero() {
			start.add(float64(s.StartedAt.UnixNano())/1e9, a)
		}
		if s.Probes > 0 {
			count, sum := s.Probes, s.ProbeSeconds
			probe.Metric = append(probe.Metric, &dto.Metric{Label: []*dto.LabelPair{a},
				Summary: &dto.Summary{SampleCount: &count, SampleSum: &sum}})
			probeLast.add(s.ProbeLast.Seconds(), a)
			probeFail.add(float64(s.ProbeFailures), a)
		}
		if u, ok := usage[s.Pid]; ok && s.Running && s.Pid > 0 {
			cpu.add(u.CPU.Seconds(), a)
			mem.add(float64(u.RSS), a)
		}
	}
	st := c.src.Stats()
	applies := newFamily("orch_applies_total",
		"Applies by the engine: the first, each reload's, each restart and each start released by a dependency.", dto.MetricType_COUNTER, 1)
	applies.add(float64(st.Applies))
	applyFail := newFamily("orch_apply_failures_total", "Applies that ended with an error or a failed step.", dto.MetricType_COUNTER, 1)
	applyFail.add(float64(st.ApplyFailures))
	applyDur := newFamily("orch_apply_duration_seconds", "How long applies took.", dto.MetricType_HISTOGRAM, 1)
	h := &dto.Histogram{SampleCount: proto.Uint64(st.Applies), SampleSum: proto.Float64(st.ApplySeconds)}
	var cum uint64
	for i, b := range engine.ApplyBuckets {
		cum += st.ApplyBuckets[i]
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(cum)})
	}
	applyDur.Metric = append(applyDur.Metric, &dto.Metric{Histogram: h})
	reloads := newFamily("orch_config_reloads_total",
		"Edits of the configuration directory read by the engine, by result (valid: applied; invalid: nothing changed; valid_again: valid after an invalid one, with nothing to change).", dto.MetricType_COUNTER, 3)
	reloads.add(float64(st.Events[engine.EventConfigInvalid]), label("result", "invalid"))
	reloads.add(float64(st.Events[engine.EventConfigReloaded]), label("result", "valid"))
	reloads.add(float64(st.Events[engine.EventConfigValid]), label("result", "valid_again"))
	events := newFamily("orch_events_total", "Events published by the engine, by type.", dto.MetricType_COUNTER, len(st.Events))
	types := make([]engine.EventType, 0, len(st.Events))
	for t := range st.Events {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].String() < types[j].String() })
	for _, t := range types {
		events.add(float64(st.Events[t]), label("type", t.String()))
	}
	calls := c.moduleCalls()
	var out []*dto.MetricFamily
	for _, f := range []family{scrape, state, ready, restarts, exits, exitCode, start, probe, probeLast, probeFail, cpu, mem,
		applies, applyFail, applyDur, reloads, events, calls} {
		if len(f.Metric) > 0 {
			out = append(out, f.MetricFamily)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// moduleCalls is orch_module_call_duration_seconds: a histogram of the
// calls into each hosted module, by hook (init, start, event, stop).
func (c *Collector) moduleCalls() family {
	if c.Calls == nil {
		return family{&dto.MetricFamily{}}
	}
	stats := c.Calls()
	f := newFamily("orch_module_call_duration_seconds",
		"Calls from orch into the module, by hook (init, start, event: one call per event or per batch, stop), and how long they took.",
		dto.MetricType_HISTOGRAM, len(stats))
	addrs := make([]spec.Address, 0, len(stats))
	for a := range stats {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	for _, a := range addrs {
		for _, hk := range module.Hooks() {
			ch, ok := stats[a][hk]
			if !ok {
				continue
			}
			h := &dto.Histogram{SampleCount: proto.Uint64(ch.Count), SampleSum: proto.Float64(ch.Sum.Seconds())}
			var cum uint64
			for i, b := range module.CallBuckets {
				cum += ch.Buckets[i]
				h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(cum)})
			}
			f.Metric = append(f.Metric, &dto.Metric{Label: []*dto.LabelPair{label("address", a.String()), label("hook", hk.String())}, Histogram: h})
		}
	}
	return f
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the engine's metrics, and the agent process's own (Go
// runtime, process: go_*, process_*), in the format the scraper asks for
// (the Prometheus text format by default, OpenMetrics when asked).
func Handler(c *Collector) http.Handler {
	own := prometheus.NewRegistry()
	own.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fams, _ := c.Gather()
		if more, err := own.Gather(); err == nil {
			fams = append(fams, more...)
		}
		sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
		format := expfmt.Negotiate(r.Header)
		w.Header().Set("Content-Type", string(format))
		bw := bufio.NewWriterSize(w, 64<<10)
		enc := expfmt.NewEncoder(bw, format)
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				return
			}
		}
		if cl, ok := enc.(expfmt.Closer); ok {
			cl.Close()
		}
		bw.Flush()
	})
}
