package spec

import (
	"reflect"
	"sort"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestBodyContentAsContent: bodyContent gives what hclsyntax's Content
// gives, content and diagnostics, whether it takes its own way or not.
func TestBodyContentAsContent(t *testing.T) {
	schemas := []*hcl.BodySchema{
		{Attributes: []hcl.AttributeSchema{{Name: "a"}, {Name: "b"}}, Blocks: []hcl.BlockHeaderSchema{{Type: "x"}, {Type: "y", LabelNames: []string{"n"}}}},
		{Attributes: []hcl.AttributeSchema{{Name: "a", Required: true}, {Name: "b"}}, Blocks: []hcl.BlockHeaderSchema{{Type: "x"}}},
		{Attributes: []hcl.AttributeSchema{{Name: "a"}, {Name: "a", Required: true}}},
		{Blocks: []hcl.BlockHeaderSchema{{Type: "x"}, {Type: "x", LabelNames: []string{"n"}}}},
		{},
		rootSchema,
	}
	srcs := []string{
		"",
		"a = 1\n",
		"a = 1\nb = \"s\"\n",
		"a = 1\nc = 2\n",
		"x {\n  z = 1\n}\n",
		"x {}\nx {}\ny \"l\" {}\n",
		"y {}\n",
		"y \"l\" \"m\" {}\n",
		"x \"l\" {}\n",
		"z {}\n",
		"a = 1\nx {}\ny \"k\" {\n  q = 1\n}\n",
		"b = 2\n",
		"daemon \"d\" {\n  command = [\"x\"]\n}\n",
		"daemon {}\n",
		"runtime \"process\" \"p\" {}\nlocals {\n  a = 1\n}\n",
	}
	l := newLoader(nil, "/p", Options{})
	for si, s := range schemas {
		for _, src := range srcs {
			f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatalf("%q: %s", src, diags.Error())
			}
			body := f.Body.(*hclsyntax.Body)
			want, wd := body.Content(s)
			got, gd := l.bodyContent(body, s)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("schema %d, %q: content\n%#v\nwant\n%#v", si, src, got, want)
			}
			// (Content reports unsupported arguments in map order)
			sortDiags(gd)
			sortDiags(wd)
			if !reflect.DeepEqual(gd, wd) {
				t.Fatalf("schema %d, %q: diagnostics\n%v\nwant\n%v", si, src, gd, wd)
			}
		}
	}
}

func sortDiags(d hcl.Diagnostics) {
	sort.SliceStable(d, func(i, j int) bool { return d[i].Error() < d[j].Error() })
}
