// Package dockertest is what tests and benchmarks outside providers/docker
// need to run against a real Docker Engine: the Engine or a skip (a
// failure under CI), the static test server of providers/docker/testdata
// as a build context FROM scratch, the removal of what a project left, and
// a Proxy to the Engine that a test can cut and restore. Nothing is
// pulled: the Engine needs no registry.
package dockertest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Labels orch puts on what it creates (providers/docker's, repeated so that
// this package does not import the provider).
const (
	labelManagedBy = "org.orch.managed-by"
	labelProject   = "org.orch.project"
)

// Host is the Engine the tests use: $DOCKER_HOST, else the default socket.
func Host() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return client.DefaultDockerHost
}

// Engine returns a client of the Engine at Host, closed when tb ends. Without
// an Engine it skips tb, or fails it when CI is set: CI must run them.
func Engine(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := client.New(client.WithHost(Host()))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Ping(ctx, client.PingOptions{})
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("the Docker tests need a Docker Engine at %s, and CI must run them: %v", Host(), err)
		}
		tb.Skipf("no Docker Engine at %s (%v); set CI=1 to make this a failure", Host(), err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

var server struct {
	once sync.Once
	path string
	err  error
}

// ServerBinary builds providers/docker/testdata/server once per process,
// static (CGO_ENABLED=0), and returns its path. The file lives in a
// temporary directory left to the OS's cleaning: several tests share it.
func ServerBinary(tb testing.TB) string {
	tb.Helper()
	server.once.Do(func() {
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "..", "testdata", "server")
		dir, err := os.MkdirTemp("", "orch-dockertest-")
		if err != nil {
			server.err = err
			return
		}
		out := filepath.Join(dir, "server")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			server.err = fmt.Errorf("building the test server: %v\n%s", err, b)
			return
		}
		server.path = out
	})
	if server.err != nil {
		tb.Fatal(server.err)
	}
	return server.path
}

// HealthcheckLine is a Dockerfile HEALTHCHECK of the test server: a GET of
// its /healthz every interval, unhealthy after two failures.
func HealthcheckLine(interval string) string {
	return fmt.Sprintf("HEALTHCHECK --interval=%s --timeout=2s --retries=2 CMD [\"/server\", \"-healthcheck\", \"http://127.0.0.1:8080/healthz\"]\n", interval)
}

// ServerContext writes a build context of the test server into a new
// directory (the binary and a Dockerfile FROM scratch, plus extra lines)
// and returns it.
func ServerContext(tb testing.TB, extra string) string {
	tb.Helper()
	dir := tb.TempDir()
	bin, err := os.ReadFile(ServerBinary(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server"), bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	// A label of its own first: no two contexts share a cached layer, so
	// that a test removing its image (with its untagged parents) never
	// removes a layer another test's build, in another package running at
	// the same time, is using ("No such image: sha256:...").
	df := "FROM scratch\nLABEL org.orch.test.context=" + strconv.Quote(dir) + "\nCOPY server /server\nEXPOSE 8080\n" + extra + "ENTRYPOINT [\"/server\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// RemoveProject removes, when tb ends, every container and image orch
// made for project (by their labels).
func RemoveProject(tb testing.TB, cli *client.Client, project string) {
	tb.Cleanup(func() {
		ctx := context.Background()
		f := client.Filters{}.Add("label", labelManagedBy+"=orch").Add("label", labelProject+"="+project)
		if list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f}); err == nil {
			for _, c := range list.Items {
				if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
					tb.Errorf("removing container %s: %v", c.ID, err)
				}
			}
		}
		if list, err := cli.ImageList(ctx, client.ImageListOptions{All: true, Filters: f}); err == nil {
			for _, img := range list.Items {
				if _, err := cli.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
					tb.Errorf("removing image %s: %v", img.ID, err)
				}
			}
		}
	})
}

// Project is a project name no other test run uses.
func Project(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}

// BuildImage builds the build context dir through the Engine API into tag,
// labelled as orch's for project (so that RemoveProject removes it) unless
// project is empty; a failed build fails tb with the Engine's message. The
// image's labels pass to its containers: an image for containers that must
// not look like orch's has no project.
func BuildImage(tb testing.TB, cli *client.Client, dir, tag, project string) {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"Dockerfile", "server"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b))}); err != nil {
			tb.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	opts := client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true}
	if project != "" {
		opts.Labels = map[string]string{labelManagedBy: "orch", labelProject: project}
	}
	res, err := cli.ImageBuild(context.Background(), &buf, opts)
	if err != nil {
		tb.Fatalf("building %s: %v", tag, err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Error != "" {
			tb.Fatalf("building %s: %s", tag, msg.Error)
		}
	}
}

// RemoveContainers removes, now, every container orch made for project.
func RemoveContainers(tb testing.TB, cli *client.Client, project string) {
	ctx := context.Background()
	f := client.Filters{}.Add("label", labelManagedBy+"=orch").Add("label", labelProject+"="+project)
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range list.Items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}()
	}
	wg.Wait()
}
