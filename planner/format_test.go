package planner

import (
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestFormatValueShapes: formatValue (appendHCL, writing into one buffer)
// renders each shape a plan shows: scalars, one-line lists of scalars,
// multi-line lists of collections, aligned map keys (quoted where not
// bare), multi-line strings as heredocs, and the sensitive parts of a
// value hidden by path.
func TestFormatValueShapes(t *testing.T) {
	obj := cty.ObjectVal(map[string]cty.Value{"a b": cty.StringVal("1"), "zz": cty.ListVal([]cty.Value{cty.True})})
	env := cty.MapVal(map[string]cty.Value{"PASS": cty.StringVal("s"), "X": cty.StringVal("y"), "9x": cty.StringVal("q")})
	for _, c := range []struct {
		v      cty.Value
		indent int
		path   string
		sens   map[string]bool
		want   string
	}{
		{cty.StringVal("a\"b"), 0, "", nil, `"a\"b"`},
		// lines: a heredoc, a final line break ending the last line
		{cty.StringVal("a\"b\n"), 0, "", nil, "<<-EOT\n    a\"b\nEOT"},
		{cty.StringVal("x\n\n\ty"), 8, "", nil, "<<-EOT\n            x\n\n            \ty\n        EOT"},
		// a control character: quoted, which says what it is
		{cty.StringVal("a\nb\x1b[0m"), 0, "", nil, `"a\nb\x1b[0m"`},
		{cty.NumberIntVal(-5), 0, "", nil, `-5`},
		{cty.NumberFloatVal(1.5), 0, "", nil, `1.5`},
		{cty.False, 0, "", nil, `false`},
		{cty.NullVal(cty.String), 0, "", nil, `null`},
		{cty.UnknownVal(cty.String), 0, "", nil, `(known after apply)`},
		{cty.ListValEmpty(cty.String), 0, "", nil, `[]`},
		{cty.EmptyObjectVal, 0, "", nil, `{}`},
		{cty.TupleVal([]cty.Value{cty.StringVal("x"), cty.NumberIntVal(3)}), 0, "", nil, `["x", 3]`},
		{cty.ListVal([]cty.Value{obj}), 2, "", nil, "[\n    {\n      \"a b\" = \"1\"\n      zz    = [true]\n    },\n  ]"},
		{env, 0, "", nil, "{\n  \"9x\" = \"q\"\n  PASS = \"s\"\n  X    = \"y\"\n}"},
		{env, 0, "env", map[string]bool{"env.PASS": true}, "{\n  \"9x\" = \"q\"\n  PASS = (sensitive value)\n  X    = \"y\"\n}"},
		{cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}), 0, "cmd", map[string]bool{"cmd[1]": true}, `["a", (sensitive value)]`},
		{env, 0, "env", map[string]bool{"env": true}, `(sensitive value)`},
	} {
		if got := formatValue(c.v, c.indent, c.path, c.sens); got != c.want {
			t.Errorf("%#v (path %q, sensitive %v):\n got %q\nwant %q", c.v, c.path, c.sens, got, c.want)
		}
	}
}
