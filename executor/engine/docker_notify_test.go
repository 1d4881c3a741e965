package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// notifydContext is a build context of testdata/notifyd, static, FROM
// scratch.
func notifydContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", filepath.Join(dir, "notifyd"), "./testdata/notifyd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building notifyd: %v\n%s", err, out)
	}
	df := "FROM scratch\nLABEL org.orch.test.context=" + strconv.Quote(dir) + "\nCOPY notifyd /notifyd\nENTRYPOINT [\"/notifyd\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A container declared with health { notify = true } gets its notify
// socket mounted: its READY=1 (after 2s) gates its dependent, and its
// resources block becomes the container's limits.
func TestDockerNotifyAndResources(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-notify")
	dockertest.RemoveProject(t, cli, project)
	u := startUp(t, fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "local" {}
daemon "slow" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
  command = ["-ready-after", "2s"]
  health {
    notify = true
  }
  resources {
    memory_max = "64MiB"
    cpu_max    = 0.5
    pids_max   = 50
  }
  stop {
    timeout = "1s"
  }
}
daemon "dep" {
  command    = ["sleep", "600"]
  depends_on = [daemon.slow]
}
`, project, notifydContext(t)))
	evs := u.waitFor("dep started", func(evs []ev) bool { return count(evs, "daemon.dep", "started") == 1 })
	started, healthy, dep := index(evs, "daemon.slow", "started", 0), index(evs, "daemon.slow", "healthy", 0), index(evs, "daemon.dep", "started", 0)
	if started < 0 || !(started < healthy && healthy < dep) {
		t.Fatalf("want slow started < slow healthy < dep started:\n%s", u.dump())
	}
	id := containerOf(t, cli, project, "daemon.slow")
	in, err := cli.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := in.Container.HostConfig
	if hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 50 {
		t.Fatalf("container limits: memory %d, nano cpus %d, pids %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit)
	}
	u.stop()
}
