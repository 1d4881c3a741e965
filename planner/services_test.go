package planner

import (
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

const servicesSrc = `
orch {
  dns {
    listen = "127.0.0.1:5353"
  }
}
daemon "api" {
  count   = 2
  command = ["api"]
  service {
    port  = 8080 + count.index
    route = "api.localhost/v1"
    mdns  = "_http._tcp"
  }
}
`

// The plan shows what each change publishes and withdraws: DNS names,
// routes, mDNS announcements.
func TestPlanShowsPublished(t *testing.T) {
	cfg := load(t, servicesSrc, nil)
	p, diags := Make(Input{Config: cfg, Schemas: testSchemas})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	out := Render(p, RenderOptions{})
	for _, want := range []string{
		"# + dns 0.api.orch.internal., api.orch.internal. -> 127.0.0.1:8080",
		"# + dns 1.api.orch.internal., api.orch.internal. -> 127.0.0.1:8081",
		"# + route api.localhost/v1 -> 127.0.0.1:8081",
		"# + mdns _http._tcp port 8080",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}

	// An in-place change of the route: the old one withdrawn, the new
	// one published; the DNS names stay (not listed).
	stored := storedFrom(cfg)
	cfg2 := load(t, strings.Replace(servicesSrc, `"api.localhost/v1"`, `"api.localhost/v2"`, 1), nil)
	obs := map[spec.Address]providers.Observed{}
	for a := range stored {
		obs[a] = providers.Observed{State: providers.StateRunning, Pid: 1}
	}
	p, diags = Make(Input{Config: cfg2, Schemas: testSchemas, Stored: stored, Observed: obs})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	out = Render(p, RenderOptions{})
	if !strings.Contains(out, "# - route api.localhost/v1 -> 127.0.0.1:8080") || !strings.Contains(out, "# + route api.localhost/v2 -> 127.0.0.1:8080") || strings.Contains(out, "dns") {
		t.Errorf("route change:\n%s", out)
	}

	// Destroy: everything withdrawn.
	p, _ = Make(Input{Config: cfg, Schemas: testSchemas, Stored: stored, Observed: obs, Destroy: true})
	out = Render(p, RenderOptions{})
	if !strings.Contains(out, "# - dns 1.api.orch.internal., api.orch.internal. -> 127.0.0.1:8081") || !strings.Contains(out, "# - mdns _http._tcp port 8081") {
		t.Errorf("destroy:\n%s", out)
	}
}

func TestServiceLabel(t *testing.T) {
	for _, c := range []struct {
		k    spec.Key
		want string
	}{{spec.NoKey, "0"}, {spec.IntKey(3), "3"}, {spec.Key{Type: spec.StringKeyType, Str: "EU-west"}, "eu-west"}} {
		if got := ServiceLabel(spec.Address{Kind: spec.KindDaemon, Name: "x", Key: c.k}); got != c.want {
			t.Errorf("%v: %q, want %q", c.k, got, c.want)
		}
	}
	if got := ServiceLabel(spec.Address{Kind: spec.KindDaemon, Name: "x", Key: spec.Key{Type: spec.StringKeyType, Str: "a b"}}); !strings.HasPrefix(got, "k") || len(got) != 9 {
		t.Errorf("a b: %q", got)
	}
}
