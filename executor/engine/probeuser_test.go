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
