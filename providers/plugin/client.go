package plugin

import (
	"context"
	"errors"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
)

// providerPlugin is go-plugin's view of a provider plugin, host side.
type providerPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
}

func (providerPlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error {
	return errors.New("plugin: orch does not serve providers")
}

func (providerPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewProviderClient(c), nil
}

// modulePlugin is go-plugin's view of a module plugin, host side: the
// Module client and the broker through which orch serves Host.
type modulePlugin struct {
	goplugin.NetRPCUnsupportedPlugin
}

type moduleConn struct {
	client pb.ModuleClient
	broker *goplugin.GRPCBroker
}

func (modulePlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error {
	return errors.New("plugin: orch does not serve modules")
}

func (modulePlugin) GRPCClient(_ context.Context, b *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &moduleConn{client: pb.NewModuleClient(c), broker: b}, nil
}
