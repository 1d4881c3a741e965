package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// ORCH_PHASES=1 (undocumented, for profiling like ORCH_CPUPROFILE) prints
// to stderr how long each phase of a plan or an apply took since the
// previous one, the heap in use at its end and all allocated so far
// (ORCH_PHASES=gc: the live heap, after a collection that the times then
// include; with ORCH_PHASEPROF=PREFIX also a heap profile of it at
// PREFIX.<phase>).
var phases = os.Getenv("ORCH_PHASES") != ""

var phaseLast = time.Now()

// phase marks the end of a phase named name when ORCH_PHASES is set.
func phase(name string) {
	if !phases {
		return
	}
	now := time.Now()
	if os.Getenv("ORCH_PHASES") == "gc" {
		runtime.GC() // the live heap, for a heap profile's reading
		if pre := os.Getenv("ORCH_PHASEPROF"); pre != "" {
			if f, err := os.Create(pre + "." + strings.ReplaceAll(name, " ", "_")); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := ""
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for _, k := range []string{"VmHWM:", "RssAnon:", "RssFile:"} {
				if v, ok := strings.CutPrefix(line, k); ok {
					rss += "  " + k + strings.Join(strings.Fields(v), " ")
				}
			}
		}
	}
	fmt.Fprintf(os.Stderr, "orch: phase %-12s %6.1f ms  heap %5.1f MB  allocated %6.1f MB  stacks %5.1f MB  goroutines %d  sys %5.1f MB%s\n", name, float64(now.Sub(phaseLast).Microseconds())/1000, float64(ms.HeapAlloc)/(1<<20), float64(ms.TotalAlloc)/(1<<20), float64(ms.StackSys)/(1<<20), runtime.NumGoroutine(), float64(ms.Sys)/(1<<20), rss)
	phaseLast = time.Now()
}
