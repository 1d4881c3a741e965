package wire_test

import (
	"sync"
	"testing"

	"github.com/zclconf/go-cty/cty"
	"google.golang.org/protobuf/proto"

	pb "github.com/orch-dev/orch/providers/plugin/proto"
	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

func testRuntime(root string) *spec.Runtime {
	return &spec.Runtime{Addr: spec.Address{Kind: spec.KindRuntime, Type: "files", Name: "local"}, Kind: "files", Name: "local",
		Attrs: map[string]cty.Value{
			"root":  cty.StringVal(root),
			"hosts": cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}),
			"limit": cty.NumberIntVal(3),
		}}
}

func TestRuntimeEncoder(t *testing.T) {
	var e wire.RuntimeEncoder
	rt := testRuntime("/a")
	m1, err := e.Encode(rt)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := wire.RuntimeOf(rt)
	if !proto.Equal(m1, want) {
		t.Fatalf("Encode = %v, want %v", m1, want)
	}
	// The same runtime, or an equal one, reuses the message.
	if m2, _ := e.Encode(rt); m2 != m1 {
		t.Fatal("the same runtime was encoded again")
	}
	if m2, _ := e.Encode(testRuntime("/a")); m2 != m1 {
		t.Fatal("an equal runtime was encoded again")
	}
	// Any difference encodes it again.
	changes := map[string]func(*spec.Runtime){
		"value":   func(r *spec.Runtime) { r.Attrs["root"] = cty.StringVal("/b") },
		"nested":  func(r *spec.Runtime) { r.Attrs["hosts"] = cty.ListVal([]cty.Value{cty.StringVal("a")}) },
		"number":  func(r *spec.Runtime) { r.Attrs["limit"] = cty.NumberIntVal(4) },
		"added":   func(r *spec.Runtime) { r.Attrs["extra"] = cty.True },
		"removed": func(r *spec.Runtime) { delete(r.Attrs, "limit") },
		"null":    func(r *spec.Runtime) { r.Attrs["root"] = cty.NullVal(cty.String) },
		"nilval":  func(r *spec.Runtime) { r.Attrs["root"] = cty.NilVal },
		"name":    func(r *spec.Runtime) { r.Name = "other" },
		"address": func(r *spec.Runtime) { r.Addr.Name = "other" },
	}
	for name, change := range changes {
		// Mutating the runtime encoded last, in place, must not fool it.
		r := testRuntime("/a")
		e.Encode(r)
		change(r)
		got, err := e.Encode(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := wire.RuntimeOf(r)
		if !proto.Equal(got, want) {
			t.Errorf("%s: Encode = %v, want %v", name, got, want)
		}
	}
	// An unknown value is an error, remembered or not.
	r := testRuntime("/a")
	e.Encode(r)
	r.Attrs["root"] = cty.UnknownVal(cty.String)
	if _, err := e.Encode(r); err == nil {
		t.Fatal("an unknown value was encoded")
	}
	if m, err := e.Encode(nil); m != nil || err != nil {
		t.Fatalf("Encode(nil) = %v, %v", m, err)
	}
}

func TestRuntimeDecoder(t *testing.T) {
	var d wire.RuntimeDecoder
	m, _ := wire.RuntimeOf(testRuntime("/a"))
	r1, err := d.Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := wire.FromRuntime(m)
	if !equalRuntime(r1, want) {
		t.Fatalf("Decode = %#v, want %#v", r1, want)
	}
	// A plugin that changes what it got changes nothing else.
	r1.Attrs["root"] = cty.StringVal("/changed")
	r1.Name = "changed"
	r2, _ := d.Decode(proto.Clone(m).(*pb.Runtime))
	if !equalRuntime(r2, want) {
		t.Fatalf("after a change to an earlier result, Decode = %#v, want %#v", r2, want)
	}
	// Another runtime under the same address is decoded again.
	m3, _ := wire.RuntimeOf(testRuntime("/b"))
	r3, _ := d.Decode(m3)
	if got := r3.Attrs["root"]; !got.RawEquals(cty.StringVal("/b")) {
		t.Fatalf("root = %#v after the runtime changed", got)
	}
	if r, err := d.Decode(nil); r != nil || err != nil {
		t.Fatalf("Decode(nil) = %v, %v", r, err)
	}
	bad := proto.Clone(m).(*pb.Runtime)
	bad.Attrs["root"].Json = []byte("{")
	if _, err := d.Decode(bad); err == nil {
		t.Fatal("an invalid value was decoded")
	}
}

func TestRuntimeCachesConcurrent(t *testing.T) {
	var e wire.RuntimeEncoder
	var d wire.RuntimeDecoder
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				root := []string{"/a", "/b"}[(i+j)%2]
				m, err := e.Encode(testRuntime(root))
				if err != nil {
					t.Error(err)
					return
				}
				r, err := d.Decode(m)
				if err != nil {
					t.Error(err)
					return
				}
				if !r.Attrs["root"].RawEquals(cty.StringVal(root)) {
					t.Errorf("root %#v, want %s", r.Attrs["root"], root)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func equalRuntime(a, b *spec.Runtime) bool {
	if a.Addr != b.Addr || a.Kind != b.Kind || a.Name != b.Name || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	for k, v := range a.Attrs {
		if w, ok := b.Attrs[k]; !ok || !v.RawEquals(w) {
			return false
		}
	}
	return true
}
