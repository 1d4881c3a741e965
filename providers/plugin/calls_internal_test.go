package plugin

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/orch-dev/orch/providers"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
)

// fakeProvider serves Observe as a unary call (an object "unary") and
// Calls as the test says.
type fakeProvider struct {
	pb.UnimplementedProviderServer
	calls func(grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error
}

func (f *fakeProvider) Observe(context.Context, *pb.ObserveRequest) (*pb.ObserveResponse, error) {
	return &pb.ObserveResponse{Objects: map[string]*pb.Observed{"unary": {}}}, nil
}

func (f *fakeProvider) Calls(s grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
	return f.calls(s)
}

// newCallClient serves f in process and returns a callClient on it.
func newCallClient(t *testing.T, f *fakeProvider) *callClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(wire.ServerOptions()...)
	pb.RegisterProviderServer(srv, f)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///fake", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	c := pb.NewProviderClient(conn)
	cs, err := openCalls(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.close)
	return &callClient{ProviderClient: c, cs: cs}
}

// observeReply answers an Observe call with one object named after the
// request's only handle.
func observeReply(t *testing.T, req *pb.CallRequest) *pb.CallResponse {
	var in pb.ObserveRequest
	if err := proto.Unmarshal(req.Request, &in); err != nil {
		t.Error(err)
	}
	out := &pb.ObserveResponse{Objects: map[string]*pb.Observed{}}
	for a := range in.Handles {
		out.Objects[a] = &pb.Observed{State: pb.State_STATE_RUNNING}
	}
	b, _ := proto.Marshal(out)
	return &pb.CallResponse{Id: req.Id, Response: b}
}

func observe(ctx context.Context, c *callClient, name string) (*pb.ObserveResponse, error) {
	return c.Observe(ctx, &pb.ObserveRequest{Handles: map[string][]byte{name: nil}})
}

// Responses come in any order; each reaches its own call.
func TestCallStreamOutOfOrder(t *testing.T) {
	c := newCallClient(t, &fakeProvider{calls: func(s grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
		first, err := s.Recv()
		if err != nil {
			return err
		}
		second, err := s.Recv()
		if err != nil {
			return err
		}
		if first.Method != pb.Provider_Observe_FullMethodName {
			t.Errorf("method %q", first.Method)
		}
		s.Send(observeReply(t, second))
		s.Send(observeReply(t, first))
		<-s.Context().Done()
		return nil
	}})
	type result struct {
		name string
		resp *pb.ObserveResponse
		err  error
	}
	results := make(chan result, 2)
	for _, name := range []string{"daemon.a", "daemon.b"} {
		go func() {
			resp, err := observe(context.Background(), c, name)
			results <- result{name, resp, err}
		}()
	}
	for i := 0; i < 2; i++ {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if _, ok := r.resp.Objects[r.name]; !ok || len(r.resp.Objects) != 1 {
			t.Fatalf("the call for %s got %v", r.name, r.resp.Objects)
		}
	}
}

// A call carries its deadline; one whose caller gives up returns at once
// and tells the plugin.
func TestCallStreamDeadlineAndCancel(t *testing.T) {
	cancelled := make(chan *pb.CallRequest, 1)
	c := newCallClient(t, &fakeProvider{calls: func(s grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		if d := time.Duration(req.TimeoutNs); d <= 0 || d > time.Minute {
			t.Errorf("timeout %v, want (0, 1m]", d)
		}
		cancel, err := s.Recv()
		if err != nil {
			return err
		}
		if !cancel.Cancel || cancel.Id != req.Id {
			t.Errorf("after the call %d, %v", req.Id, cancel)
		}
		cancelled <- cancel
		<-s.Context().Done()
		return nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := observe(ctx, c, "daemon.a")
	if status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the plugin was not told")
	}
}

// A failure comes back as the plugin's status, with its details.
func TestCallStreamStatus(t *testing.T) {
	c := newCallClient(t, &fakeProvider{calls: func(s grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		st := status.Convert(wire.Status("observe", &providers.Error{Op: "observe", Attr: "root", Err: errors.New("no such directory")}))
		b, _ := proto.Marshal(st.Proto())
		s.Send(&pb.CallResponse{Id: req.Id, Status: b})
		<-s.Context().Done()
		return nil
	}})
	_, err := observe(context.Background(), c, "daemon.a")
	var pe *providers.Error
	if !errors.As(wire.FromStatus(err), &pe) || pe.Attr != "root" || pe.Err.Error() != "no such directory" {
		t.Fatalf("err = %v, want the plugin's error on root", err)
	}
}

// When the stream ends, the calls waiting get its error, and later calls
// are unary.
func TestCallStreamEnd(t *testing.T) {
	c := newCallClient(t, &fakeProvider{calls: func(s grpc.BidiStreamingServer[pb.CallRequest, pb.CallResponse]) error {
		if _, err := s.Recv(); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "gone")
	}})
	_, err := observe(context.Background(), c, "daemon.a")
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "gone" {
		t.Fatalf("err = %v, want the stream's", err)
	}
	if !c.cs.ended() {
		t.Fatal("the stream has not ended")
	}
	resp, err := observe(context.Background(), c, "daemon.a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Objects["unary"]; !ok {
		t.Fatalf("not a unary call: %v", resp.Objects)
	}
}
