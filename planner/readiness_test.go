package planner

import (
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// TestSharedReadinessWarns: a create_before_destroy replace whose new
// instance would be checked at the old one's address (the same health
// URL) is planned with a warning naming the daemon and the check; one
// whose check moves with it (a new port) is not, nor one of a port of this
// host on a runtime that tells whose processes listen there
// (OwnsListeners: the engine holds the new instance until it listens
// itself), while a check of another host still is.
func TestSharedReadinessWarns(t *testing.T) {
	const src = `
daemon "app" {
  command = ["/bin/app", "--id", "%ID%", "--port", "%PORT%"]
  health {
    http = "http://%HOST%:%PORT%/"
  }
  lifecycle {
    create_before_destroy = true
  }
}
`
	host := "127.0.0.1"
	cfg := func(id, port string) *spec.Config {
		return load(t, strings.NewReplacer("%ID%", id, "%PORT%", port, "%HOST%", host).Replace(src), nil)
	}
	old := cfg("v1", "8080")
	schemas := testSchemas
	plan := func(next *spec.Config) []string {
		stored := storedFrom(old)
		observed := map[spec.Address]providers.Observed{}
		for a := range stored {
			observed[a] = providers.Observed{State: providers.StateRunning, Pid: 10}
		}
		p, diags := Make(Input{Config: next, Schemas: schemas, Stored: stored, Observed: observed})
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		if len(p.Changes) != 1 || p.Changes[0].Action != Replace {
			t.Fatalf("changes %v, want one replace", p.Changes)
		}
		var warned []string
		for _, d := range diags {
			warned = append(warned, d.Summary+": "+d.Detail)
		}
		return warned
	}
	w := plan(cfg("v2", "8080"))
	if len(w) != 1 || !strings.Contains(w[0], "daemon.app") || !strings.Contains(w[0], "http http://127.0.0.1:8080/") {
		t.Fatalf("a replace checked at the old instance's URL warned %q", w)
	}
	if w := plan(cfg("v2", "8081")); len(w) != 0 {
		t.Fatalf("a replace whose check moves with it warned %q", w)
	}

	schemas = map[string]spec.RuntimeSchema{}
	for k, s := range testSchemas {
		s.OwnsListeners = true
		schemas[k] = s
	}
	if w := plan(cfg("v2", "8080")); len(w) != 0 {
		t.Fatalf("a replace checked on a port of this host, on a runtime that owns its listeners, warned %q", w)
	}
	host = "app.internal"
	old = cfg("v1", "8080")
	if w := plan(cfg("v2", "8080")); len(w) != 1 || !strings.Contains(w[0], "http http://app.internal:8080/") {
		t.Fatalf("a replace checked at another host's URL, the old instance's, warned %q", w)
	}
}
