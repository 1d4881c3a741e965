package sdk

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orch-dev/orch/providers"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

// providerServer serves a providers.Provider as service Provider.
type providerServer struct {
	pb.UnimplementedProviderServer
	p providers.Provider
	// runtimes decodes the runtime every call carries, once per version.
	runtimes wire.RuntimeDecoder
}

func registerProvider(s *grpc.Server, p providers.Provider) {
	pb.RegisterProviderServer(s, &providerServer{p: p})
}

func badRequest(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

func unimplemented(c providers.Capability) error {
	return status.Errorf(codes.Unimplemented, "this plugin does not implement %s", c)
}

func (s *providerServer) GetSchema(context.Context, *pb.GetSchemaRequest) (*pb.GetSchemaResponse, error) {
	resp, err := wire.SchemaOf(s.p.Schema(), providers.Capabilities(s.p))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "the plugin's schema cannot be encoded: %v", err)
	}
	resp.CallStream = true
	return resp, nil
}

func (s *providerServer) Observe(ctx context.Context, req *pb.ObserveRequest) (*pb.ObserveResponse, error) {
	rt, err := s.runtimes.Decode(req.Runtime)
	if err != nil {
		return nil, badRequest(err)
	}
	handles, err := wire.FromHandles(req.Handles)
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := s.p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: handles})
	if err != nil {
		return nil, wire.Status("observe", err)
	}
	out := &pb.ObserveResponse{Objects: make(map[string]*pb.Observed, len(resp.Objects))}
	for a, o := range resp.Objects {
		out.Objects[a.String()] = wire.ObservedOf(o)
	}
	return out, nil
}

func (s *providerServer) Start(ctx context.Context, req *pb.StartRequest) (*pb.StartResponse, error) {
	rt, err := s.runtimes.Decode(req.Runtime)
	if err != nil {
		return nil, badRequest(err)
	}
	r, err := wire.FromResource(req.Resource)
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := s.p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: req.Project,
		ConfigHash: req.ConfigHash, StateDir: req.StateDir})
	if err != nil {
		return nil, wire.Status("start", err)
	}
	return &pb.StartResponse{Handle: resp.Handle, Observed: wire.ObservedOf(resp.Observed)}, nil
}

// target decodes the runtime, address and signal most requests carry.
func (s *providerServer) target(rtp *pb.Runtime, addr, sig string) (*spec.Runtime, spec.Address, spec.Signal, error) {
	rt, err := s.runtimes.Decode(rtp)
	if err != nil {
		return nil, spec.Address{}, spec.Signal{}, err
	}
	a, err := spec.ParseAddress(addr)
	if err != nil {
		return nil, spec.Address{}, spec.Signal{}, err
	}
	var sg spec.Signal
	if sig != "" {
		if sg, err = spec.ParseSignal(sig); err != nil {
			return nil, spec.Address{}, spec.Signal{}, err
		}
	}
	return rt, a, sg, nil
}

func (s *providerServer) Stop(ctx context.Context, req *pb.StopRequest) (*pb.StopResponse, error) {
	rt, addr, sig, err := s.target(req.Runtime, req.Address, req.Signal)
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := s.p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: addr, Handle: req.Handle, Signal: sig,
		Timeout: time.Duration(req.TimeoutNs)})
	if err != nil {
		return nil, wire.Status("stop", err)
	}
	return &pb.StopResponse{Killed: resp.Killed, Observed: wire.ObservedOf(resp.Observed)}, nil
}

func (s *providerServer) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	d, ok := s.p.(providers.Deleter)
	if !ok {
		return nil, unimplemented(providers.CapDelete)
	}
	rt, addr, _, err := s.target(req.Runtime, req.Address, "")
	if err != nil {
		return nil, badRequest(err)
	}
	if _, err := d.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: addr, Handle: req.Handle}); err != nil {
		return nil, wire.Status("delete", err)
	}
	return &pb.DeleteResponse{}, nil
}

func (s *providerServer) Health(ctx context.Context, req *pb.HealthRequest) (*pb.HealthResponse, error) {
	h, ok := s.p.(providers.HealthChecker)
	if !ok {
		return nil, unimplemented(providers.CapHealth)
	}
	rt, addr, _, err := s.target(req.Runtime, req.Address, "")
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := h.Health(ctx, providers.HealthRequest{Runtime: rt, Addr: addr, Handle: req.Handle})
	if err != nil {
		return nil, wire.Status("health", err)
	}
	return &pb.HealthResponse{Healthy: resp.Healthy, Detail: resp.Detail}, nil
}

func (s *providerServer) Adopt(ctx context.Context, req *pb.AdoptRequest) (*pb.AdoptResponse, error) {
	ad, ok := s.p.(providers.Adopter)
	if !ok {
		return nil, unimplemented(providers.CapAdopt)
	}
	rt, err := s.runtimes.Decode(req.Runtime)
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := ad.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: req.Project, StateDir: req.StateDir})
	if err != nil {
		return nil, wire.Status("adopt", err)
	}
	out := &pb.AdoptResponse{}
	for _, o := range resp.Objects {
		out.Objects = append(out.Objects, &pb.Adoptable{Address: o.Addr.String(), Handle: o.Handle,
			ConfigHash: o.ConfigHash, Observed: wire.ObservedOf(o.Observed)})
	}
	return out, nil
}

func (s *providerServer) Listens(ctx context.Context, req *pb.ListensRequest) (*pb.ListensResponse, error) {
	lo, ok := s.p.(providers.ListenerOwner)
	if !ok {
		return nil, unimplemented(providers.CapListens)
	}
	rt, addr, _, err := s.target(req.Runtime, req.Address, "")
	if err != nil {
		return nil, badRequest(err)
	}
	listens, err := lo.Listens(ctx, providers.ListensRequest{Runtime: rt, Addr: addr, Handle: req.Handle, Port: int(req.Port)})
	if err != nil {
		return nil, wire.Status("listens", err)
	}
	return &pb.ListensResponse{Listens: listens}, nil
}

func (s *providerServer) Signal(ctx context.Context, req *pb.SignalRequest) (*pb.SignalResponse, error) {
	sg, ok := s.p.(providers.Signaler)
	if !ok {
		return nil, unimplemented(providers.CapSignal)
	}
	rt, addr, sig, err := s.target(req.Runtime, req.Address, req.Signal)
	if err != nil {
		return nil, badRequest(err)
	}
	if _, err := sg.Signal(ctx, providers.SignalRequest{Runtime: rt, Addr: addr, Handle: req.Handle, Signal: sig}); err != nil {
		return nil, wire.Status("signal", err)
	}
	return &pb.SignalResponse{}, nil
}

func (s *providerServer) Update(ctx context.Context, req *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	u, ok := s.p.(providers.Updater)
	if !ok {
		return nil, unimplemented(providers.CapUpdate)
	}
	rt, err := s.runtimes.Decode(req.Runtime)
	if err != nil {
		return nil, badRequest(err)
	}
	r, err := wire.FromResource(req.Resource)
	if err != nil {
		return nil, badRequest(err)
	}
	resp, err := u.Update(ctx, providers.UpdateRequest{Runtime: rt, Resource: r, Handle: req.Handle, StateDir: req.StateDir})
	if err != nil {
		return nil, wire.Status("update", err)
	}
	return &pb.UpdateResponse{Handle: resp.Handle, Warnings: resp.Warnings}, nil
}

func (s *providerServer) Logs(req *pb.LogsRequest, stream grpc.ServerStreamingServer[pb.LogsChunk]) error {
	lr, ok := s.p.(providers.LogReader)
	if !ok {
		return unimplemented(providers.CapLogs)
	}
	rt, addr, _, err := s.target(req.Runtime, req.Address, "")
	if err != nil {
		return badRequest(err)
	}
	resp, err := lr.Logs(stream.Context(), providers.LogsRequest{Runtime: rt, Addr: addr, Handle: req.Handle, StateDir: req.StateDir})
	if err != nil {
		return wire.Status("logs", err)
	}
	defer resp.Log.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Log.Read(buf)
		if n > 0 {
			if serr := stream.Send(&pb.LogsChunk{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wire.Status("logs", err)
		}
	}
}

func (s *providerServer) Events(req *pb.EventsRequest, stream grpc.ServerStreamingServer[pb.Event]) error {
	es, ok := s.p.(providers.EventSource)
	if !ok {
		return unimplemented(providers.CapEvents)
	}
	rt, err := s.runtimes.Decode(req.Runtime)
	if err != nil {
		return badRequest(err)
	}
	ch, err := es.Events(stream.Context(), providers.EventsRequest{Runtime: rt, Project: req.Project})
	if err != nil {
		return wire.Status("events", err)
	}
	for ev := range ch {
		out := &pb.Event{Kind: ev.Kind, Observed: wire.ObservedOf(ev.Observed)}
		if !ev.Addr.IsZero() {
			out.Address = ev.Addr.String()
		}
		if !ev.Time.IsZero() {
			out.TimeUnixNs = ev.Time.UnixNano()
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
	return nil
}

func (s *providerServer) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchResponse]) error {
	w, ok := s.p.(providers.Watcher)
	if !ok {
		return unimplemented(providers.CapWatch)
	}
	rt, addr, _, err := s.target(req.Runtime, req.Address, "")
	if err != nil {
		return badRequest(err)
	}
	resp, err := w.Watch(stream.Context(), providers.WatchRequest{Runtime: rt, Addr: addr, Handle: req.Handle})
	if err != nil {
		return wire.Status("watch", err)
	}
	obs, ok := <-resp.Exited
	if !ok {
		if err := stream.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return status.Error(codes.Aborted, fmt.Sprintf("the watch of %s ended without a result", addr))
	}
	return stream.Send(&pb.WatchResponse{Observed: wire.ObservedOf(obs)})
}
