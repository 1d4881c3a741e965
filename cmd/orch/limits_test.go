package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestValidateDeepNesting: 60,000 unclosed "[", "{" or "(" saved into a
// configuration (issue 18: it overflowed the Go stack inside HCL's parser,
// and orch validate died with exit status 2) is refused by orch validate
// with exit status 1 and one error at the line and column where the
// nesting cap is passed; -json says the same.
func TestValidateDeepNesting(t *testing.T) {
	for _, open := range []string{"[", "{", "("} {
		t.Run(open, func(t *testing.T) {
			src := validConfig + "\nlocals {\n  deep = " + strings.Repeat(open, 60000) + "\n}\n"
			line := strings.Count(validConfig, "\n") + 3
			dir := writeFiles(t, map[string]string{"main.hcl": src})
			r := orch(t, dir, nil, "validate").want(t, 1)
			// locals { is a level: the 256th open passes the cap
			where := fmt.Sprintf("on main.hcl line %d:", line)
			if !strings.Contains(r.stderr, "Configuration nested too deeply") || !strings.Contains(r.stderr, where) ||
				!strings.Contains(r.stderr, "deep = "+strings.Repeat(open, 40)) {
				t.Fatalf("want the nesting error at %s, got:\n%.2000s", where, r.stderr)
			}
			if strings.Contains(r.stderr, "stack overflow") || strings.Contains(r.stderr, "goroutine") {
				t.Fatalf("a crash:\n%.2000s", r.stderr)
			}

			r = orch(t, dir, nil, "validate", "-json").want(t, 1)
			var out struct {
				Valid       bool `json:"valid"`
				ErrorCount  int  `json:"error_count"`
				Diagnostics []struct {
					Summary string `json:"summary"`
					Range   struct {
						Filename string `json:"filename"`
						Start    struct{ Line, Column int }
					} `json:"range"`
				} `json:"diagnostics"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("%v:\n%.2000s", err, r.stdout)
			}
			if out.Valid || out.ErrorCount != 1 || len(out.Diagnostics) != 1 {
				t.Fatalf("want one error: %.2000s", r.stdout)
			}
			d := out.Diagnostics[0]
			if d.Summary != "Configuration nested too deeply" || d.Range.Start.Line != line || d.Range.Start.Column != len("  deep = ")+256 {
				t.Fatalf("got %+v", d)
			}
		})
	}
}
