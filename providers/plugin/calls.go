package plugin

import (
	"context"
	"io"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
)

// callStream is a plugin process's Calls stream: orch's unary calls made
// through one long-lived stream (see the protocol), each a CallRequest
// answered by the CallResponse of the same id. It saves a unary call's own
// HTTP/2 stream: its headers and trailers, and the wakeups of gRPC's
// goroutines that they cost at both ends, about half of a small call's
// round trip.
type callStream struct {
	stream grpc.BidiStreamingClient[pb.CallRequest, pb.CallResponse]
	cancel context.CancelFunc // ends the stream
	sendMu sync.Mutex         // one Send at a time

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan *pb.CallResponse // nil once the stream ended
	err     error                            // why it ended; set before done is closed
	done    chan struct{}
}

// sendGrace is how long a call whose context is done lets a Send of its
// request block (the plugin reads nothing: gRPC's flow control holds it)
// before ending the stream, and with it every call in flight.
const sendGrace = time.Second

func openCalls(c pb.ProviderClient) (*callStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Calls(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	cs := &callStream{stream: stream, cancel: cancel, pending: map[uint64]chan *pb.CallResponse{}, done: make(chan struct{})}
	go cs.read()
	return cs, nil
}

// read hands each response to its call until the stream ends.
func (cs *callStream) read() {
	for {
		r, err := cs.stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = status.Error(codes.Unavailable, "the plugin ended its call stream")
			}
			cs.mu.Lock()
			cs.err, cs.pending = err, nil
			cs.mu.Unlock()
			close(cs.done)
			return
		}
		cs.mu.Lock()
		ch, ok := cs.pending[r.Id]
		delete(cs.pending, r.Id)
		cs.mu.Unlock()
		if ok {
			ch <- r
		}
	}
}

// ended reports whether the stream has ended.
func (cs *callStream) ended() bool {
	select {
	case <-cs.done:
		return true
	default:
		return false
	}
}

func (cs *callStream) close() { cs.cancel() }

// invoke makes the unary call method through the stream, with the
// deadline of ctx, and fills out with its response. It fails as the unary
// call would: with the status the plugin answered, with ctx's error as a
// status, or with the stream's (the process ended: Unavailable).
func (cs *callStream) invoke(ctx context.Context, method string, in, out proto.Message) error {
	req := &pb.CallRequest{Method: method}
	var err error
	if req.Request, err = proto.Marshal(in); err != nil {
		return status.Errorf(codes.Internal, "encoding the request: %v", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return status.FromContextError(context.DeadlineExceeded).Err()
		}
		req.TimeoutNs = int64(d)
	}
	ch := make(chan *pb.CallResponse, 1)
	cs.mu.Lock()
	if cs.pending == nil {
		cs.mu.Unlock()
		<-cs.done
		return cs.err
	}
	cs.next++
	req.Id = cs.next
	cs.pending[req.Id] = ch
	cs.mu.Unlock()

	// A failed send means that the stream ended: done says so, and why.
	cs.send(ctx, req)
	select {
	case r := <-ch:
		return response(r, out)
	case <-cs.done:
		select {
		case r := <-ch:
			return response(r, out)
		default:
		}
		return cs.err
	case <-ctx.Done():
		cs.mu.Lock()
		if cs.pending != nil {
			delete(cs.pending, req.Id)
		}
		cs.mu.Unlock()
		// Without waiting: the caller returns now, whatever the plugin does.
		go cs.send(ctx, &pb.CallRequest{Id: req.Id, Cancel: true})
		return status.FromContextError(ctx.Err()).Err()
	}
}

// send sends req. A send that blocks (gRPC's flow control: the plugin
// stopped reading the stream) for sendGrace after ctx is done ends the
// stream, so that no call outlives its budget by more than that.
func (cs *callStream) send(ctx context.Context, req *pb.CallRequest) {
	sent := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(sendGrace)
		defer t.Stop()
		select {
		case <-sent:
		case <-t.C:
			cs.cancel()
		}
	})
	cs.sendMu.Lock()
	cs.stream.Send(req)
	cs.sendMu.Unlock()
	close(sent)
	stop()
}

func response(r *pb.CallResponse, out proto.Message) error {
	if len(r.Status) > 0 {
		st := new(spb.Status)
		if err := proto.Unmarshal(r.Status, st); err != nil {
			return status.Errorf(codes.Internal, "the plugin answered an undecodable status: %v", err)
		}
		if st.Code == int32(codes.OK) {
			return status.Error(codes.Internal, "the plugin answered a failure with status OK")
		}
		return status.ErrorProto(st)
	}
	if err := proto.Unmarshal(r.Response, out); err != nil {
		return status.Errorf(codes.Internal, "the plugin answered an undecodable response: %v", err)
	}
	return nil
}

// callClient is the Provider client of a plugin that serves Calls: its
// unary methods go through the call stream while it lasts (afterwards, as
// unary calls), its streams as they are.
type callClient struct {
	pb.ProviderClient
	cs *callStream
}

func invoke[T proto.Message](cs *callStream, ctx context.Context, method string, in proto.Message, out T) (T, error) {
	if err := cs.invoke(ctx, method, in, out); err != nil {
		var none T
		return none, err
	}
	return out, nil
}

func (c *callClient) Observe(ctx context.Context, in *pb.ObserveRequest, opts ...grpc.CallOption) (*pb.ObserveResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Observe(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Observe_FullMethodName, in, new(pb.ObserveResponse))
}

func (c *callClient) Start(ctx context.Context, in *pb.StartRequest, opts ...grpc.CallOption) (*pb.StartResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Start(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Start_FullMethodName, in, new(pb.StartResponse))
}

func (c *callClient) Stop(ctx context.Context, in *pb.StopRequest, opts ...grpc.CallOption) (*pb.StopResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Stop(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Stop_FullMethodName, in, new(pb.StopResponse))
}

func (c *callClient) Delete(ctx context.Context, in *pb.DeleteRequest, opts ...grpc.CallOption) (*pb.DeleteResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Delete(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Delete_FullMethodName, in, new(pb.DeleteResponse))
}

func (c *callClient) Health(ctx context.Context, in *pb.HealthRequest, opts ...grpc.CallOption) (*pb.HealthResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Health(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Health_FullMethodName, in, new(pb.HealthResponse))
}

func (c *callClient) Adopt(ctx context.Context, in *pb.AdoptRequest, opts ...grpc.CallOption) (*pb.AdoptResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Adopt(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Adopt_FullMethodName, in, new(pb.AdoptResponse))
}

func (c *callClient) Listens(ctx context.Context, in *pb.ListensRequest, opts ...grpc.CallOption) (*pb.ListensResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Listens(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Listens_FullMethodName, in, new(pb.ListensResponse))
}

func (c *callClient) Signal(ctx context.Context, in *pb.SignalRequest, opts ...grpc.CallOption) (*pb.SignalResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Signal(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Signal_FullMethodName, in, new(pb.SignalResponse))
}

func (c *callClient) Update(ctx context.Context, in *pb.UpdateRequest, opts ...grpc.CallOption) (*pb.UpdateResponse, error) {
	if c.cs.ended() {
		return c.ProviderClient.Update(ctx, in, opts...)
	}
	return invoke(c.cs, ctx, pb.Provider_Update_FullMethodName, in, new(pb.UpdateResponse))
}
