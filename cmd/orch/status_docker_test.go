package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// TestStatusWithDockerAway: orch status without an agent, while the Docker
// Engine of a runtime cannot be reached (the real Engine behind a proxy
// the test cuts), still shows everything: the container as unknown, with
// one warning naming the runtime, and the process daemon as running; and
// it observes the container through the runtime's own host, not the
// default Engine.
func TestStatusWithDockerAway(t *testing.T) {
	cli := dockertest.Engine(t)
	proj := dockertest.Project("orch-status-away")
	dockertest.RemoveProject(t, cli, proj)
	image := "orch-test/server:" + proj
	dockertest.BuildImage(t, cli, dockertest.ServerContext(t, ""), image, proj)
	px := dockertest.NewProxy(t)
	dir := project(t, fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "away" {
  host = %q
}
daemon "web" {
  runtime = runtime.docker.away
  image   = %q
  stop {
    timeout = "1s"
  }
}
daemon "tick" {
  command = ["/bin/sleep", "600"]
}
`, proj, px.Host(), image))
	t.Cleanup(func() {
		px.Down() // then Up, whether the test left it down or not: the
		px.Up()   // destroy of project's cleanup goes through it
	})
	orch(t, dir, nil, "apply", "-auto-approve", dir).want(t, 0)
	r := orch(t, dir, nil, "status", dir).want(t, 0)
	if !lineHas(r.stdout, "daemon.web", "running") {
		t.Fatalf("status with the Engine reachable:\n%s", r.stdout)
	}

	px.Down()
	r = orch(t, dir, nil, "status", dir).want(t, 0)
	if !lineHas(r.stdout, "daemon.web", "unknown") || !lineHas(r.stdout, "daemon.tick", "running") {
		t.Errorf("status with the Engine away:\n%s", r.stdout)
	}
	if strings.Count(r.stderr, "Warning: runtime.docker.away:") != 1 {
		t.Errorf("want one warning naming the runtime, got:\n%s", r.stderr)
	}
	px.Up()
	orch(t, dir, nil, "destroy", "-auto-approve", dir).want(t, 0)
}

// lineHas says whether a line of out starts with addr and has word as a
// field.
func lineHas(out, addr, word string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == addr {
			for _, w := range f[1:] {
				if w == word {
					return true
				}
			}
		}
	}
	return false
}
