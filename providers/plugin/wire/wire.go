package wire

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orch-dev/orch/providers"
	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/spec"
)

// Protocol names the protocol of this package; GetSchemaResponse carries it.
const Protocol = "orch.plugin.v1"

// ProtocolVersion is go-plugin's application protocol version of Protocol.
const ProtocolVersion = 1

// The names under which a plugin binary serves each kind of plugin
// (go-plugin's plugin set). A binary serves one of them.
const (
	ProviderPlugin = "provider"
	ModulePlugin   = "module"
)

// Handshake is go-plugin's handshake between orch and its plugins. The
// magic cookie is not a secret: it tells a plugin binary run by hand that
// it is a plugin, and keeps orch from talking to a program that is not.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "ORCH_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "b9c43fd0e2f1d6f5a1c8e6a47f3b0d2e-orch.plugin.v1",
}

// ---------------------------------------------------------------------------
// Values and types

// ValueOf encodes v (marks removed); cty.NilVal encodes as nil.
func ValueOf(v cty.Value) (*pb.Value, error) {
	if v == cty.NilVal {
		return nil, nil
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return nil, errors.New("value is not known yet")
	}
	t, err := ctyjson.MarshalType(v.Type())
	if err != nil {
		return nil, err
	}
	j, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil, err
	}
	return &pb.Value{Type: t, Json: j}, nil
}

// FromValue decodes a Value; nil decodes as cty.NilVal.
func FromValue(v *pb.Value) (cty.Value, error) {
	if v == nil || len(v.Type) == 0 {
		return cty.NilVal, nil
	}
	t, err := ctyjson.UnmarshalType(v.Type)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(v.Json, t)
}

func attrsOf(m map[string]cty.Value) (map[string]*pb.Value, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*pb.Value, len(m))
	for k, v := range m {
		pv, err := ValueOf(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		if pv != nil {
			out[k] = pv
		}
	}
	return out, nil
}

func fromAttrs(m map[string]*pb.Value) (map[string]cty.Value, error) {
	out := make(map[string]cty.Value, len(m))
	for k, pv := range m {
		v, err := FromValue(pv)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		if v != cty.NilVal {
			out[k] = v
		}
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Schemas

// SchemaOf encodes a provider's schema and the capabilities it declares.
func SchemaOf(s spec.RuntimeSchema, caps []providers.Capability) (*pb.GetSchemaResponse, error) {
	resp := &pb.GetSchemaResponse{Protocol: Protocol, Kind: s.Kind, CommandRequired: s.CommandRequired}
	var err error
	if resp.Runtime, err = attrSchemasOf(s.Runtime); err != nil {
		return nil, fmt.Errorf("runtime schema: %w", err)
	}
	if resp.Daemon, err = attrSchemasOf(s.Daemon); err != nil {
		return nil, fmt.Errorf("daemon schema: %w", err)
	}
	for _, c := range caps {
		resp.Capabilities = append(resp.Capabilities, string(c))
	}
	return resp, nil
}

func attrSchemasOf(as []spec.AttrSchema) ([]*pb.AttrSchema, error) {
	out := make([]*pb.AttrSchema, 0, len(as))
	for _, a := range as {
		t := a.Type
		if t == cty.NilType {
			t = cty.DynamicPseudoType
		}
		tj, err := ctyjson.MarshalType(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Name, err)
		}
		def, err := ValueOf(a.Default)
		if err != nil {
			return nil, fmt.Errorf("%s: default: %w", a.Name, err)
		}
		out = append(out, &pb.AttrSchema{Name: a.Name, Type: tj, Required: a.Required, Default: def,
			ForcesReplacement: a.ForcesReplacement, Sensitive: a.Sensitive, Doc: a.Doc})
	}
	return out, nil
}

// FromSchema decodes a schema and its capabilities. Capabilities orch does
// not know (declared by a newer plugin) are returned apart, in unknown.
func FromSchema(r *pb.GetSchemaResponse) (s spec.RuntimeSchema, caps []providers.Capability, unknown []string, err error) {
	if r.Protocol != "" && r.Protocol != Protocol {
		return s, nil, nil, fmt.Errorf("the plugin speaks %s, orch speaks %s", r.Protocol, Protocol)
	}
	s = spec.RuntimeSchema{Kind: r.Kind, CommandRequired: r.CommandRequired}
	if s.Runtime, err = fromAttrSchemas(r.Runtime); err != nil {
		return s, nil, nil, fmt.Errorf("runtime schema: %w", err)
	}
	if s.Daemon, err = fromAttrSchemas(r.Daemon); err != nil {
		return s, nil, nil, fmt.Errorf("daemon schema: %w", err)
	}
	known := map[providers.Capability]bool{}
	for _, c := range AllCapabilities {
		known[c] = true
	}
	seen := map[providers.Capability]bool{}
	for _, c := range r.Capabilities {
		pc := providers.Capability(c)
		switch {
		case !known[pc]:
			unknown = append(unknown, c)
		case !seen[pc]:
			seen[pc] = true
			caps = append(caps, pc)
		}
	}
	sort.Slice(caps, func(i, j int) bool { return caps[i] < caps[j] })
	// A runtime that can tell whether an instance listens on a port
	// shares the host's network: its schema says so (the planner's
	// readiness warning, spec.RuntimeSchema.OwnsListeners).
	s.OwnsListeners = seen[providers.CapListens]
	return s, caps, unknown, nil
}

// AllCapabilities lists every optional capability of the provider contract.
var AllCapabilities = []providers.Capability{
	providers.CapDelete, providers.CapHealth, providers.CapAdopt, providers.CapSignal,
	providers.CapLogs, providers.CapEvents, providers.CapUpdate, providers.CapWatch,
	providers.CapListens,
}

func fromAttrSchemas(as []*pb.AttrSchema) ([]spec.AttrSchema, error) {
	out := make([]spec.AttrSchema, 0, len(as))
	seen := map[string]bool{}
	for _, a := range as {
		if a.Name == "" {
			return nil, errors.New("an attribute without a name")
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("attribute %s declared twice", a.Name)
		}
		seen[a.Name] = true
		t, err := ctyjson.UnmarshalType(a.Type)
		if err != nil {
			return nil, fmt.Errorf("%s: type: %w", a.Name, err)
		}
		def, err := FromValue(a.Default)
		if err != nil {
			return nil, fmt.Errorf("%s: default: %w", a.Name, err)
		}
		out = append(out, spec.AttrSchema{Name: a.Name, Type: t, Required: a.Required, Default: def,
			ForcesReplacement: a.ForcesReplacement, Sensitive: a.Sensitive, Doc: a.Doc})
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Runtimes and resources

// RuntimeOf encodes a runtime block; nil stays nil.
func RuntimeOf(rt *spec.Runtime) (*pb.Runtime, error) {
	if rt == nil {
		return nil, nil
	}
	attrs, err := attrsOf(rt.Attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rt.Addr, err)
	}
	return &pb.Runtime{Address: rt.Addr.String(), Kind: rt.Kind, Name: rt.Name, Attrs: attrs}, nil
}

// FromRuntime decodes a runtime block; nil stays nil.
func FromRuntime(r *pb.Runtime) (*spec.Runtime, error) {
	if r == nil {
		return nil, nil
	}
	addr, err := spec.ParseAddress(r.Address)
	if err != nil {
		return nil, err
	}
	attrs, err := fromAttrs(r.Attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Address, err)
	}
	return &spec.Runtime{Addr: addr, Kind: r.Kind, Name: r.Name, Attrs: attrs}, nil
}

// ResourceOf encodes what a provider needs of a daemon or job instance.
func ResourceOf(r *spec.Resource) (*pb.Resource, error) {
	if r == nil {
		return nil, nil
	}
	attrs, err := attrsOf(r.Attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Addr, err)
	}
	out := &pb.Resource{
		Address: r.Addr.String(), Command: r.Command, Env: r.Env, Dir: r.Dir,
		User: r.User, Group: r.Group, Umask: uint32(r.Umask.Perm()), Rlimits: r.Rlimits, Attrs: attrs,
		StopSignal: r.Stop.Signal.Name, StopTimeoutNs: int64(r.Stop.Timeout),
		LogMaxSize: r.Log.MaxSize, LogMaxFiles: int32(r.Log.MaxFiles),
	}
	if !r.Runtime.IsZero() {
		out.Runtime = r.Runtime.String()
	}
	for p, ok := range r.Sensitive {
		if ok {
			out.Sensitive = append(out.Sensitive, p)
		}
	}
	sort.Strings(out.Sensitive)
	return out, nil
}

// FromResource decodes an instance; nil stays nil.
func FromResource(r *pb.Resource) (*spec.Resource, error) {
	if r == nil {
		return nil, nil
	}
	addr, err := spec.ParseAddress(r.Address)
	if err != nil {
		return nil, err
	}
	attrs, err := fromAttrs(r.Attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Address, err)
	}
	out := &spec.Resource{
		Addr: addr, Command: r.Command, Env: r.Env, Dir: r.Dir, User: r.User, Group: r.Group,
		Rlimits: r.Rlimits, Attrs: attrs,
		Stop: spec.Stop{Timeout: time.Duration(r.StopTimeoutNs)},
		Log:  spec.Log{MaxSize: r.LogMaxSize, MaxFiles: int(r.LogMaxFiles)},
	}
	out.Umask = os.FileMode(r.Umask).Perm()
	if r.Runtime != "" {
		if out.Runtime, err = spec.ParseAddress(r.Runtime); err != nil {
			return nil, err
		}
	}
	if r.StopSignal != "" {
		if out.Stop.Signal, err = spec.ParseSignal(r.StopSignal); err != nil {
			return nil, err
		}
	}
	if len(r.Sensitive) > 0 {
		out.Sensitive = make(map[string]bool, len(r.Sensitive))
		for _, p := range r.Sensitive {
			out.Sensitive[p] = true
		}
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Observations

var statesTo = map[providers.State]pb.State{
	providers.StateUnknown: pb.State_STATE_UNKNOWN, providers.StateRunning: pb.State_STATE_RUNNING,
	providers.StateExited: pb.State_STATE_EXITED, providers.StateMissing: pb.State_STATE_MISSING,
}

// ObservedOf encodes an observation.
func ObservedOf(o providers.Observed) *pb.Observed {
	out := &pb.Observed{State: statesTo[o.State], Pid: int64(o.Pid), Id: o.ID,
		ExitCode: int32(o.ExitCode), Signal: o.Signal}
	if !o.StartedAt.IsZero() {
		out.StartedAtUnixNs = o.StartedAt.UnixNano()
	}
	return out
}

// FromObserved decodes an observation; nil is StateUnknown.
func FromObserved(o *pb.Observed) providers.Observed {
	if o == nil {
		return providers.Observed{}
	}
	out := providers.Observed{Pid: int(o.Pid), ID: o.Id, ExitCode: int(o.ExitCode), Signal: o.Signal}
	switch o.State {
	case pb.State_STATE_RUNNING:
		out.State = providers.StateRunning
	case pb.State_STATE_EXITED:
		out.State = providers.StateExited
	case pb.State_STATE_MISSING:
		out.State = providers.StateMissing
	}
	if o.StartedAtUnixNs != 0 {
		out.StartedAt = time.Unix(0, o.StartedAtUnixNs)
	}
	return out
}

// Handles encodes a map of handles by address.
func Handles(m map[spec.Address]providers.Handle) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for a, h := range m {
		out[a.String()] = h
	}
	return out
}

// FromHandles decodes a map of handles by address.
func FromHandles(m map[string][]byte) (map[spec.Address]providers.Handle, error) {
	out := make(map[spec.Address]providers.Handle, len(m))
	for s, h := range m {
		a, err := spec.ParseAddress(s)
		if err != nil {
			return nil, err
		}
		out[a] = h
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Errors

// Status turns a Go error into a gRPC status error that carries, as an
// Error detail, what a *providers.Error says (op, retryable, attr,
// unreachable).
func Status(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	detail := &pb.Error{Op: op, Message: err.Error()}
	var pe *providers.Error
	if errors.As(err, &pe) {
		detail.Op, detail.Retryable, detail.Attr, detail.Unreachable = pe.Op, pe.Retryable, pe.Attr, pe.Unreachable
		if pe.Err != nil {
			detail.Message = pe.Err.Error()
		}
	}
	st, derr := status.New(codes.Unknown, err.Error()).WithDetails(detail)
	if derr != nil {
		return status.Error(codes.Unknown, err.Error())
	}
	return st.Err()
}

// FromStatus turns the error of a call back into a *providers.Error when it
// carries an Error detail; other errors are returned unchanged.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if e, ok := d.(*pb.Error); ok {
			return &providers.Error{Op: e.Op, Retryable: e.Retryable, Attr: e.Attr, Unreachable: e.Unreachable, Err: errors.New(e.Message)}
		}
	}
	return err
}
