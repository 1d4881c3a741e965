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

// FuzzStringDiff: for any two strings, the diff line by line is an edit of
// the old lines into the new ones, and the heredoc written for a change
// holds every changed line, marked, and never a raw control character.
func FuzzStringDiff(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nB\nc\n")
	f.Add("hello", "hello\nworld\n")
	f.Add("x\n\ny", "x\ny\n\n")
	f.Add("l1\nl2\nl3\nl4\nl5\nl6\nl7\n", "l1\nl2\nl3\nX\nl5\nl6\nl7\n")
	f.Add("a\tb\n", "a\x1bb\n")
	f.Fuzz(func(t *testing.T, old, new string) {
		a, b := splitLines(old), splitLines(new)
		var olds, news []string
		for _, op := range diffLines(a, b) {
			if op.kind != '+' {
				olds = append(olds, op.line)
			}
			if op.kind != '-' {
				news = append(news, op.line)
			}
		}
		if strings.Join(olds, "\n") != strings.Join(a, "\n") || strings.Join(news, "\n") != strings.Join(b, "\n") {
			t.Fatalf("diffLines(%q, %q) does not edit one into the other", old, new)
		}
		ops, ok := lineDiff(old, new)
		if !ok {
			return
		}
		r := &renderer{}
		var buf bytes.Buffer
		r.appendLineDiff(&buf, ops, 8, "")
		out := buf.String()
		for _, c := range out {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				t.Fatalf("control character %q written for %q -> %q:\n%s", c, old, new, out)
			}
		}
		for _, op := range diffLines(a, b) {
			if op.kind != ' ' && !strings.Contains(out, string(op.kind)+" "+op.line) && op.line != "" {
				t.Fatalf("changed line %q (%c) missing for %q -> %q:\n%s", op.line, op.kind, old, new, out)
			}
		}
	})
}
