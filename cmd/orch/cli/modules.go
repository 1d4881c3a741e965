package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/wasm"
	"github.com/orch-dev/orch/spec"
)

// hostModules makes the module provider of an engine (orch up, orch
// agent) and puts it in s.provs: WebAssembly modules run in this process,
// module plugins in processes of their own (go-plugin), each with its KV
// namespace in the state store and its log file beside the daemons' ones.
// close stops what still runs and releases the host.
func hostModules(s *session) (*module.Provider, func(), error) {
	b := bus.NewBus()
	host, err := wasm.NewHost(wasm.Options{StateDir: s.stateDir, Bus: b, NoLifecycleEvents: true})
	if err != nil {
		return nil, nil, err
	}
	logs := module.NewFileLog(func(a spec.Address) string {
		return process.LogPath(s.stateDir, a)
	})
	p := module.New(module.Options{
		Wasm:   wasm.Loader{Host: host},
		Plugin: plugin.NewLoader(plugin.LoaderOptions{}),
		Bus:    b,
		KV:     func(a spec.Address) module.KV { return storeKV{s.store.KV(a.String())} },
		Log:    logs.Write,
	})
	s.provs[module.Kind] = p
	return p, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
		if err := host.Close(ctx); err != nil {
			fmt.Println("closing the WebAssembly host:", err)
		}
		logs.Close()
	}, nil
}

// storeKV is a module's namespace in the state store.
type storeKV struct{ kv *state.KV }

func (s storeKV) Get(key string) ([]byte, bool, error) {
	v, err := s.kv.Get(key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}
func (s storeKV) Put(key string, v []byte) error { return s.kv.Put(key, v) }
func (s storeKV) Delete(key string) error        { return s.kv.Delete(key) }
