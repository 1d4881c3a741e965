package spec

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// TestParallelEvaluation loads enough instances on one dependency level to
// be evaluated on several goroutines, with sensitive values (which the
// loader remembers for redaction) and references between blocks; run
// with -race it guards the shared state of evaluation.
func TestParallelEvaluation(t *testing.T) {
	var b strings.Builder
	b.WriteString("variable \"pass\" {\n  type      = string\n  default   = \"s3cret-value\"\n  sensitive = true\n}\n")
	b.WriteString("daemon \"base\" {\n  command = [\"/bin/base\"]\n}\n")
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&b, "daemon \"d%d\" {\n  command = [\"/bin/x\", \"%d\", daemon.base.name]\n  env = { PASS = var.pass, N = \"%d\" }\n}\n", i, i, i)
	}
	b.WriteString("daemon \"bad\" {\n  command = [\"/bin/x\"]\n  stop {\n    signal = var.pass\n  }\n}\n")
	fsys := fstest.MapFS{"main.hcl": {Data: []byte(b.String())}}
	_, diags := LoadFS(fsys, "/p", Options{Schemas: testSchemas})
	if !diags.HasErrors() || len(diags) != 1 {
		t.Fatalf("want exactly the one bad signal error, got %d: %s", len(diags), diags.Error())
	}
	if strings.Contains(diags.Error(), "s3cret") {
		t.Fatalf("a secret leaked into an error: %s", diags.Error())
	}
	// and once more without the error: every instance is there, in order
	src := strings.Replace(b.String(), "signal = var.pass", "signal = \"SIGINT\"", 1)
	cfg, diags := LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, "/p", Options{Schemas: testSchemas})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if len(cfg.Resources) != 602 || !cfg.Resources[2].Sensitive["env.PASS"] {
		t.Fatalf("%d resources; sensitive of %s: %v", len(cfg.Resources), cfg.Resources[2].Addr, cfg.Resources[2].Sensitive)
	}
}
