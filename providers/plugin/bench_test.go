package plugin_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/spec"
)

// BenchmarkLaunch measures a provider plugin's launch to ready: start the
// executable, go-plugin's handshake with AutoMTLS, and the schema. The
// kill after each launch is not timed. Target: under 100 ms.
func BenchmarkLaunch(b *testing.B) {
	bin := pluginBin(b, misbehave("provider", "ok"))
	ctx := context.Background()
	for b.Loop() {
		p := plugin.NewProvider("mem", plugin.Binary{Path: bin, Block: "runtime.mem.x"}, plugin.Options{})
		if _, _, err := p.LoadSchema(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p.Close()
		b.StartTimer()
	}
}

// BenchmarkCallRoundTrip measures a no-op call (Observe of no handle)
// through the adapter, gRPC over go-plugin's unix socket with mTLS, and
// back; it reports the median besides the mean. Target: median under
// 200 µs.
func BenchmarkCallRoundTrip(b *testing.B) {
	benchObserve(b, memRuntime())
}

// BenchmarkCallRoundTripAttrs is BenchmarkCallRoundTrip with a runtime
// block of a few attributes, as configurations have them: every call
// carries its runtime, which both ends convert.
func BenchmarkCallRoundTripAttrs(b *testing.B) {
	rt := memRuntime()
	rt.Attrs = map[string]cty.Value{
		"root":   cty.StringVal("/srv/orch/mem"),
		"mode":   cty.StringVal("0640"),
		"limit":  cty.NumberIntVal(64),
		"hosts":  cty.ListVal([]cty.Value{cty.StringVal("a.example"), cty.StringVal("b.example")}),
		"labels": cty.MapVal(map[string]cty.Value{"team": cty.StringVal("infra"), "tier": cty.StringVal("2")}),
	}
	benchObserve(b, rt)
}

func benchObserve(b *testing.B, rt *spec.Runtime) {
	p := plugin.NewProvider("mem", plugin.Binary{Path: pluginBin(b, misbehave("provider", "ok")), Block: "runtime.mem.x"}, plugin.Options{})
	defer p.Close()
	ctx := context.Background()
	req := providers.ObserveRequest{Runtime: rt}
	if _, err := p.Observe(ctx, req); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := p.Observe(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
}

// BenchmarkModuleEvents measures events from the bus into a module plugin
// (the example eventlog module: one JSON line to a file and one KV write
// through orch per event would measure the module, so this uses the
// misbehaving plugin in mode ok, whose handler does nothing): queued,
// batched, streamed, acknowledged.
func BenchmarkModuleEvents(b *testing.B) {
	r := &spec.Resource{Addr: spec.Address{Kind: spec.KindModule, Name: "bench"}, Source: pluginBin(b, misbehave("module", "ok"))}
	bs := bus.NewBus()
	g, err := plugin.NewLoader(plugin.LoaderOptions{QueueLimit: 1 << 20}).Load(context.Background(), module.LoadRequest{Resource: r,
		Services: module.Services{Bus: bs, KV: newKV()}})
	if err != nil {
		b.Fatal(err)
	}
	guest := g.(*plugin.Guest)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, func() { close(ready) }) }()
	defer func() { cancel(); <-done }()
	<-ready
	ev := bus.Event{Topic: "test.bench", Data: []byte(`{"address":"daemon.api[0]","event":"started"}`)}
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		// Keep at most 32Ki events waiting: this measures the sustained
		// rate, not how fast the queue fills.
		for uint64(i)-guest.Stats().Delivered > 1<<15 {
			time.Sleep(50 * time.Microsecond)
		}
		bs.Publish(ev)
	}
	for guest.Stats().Delivered+guest.Stats().Dropped < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if d := guest.Stats().Dropped; d > 0 {
		b.Fatalf("%d events dropped", d)
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
}
