package planner

import (
	"reflect"
	"sort"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

const targetConfig = `
daemon "db" {
  command = ["/bin/db"]
}
job "migrate" {
  command    = ["/bin/migrate"]
  depends_on = [daemon.db]
}
daemon "api" {
  count      = 2
  command    = ["/bin/api"]
  depends_on = [job.migrate]
}
daemon "cache" {
  command = ["/bin/cache"]
}
daemon "web" {
  command    = ["/bin/web"]
  depends_on = [daemon.api]
}
`

func changeSet(p *Plan) map[string]string {
	out := map[string]string{}
	for _, c := range p.Changes {
		if c.Action != NoOp {
			out[c.Addr.String()] = c.Action.String()
		}
	}
	return out
}

func addrs(t *testing.T, names ...string) []spec.Address {
	var out []spec.Address
	for _, n := range names {
		a, err := spec.ParseAddress(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// running observes every stored instance running.
func running(stored map[spec.Address]*Stored) map[spec.Address]providers.Observed {
	out := map[spec.Address]providers.Observed{}
	for a := range stored {
		out[a] = providers.Observed{State: providers.StateRunning, Pid: 1}
	}
	return out
}

// TestTarget: -target plans the targets and what they need; a destroy,
// the targets and what needs them; a block address names all its
// instances; a name that matches nothing is an error.
func TestTarget(t *testing.T) {
	cfg := load(t, targetConfig, nil)
	p, diags := Make(Input{Config: cfg, Targets: addrs(t, "daemon.api[1]")})
	want := map[string]string{"daemon.db": "create", "job.migrate": "create", "daemon.api[1]": "create"}
	if got := changeSet(p); !reflect.DeepEqual(got, want) {
		t.Errorf("-target daemon.api[1]: %v, want %v", got, want)
	}
	if len(diags) != 1 || diags[0].Summary != "Resource targeting is in effect" {
		t.Errorf("want the targeting warning, got %v", diags)
	}
	p, _ = Make(Input{Config: cfg, Targets: addrs(t, "daemon.api", "daemon.cache")})
	want = map[string]string{"daemon.db": "create", "job.migrate": "create", "daemon.api[0]": "create",
		"daemon.api[1]": "create", "daemon.cache": "create"}
	if got := changeSet(p); !reflect.DeepEqual(got, want) {
		t.Errorf("-target daemon.api -target daemon.cache: %v, want %v", got, want)
	}

	stored := storedFrom(cfg)
	p, _ = Make(Input{Config: cfg, Stored: stored, Observed: running(stored), Destroy: true, Targets: addrs(t, "job.migrate")})
	want = map[string]string{"job.migrate": "delete", "daemon.api[0]": "delete", "daemon.api[1]": "delete", "daemon.web": "delete"}
	if got := changeSet(p); !reflect.DeepEqual(got, want) {
		t.Errorf("destroy -target job.migrate: %v, want %v", got, want)
	}

	// An instance no longer declared is deleted only when targeted.
	smaller := load(t, `daemon "db" {
  command = ["/bin/db"]
}
`, nil)
	p, _ = Make(Input{Config: smaller, Stored: stored, Observed: running(stored), Targets: addrs(t, "daemon.cache")})
	if got := changeSet(p); !reflect.DeepEqual(got, map[string]string{"daemon.cache": "delete"}) {
		t.Errorf("-target of an undeclared instance: %v", got)
	}

	_, diags = Make(Input{Config: cfg, Targets: addrs(t, "daemon.nope", "daemon.api[7]")})
	var missing []string
	for _, d := range diags {
		missing = append(missing, d.Summary+": "+d.Detail)
	}
	sort.Strings(missing)
	if len(missing) != 2 || missing[0] != "No such instance: -target daemon.api[7] names nothing that is declared or recorded." {
		t.Errorf("unknown targets: %v", missing)
	}
}

// TestReplaceRequested: -replace replaces an unchanged running instance
// (all of a block's with its block address), creates what is new as a
// create, and respects prevent_destroy.
func TestReplaceRequested(t *testing.T) {
	cfg := load(t, targetConfig, nil)
	stored := storedFrom(cfg)
	p, diags := Make(Input{Config: cfg, Stored: stored, Observed: running(stored), Replace: addrs(t, "daemon.api")})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := map[string]string{"daemon.api[0]": "replace", "daemon.api[1]": "replace"}
	if got := changeSet(p); !reflect.DeepEqual(got, want) {
		t.Errorf("-replace daemon.api: %v, want %v", got, want)
	}
	if c := p.Change(addrs(t, "daemon.api[0]")[0]); c.Reason.Kind != ReasonReplaceRequested {
		t.Errorf("reason %q", c.Reason)
	}
	guarded := load(t, `daemon "db" {
  command = ["/bin/db"]
  lifecycle {
    prevent_destroy = true
  }
}
`, nil)
	gs := storedFrom(guarded)
	_, diags = Make(Input{Config: guarded, Stored: gs, Observed: running(gs), Replace: addrs(t, "daemon.db")})
	if !diags.HasErrors() || diags[0].Summary != "Instance cannot be replaced" {
		t.Errorf("-replace of a prevent_destroy instance: %v", diags)
	}
}
