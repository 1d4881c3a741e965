package spec

import (
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
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

// astDepth is the depth of the syntax tree under n.
func astDepth(n hclsyntax.Node) int {
	w := &depthWalker{}
	hclsyntax.Walk(n, w)
	return w.max
}

type depthWalker struct{ depth, max int }

func (w *depthWalker) Enter(hclsyntax.Node) hcl.Diagnostics {
	w.depth++
	w.max = max(w.max, w.depth)
	return nil
}

func (w *depthWalker) Exit(hclsyntax.Node) hcl.Diagnostics {
	w.depth--
	return nil
}

// FuzzNesting checks the nesting pre-scan (limits.go) against HCL itself,
// for a configuration file (mode 0), a bare template (1) and a standalone
// expression (2): the scan never finds less nesting than HCL's own lexer's
// tokens hold; what it accepts parses into a syntax tree no deeper than
// its count allows (so HCL's parser cannot overflow on it); and what HCL
// parses without error into a shallow tree, the scan accepts. Seeds are in
// testdata/fuzz/FuzzNesting.
func FuzzNesting(f *testing.F) {
	f.Add(uint8(0), []byte(equivHCL))
	f.Add(uint8(1), []byte("a ${b} %{if c}d%{else}${[e]}%{endif}"))
	f.Add(uint8(2), []byte(`{a = [1 + 2, "${x}"], b = <<EOT
${c}
EOT
}`))
	f.Fuzz(func(t *testing.T, mode uint8, src []byte) {
		m := scanMode(mode % 3)
		_, scan := nativeNesting(src, m, 1<<30)
		var tokens hclsyntax.Tokens
		switch m {
		case modeConfig:
			tokens, _ = hclsyntax.LexConfig(src, "f", hcl.InitialPos)
		case modeTemplate:
			tokens, _ = hclsyntax.LexTemplate(src, "f", hcl.InitialPos)
		case modeExpression:
			tokens, _ = hclsyntax.LexExpression(src, "f", hcl.InitialPos)
		}
		if _, tok := tokenNesting(tokens, m, 1<<30); scan < tok {
			t.Fatalf("the scan finds nesting %d, HCL's tokens %d", scan, tok)
		}
		if scan > MaxNestingDepth {
			return // refused: never parsed
		}
		var node hclsyntax.Node
		var diags hcl.Diagnostics
		switch m {
		case modeConfig:
			var file *hcl.File
			file, diags = hclsyntax.ParseConfig(src, "f", hcl.InitialPos)
			if file != nil {
				node, _ = file.Body.(*hclsyntax.Body)
			}
		case modeTemplate:
			node, diags = hclsyntax.ParseTemplate(src, "f", hcl.InitialPos)
		case modeExpression:
			node, diags = hclsyntax.ParseExpression(src, "f", hcl.InitialPos)
		}
		if node == nil {
			return
		}
		ast := astDepth(node)
		if ast > 4*scan+8 {
			t.Fatalf("nesting %d by the scan, but a syntax tree %d deep", scan, ast)
		}
		if !diags.HasErrors() && ast <= 32 && CheckSource(src, "f.hcl") != nil && m == modeConfig {
			t.Fatalf("a valid configuration %d deep is refused (scan %d)", ast, scan)
		}
	})
}
