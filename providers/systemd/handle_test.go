package systemd_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/spec"
)

// Every address gets a unit of its own: names that clean to the same
// characters (a dash, a dot, an index, a for_each key) never share one,
// and every name is one systemd accepts.
func TestUnitNamesAreDistinct(t *testing.T) {
	d := func(name string, k spec.Key) spec.Address {
		return spec.Address{Kind: spec.KindDaemon, Name: name, Key: k}
	}
	addrs := []spec.Address{
		d("a-b", spec.NoKey), d("a.b", spec.NoKey), d("a_b", spec.NoKey), d("a--b", spec.NoKey),
		d("web", spec.IntKey(1)), d("web-1", spec.NoKey), d("web.1", spec.NoKey), d("web", spec.StringKey("1")),
		d("web", spec.StringKey("a b")), d("web", spec.StringKey("a-b")), d("web", spec.StringKey("a.b")),
		{Kind: spec.KindJob, Name: "web", Key: spec.IntKey(1)},
		d("very-long-"+strings.Repeat("x", 120), spec.NoKey), d("very-long-"+strings.Repeat("x", 119)+"y", spec.NoKey),
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+\.service$`)
	seen := map[string]spec.Address{}
	for _, a := range addrs {
		u := systemd.UnitName("shop", a)
		if !valid.MatchString(u) || len(u) > 255 {
			t.Errorf("%s: %q is not a valid unit name", a, u)
		}
		if o, ok := seen[u]; ok {
			t.Errorf("%s and %s share the unit %s", o, a, u)
		}
		seen[u] = a
	}
	for a, want := range map[spec.Address]string{
		d("api", spec.IntKey(0)): "orch-shop-daemon-api.0.service",
		d("my-app", spec.NoKey):  "orch-shop-daemon-my-app.service",
	} {
		if got := systemd.UnitName("shop", a); got != want {
			t.Errorf("%s: unit %q, want %q", a, got, want)
		}
	}
}
