package spec

import (
	"testing"
	"testing/fstest"
)

// TestCtxShared: blocks that refer to the same nodes are evaluated in one
// shared context, and still each get their own values (count.index,
// each.key, their own attributes).
func TestCtxShared(t *testing.T) {
	src := `
locals {
  port = 80
}
daemon "a" {
  command = ["sleep", "1"]
}
daemon "b" {
  command = ["sleep", "2"]
}
daemon "c" {
  count   = 2
  command = ["sleep", "${count.index}"]
}
daemon "d" {
  command = ["sleep", "${local.port}"]
}
daemon "e" {
  for_each = { x = "9" }
  command  = ["sleep", each.value, "${local.port}"]
}
`
	fsys := fstest.MapFS{"main.hcl": {Data: []byte(src)}}
	l := newLoader(fsys, "/p", Options{Schemas: testSchemas})
	l.run()
	if l.diags.HasErrors() {
		t.Fatal(l.diags.Error())
	}
	if got := len(l.ctxs.m); got != 3 {
		t.Fatalf("%d evaluation contexts for three sets of references (none: the local; the runtime; the runtime and the local)", got)
	}
	want := map[string]string{"daemon.a": "1", "daemon.b": "2", "daemon.c[0]": "0", "daemon.c[1]": "1", "daemon.d": "80", `daemon.e["x"]`: "9"}
	for _, r := range l.cfg.Resources {
		if w, ok := want[r.Addr.String()]; !ok || r.Command[1] != w {
			t.Fatalf("%s: command %q, want sleep %s", r.Addr, r.Command, w)
		}
	}
}
