package spec

import (
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
)

// fuzzDir is the fake absolute directory fuzz inputs are loaded as.
const fuzzDir = "/orch-fuzz/config"

// checkLoad loads src as the only configuration file, name, and checks the
// properties every input must have: no panic, a Config, and diagnostics
// that are either empty or hold at least one error, every error having a
// summary.
func checkLoad(t *testing.T, name string, src []byte) {
	fsys := fstest.MapFS{name: {Data: src, Mode: 0o644}}
	cfg, diags := LoadFS(fsys, fuzzDir, Options{Schemas: testSchemas, Vars: []string{}})
	if cfg == nil {
		t.Fatal("LoadFS returned a nil Config")
	}
	if len(diags) > 0 && !diags.HasErrors() {
		// warnings alone are fine, but the loader emits none today
		t.Fatalf("diagnostics without an error:\n%s", renderDiags(diags))
	}
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary == "" {
			t.Fatalf("an error without a summary: %#v", d)
		}
	}
	if !diags.HasErrors() {
		// a valid config is complete: its graph covers its resources
		if cfg.Graph == nil {
			t.Fatal("a valid Config without a Graph")
		}
		for _, r := range cfg.Resources {
			if !cfg.Graph.Has(r.Addr) {
				t.Fatalf("%s is not in the graph", r.Addr)
			}
		}
		if got := len(cfg.Graph.TopoOrder()); got != len(cfg.Graph.Nodes()) {
			t.Fatalf("TopoOrder has %d nodes of %d: a cycle got through", got, len(cfg.Graph.Nodes()))
		}
	}
}

// FuzzLoad feeds bytes to the loader as main.hcl (native syntax). Seeds are
// in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(equivHCL))
	f.Fuzz(func(t *testing.T, src []byte) { checkLoad(t, "main.hcl", src) })
}

// FuzzLoadJSON is FuzzLoad for the JSON syntax (main.hcl.json).
func FuzzLoadJSON(f *testing.F) {
	f.Add([]byte(equivJSON))
	f.Fuzz(func(t *testing.T, src []byte) { checkLoad(t, "main.hcl.json", src) })
}

// FuzzParseAddress checks that ParseAddress never panics and that what it
// accepts renders to a string that parses back to the same address.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"daemon.api", "daemon.api[1]", `daemon.web["eu"]`, "runtime.docker.local", "job.x", "module.m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if a.IsZero() {
			t.Fatalf("ParseAddress(%q) accepted the zero address", s)
		}
		b, err := ParseAddress(a.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %v, whose String %q does not parse: %v", s, a, a.String(), err)
		}
		if a != b {
			t.Fatalf("round trip of %q: %#v then %#v", s, a, b)
		}
	})
}
