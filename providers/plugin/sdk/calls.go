package sdk

import (
	"context"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
)

// providerMethods are the unary methods of service Provider by full name,
// for Calls.
var providerMethods = func() map[string]grpc.MethodDesc {
	m := map[string]grpc.MethodDesc{}
	for _, md := range pb.Provider_ServiceDesc.Methods {
		m["/"+pb.Provider_ServiceDesc.ServiceName+"/"+md.MethodName] = md
	}
	return m
}()

// Calls serves unary calls made through one stream (see the protocol):
// each call runs in its own goroutine, through the same method as its
// unary call, and its response is sent when it ends, in any order. A
// panic in a method ends the process, as it does in a unary call.
func (s *providerServer) Calls(stream grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
	ctx, cancelAll := context.WithCancel(stream.Context())
	defer cancelAll()
	var (
		sendMu  sync.Mutex
		over    bool // the handler returned: no more Send
		mu      sync.Mutex
		running = map[uint64]context.CancelFunc{}
	)
	defer func() {
		sendMu.Lock()
		over = true
		sendMu.Unlock()
	}()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if req.Cancel {
			mu.Lock()
			if cancel, ok := running[req.Id]; ok {
				cancel()
			}
			mu.Unlock()
			continue
		}
		var cctx context.Context
		var cancel context.CancelFunc
		if req.TimeoutNs > 0 {
			cctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutNs))
		} else {
			cctx, cancel = context.WithCancel(ctx)
		}
		mu.Lock()
		running[req.Id] = cancel
		mu.Unlock()
		go func() {
			resp := s.call(cctx, req)
			mu.Lock()
			delete(running, req.Id)
			mu.Unlock()
			cancel()
			sendMu.Lock()
			defer sendMu.Unlock()
			if !over {
				// A failed send means that the stream is over: Recv says so.
				stream.Send(resp)
			}
		}()
	}
}

// call runs one call of Calls through the unary method it names.
func (s *providerServer) call(ctx context.Context, req *pb.CallRequest) *pb.CallResponse {
	out := &pb.CallResponse{Id: req.Id}
	md, ok := providerMethods[req.Method]
	var resp any
	var err error
	if !ok {
		err = status.Errorf(codes.Unimplemented, "unknown method %s", req.Method)
	} else {
		resp, err = md.Handler(s, ctx, func(m any) error {
			if err := proto.Unmarshal(req.Request, m.(proto.Message)); err != nil {
				return status.Errorf(codes.Internal, "decoding the request: %v", err)
			}
			return nil
		}, nil)
	}
	if err == nil {
		if out.Response, err = proto.Marshal(resp.(proto.Message)); err != nil {
			err = status.Errorf(codes.Internal, "encoding the response: %v", err)
		}
	}
	if err != nil {
		out.Response = nil
		// As gRPC does for a unary call's error.
		st, ok := status.FromError(err)
		if !ok {
			st = status.FromContextError(err)
		}
		out.Status, _ = proto.Marshal(st.Proto())
	}
	return out
}
