package sdk

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orch-dev/orch/providers"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

// waiter is a provider whose Observe of "daemon.wait" waits for its
// context and reports how it ended; of "daemon.bad", fails on attribute
// root; of anything else, says running.
type waiter struct {
	ended chan error
}

func (w *waiter) Schema() spec.RuntimeSchema { return spec.RuntimeSchema{Kind: "w"} }

func (w *waiter) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	resp := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	for a := range req.Handles {
		switch a.Name {
		case "wait":
			<-ctx.Done()
			w.ended <- ctx.Err()
			return resp, ctx.Err()
		case "bad":
			return resp, &providers.Error{Op: "observe", Attr: "root", Err: errors.New("no such directory")}
		}
		resp.Objects[a] = providers.Observed{State: providers.StateRunning}
	}
	return resp, nil
}

func (w *waiter) Start(context.Context, providers.StartRequest) (providers.StartResponse, error) {
	return providers.StartResponse{}, nil
}

func (w *waiter) Stop(context.Context, providers.StopRequest) (providers.StopResponse, error) {
	return providers.StopResponse{}, nil
}

// memStream is a Calls stream in memory.
type memStream struct {
	grpc.ServerStream
	ctx context.Context
	in  chan *pb.CallRequest
	out chan *pb.CallResponse
}

func (m *memStream) Context() context.Context { return m.ctx }

func (m *memStream) Recv() (*pb.CallRequest, error) {
	r, ok := <-m.in
	if !ok {
		return nil, io.EOF
	}
	return r, nil
}

func (m *memStream) Send(r *pb.CallResponse) error {
	m.out <- r
	return nil
}

func serveCalls(t *testing.T) (*waiter, *memStream) {
	w := &waiter{ended: make(chan error, 1)}
	m := &memStream{ctx: context.Background(), in: make(chan *pb.CallRequest, 4), out: make(chan *pb.CallResponse, 4)}
	done := make(chan error, 1)
	go func() { done <- (&providerServer{p: w}).Calls(m) }()
	t.Cleanup(func() {
		close(m.in)
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w, m
}

func observeCall(t *testing.T, id uint64, name string, timeout time.Duration) *pb.CallRequest {
	b, err := proto.Marshal(&pb.ObserveRequest{Runtime: &pb.Runtime{Address: "runtime.w.x", Kind: "w", Name: "x"},
		Handles: map[string][]byte{"daemon." + name: nil}})
	if err != nil {
		t.Fatal(err)
	}
	return &pb.CallRequest{Id: id, Method: pb.Provider_Observe_FullMethodName, Request: b, TimeoutNs: int64(timeout)}
}

func recvResponse(t *testing.T, m *memStream) *pb.CallResponse {
	t.Helper()
	select {
	case r := <-m.out:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no response")
		return nil
	}
}

func statusOf(t *testing.T, r *pb.CallResponse) *status.Status {
	t.Helper()
	if len(r.Status) == 0 {
		t.Fatalf("call %d succeeded", r.Id)
	}
	st := new(spb.Status)
	if err := proto.Unmarshal(r.Status, st); err != nil {
		t.Fatal(err)
	}
	return status.FromProto(st)
}

func TestCallsAnswer(t *testing.T) {
	_, m := serveCalls(t)
	m.in <- observeCall(t, 1, "a", time.Minute)
	r := recvResponse(t, m)
	var out pb.ObserveResponse
	if r.Id != 1 || len(r.Status) > 0 || proto.Unmarshal(r.Response, &out) != nil {
		t.Fatalf("response %v", r)
	}
	if o := out.Objects["daemon.a"]; o == nil || o.State != pb.State_STATE_RUNNING {
		t.Fatalf("objects %v", out.Objects)
	}
}

// A failure is the status the unary call would have had, details and all.
func TestCallsFailure(t *testing.T) {
	_, m := serveCalls(t)
	m.in <- observeCall(t, 1, "bad", time.Minute)
	err := statusOf(t, recvResponse(t, m)).Err()
	var pe *providers.Error
	if !errors.As(wire.FromStatus(err), &pe) || pe.Attr != "root" {
		t.Fatalf("err = %v, want the provider's error on root", err)
	}
	m.in <- &pb.CallRequest{Id: 2, Method: "/orch.plugin.v1.Provider/Nothing"}
	if st := statusOf(t, recvResponse(t, m)); st.Code() != codes.Unimplemented {
		t.Fatalf("unknown method: %v", st)
	}
}

// A call runs within its timeout, and stops when orch cancels it; other
// calls go on meanwhile.
func TestCallsTimeoutAndCancel(t *testing.T) {
	w, m := serveCalls(t)
	m.in <- observeCall(t, 1, "wait", time.Millisecond)
	if err := <-w.ended; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the call ended with %v", err)
	}
	// The provider's error, as the unary call would answer it.
	if st := statusOf(t, recvResponse(t, m)); !strings.Contains(st.Message(), "deadline exceeded") {
		t.Fatalf("status %v", st)
	}

	m.in <- observeCall(t, 2, "wait", time.Minute)
	m.in <- observeCall(t, 3, "a", time.Minute)
	if r := recvResponse(t, m); r.Id != 3 || len(r.Status) > 0 {
		t.Fatalf("response %v, want call 3's", r)
	}
	m.in <- &pb.CallRequest{Id: 2, Cancel: true}
	if err := <-w.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the call ended with %v", err)
	}
	if r := recvResponse(t, m); r.Id != 2 || !strings.Contains(statusOf(t, r).Message(), "canceled") {
		t.Fatalf("response %v, want call 2 cancelled", r)
	}
}
