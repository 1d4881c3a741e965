package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/spec"
)

// benchEnv runs engines in-process over one configuration directory and
// one state (lock held for the benchmark), with the real process
// provider. Its cleanup kills every pid an engine reported and logd.
type benchEnv struct {
	b        *testing.B
	dir      string
	stateDir string
	store    *state.Store
	provs    executor.Providers

	mu   sync.Mutex
	pids map[int]bool
}

func newBenchEnv(b *testing.B, config string) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(config), 0o644); err != nil {
		b.Fatal(err)
	}
	be := &benchEnv{b: b, dir: dir, stateDir: filepath.Join(dir, ".orch"), pids: map[int]bool{},
		provs: executor.Providers{process.Kind: process.New(process.Options{SelfCommand: []string{orchBin}, NoCgroups: os.Getenv("ORCH_BENCH_NOCG") != ""})}} // ORCH_BENCH_NOCG=1: without cgroups, to tell their cost
	st, err := state.Open(filepath.Join(be.stateDir, "state.db"), state.Options{Operation: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	be.store = st
	b.Cleanup(func() {
		be.mu.Lock()
		for pid := range be.pids {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		be.mu.Unlock()
		// The engines' shutdowns hand their empty cgroups to logd, which
		// removes them once this process's connection ends: after the
		// kill below, never. Removed here, with whatever a failed
		// iteration left.
		processtest.RemoveCgroups(be.stateDir)
		processtest.StopLogd(be.stateDir)
		st.Close()
	})
	return be
}

// running is one engine's Run in its goroutine.
type running struct {
	events chan Event
	cancel context.CancelFunc
	done   chan error
}

func (be *benchEnv) run() *running {
	be.b.Helper()
	cfg, diags := spec.Load(be.dir, spec.Options{Schemas: be.provs.Schemas()})
	if diags.HasErrors() {
		be.b.Fatal(diags)
	}
	// Room for what an engine says between two waits (a hundred starts,
	// then the stops nobody reads): a larger buffer was allocated and
	// zeroed inside the timed window (10 MB, 3.5 ms of a 95 ms up).
	r := &running{events: make(chan Event, 4096), done: make(chan error, 1)}
	eng := New(Options{Dir: be.dir, Config: cfg, Providers: be.provs, Store: be.store, StateDir: be.stateDir,
		Parallelism: 100, Out: func(ev Event) {
			if ev.Type == EventStarted {
				be.mu.Lock()
				be.pids[ev.Pid] = true
				be.mu.Unlock()
			}
			r.events <- ev
		}})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- eng.Run(ctx) }()
	return r
}

func (r *running) stop(b *testing.B) {
	r.cancel()
	if err := <-r.done; err != nil {
		b.Fatal(err)
	}
}

// wait returns the first event for which match holds.
func (r *running) wait(b *testing.B, what string, match func(Event) bool) Event {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case ev := <-r.events:
			if ev.Type == EventFailed || ev.Type == EventError {
				b.Fatalf("waiting for %s: %s", what, ev)
			}
			if match(ev) {
				return ev
			}
		case <-t.C:
			b.Fatalf("no %s within 30s", what)
		}
	}
}

func started(addr string) func(Event) bool {
	return func(ev Event) bool { return ev.Type == EventStarted && ev.Addr.String() == addr }
}

func isReady(ev Event) bool { return ev.Type == EventReady }

func reportMedian(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), name)
}

func daemons(n int, first string) string {
	var s strings.Builder
	for i := 0; i < n; i++ {
		cmd := fmt.Sprintf("%d", 1000+i)
		if i == 0 && first != "" {
			cmd = first
		}
		fmt.Fprintf(&s, "daemon \"d%d\" {\n  command = [\"/bin/sleep\", %q]\n}\n", i, cmd)
	}
	return s.String()
}

// BenchmarkCrashToNewProcess: a daemon with restart.backoff = "0s" is
// SIGKILLed; the time until its new process runs.
func BenchmarkCrashToNewProcess(b *testing.B) {
	be := newBenchEnv(b, `
daemon "d" {
  command = ["/bin/sleep", "600"]
  restart {
    policy       = "always"
    backoff      = "0s"
    max_restarts = 0
  }
}
`)
	r := be.run()
	defer r.stop(b)
	pid := r.wait(b, "start", started("daemon.d")).Pid
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		pid = r.wait(b, "restart", started("daemon.d")).Pid
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportMedian(b, "ms-median", lat)
}

// BenchmarkEditToNewProcess100: one daemon of 100 is edited (rename-save);
// the time until its new process runs, debounce included.
func BenchmarkEditToNewProcess100(b *testing.B) {
	be := newBenchEnv(b, daemons(100, ""))
	r := be.run()
	defer r.stop(b)
	r.wait(b, "ready", isReady)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		content := daemons(100, fmt.Sprintf("%d", 5000+i))
		tmp := filepath.Join(be.dir, "main.hcl.tmp")
		os.WriteFile(tmp, []byte(content), 0o644)
		t0 := time.Now()
		os.Rename(tmp, filepath.Join(be.dir, "main.hcl"))
		r.wait(b, "d0 replaced", started("daemon.d0"))
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportMedian(b, "ms-median", lat)
}

// upDown runs b.N cycles of: an engine brings 100 daemons up (from
// nothing, then from "stopped"), then stops them all.
func upDown(b *testing.B) (up, down []time.Duration) {
	be := newBenchEnv(b, daemons(100, ""))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		r := be.run()
		r.wait(b, "ready", isReady)
		up = append(up, time.Since(t0))
		t1 := time.Now()
		r.stop(b)
		down = append(down, time.Since(t1))
	}
	b.StopTimer()
	return up, down
}

// BenchmarkUp100: from Run to all 100 daemons running (each cycle also
// stops them, which this figure leaves out).
func BenchmarkUp100(b *testing.B) {
	up, _ := upDown(b)
	reportMedian(b, "ms-median-up", up)
}

// BenchmarkStop100: from ctx done to Run returning with 100 daemons that
// exit on SIGTERM stopped and recorded.
func BenchmarkStop100(b *testing.B) {
	_, down := upDown(b)
	reportMedian(b, "ms-median-stop", down)
}

// BenchmarkFloor100 is what BenchmarkUp100 and BenchmarkStop100 cannot go
// below on this machine: the same 100 /bin/sleep processes started by
// plain os.StartProcess from 100 goroutines (each in its own session, as
// orch starts them) until all run, then SIGTERMed and reaped. It does no
// bookkeeping at all: no state, no logs, no cgroups. Reported beside the
// engine's figures, the ratio says what orch adds; the floor itself is
// the machine's (on a VM, a dynamically linked daemon's start is mostly
// the dynamic loader's page faults and TLB flushes, and 100 of them share
// the machine's cores with orch).
func BenchmarkFloor100(b *testing.B) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	var up, down []time.Duration
	for i := 0; i < b.N; i++ {
		procs := make([]*os.Process, 100)
		errs := make([]error, 100)
		var wg sync.WaitGroup
		t0 := time.Now()
		for j := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				procs[j], errs[j] = os.StartProcess("/bin/sleep", []string{"/bin/sleep", strconv.Itoa(1000 + j)},
					&os.ProcAttr{Files: []*os.File{devnull, devnull, devnull}, Sys: &syscall.SysProcAttr{Setsid: true}})
			}()
		}
		wg.Wait()
		up = append(up, time.Since(t0))
		for _, err := range errs {
			if err != nil {
				for _, p := range procs {
					if p != nil {
						p.Kill()
						p.Wait()
					}
				}
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				syscall.Kill(-p.Pid, syscall.SIGTERM)
				p.Wait()
			}()
		}
		wg.Wait()
		down = append(down, time.Since(t1))
	}
	reportMedian(b, "ms-median-up", up)
	reportMedian(b, "ms-median-stop", down)
}
