package main

import (
	"strings"
	"testing"
)

// orch validate and orch plan report a program that does not exist at its
// place in the command, before anything is applied.
func TestValidateReportsMissingProgram(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
daemon "api" {
  command = ["/nonexistent/bin/api", "--port", "8080"]
}
`})
	for _, verb := range []string{"validate", "plan"} {
		r := orch(t, dir, nil, verb).want(t, 1)
		out := r.stdout + r.stderr
		if !strings.Contains(out, "/nonexistent/bin/api") || !strings.Contains(out, "main.hcl line 3") {
			t.Errorf("orch %s does not point at the missing program (main.hcl line 3):\n%s", verb, out)
		}
	}
}

// orch fmt refuses input nested past the limit with a diagnostic, instead
// of overflowing the parser's stack.
func TestFmtDeepNesting(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": "x = " + strings.Repeat("[", 60000) + "\n"})
	r := orch(t, dir, nil, "fmt", "-check").want(t, 1)
	if !strings.Contains(r.stderr, "nested too deeply") {
		t.Errorf("orch fmt on 60,000 [: %s", r.stderr)
	}
}
