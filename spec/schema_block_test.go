package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/zclconf/go-cty/cty"
)

// blockSchemas has a runtime kind with a nested block whose Resolve reads
// the directory it names, an attribute waived by the block, and Checks.
func blockSchemas(calls *int) map[string]RuntimeSchema {
	return map[string]RuntimeSchema{
		"process": {Kind: "process", CommandRequired: true},
		"box": {
			Kind: "box",
			Daemon: []AttrSchema{
				{Name: "image", Type: cty.String, Required: true, RequiredUnless: "build", Doc: "the image"},
				{Name: "ports", Type: cty.List(cty.String), Check: func(v cty.Value) error {
					for i, e := range v.AsValueSlice() {
						if !strings.Contains(e.AsString(), ":") {
							return &CheckError{InList: true, Index: i, Summary: "Invalid port mapping", Err: fmt.Errorf("%q has no ':'", e.AsString())}
						}
					}
					return nil
				}},
			},
			Blocks: []BlockSchema{{
				Name: "build",
				Attrs: []AttrSchema{
					{Name: "context", Type: cty.String, Required: true},
					{Name: "file", Type: cty.String, Default: cty.StringVal("Boxfile")},
				},
				Resolve: func(v cty.Value, fc FileContext) (cty.Value, error) {
					*calls++
					ctx := v.GetAttr("context").AsString()
					fsys, abs, err := fc.DirFS(ctx)
					if err != nil {
						return cty.NilVal, &CheckError{Attr: "context", Summary: "Build context not found", Err: err}
					}
					b, err := fs.ReadFile(fsys, v.GetAttr("file").AsString())
					if err != nil {
						return cty.NilVal, &CheckError{Attr: "file", Err: errors.New("no such file in the context")}
					}
					m := v.AsValueMap()
					m["context"] = cty.StringVal(abs)
					m["content"] = cty.StringVal(string(b))
					return cty.ObjectVal(m), nil
				},
			}},
		},
	}
}

func TestRuntimeBlock(t *testing.T) {
	calls := 0
	fsys := fstest.MapFS{
		"main.hcl": {Data: []byte(`
runtime "box" "b" {}
daemon "web" {
  runtime = runtime.box.b
  count   = 3
  ports   = ["80:80"]
  build {
    context = "./web"
  }
}
daemon "ref" {
  runtime = runtime.box.b
  image   = daemon.web[0].build.file
  lifecycle {
    ignore_changes = [build]
  }
}
`)},
		"web/Boxfile": {Data: []byte("FROM x")},
	}
	cfg, diags := LoadFS(fsys, "/cfg", Options{Schemas: blockSchemas(&calls)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Resource(Address{Kind: KindDaemon, Name: "web", Key: IntKey(2)})
	b := r.Attrs["build"]
	if b.GetAttr("context").AsString() != "/cfg/web" || b.GetAttr("content").AsString() != "FROM x" || b.GetAttr("file").AsString() != "Boxfile" {
		t.Errorf("build = %#v", b)
	}
	if _, ok := r.Ranges.Get("build"); !ok {
		t.Error("no range for the build block")
	}
	if calls != 1 {
		t.Errorf("Resolve called %d times for three equal blocks", calls)
	}
	if img := cfg.Resource(Address{Kind: KindDaemon, Name: "ref"}).Attrs["image"]; img.AsString() != "Boxfile" {
		t.Errorf("image = %#v", img)
	}
}

func TestRuntimeBlockErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		line       int
		summary    string
	}{
		{"no image, no build", "daemon \"a\" {\n  runtime = runtime.box.b\n}\n", 2, "Missing required argument"},
		{"missing context", "daemon \"a\" {\n  runtime = runtime.box.b\n  build {\n    context = \"./nope\"\n  }\n}\n", 5, "Build context not found"},
		{"missing file", "daemon \"a\" {\n  runtime = runtime.box.b\n  build {\n    context = \"./web\"\n    file = \"Other\"\n  }\n}\n", 6, "Invalid file"},
		{"context required", "daemon \"a\" {\n  runtime = runtime.box.b\n  build {\n  }\n}\n", 4, "Missing required argument"},
		{"unknown attribute", "daemon \"a\" {\n  runtime = runtime.box.b\n  build {\n    context = \"./web\"\n    contxt = 1\n  }\n}\n", 6, "Unsupported argument"},
		{"two builds", "daemon \"a\" {\n  runtime = runtime.box.b\n  build {\n    context = \"./web\"\n  }\n  build {\n    context = \"./web\"\n  }\n}\n", 7, "Duplicate build block"},
		{"bad port element", "daemon \"a\" {\n  runtime = runtime.box.b\n  image = \"x\"\n  ports = [\"80:80\",\n    \"8080\"]\n}\n", 6, "Invalid port mapping"},
		{"build on process", "daemon \"a\" {\n  command = [\"x\"]\n  build {\n    context = \"./web\"\n  }\n}\n", 4, "Unsupported block type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			fsys := fstest.MapFS{
				"main.hcl":    {Data: []byte("runtime \"box\" \"b\" {}\n" + tc.body)},
				"web/Boxfile": {Data: []byte("FROM x")},
			}
			_, diags := LoadFS(fsys, "/cfg", Options{Schemas: blockSchemas(&calls)})
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			for _, d := range diags {
				if d.Summary == tc.summary && d.Subject != nil && d.Subject.Start.Line == tc.line {
					if tc.name == "bad port element" && d.Subject.Start.Column != 5 {
						t.Errorf("points at column %d, not at the element", d.Subject.Start.Column)
					}
					return
				}
			}
			t.Errorf("want %q at line %d; got:\n%s", tc.summary, tc.line, renderDiags(diags))
		})
	}
}
