package wire

import (
	"bytes"
	"maps"
	"sync"

	"github.com/zclconf/go-cty/cty"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/spec"
)

// Every call into a provider plugin carries its runtime block, and both
// ends would convert its attributes at every call (cty's JSON, both ways:
// tens of microseconds for a handful of attributes, as much as the rest of
// the round trip). A runtime changes only when the configuration does, so
// each end remembers the last conversion of each runtime and reuses it
// while the runtime is the same. The protocol is unchanged: the runtime
// still travels with every call, a few hundred bytes.

// RuntimeEncoder is RuntimeOf that remembers, per runtime address, the
// last runtime it encoded and reuses its message while the runtime has the
// same kind, name and attribute values (compared with cty's RawEquals,
// far cheaper than encoding). The messages it returns are shared and must
// not be modified (gRPC only reads them, concurrently if need be). Its
// zero value is ready to use; it is safe for concurrent use.
type RuntimeEncoder struct {
	mu   sync.Mutex
	last map[spec.Address]encodedRuntime
}

type encodedRuntime struct {
	kind, name string
	attrs      map[string]cty.Value
	msg        *pb.Runtime
}

// Encode is RuntimeOf(rt), from memory when rt is the runtime encoded last
// under its address.
func (e *RuntimeEncoder) Encode(rt *spec.Runtime) (*pb.Runtime, error) {
	if rt == nil {
		return nil, nil
	}
	e.mu.Lock()
	last, ok := e.last[rt.Addr]
	e.mu.Unlock()
	if ok && last.kind == rt.Kind && last.name == rt.Name && sameValues(last.attrs, rt.Attrs) {
		return last.msg, nil
	}
	msg, err := RuntimeOf(rt)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.last == nil {
		e.last = map[spec.Address]encodedRuntime{}
	}
	e.last[rt.Addr] = encodedRuntime{kind: rt.Kind, name: rt.Name, attrs: maps.Clone(rt.Attrs), msg: msg}
	e.mu.Unlock()
	return msg, nil
}

func sameValues(a, b map[string]cty.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
		}
		if v == cty.NilVal || w == cty.NilVal {
			if v != cty.NilVal || w != cty.NilVal {
				return false
			}
			continue
		}
		if !v.RawEquals(w) {
			return false
		}
	}
	return true
}

// RuntimeDecoder is FromRuntime that remembers, per runtime address, the
// last message it decoded and reuses the result while a message carries
// the same kind, name and encoded attributes (compared byte for byte).
// Each call returns a runtime of its own (a copy, with its own map of the
// immutable cty values), so that a plugin that changes one changes no
// other. Its zero value is ready to use; it is safe for concurrent use.
type RuntimeDecoder struct {
	mu   sync.Mutex
	last map[string]decodedRuntime
}

type decodedRuntime struct {
	msg *pb.Runtime
	rt  *spec.Runtime
}

// Decode is FromRuntime(r), from memory when r carries the runtime decoded
// last under its address.
func (d *RuntimeDecoder) Decode(r *pb.Runtime) (*spec.Runtime, error) {
	if r == nil {
		return nil, nil
	}
	d.mu.Lock()
	last, ok := d.last[r.Address]
	d.mu.Unlock()
	if !ok || !sameRuntime(last.msg, r) {
		rt, err := FromRuntime(r)
		if err != nil {
			return nil, err
		}
		last = decodedRuntime{msg: r, rt: rt}
		d.mu.Lock()
		if d.last == nil {
			d.last = map[string]decodedRuntime{}
		}
		d.last[r.Address] = last
		d.mu.Unlock()
	}
	out := *last.rt
	out.Attrs = maps.Clone(last.rt.Attrs)
	return &out, nil
}

func sameRuntime(a, b *pb.Runtime) bool {
	if a.Address != b.Address || a.Kind != b.Kind || a.Name != b.Name || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	for k, v := range a.Attrs {
		w, ok := b.Attrs[k]
		if !ok || (v == nil) != (w == nil) {
			return false
		}
		if v != nil && (!bytes.Equal(v.Type, w.Type) || !bytes.Equal(v.Json, w.Json)) {
			return false
		}
	}
	return true
}
