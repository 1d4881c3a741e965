package engine

import (
	"context"
	"os"
	"os/user"
	"strings"
	"testing"

	"github.com/orch-dev/orch/spec"
)

// TestExecProbeRunsAsTheDaemonsUser: an exec health check of a daemon
// declared with a user runs as that user on a host runtime (a probe of a
// postgres daemon ran as root, and postgres logged a failed login at every
// probe), and as orch for a container, whose users are its image's.
func TestExecProbeRunsAsTheDaemonsUser(t *testing.T) {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody on this host: %v", err)
	}
	asNobody := []string{"sh", "-c", "test \"$(id -u)\" = " + u.Uid}
	host := &spec.Resource{User: "nobody", Dir: "/", Runtime: spec.Address{Kind: spec.KindRuntime, Type: "process", Name: "default"}}
	err = probeExec(context.Background(), asNobody, host)
	if os.Geteuid() != 0 {
		if err == nil || !strings.Contains(err.Error(), "needs orch to run as root") {
			t.Fatalf("probe as nobody without root: %v, want the refusal", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("the probe did not run as nobody: %v", err)
	}
	container := *host
	container.Runtime = spec.Address{Kind: spec.KindRuntime, Type: "docker", Name: "default"}
	if err := probeExec(context.Background(), asNobody, &container); err == nil {
		t.Fatal("the probe of a container's daemon ran as the image's user on the host")
	}
}

// TestLocalPort: the port of this host a check reaches, when it reaches
// one: loopback, unspecified or localhost, with the scheme's port by
// default; none for another host or an exec check.
func TestLocalPort(t *testing.T) {
	for _, tc := range []struct {
		h    spec.Health
		port int
		ok   bool
	}{
		{spec.Health{Kind: spec.HealthHTTP, HTTP: "http://127.0.0.1:8191/"}, 8191, true},
		{spec.Health{Kind: spec.HealthHTTP, HTTP: "http://localhost/healthz"}, 80, true},
		{spec.Health{Kind: spec.HealthHTTP, HTTP: "https://[::1]/"}, 443, true},
		{spec.Health{Kind: spec.HealthTCP, TCP: "0.0.0.0:5432"}, 5432, true},
		{spec.Health{Kind: spec.HealthTCP, TCP: "10.1.2.3:5432"}, 0, false},
		{spec.Health{Kind: spec.HealthHTTP, HTTP: "http://db.internal:80/"}, 0, false},
		{spec.Health{Kind: spec.HealthExec, Exec: []string{"true"}}, 0, false},
	} {
		port, ok := LocalPort(&tc.h)
		if port != tc.port || ok != tc.ok {
			t.Errorf("LocalPort(%+v) = %d, %v; want %d, %v", tc.h, port, ok, tc.port, tc.ok)
		}
	}
}
