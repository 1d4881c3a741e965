package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/docker"
	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/spec"
)

// Benchmarks against the real Docker Engine (skipped without one, failed
// under CI). Each iteration takes seconds: `make bench` runs one or two.

const benchServices = 50

// layered returns n services in layers of ten: service i > 9 depends on
// service i-10, which must be healthy (the image's HEALTHCHECK) first.
func layeredOrch(project, image string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "orch {\n  name = %q\n}\nruntime \"docker\" \"local\" {}\n", project)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "daemon \"s%d\" {\n  runtime = runtime.docker.local\n  image   = %q\n", i, image)
		if i >= 10 {
			fmt.Fprintf(&b, "  depends_on = [daemon.s%d]\n", i-10)
		}
		b.WriteString("  stop {\n    timeout = \"1s\"\n  }\n}\n")
	}
	return b.String()
}

func layeredCompose(image string, n int) string {
	var b strings.Builder
	b.WriteString("version: \"2.4\"\nservices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  s%d:\n    image: %q\n    stop_grace_period: 1s\n", i, image)
		if i >= 10 {
			fmt.Fprintf(&b, "    depends_on:\n      s%d:\n        condition: service_healthy\n", i-10)
		}
	}
	return b.String()
}

// dockerEngine runs an in-process engine with the docker provider over dir
// and a new state directory, until ready; stop stops it.
func dockerEngine(b *testing.B, dir string, out func(Event)) (stop func()) {
	b.Helper()
	provs := executor.Providers{docker.Kind: docker.New(docker.Options{})}
	cfg, diags := spec.Load(dir, spec.Options{Schemas: provs.Schemas()})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	stateDir := b.TempDir()
	st, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	eng := New(Options{Dir: dir, Config: cfg, Providers: provs, Store: st, StateDir: stateDir, Parallelism: 50, Out: out})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		st.Close()
	}
}

// BenchmarkDockerUp50VsCompose: 50 containers of the test server (its
// image has a HEALTHCHECK every second), in five layers of ten, each
// depending on one of the layer before being healthy: orch up until ready
// (everything started), against `docker-compose up -d` of the same 50
// services with condition: service_healthy. Reports both medians and
// orch/compose; compose is skipped when docker-compose is not installed.
func BenchmarkDockerUp50VsCompose(b *testing.B) {
	cli := dockertest.Engine(b)
	project := dockertest.Project("orch-bench-up")
	dockertest.RemoveProject(b, cli, project)
	image := "orch-bench/server:" + project
	dockertest.BuildImage(b, cli, dockertest.ServerContext(b, dockertest.HealthcheckLine("1s")), image, project)
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(layeredOrch(project, image, benchServices)), 0o644); err != nil {
		b.Fatal(err)
	}
	compose, _ := exec.LookPath("docker-compose")
	composeFile := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(composeFile, []byte(layeredCompose(image, benchServices)), 0o644); err != nil {
		b.Fatal(err)
	}
	composeProject := strings.ReplaceAll(project, "-", "") + "compose"
	runCompose := func(args ...string) {
		cmd := exec.Command(compose, append([]string{"-p", composeProject, "-f", composeFile}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if compose != "" {
		b.Cleanup(func() { exec.Command(compose, "-p", composeProject, "-f", composeFile, "down", "-t", "1").Run() })
	}
	var orchT, composeT []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ready := make(chan struct{}, 1)
		t0 := time.Now()
		stop := dockerEngine(b, dir, func(ev Event) {
			switch ev.Type {
			case EventReady:
				ready <- struct{}{}
			case EventFailed, EventError:
				b.Errorf("%s", ev)
			}
		})
		select {
		case <-ready:
		case <-time.After(5 * time.Minute):
			b.Fatal("orch: not ready within 5 minutes")
		}
		orchT = append(orchT, time.Since(t0))
		b.StopTimer()
		stop()
		dockertest.RemoveContainers(b, cli, project)
		if compose != "" {
			t1 := time.Now()
			runCompose("up", "-d")
			composeT = append(composeT, time.Since(t1))
			runCompose("down", "-t", "1")
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportMedian(b, "orch-ms", orchT)
	if len(composeT) > 0 {
		reportMedian(b, "compose-ms", composeT)
		b.ReportMetric(float64(median(orchT))/float64(median(composeT)), "orch/compose")
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// BenchmarkDockerKillToRunning: `docker kill` of a container that orch up
// supervises (restart backoff 0s), until its replacement runs (the
// engine's "started").
func BenchmarkDockerKillToRunning(b *testing.B) {
	cli := dockertest.Engine(b)
	project := dockertest.Project("orch-bench-kill")
	dockertest.RemoveProject(b, cli, project)
	image := "orch-bench/server:" + project
	dockertest.BuildImage(b, cli, dockertest.ServerContext(b, ""), image, project)
	dir := b.TempDir()
	cfg := fmt.Sprintf(`orch {
  name = %q
}
runtime "docker" "local" {}
daemon "d" {
  runtime = runtime.docker.local
  image   = %q
  restart {
    policy       = "always"
    backoff      = "0s"
    max_restarts = 0
  }
  stop {
    timeout = "1s"
  }
}
`, project, image)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	started := make(chan struct{}, 16)
	stop := dockerEngine(b, dir, func(ev Event) {
		if ev.Type == EventStarted && ev.Addr.String() == "daemon.d" {
			started <- struct{}{}
		}
	})
	defer stop()
	wait := func() {
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			b.Fatal("no start within 60s")
		}
	}
	wait()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{
			Filters: client.Filters{}.Add("label", "org.orch.project="+project)})
		if err != nil || len(list.Items) != 1 {
			b.Fatalf("containers: %v %v", list.Items, err)
		}
		t0 := time.Now()
		if _, err := cli.ContainerKill(context.Background(), list.Items[0].ID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
			b.Fatal(err)
		}
		wait()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportMedian(b, "ms-median", lat)
}
