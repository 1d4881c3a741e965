package wire_test

import (
	"errors"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin/wire"
)

// TestErrorRoundTrip: what a *providers.Error says crosses the plugin wire
// (a gRPC status with an Error detail) and comes back the same, the
// unreachable flag included (orch up parks a start that could not reach
// its backend rather than count it as a crash).
func TestErrorRoundTrip(t *testing.T) {
	for _, in := range []*providers.Error{
		{Op: "start", Attr: "image", Retryable: true, Err: errors.New("no such image")},
		{Op: "observe", Unreachable: true, Retryable: true, Err: errors.New("cannot connect to the backend")},
		{Op: "stop", Err: errors.New("refused")},
	} {
		out := wire.FromStatus(wire.Status(in.Op, in))
		var pe *providers.Error
		if !errors.As(out, &pe) {
			t.Fatalf("%v came back as %T %v", in, out, out)
		}
		if pe.Op != in.Op || pe.Attr != in.Attr || pe.Retryable != in.Retryable || pe.Unreachable != in.Unreachable || pe.Err.Error() != in.Err.Error() {
			t.Errorf("sent %+v, got %+v", *in, *pe)
		}
		if providers.IsUnreachable(out) != in.Unreachable {
			t.Errorf("%v: IsUnreachable %v", in, providers.IsUnreachable(out))
		}
	}
}
