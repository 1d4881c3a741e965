package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// chunkySource is a configuration past the size where files are parsed in
// pieces, with what a cut guessed on the bytes could fall into: a heredoc
// and a block comment holding "}" lines followed by block-like lines, a
// nested block closed at column 0, top-level attributes.
func chunkySource(n int) []byte {
	var b bytes.Buffer
	b.WriteString("orch {\n  name = \"chunky\"\n}\n\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "daemon \"d%04d\" {\n  command = [\"sleep\", \"600\"]\n  env     = { INDEX = \"%d\" }\n}\n\n", i, i)
		case 1:
			fmt.Fprintf(&b, "daemon \"d%04d\" {\n  command = [\"sh\", \"-c\", <<-EOT\n    echo {\n}\ndaemon \"fake%d\" {\n    EOT\n  ]\n}\n\n", i, i)
		case 2:
			fmt.Fprintf(&b, "/* a comment\n}\ndaemon \"fake%d\" {\n*/\ndaemon \"d%04d\" {\n  command = [\"sleep\", \"600\"]\n  stop {\n    timeout = \"2s\"\n}\n}\n\n", i, i)
		case 3:
			fmt.Fprintf(&b, "job \"j%04d\" {\n  command = [\"true\"]\n}\n\n", i)
		}
	}
	return b.Bytes()
}

// sameSyntax compares two bodies: the same blocks, labels, attributes and
// ranges (byte, line and column), recursively.
func sameSyntax(t *testing.T, path string, a, b *hclsyntax.Body) {
	t.Helper()
	if a.SrcRange != b.SrcRange || a.EndRange != b.EndRange {
		t.Fatalf("%s: body range %v %v, whole-file parse %v %v", path, a.SrcRange, a.EndRange, b.SrcRange, b.EndRange)
	}
	if len(a.Attributes) != len(b.Attributes) || len(a.Blocks) != len(b.Blocks) {
		t.Fatalf("%s: %d attributes, %d blocks; whole-file parse %d, %d", path, len(a.Attributes), len(a.Blocks), len(b.Attributes), len(b.Blocks))
	}
	for k, x := range a.Attributes {
		y, ok := b.Attributes[k]
		if !ok || x.SrcRange != y.SrcRange || x.Expr.Range() != y.Expr.Range() {
			t.Fatalf("%s.%s: attribute differs from the whole-file parse", path, k)
		}
	}
	for i, x := range a.Blocks {
		y := b.Blocks[i]
		if x.Type != y.Type || strings.Join(x.Labels, ",") != strings.Join(y.Labels, ",") || x.TypeRange != y.TypeRange || x.OpenBraceRange != y.OpenBraceRange || x.CloseBraceRange != y.CloseBraceRange {
			t.Fatalf("%s: block %d (%s %v) differs from the whole-file parse (%s %v)", path, i, x.Type, x.Labels, y.Type, y.Labels)
		}
		sameSyntax(t, fmt.Sprintf("%s/%s%v", path, x.Type, x.Labels), x.Body, y.Body)
	}
}

func TestChunkedParseMatchesWholeFile(t *testing.T) {
	src := chunkySource(400)
	if len(src) < 2*chunkSize {
		t.Fatalf("source of %d bytes: too small to be cut", len(src))
	}
	if cuts := chunkCuts(src); len(cuts) < 10 {
		t.Fatalf("only %d pieces", len(cuts))
	}
	chunked := parseChunked(src, "main.hcl")
	if chunked == nil {
		t.Fatal("no piece parsed: every cut fell inside something")
	}
	whole, diags := hclsyntax.ParseConfig(src, "main.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sameSyntax(t, "", chunked.Body.(*hclsyntax.Body), whole.Body.(*hclsyntax.Body))
	// what a diagnostic shows of its context, at every line start
	for off := 0; off < len(src); off = bytes.IndexByte(src[off:], '\n') + off + 1 {
		if g, w := chunked.Nav.(*blockNav).ContextString(off), whole.Nav.(interface{ ContextString(int) string }).ContextString(off); g != w {
			t.Fatalf("context at byte %d: %q, whole-file parse %q", off, g, w)
		}
		if bytes.IndexByte(src[off:], '\n') < 0 {
			break
		}
	}
}

// A cut inside a heredoc that is not closed within the piece, or in a file
// with an error: the file is parsed whole and its diagnostics are HCL's own.
func TestChunkedParseFallsBack(t *testing.T) {
	src := chunkySource(300)
	bad := append(append([]byte{}, src...), []byte("daemon \"broken\" {\n  command = [\n}\n")...)
	f, diags := parseNative(bad, "main.hcl")
	_, want := hclsyntax.ParseConfig(bad, "main.hcl", hcl.InitialPos)
	if f == nil || !diags.HasErrors() || diags.Error() != want.Error() {
		t.Fatalf("diagnostics %v, want the whole-file parse's %v", diags, want)
	}
	// a heredoc longer than a piece, holding lines a cut would take
	var b bytes.Buffer
	b.WriteString("daemon \"h\" {\n  command = [\"sh\", \"-c\", <<EOT\n")
	for b.Len() < 6*chunkSize {
		b.WriteString("}\ndaemon \"inside\" {\n")
	}
	b.WriteString("EOT\n  ]\n}\n\ndaemon \"after\" {\n  command = [\"true\"]\n}\n")
	f, diags = parseNative(b.Bytes(), "main.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if n := len(f.Body.(*hclsyntax.Body).Blocks); n != 2 {
		t.Fatalf("%d blocks, want 2 (h and after)", n)
	}
}

// Once loaded, a configuration keeps its files' bytes for diagnostics but
// not their syntax trees; the diagnostics still show the snippet and the
// block they are in.
func TestLoadKeepsNoSyntaxTrees(t *testing.T) {
	dir := t.TempDir()
	src := chunkySource(400)
	src = append(src, []byte("daemon \"last\" {\n  command = [\"sleep\", \"600\"]\n  env     = { A = nosuch.thing }\n}\n")...)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(dir, Options{})
	if !diags.HasErrors() {
		t.Fatal("want the error of daemon.last")
	}
	f := cfg.Files["main.hcl"]
	if f == nil || !bytes.Equal(f.Bytes, src) {
		t.Fatal("the file's bytes are not kept")
	}
	if _, tree := f.Body.(*hclsyntax.Body); tree {
		t.Fatal("the configuration keeps main.hcl's syntax tree")
	}
	var out bytes.Buffer
	w := hcl.NewDiagnosticTextWriter(&out, cfg.Files, 100, false)
	if err := w.WriteDiagnostics(diags); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `in daemon "last"`) || !strings.Contains(out.String(), "nosuch.thing") {
		t.Fatalf("diagnostic without its context or snippet:\n%s", out.String())
	}
	// and a valid one loads the same daemons as before
	ok := src[:len(src)-len("daemon \"last\" {\n  command = [\"sleep\", \"600\"]\n  env     = { A = nosuch.thing }\n}\n")]
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), ok, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags = Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if n := len(cfg.Resources); n != 400 {
		t.Fatalf("%d resources, want 400", n)
	}
}
