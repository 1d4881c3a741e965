// Command orch is the declarative orchestrator's command-line program; the
// commands themselves live in package cli.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"syscall"
	"time"

	"github.com/orch-dev/orch/cmd/orch/cli"
	"github.com/orch-dev/orch/providers/process"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// Nothing orch inherited reaches what it starts (a daemon holding
	// the caller's pipe would keep it open).
	process.CloseInherited()
	// orch re-executes itself for the process provider's helpers (the exec
	// wrapper and the log daemon); they never reach the CLI.
	if code, ok := process.HelperMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	code := run()
	// A registry compaction set off by the command's last steps ends
	// before orch does (it runs beside them, never in their way).
	process.WaitRegistryCompactions()
	os.Exit(code)
}

// run runs the command line. ORCH_CPUPROFILE=FILE (undocumented, for
// benchmarks and profiling) writes a CPU profile of the whole command to
// FILE, for go tool pprof; ORCH_MEMPROFILE=FILE its allocations (and the
// heap in use when it returns); ORCH_PEAKPROFILE=FILE the heap in use at
// the collection that found the most of it live (checked every 100 ms).
// ORCH_STOPPROFILE=FILE and ORCH_STOPTRACE=FILE write a CPU profile and
// an execution trace (go tool trace) of what follows the first SIGTERM:
// orch up's shutdown, without its start; ORCH_TRACE=FILE an execution
// trace of the whole command.
func run() int {
	if prof, tr := os.Getenv("ORCH_STOPPROFILE"), os.Getenv("ORCH_STOPTRACE"); prof != "" || tr != "" {
		stop := onSIGTERM(prof, tr)
		defer stop()
	}
	if path := os.Getenv("ORCH_PEAKPROFILE"); path != "" {
		runtime.MemProfileRate = 64 << 10
		stop := peakProfile(path)
		defer stop()
	}
	for _, rec := range []struct {
		env   string
		start func(io.Writer) error
		stop  func()
	}{{"ORCH_TRACE", trace.Start, trace.Stop}, {"ORCH_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile}} {
		stop, err := recordTo(os.Getenv(rec.env), rec.start, rec.stop)
		if err != nil {
			fmt.Fprintf(os.Stderr, "orch: %s: %v\n", rec.env, err)
			return 1
		}
		defer stop()
	}
	if path := os.Getenv("ORCH_MEMPROFILE"); path != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			// The profile holds what the last completed collection
			// saw: one now makes it hold every allocation.
			runtime.GC()
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	return (&cli.App{Version: version, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}).Run(os.Args[1:])
}

// recordTo starts a recording of the whole command (an execution trace,
// a CPU profile) into the file at path, and returns what ends it and
// closes the file; with path "", nothing.
func recordTo(path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { stop(); f.Close() }, nil
}

// onSIGTERM starts, at the first SIGTERM, a CPU profile to prof and an
// execution trace to tr (each when not ""); stop ends them.
func onSIGTERM(prof, tr string) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	var mu sync.Mutex
	var started []func()
	go func() {
		<-ch
		mu.Lock()
		defer mu.Unlock()
		if prof != "" {
			if f, err := os.Create(prof); err == nil {
				if pprof.StartCPUProfile(f) == nil {
					started = append(started, func() { pprof.StopCPUProfile(); f.Close() })
				} else {
					f.Close() // ORCH_CPUPROFILE's runs already
				}
			}
		}
		if tr != "" {
			if f, err := os.Create(tr); err == nil {
				if trace.Start(f) == nil {
					started = append(started, func() { trace.Stop(); f.Close() })
				} else {
					f.Close()
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		mu.Lock()
		defer mu.Unlock()
		for _, end := range started {
			end()
		}
	}
}

// peakProfile writes a heap profile to path each time a collection finds
// more live heap than any before it: the profile of the peak, which is
// what sets a command's resident memory. stop writes the last one.
func peakProfile(path string) (stop func()) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	check := func() {
		metrics.Read(sample)
		if live := sample[0].Value.Uint64(); live > peak {
			peak = live
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				check()
				fmt.Fprintf(os.Stderr, "orch: ORCH_PEAKPROFILE: peak live heap %.1f MB\n", float64(peak)/(1<<20))
				return
			case <-t.C:
				check()
			}
		}
	}()
	return func() { close(done); <-finished }
}
