package wasm_test

import (
	"context"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/wasm"
)

// BenchmarkInstantiateToRunning measures Load then Run until running
// (compile from a warm cache, instantiate, _initialize, orch_init,
// orch_start) of the sink guest, and reports the median. Each module is
// stopped before the next one loads (untimed, but its median is reported
// too: ms-stop-median, from the cancellation to Run's return, which
// includes zeroing the memory for the next module).
func BenchmarkInstantiateToRunning(b *testing.B) {
	src := guest(b, "hostile")
	f := newFixture(b, cacheState, nil)
	r := resource(b, "sink", src, hostile("sink"))
	// Warm the cache (and the process) once.
	f.start(b, r).stop()
	durs := make([]time.Duration, 0, b.N)
	loads := make([]time.Duration, 0, b.N)
	stops := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		begin := time.Now()
		m, err := f.host.Load(context.Background(), wasm.LoadRequest{Resource: r})
		if err != nil {
			b.Fatal(err)
		}
		loads = append(loads, time.Since(begin))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		ready := make(chan time.Time, 1)
		go func() { done <- m.RunReady(ctx, func() { ready <- time.Now() }) }()
		select {
		case at := <-ready:
			durs = append(durs, at.Sub(begin))
		case err := <-done:
			b.Fatal(err)
		}
		b.StopTimer()
		stop := time.Now()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		stops = append(stops, time.Since(stop))
		b.StartTimer()
	}
	b.ReportMetric(median(durs), "ms-median")
	b.ReportMetric(median(loads), "ms-load-median")
	b.ReportMetric(median(stops), "ms-stop-median")
}

// median returns the median of ds in milliseconds.
func median(ds []time.Duration) float64 {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return float64(ds[len(ds)/2].Microseconds()) / 1000
}

// BenchmarkEventDelivery publishes events on the bus to one running guest
// and waits until it handled all of them: one event is one orch_on_event
// call, its topic and data copied into the guest.
func BenchmarkEventDelivery(b *testing.B) {
	f := newFixture(b, cacheState, nil)
	rn := f.start(b, resource(b, "sink", guest(b, "hostile"), hostile("sink")))
	ev := bus.Event{Topic: "bench.event", Data: []byte(`{"address":"daemon.api[0]","event":"started","time":"2026-01-01T00:00:00Z"}`)}
	bus := f.host.Bus()
	b.ResetTimer()
	begin := time.Now()
	for i := 0; i < b.N; i++ {
		bus.Publish(ev)
		if i%4096 == 4095 { // stay under the queue limit
			for rn.m.Stats().Delivered < uint64(i)-8192 && i > 8192 {
				// Sleep, not spin: a spinning publisher takes the CPU
				// the guest needs on a small machine.
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	for rn.m.Stats().Delivered < uint64(b.N) {
		if s := rn.m.Stats(); s.Dropped > 0 {
			b.Fatalf("%d events dropped", s.Dropped)
		}
		time.Sleep(50 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "events/s")
}

// BenchmarkIdleModuleMemory starts 20 idle guests and reports the growth
// of the process's resident memory and Go heap per module. It measures
// once, whatever b.N.
func BenchmarkIdleModuleMemory(b *testing.B) {
	const n = 20
	src := guest(b, "hostile")
	f := newFixture(b, cacheState, nil)
	r := resource(b, "sink", src, hostile("sink"))
	f.start(b, r).stop() // warm
	// The first module would take the warm one's memory, counted before.
	wasm.DropPooledMemories(f.host)
	for i := 0; i < 1; i++ {
		runtime.GC()
		rss0, heap0 := rss(b), heapInUse()
		var rns []*running
		for j := 0; j < n; j++ {
			rr := *r
			rr.Addr = daemonAddr(b, "module.idle"+strconv.Itoa(j))
			rns = append(rns, f.start(b, &rr))
		}
		runtime.GC()
		rss1, heap1 := rss(b), heapInUse()
		b.ReportMetric(float64(rss1-rss0)/n/(1<<20), "MiB-rss/module")
		b.ReportMetric(float64(heap1-heap0)/n/(1<<20), "MiB-heap/module")
		for _, rn := range rns {
			rn.stop()
		}
	}
}

func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// rss reads VmRSS from /proc/self/status, in bytes.
func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
