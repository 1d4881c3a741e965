package sdk

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin/wire"
)

// ServeProvider serves p as a provider plugin and never returns. Its
// capabilities are the optional interfaces of package providers that p
// implements (providers.Capabilities); orch calls no other.
func ServeProvider(p providers.Provider) {
	serve(wire.ProviderPlugin, &providerPlugin{impl: p})
}

// ServeModule serves m as a module plugin and never returns.
func ServeModule(m Module) {
	serve(wire.ModulePlugin, &modulePlugin{impl: m})
}

func serve(name string, p goplugin.Plugin) {
	guardStdout()
	limitProcs()
	go watchParent()
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         goplugin.PluginSet{name: p},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, wire.ServerOptions()...)...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "plugin", Level: hclog.Warn, Output: os.Stderr, JSONFormat: true,
		}),
	})
	os.Exit(0)
}

// watchParent exits when the process that launched the plugin is gone
// (orch killed with SIGKILL cannot kill its plugins), so that no plugin
// outlives orch.
func watchParent() {
	ppid := os.Getppid()
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != ppid {
			os.Exit(1)
		}
	}
}

// providerPlugin is go-plugin's view of a provider plugin, plugin side.
type providerPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl providers.Provider
}

func (p *providerPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	registerProvider(s, p.impl)
	return nil
}

func (p *providerPlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: the plugin side has no client")
}

// modulePlugin is go-plugin's view of a module plugin, plugin side.
type modulePlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl Module
}

func (p *modulePlugin) GRPCServer(b *goplugin.GRPCBroker, s *grpc.Server) error {
	registerModule(s, b, p.impl)
	return nil
}

func (p *modulePlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: the plugin side has no client")
}
