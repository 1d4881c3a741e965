package planner

import (
	"bytes"
	"strings"
	"testing"

	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
)

// TestDiffLines: diffLines is a shortest edit script: applying it to the
// old lines gives the new ones, and it keeps as many lines as the longest
// common subsequence (or, past lineDiffMax, the common head and tail).
func TestDiffLines(t *testing.T) {
	for _, c := range []struct {
		a, b string
		kept int
	}{
		{"", "", 0},
		{"a", "", 0},
		{"", "a b", 0},
		{"a b c", "a b c", 3},
		{"a b c", "a x c", 2},
		{"a b c d", "a c d e", 3},
		{"x a b", "a b y", 2},
		{"a b a b", "b a b a", 3},
		{"l1 l2 l3 l4 l5 l6", "l1 l3 l4 l2 l5 l6", 5},
	} {
		a, b := strings.Fields(c.a), strings.Fields(c.b)
		ops := diffLines(a, b)
		var olds, news []string
		kept := 0
		for _, op := range ops {
			if op.kind != '+' {
				olds = append(olds, op.line)
			}
			if op.kind != '-' {
				news = append(news, op.line)
			}
			if op.kind == ' ' {
				kept++
			}
		}
		if strings.Join(olds, " ") != c.a || strings.Join(news, " ") != c.b || kept != c.kept {
			t.Errorf("diffLines(%q, %q) = %v: old %q new %q kept %d, want kept %d", c.a, c.b, ops, olds, news, kept, c.kept)
		}
	}
	// Past the bound: the middle removed then added, head and tail kept.
	var a, b []string
	for i := 0; i < 1100; i++ {
		a = append(a, "a"+string(rune('0'+i%10)))
		b = append(b, "b"+string(rune('0'+i%10)))
	}
	a = append(append([]string{"head"}, a...), "tail")
	b = append(append([]string{"head"}, b...), "tail")
	ops := diffLines(a, b)
	if len(ops) != 2+2200 || ops[0] != (lineOp{' ', "head"}) || ops[1].kind != '-' || ops[1101].kind != '+' || ops[len(ops)-1] != (lineOp{' ', "tail"}) {
		t.Errorf("diffLines past lineDiffMax: %d ops, %v ... %v", len(ops), ops[:2], ops[len(ops)-1])
	}
}

// TestStringAttributeDiff: a changed multi-line attribute (not in a map)
// is shown as a heredoc diff with the replacement's comment after its
// opening marker; one that differs only by its final line break, or
// holds a control character, stays quoted, as does a sensitive one.
func TestStringAttributeDiff(t *testing.T) {
	render := func(old, new string, sensitive bool) string {
		snap := &Snapshot{Values: map[string]cty.Value{"script": cty.StringVal(new)}}
		c := &Change{Addr: spec.Address{Kind: spec.KindDaemon, Name: "web"}, Action: Replace, Desired: snap,
			Prior: &Stored{Snapshot: &Snapshot{Values: map[string]cty.Value{"script": cty.StringVal(old)}}},
			Diffs: []AttrDiff{{Name: "script", Old: cty.StringVal(old), New: cty.StringVal(new), ForcesReplacement: true, Sensitive: sensitive}}}
		r := &renderer{b: &bytes.Buffer{}}
		r.diffs(c)
		return r.b.String()
	}
	got := render("a\nb\nc\n", "a\nB\nc\n", false)
	want := `      ~ script = <<-EOT # forces replacement
            a
          - b
          + B
            c
        EOT
`
	if got != want {
		t.Errorf("multi-line attribute:\n%s\nwant\n%s", got, want)
	}
	for _, c := range [][2]string{{"a\nb", "a\nb\n"}, {"a\nb\n", "a\n\x1b[31mb\n"}} {
		if got := render(c[0], c[1], false); !strings.Contains(got, "~ script = \"") || strings.Contains(got, "EOT") {
			t.Errorf("%q -> %q: %s, want it quoted", c[0], c[1], got)
		}
	}
	if got := render("a\nb\n", "a\nc\n", true); !strings.Contains(got, "(sensitive value) -> (sensitive value)") {
		t.Errorf("sensitive: %s", got)
	}
}
