package sdk_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin/sdk"
	"github.com/orch-dev/orch/spec"
)

// dirs is a whole provider plugin: the runtime kind "dirs", whose daemons
// are directories. It implements the required methods only; orch
// emulates or refuses the rest (docs/plugins.md).
type dirs struct{}

func (dirs) Schema() spec.RuntimeSchema {
	return spec.RuntimeSchema{Kind: "dirs",
		Runtime: []spec.AttrSchema{{Name: "root", Type: cty.String, Required: true}}}
}

func (dirs) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	path := filepath.Join(req.Runtime.Attrs["root"].AsString(), req.Resource.Addr.String())
	if err := os.MkdirAll(path, 0o755); err != nil {
		return providers.StartResponse{}, &providers.Error{Op: "start", Retryable: true, Err: err}
	}
	return providers.StartResponse{Handle: providers.Handle(path),
		Observed: providers.Observed{State: providers.StateRunning, ID: path}}, nil
}

func (dirs) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	for addr, h := range req.Handles {
		st := providers.StateMissing
		if fi, err := os.Stat(string(h)); err == nil && fi.IsDir() {
			st = providers.StateRunning
		}
		resp.Objects[addr] = providers.Observed{State: st, ID: string(h)}
	}
	return resp, nil
}

func (dirs) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	return providers.StopResponse{}, os.RemoveAll(string(req.Handle))
}

// A provider plugin's main is one line. Declare it with
//
//	runtime "dirs" "here" {
//	  plugin = "./bin/orch-provider-dirs"
//	  root   = "${path.root}/dirs"
//	}
func ExampleServeProvider() {
	sdk.ServeProvider(dirs{})
}

// A module plugin: it counts the daemons that started, in its key-value
// namespace, and says so on the bus. Declare it with
//
//	module "started" { source = "./bin/orch-module-started" }
func ExampleServeModule() {
	var host *sdk.Host
	sdk.ServeModule(sdk.Module{
		Init: func(ctx context.Context, config []byte, h *sdk.Host) error {
			host = h
			return h.Subscribe(ctx, "orch.daemon.started")
		},
		OnEvent: func(ctx context.Context, ev sdk.Event) error {
			var e struct{ Address string }
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return err
			}
			v, _, err := host.Get(ctx, e.Address)
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(v))
			if err := host.Put(ctx, e.Address, []byte(strconv.Itoa(n+1))); err != nil {
				return err
			}
			host.Logf(ctx, sdk.Info, "%s started %d times", e.Address, n+1)
			return host.Publish(ctx, "started.count", []byte(strconv.Itoa(n+1)))
		},
	})
}
