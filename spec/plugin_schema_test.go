package spec

import (
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

var filesPluginSchema = RuntimeSchema{
	Kind:    "files",
	Runtime: []AttrSchema{{Name: "root", Type: cty.String, Required: true}},
	Daemon: []AttrSchema{
		{Name: "content", Type: cty.String, Required: true},
		{Name: "mode", Type: cty.String, Default: cty.StringVal("0644")},
		{Name: "filename", Type: cty.String, ForcesReplacement: true},
	},
}

const pluginConfig = `runtime "files" "local" {
  plugin = "./bin/orch-provider-files"
  root   = "/srv/files"
}

daemon "greeting" {
  runtime = runtime.files.local
  content = "hello"
}
`

// Without the plugin's schema, a plugin runtime accepts any attribute;
// with it, the runtime and its daemons are validated like built-in ones,
// defaults filled in and values converted.
func TestPluginSchemas(t *testing.T) {
	files := map[string]string{"main.hcl": pluginConfig, "bin/orch-provider-files": "#!/bin/sh\n"}
	cfg := load(t, files, Options{})
	r := cfg.Resource(mustAddr(t, "daemon.greeting"))
	if _, ok := r.Attrs["mode"]; ok {
		t.Fatalf("a default without the schema: %v", r.Attrs)
	}

	cfg = load(t, files, Options{PluginSchemas: map[string]RuntimeSchema{"files": filesPluginSchema}})
	r = cfg.Resource(mustAddr(t, "daemon.greeting"))
	if r.Attrs["mode"] != cty.StringVal("0644") || r.Attrs["content"] != cty.StringVal("hello") {
		t.Fatalf("attrs %v", r.Attrs)
	}
	rt := cfg.Runtime(mustAddr(t, "runtime.files.local"))
	if rt.Plugin != okDir+"/bin/orch-provider-files" || rt.Attrs["root"] != cty.StringVal("/srv/files") {
		t.Fatalf("runtime %+v", rt)
	}

	bad := strings.NewReplacer(`root   = "/srv/files"`, `rot    = "/srv/files"`, `content = "hello"`, `contents = "hello"`).Replace(pluginConfig)
	files["main.hcl"] = bad
	_, diags := loadFiles(files, Options{PluginSchemas: map[string]RuntimeSchema{"files": filesPluginSchema}})
	var got []string
	for _, d := range diags {
		got = append(got, d.Subject.String()+": "+d.Summary+": "+d.Detail)
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{
		`main.hcl:3,3-6: Unsupported argument: An argument named "rot" is not expected in runtime "files" (as its plugin declares it). Did you mean "root"?`,
		`main.hcl:8,3-11: Unsupported argument`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("diagnostics do not say %q:\n%s", want, text)
		}
	}
}
