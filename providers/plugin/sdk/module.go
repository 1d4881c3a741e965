package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
)

// Module is a module plugin: the hooks orch calls. Every hook is optional
// (a missing one succeeds). Hooks are called one at a time, never
// concurrently, within the module's call budget (limits.call_timeout,
// which is also the deadline of ctx); a hook that returns an error or
// panics fails the module, which orch then stops and restarts by its
// policy.
type Module struct {
	// Init is called once, first, with the module's config as JSON
	// ("null" when it has none) and the Host for its calls back into orch.
	// It is where a module subscribes.
	Init func(ctx context.Context, config []byte, host *Host) error
	// Start is called once, after Init.
	Start func(ctx context.Context) error
	// OnEvent is called with each event of the module's subscriptions, in
	// the order of the bus, once Start has returned.
	OnEvent func(ctx context.Context, ev Event) error
	// Stop is called once when orch stops the module; the process is then
	// ended.
	Stop func(ctx context.Context) error
}

// Event is one message of orch's event bus.
type Event struct {
	Topic string
	Data  []byte
}

// Level is the severity of a line a module logs.
type Level int32

// Levels of Host.Log.
const (
	Debug Level = iota
	Info
	Warn
	Error
)

// Host is orch, as a module sees it: the event bus, the module's own
// key-value namespace and its log. Its methods are safe for concurrent use
// and may be called from any goroutine, also outside hooks, until Stop.
type Host struct {
	c    pb.HostClient
	addr string
}

// Address is the module's address in the configuration ("module.mirror").
func (h *Host) Address() string { return h.addr }

// Publish puts an event on the bus. Topics are printable ASCII without
// spaces or '*'; those starting with "orch." are orch's own and refused.
func (h *Host) Publish(ctx context.Context, topic string, data []byte) error {
	_, err := h.c.Publish(ctx, &pb.PublishRequest{Events: []*pb.BusEvent{{Topic: topic, Data: data}}})
	return hostErr(err)
}

// Subscribe asks for the events whose topic matches pattern: exact, a
// prefix ending in '*', or "*". They arrive through Module.OnEvent.
func (h *Host) Subscribe(ctx context.Context, pattern string) error {
	_, err := h.c.Subscribe(ctx, &pb.SubscribeRequest{Pattern: pattern})
	return hostErr(err)
}

// Get reads a key of the module's namespace; ok is false when it is unset.
func (h *Host) Get(ctx context.Context, key string) (value []byte, ok bool, err error) {
	resp, err := h.c.KVGet(ctx, &pb.KVGetRequest{Key: key})
	if err != nil {
		return nil, false, hostErr(err)
	}
	return resp.Value, resp.Found, nil
}

// Put sets a key (keys up to 1 KiB, values up to 1 MiB).
func (h *Host) Put(ctx context.Context, key string, value []byte) error {
	_, err := h.c.KVPut(ctx, &pb.KVPutRequest{Key: key, Value: value})
	return hostErr(err)
}

// Delete removes a key; a missing key is not an error.
func (h *Host) Delete(ctx context.Context, key string) error {
	_, err := h.c.KVDelete(ctx, &pb.KVDeleteRequest{Key: key})
	return hostErr(err)
}

// Log writes a line into orch's log of the module.
func (h *Host) Log(ctx context.Context, level Level, msg string) error {
	_, err := h.c.Log(ctx, &pb.LogRequest{Level: pb.Level(level), Message: msg})
	return hostErr(err)
}

// Logf is Log with formatting.
func (h *Host) Logf(ctx context.Context, level Level, format string, args ...any) error {
	return h.Log(ctx, level, fmt.Sprintf(format, args...))
}

func hostErr(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return errors.New(st.Message())
	}
	return err
}

// moduleServer serves a Module as service Module.
type moduleServer struct {
	pb.UnimplementedModuleServer
	m      Module
	broker *goplugin.GRPCBroker

	mu   sync.Mutex // one hook at a time
	host *Host
}

func registerModule(s *grpc.Server, b *goplugin.GRPCBroker, m Module) {
	pb.RegisterModuleServer(s, &moduleServer{m: m, broker: b})
}

// hook runs f as the hook named name, turning an error or a panic into the
// status that fails the module.
func (s *moduleServer) hook(name string, f func() error) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Aborted, "%s panicked: %v\n%s", name, r, debug.Stack())
		}
	}()
	if err := f(); err != nil {
		return status.Errorf(codes.Aborted, "%s: %v", name, err)
	}
	return nil
}

func (s *moduleServer) Init(ctx context.Context, req *pb.InitRequest) (*pb.InitResponse, error) {
	conn, err := s.broker.DialWithOptions(req.HostBrokerId, wire.DialOptions()...)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "cannot reach orch's host service: %v", err)
	}
	h := &Host{c: pb.NewHostClient(conn), addr: req.Address}
	s.mu.Lock()
	s.host = h
	s.mu.Unlock()
	if s.m.Init == nil {
		return &pb.InitResponse{}, nil
	}
	return &pb.InitResponse{}, s.hook("init", func() error { return s.m.Init(ctx, req.Config, h) })
}

func (s *moduleServer) Start(ctx context.Context, _ *pb.StartModuleRequest) (*pb.StartModuleResponse, error) {
	if s.m.Start == nil {
		return &pb.StartModuleResponse{}, nil
	}
	return &pb.StartModuleResponse{}, s.hook("start", func() error { return s.m.Start(ctx) })
}

func (s *moduleServer) Stop(ctx context.Context, _ *pb.StopModuleRequest) (*pb.StopModuleResponse, error) {
	if s.m.Stop == nil {
		return &pb.StopModuleResponse{}, nil
	}
	return &pb.StopModuleResponse{}, s.hook("stop", func() error { return s.m.Stop(ctx) })
}

func (s *moduleServer) Deliver(stream grpc.BidiStreamingServer[pb.EventBatch, pb.DeliverAck]) error {
	ctx := stream.Context()
	for {
		b, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if s.m.OnEvent != nil {
			err := s.hook("on_event", func() error {
				for _, ev := range b.Events {
					if err := s.m.OnEvent(ctx, Event{Topic: ev.Topic, Data: ev.Data}); err != nil {
						return fmt.Errorf("event %s: %w", ev.Topic, err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if err := stream.Send(&pb.DeliverAck{Events: uint64(len(b.Events))}); err != nil {
			return err
		}
	}
}
