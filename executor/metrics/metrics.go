// Package metrics exposes a running engine in the Prometheus text format
// (github.com/prometheus/client_golang): what every instance does (state,
// readiness, restarts, exits, health-check latency, CPU and memory) and
// what the engine did (applies, reloads, events). It is served on the
// agent's socket (GET /metrics) and, when declared, on the web listener
// (orch { http { listen } }).
//
// A scrape reads the engine's books (engine.Snapshot, which observes
// nothing) and the last pass of a shared procstat.Sampler over /proc,
// which a scrape refreshes in the background when older than 2 s: a
// scrape never waits for the providers or for /proc.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/procstat"
	"github.com/orch-dev/orch/spec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the collector reads: *engine.Engine.
type Source interface {
	Snapshot(ctx context.Context) ([]engine.InstanceSnapshot, error)
	Stats() engine.Stats
}

// States lists every value of the state label of orch_instance_state.
var States = []string{"running", "starting", "ready", "unhealthy", "paused", "restarting", "exited", "completed",
	"failed", "stopped", "waiting", "blocked", "pending", "loaded", "stopping"}

var (
	instLabels = []string{"address"}

	descInfo = prometheus.NewDesc("orch_instance_info",
		"Every instance the engine knows: always 1, with its kind and runtime.", []string{"address", "kind", "runtime"}, nil)
	descState = prometheus.NewDesc("orch_instance_state",
		"1 for the state the instance is in (running, starting, ready, unhealthy, paused, restarting, exited, completed, failed, stopped, waiting, blocked; a module's own state).",
		[]string{"address", "state"}, nil)
	descUp = prometheus.NewDesc("orch_instance_up",
		"1 when the instance runs, else 0.", instLabels, nil)
	descReady = prometheus.NewDesc("orch_instance_ready",
		"1 when it runs and its health check passes (or it has none), else 0.", instLabels, nil)
	descRestarts = prometheus.NewDesc("orch_instance_restarts_total",
		"Restarts by this engine: by restart policy, for liveness, and requested.", instLabels, nil)
	descExits = prometheus.NewDesc("orch_instance_exits_total",
		"Times the instance ended (exited or completed) under this engine.", instLabels, nil)
	descExitCode = prometheus.NewDesc("orch_instance_last_exit_code",
		"How the instance last ended: its exit code, or 128 plus the number of the signal that killed it.", instLabels, nil)
	descStart = prometheus.NewDesc("orch_instance_start_time_seconds",
		"When this engine saw the running instance start or took it under supervision, in seconds since the epoch.", instLabels, nil)
	descProbe = prometheus.NewDesc("orch_health_check_duration_seconds",
		"Health probes of the instance by this engine and their total duration.", instLabels, nil)
	descProbeLast = prometheus.NewDesc("orch_health_check_last_duration_seconds",
		"How long the instance's last health probe took.", instLabels, nil)
	descProbeFail = prometheus.NewDesc("orch_health_check_failures_total",
		"Health probes of the instance that failed.", instLabels, nil)
	descCPU = prometheus.NewDesc("orch_instance_cpu_seconds_total",
		"CPU time (user and system) of the live processes of the instance's process group.", instLabels, nil)
	descMem = prometheus.NewDesc("orch_instance_memory_rss_bytes",
		"Resident memory of the live processes of the instance's process group.", instLabels, nil)
	descProcs = prometheus.NewDesc("orch_instance_processes",
		"Live processes in the instance's process group.", instLabels, nil)
	descApplies = prometheus.NewDesc("orch_applies_total",
		"Applies by the engine: the first, each reload's, each restart and each start released by a dependency.", nil, nil)
	descApplyFail = prometheus.NewDesc("orch_apply_failures_total",
		"Applies that ended with an error or a failed step.", nil, nil)
	descApplyDur = prometheus.NewDesc("orch_apply_duration_seconds",
		"How long applies took.", nil, nil)
	descReloads = prometheus.NewDesc("orch_config_reloads_total",
		"Edits of the configuration directory read by the engine, by result (valid: applied; invalid: nothing changed).", []string{"result"}, nil)
	descEvents = prometheus.NewDesc("orch_events_total",
		"Events published by the engine, by type.", []string{"type"}, nil)
	descScrape = prometheus.NewDesc("orch_scrape_error",
		"1 when the engine could not be read for this scrape (it is stopping), else 0.", nil, nil)
)

// Collector is a prometheus.Collector of one engine.
type Collector struct {
	src     Source
	sampler *procstat.Sampler
}

// New returns a collector of src; sampler, shared with the engine's other
// watchers, may be nil (then one of its own).
func New(src Source, sampler *procstat.Sampler) *Collector {
	if sampler == nil {
		sampler = &procstat.Sampler{}
	}
	return &Collector{src: src, sampler: sampler}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descState, descUp, descReady, descRestarts, descExits, descExitCode,
		descStart, descProbe, descProbeLast, descProbeFail, descCPU, descMem, descProcs, descApplies, descApplyFail,
		descApplyDur, descReloads, descEvents, descScrape} {
		ch <- d
	}
}

// Collect reads the engine and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := c.src.Snapshot(ctx)
	scrapeErr := 0.0
	if err != nil {
		scrapeErr = 1
	}
	ch <- prometheus.MustNewConstMetric(descScrape, prometheus.GaugeValue, scrapeErr)
	pids := make([]int, 0, len(snap))
	for _, s := range snap {
		if s.Running && s.Pid > 0 {
			pids = append(pids, s.Pid)
		}
	}
	usage := c.sampler.Sample(pids)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, s := range snap {
		a := s.Addr.String()
		rt := ""
		if !s.Runtime.IsZero() {
			rt = s.Runtime.String()
		}
		gauge(descInfo, 1, a, s.Addr.Kind.String(), rt)
		gauge(descState, 1, a, s.State)
		gauge(descUp, b2f(s.Running), a)
		gauge(descReady, b2f(s.Running && (s.Health == "" || s.Health == "healthy")), a)
		counter(descRestarts, float64(s.Restarts), a)
		counter(descExits, float64(s.Exits), a)
		if s.Signal != "" {
			if sig, err := spec.ParseSignal(s.Signal); err == nil {
				gauge(descExitCode, float64(128+sig.Num), a)
			}
		} else if s.ExitCode != nil {
			gauge(descExitCode, float64(*s.ExitCode), a)
		}
		if s.Running && !s.StartedAt.IsZero() {
			gauge(descStart, float64(s.StartedAt.UnixNano())/1e9, a)
		}
		if s.Probes > 0 {
			ch <- prometheus.MustNewConstSummary(descProbe, s.Probes, s.ProbeSeconds, nil, a)
			gauge(descProbeLast, s.ProbeLast.Seconds(), a)
			counter(descProbeFail, float64(s.ProbeFailures), a)
		}
		if u, ok := usage[s.Pid]; ok && s.Running && s.Pid > 0 {
			counter(descCPU, u.CPU.Seconds(), a)
			gauge(descMem, float64(u.RSS), a)
			gauge(descProcs, float64(u.Procs), a)
		}
	}
	st := c.src.Stats()
	counter(descApplies, float64(st.Applies))
	counter(descApplyFail, float64(st.ApplyFailures))
	buckets := make(map[float64]uint64, len(engine.ApplyBuckets))
	var cum uint64
	for i, b := range engine.ApplyBuckets {
		cum += st.ApplyBuckets[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descApplyDur, st.Applies, st.ApplySeconds, buckets)
	counter(descReloads, float64(st.Events[engine.EventConfigReloaded]), "valid")
	counter(descReloads, float64(st.Events[engine.EventConfigInvalid]), "invalid")
	for t, n := range st.Events {
		counter(descEvents, float64(n), t.String())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Registry returns a registry with the engine's collector and the agent
// process's own (Go runtime, process) metrics.
func Registry(src Source, sampler *procstat.Sampler) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src, sampler), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format (or OpenMetrics, when
// asked).
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
