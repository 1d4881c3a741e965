package sdk

import (
	"os"
	"runtime"
)

// procsAtInit is GOMAXPROCS as the runtime set it, before the plugin's own
// main package could change it.
var procsAtInit = runtime.GOMAXPROCS(0)

// limitProcs runs the plugin with GOMAXPROCS 1 unless GOMAXPROCS is set in
// its environment or the plugin set it itself before serving.
//
// A call from orch hands its work from goroutine to goroutine: gRPC's
// reader, the goroutine that runs the call, gRPC's writer. With more than
// one P, each handoff may wake another OS thread that finds nothing to do
// and sleeps again; with one, a handoff is a switch within the thread.
// Measured on the no-op round trip (BenchmarkCallRoundTrip): the plugin's
// CPU per call falls by about a third, its context switches by half, and
// calls made in parallel complete faster too. A plugin's blocking system
// calls (files, sockets, child processes) still run in parallel: the
// runtime hands the P over while a thread blocks. Only CPU-bound Go code
// of the plugin is limited to one core; such a plugin can set
// runtime.GOMAXPROCS before calling ServeProvider or ServeModule.
func limitProcs() {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) != procsAtInit {
		return
	}
	runtime.GOMAXPROCS(1)
}
