package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/providers/docker/dockertest"
)

// Docker under orch up, against the real Engine (skipped without one,
// failed under CI). The image is built by orch itself from a build block:
// the static test server FROM scratch, with a HEALTHCHECK.

// containerOf returns the id of the running container of addr in project.
func containerOf(t *testing.T, cli *client.Client, project, addr string) string {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{
		Filters: client.Filters{}.Add("label", "org.orch.project="+project).Add("label", "org.orch.address="+addr)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d running containers of %s", len(list.Items), addr)
	}
	return list.Items[0].ID
}

// TestDockerUp: a container whose image declares a HEALTHCHECK gates its
// dependent until healthy; docker kill and docker rm -f behind orch's back
// are noticed at once (the Engine pushes them) and the container is
// started, or created, again; a failing image HEALTHCHECK restarts it.
func TestDockerUp(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-up")
	dockertest.RemoveProject(t, cli, project)
	ctxDir := dockertest.ServerContext(t, dockertest.HealthcheckLine("1s"))
	dbPort, apiPort := freePort(t), freePort(t)
	u := startUp(t, fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "local" {}
daemon "db" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
  ports = ["127.0.0.1:%d:8080"]
  restart {
    backoff      = "1ms"
    max_restarts = 0
  }
  stop {
    timeout = "2s"
  }
}
daemon "api" {
  runtime    = runtime.docker.local
  build {
    context = %q
  }
  ports      = ["127.0.0.1:%d:8080"]
  depends_on = [daemon.db]
  restart {
    backoff      = "1ms"
    max_restarts = 0
  }
  stop {
    timeout = "2s"
  }
}
`, project, ctxDir, dbPort, ctxDir, apiPort))

	evs := u.waitFor("api started", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 1 })
	if h, a := index(evs, "daemon.db", "healthy", 0), index(evs, "daemon.api", "started", 0); h < 0 || h > a {
		t.Fatalf("api started before db was healthy: %+v", evs)
	}
	u.waitFor("api healthy", func(evs []ev) bool { return count(evs, "daemon.api", "healthy") == 1 })

	// orch logs reads a container's log through the Engine: -n, then -f.
	logs := exec.Command(orchBin, "logs", "-n", "1", "daemon.api", u.dir)
	logs.Env = cleanEnv(t)
	out, err := logs.CombinedOutput()
	if err != nil || string(out) != "listening on 8080 args []\n" {
		t.Errorf("orch logs -n 1: %q %v", out, err)
	}
	follow := exec.Command(orchBin, "logs", "-f", "-n", "-1", "daemon.db", u.dir)
	follow.Env = cleanEnv(t)
	var fout syncBuffer
	follow.Stdout = &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(fout.String(), "listening on 8080"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("orch logs -f printed %q", fout.String())
		}
	}

	// docker kill behind orch's back.
	id := containerOf(t, cli, project, "daemon.db")
	if _, err := cli.ContainerKill(context.Background(), id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	// The followed log ends with the container.
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("orch logs -f: %v", err)
		}
	case <-time.After(20 * time.Second):
		follow.Process.Kill()
		t.Error("orch logs -f went on after the container was killed")
	}
	evs = u.waitFor("db restarted", func(evs []ev) bool { return count(evs, "daemon.db", "started") == 2 })
	if i := index(evs, "daemon.db", "exited", 0); i < 0 || evs[i].ExitCode == nil || *evs[i].ExitCode != 137 {
		t.Errorf("no exit 137 for docker kill: %+v", evs)
	}
	if id2 := containerOf(t, cli, project, "daemon.db"); id2 == id {
		t.Error("the killed container was not replaced by a new one")
	}

	// docker rm -f behind orch's back: created again.
	id = containerOf(t, cli, project, "daemon.api")
	if _, err := cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	u.waitFor("api created again", func(evs []ev) bool { return count(evs, "daemon.api", "started") == 2 })
	u.waitFor("api healthy again", func(evs []ev) bool { return count(evs, "daemon.api", "healthy") == 2 })

	// The image's HEALTHCHECK fails: unhealthy, then restarted.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/sick", apiPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	evs = u.waitFor("api unhealthy and restarted", func(evs []ev) bool {
		return count(evs, "daemon.api", "unhealthy") == 1 && count(evs, "daemon.api", "started") == 3
	})
	if i := index(evs, "daemon.api", "unhealthy", 0); !strings.Contains(evs[i].Detail, "health check") {
		t.Errorf("unhealthy detail %q", evs[i].Detail)
	}
	u.waitFor("api healthy after its restart", func(evs []ev) bool { return count(evs, "daemon.api", "healthy") == 3 })
}

// TestDockerUpErrors: a host port already in use and an image that is
// neither local nor pullable are failures that name the daemon, and the
// port or the image.
func TestDockerUpErrors(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-up-errors")
	dockertest.RemoveProject(t, cli, project)
	ctxDir := dockertest.ServerContext(t, "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	missing := "orch-test/missing:" + project
	u := startUp(t, fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "local" {}
daemon "web" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
  ports = ["127.0.0.1:%d:8080"]
  restart {
    policy = "never"
  }
}
daemon "ghost" {
  runtime = runtime.docker.local
  image   = %q
  restart {
    policy = "never"
  }
}
`, project, ctxDir, port, missing))
	evs := u.waitFor("both failed", func(evs []ev) bool {
		return count(evs, "daemon.web", "failed") > 0 && count(evs, "daemon.ghost", "failed") > 0
	})
	web := evs[index(evs, "daemon.web", "failed", 0)].Detail
	if want := fmt.Sprintf("host port %d (ports entry \"127.0.0.1:%d:8080\") is already in use", port, port); !strings.Contains(web, want) {
		t.Errorf("web failed with %q; want it to say %q", web, want)
	}
	ghost := evs[index(evs, "daemon.ghost", "failed", 0)].Detail
	if want := fmt.Sprintf("image %q not found locally", missing); !strings.Contains(ghost, want) || !strings.Contains(ghost, "daemon.ghost") {
		t.Errorf("ghost failed with %q; want it to name daemon.ghost and say %q", ghost, want)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDockerServiceRoute: a container publishes its host port through
// its service block as a native daemon does: once its image's
// HEALTHCHECK passes it is routed on the proxy, and a request through
// the proxy reaches the container.
func TestDockerServiceRoute(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-svc")
	dockertest.RemoveProject(t, cli, project)
	ctxDir := dockertest.ServerContext(t, dockertest.HealthcheckLine("1s"))
	port, proxyPort := freePort(t), freePort(t)
	u := startUp(t, dockerWebConfig(project, proxyPort, ctxDir, "from-the-container", port, ""))
	evs := u.waitFor("web routed", func(evs []ev) bool { return count(evs, "daemon.web", "service_registered") == 1 })
	if h, r := index(evs, "daemon.web", "healthy", 0), index(evs, "daemon.web", "service_registered", 0); h < 0 || h > r {
		t.Fatalf("routed before its HEALTHCHECK passed:\n%s", u.dump())
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", proxyPort), nil)
	req.Host = "web.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "greeting=from-the-container") {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, body)
	}
}

// TestDockerReplaceWithoutHealthCheck: a container with a service and no
// health check (no HEALTHCHECK in its image) is ready once it runs, as
// before: a runtime that cannot tell an instance's own listeners apart
// is not asked (listening.go), so a create_before_destroy replace goes
// through at once instead of waiting for a listener it would never be
// told of, and being reverted.
func TestDockerReplaceWithoutHealthCheck(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-cbd")
	dockertest.RemoveProject(t, cli, project)
	ctxDir := dockertest.ServerContext(t, "")
	ports := [2]int{freePort(t), freePort(t)}
	proxyPort := freePort(t)
	conf := func(v int) string {
		return dockerWebConfig(project, proxyPort, ctxDir, fmt.Sprintf("v%d", v), ports[v-1], "lifecycle { create_before_destroy = true }")
	}
	dir := t.TempDir()
	u := startUpIn(t, dir, conf(1))
	u.waitFor("web routed", func(evs []ev) bool { return count(evs, "daemon.web", "service_registered") == 1 })
	renameSave(t, dir, conf(2))
	evs := u.waitFor("web replaced", func(evs []ev) bool {
		return count(evs, "daemon.web", "stopped") == 1 || count(evs, "daemon.web", "failed") > 0
	})
	if n := count(evs, "daemon.web", "failed"); n != 0 {
		t.Fatalf("the replace failed:\n%s", u.dump())
	}
}

// dockerWebConfig is daemon "web", a container of the test server built
// from ctxDir, greeting as given, published on port of the host and as
// service "web" on the proxy at proxyPort; extra goes into its block.
func dockerWebConfig(project string, proxyPort int, ctxDir, greeting string, port int, extra string) string {
	return fmt.Sprintf(`
orch {
  name  = %q
  proxy { listen = "127.0.0.1:%d" }
}
runtime "docker" "local" {}
daemon "web" {
  runtime = runtime.docker.local
  build {
    context = %q
  }
  env   = { GREETING = %q }
  ports = ["127.0.0.1:%d:8080"]
  stop {
    timeout = "2s"
  }
  service {
    route = "web.localhost/"
    port  = %d
  }
  %s
}
`, project, proxyPort, ctxDir, greeting, port, port, extra)
}
