package wasm

import (
	"context"

	"github.com/orch-dev/orch/providers/module"
)

// Loader loads .wasm modules for the module provider (providers/module):
// each module gets the provider's bus, KV namespace and log sink. Make the
// Host with NoLifecycleEvents: the provider publishes transitions.
type Loader struct{ Host *Host }

// Load implements module.Loader.
func (l Loader) Load(ctx context.Context, req module.LoadRequest) (module.Guest, error) {
	lr := LoadRequest{Resource: req.Resource, Bus: req.Services.Bus}
	if req.Services.KV != nil {
		lr.KV = req.Services.KV
	}
	if logf := req.Services.Log; logf != nil {
		lr.Log = func(r LogRecord) { logf(module.Record{Addr: r.Addr, Level: r.Level, Message: r.Message}) }
	}
	m, err := l.Host.Load(ctx, lr)
	if err != nil {
		return nil, err
	}
	return guest{m}, nil
}

type guest struct{ m *Module }

func (g guest) Run(ctx context.Context, ready func()) error { return g.m.RunReady(ctx, ready) }
func (g guest) Close(ctx context.Context) error             { return g.m.Close(ctx) }
func (g guest) Calls() *module.Calls                        { return g.m.Calls() }
