package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/spec"
)

// The tests run against the Docker Engine of dockertest.Engine: without
// one they skip, except under CI (CI set), where they fail.

var tagSeq struct {
	sync.Mutex
	n int
}

// uniqueTag is an image tag no other test run uses.
func uniqueTag(repo string) string {
	tagSeq.Lock()
	defer tagSeq.Unlock()
	tagSeq.n++
	return fmt.Sprintf("%s:%d-%d-%d", repo, os.Getpid(), time.Now().UnixNano()%1e9, tagSeq.n)
}

// buildImage builds FROM scratch an image of the test server through the
// Engine API, tagged tag, and removes it (by id) when the test ends.
func buildImage(t *testing.T, cli *client.Client, tag string) string {
	t.Helper()
	// The label makes each image distinct: removing one by id never
	// touches another test's.
	dir := dockertest.ServerContext(t, "LABEL org.orch.test="+strconvQuote(tag)+"\n")
	dockertest.BuildImage(t, cli, dir, tag, "")
	img, err := cli.ImageInspect(context.Background(), tag)
	if err != nil {
		t.Fatalf("building %s: %v", tag, err)
	}
	id := img.ID
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), id, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("removing image %s: %v", tag, err)
		}
	})
	return id
}

// removeContainer removes a container (by id) when the test ends.
func removeContainer(t *testing.T, cli *client.Client, h providers.Handle) {
	t.Helper()
	hi, err := ParseHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := cli.ContainerRemove(context.Background(), hi.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("removing container %s: %v", hi.ID, err)
		}
	})
}

// load evaluates an HCL configuration with the docker schema.
func load(t *testing.T, project, body string) *spec.Config {
	t.Helper()
	// One directory per project: dir defaults to it, and is part of the
	// configuration.
	dir := filepath.Join(os.TempDir(), project)
	src := fmt.Sprintf("orch {\n  name = %q\n}\nruntime \"docker\" \"local\" {}\n%s", project, body)
	cfg, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, dir,
		spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema()}})
	if diags.HasErrors() {
		t.Fatalf("config: %s\n%s", diags.Error(), src)
	}
	return cfg
}

func uniqueProject(t *testing.T) string {
	return fmt.Sprintf("orch-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

func mustAddr(t *testing.T, s string) spec.Address {
	t.Helper()
	a, err := spec.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// freePort is a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func webConfig(image string, port int) string {
	return fmt.Sprintf(`
daemon "web" {
  runtime = runtime.docker.local
  image   = %q
  command = ["--flag", "x"]
  env     = { GREETING = "hello" }
  ports   = ["127.0.0.1:%d:8080"]
  labels  = { team = "core" }
  memory  = "64MiB"
  cpus    = 0.5
  stop {
    timeout = "3s"
  }
}
`, image, port)
}

// start starts r the way the executor does and registers its removal.
func start(t *testing.T, p *Provider, cli *client.Client, cfg *spec.Config, r *spec.Resource) providers.StartResponse {
	t.Helper()
	hash := planner.SnapshotOf(r, nil, ptr(Schema())).Hash()
	resp, err := p.Start(context.Background(), providers.StartRequest{Runtime: cfg.Runtime(r.Runtime), Resource: r,
		Project: cfg.Project.Name, ConfigHash: hash, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start %s: %v", r.Addr, err)
	}
	removeContainer(t, cli, resp.Handle)
	return resp
}

func ptr[T any](v T) *T { return &v }

func observe(t *testing.T, p *Provider, rt *spec.Runtime, addr spec.Address, h providers.Handle) providers.Observed {
	t.Helper()
	resp, err := p.Observe(context.Background(), providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{addr: h}})
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	return resp.Objects[addr]
}

// waitListening polls the container's log until the test server says it
// listens (after it has set up its SIGTERM handler), up to 20s.
func waitListening(t *testing.T, p *Provider, rt *spec.Runtime, addr spec.Address, h providers.Handle) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lr, err := p.Logs(context.Background(), providers.LogsRequest{Runtime: rt, Addr: addr, Handle: h})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(lr.Log)
		lr.Log.Close()
		if strings.Contains(string(b), "listening on") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the server does not listen; its log: %q", addr, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState polls Observe until it reports want, up to 10s.
func waitState(t *testing.T, p *Provider, rt *spec.Runtime, addr spec.Address, h providers.Handle, want providers.State) providers.Observed {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		obs := observe(t, p, rt, addr, h)
		if obs.State == want {
			return obs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s, want %s", addr, obs.State, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get polls url until it answers 200, up to 10s, and returns the body.
func get(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(b)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	tag := uniqueTag("orch-test/server")
	buildImage(t, cli, tag)
	port := freePort(t)
	project := uniqueProject(t)
	cfg := load(t, project, webConfig(tag, port))
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	rt := cfg.Runtime(r.Runtime)
	p := New(Options{})
	defer p.Close()
	ctx := context.Background()

	resp := start(t, p, cli, cfg, r)
	if resp.Observed.State != providers.StateRunning || resp.Observed.Pid == 0 || resp.Observed.StartedAt.IsZero() {
		t.Fatalf("started: %+v", resp.Observed)
	}
	hi, err := ParseHandle(resp.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if hi.Name != "orch-"+project+"-daemon.web" {
		t.Errorf("name = %q", hi.Name)
	}
	if body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != "args=--flag x greeting=hello\n" {
		t.Errorf("GET / = %q", body)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))

	// What the Engine holds: labels, limits, stop settings.
	c, err := cli.ContainerInspect(ctx, hi.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labels := c.Container.Config.Labels
	for k, want := range map[string]string{LabelManagedBy: "orch", LabelProject: project, LabelAddress: "daemon.web",
		LabelRuntime: "runtime.docker.local", "team": "core"} {
		if labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, labels[k], want)
		}
	}
	if labels[LabelConfigHash] == "" {
		t.Error("no config hash label")
	}
	if hc := c.Container.HostConfig; hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 {
		t.Errorf("memory %d, nanocpus %d", hc.Memory, hc.NanoCPUs)
	}
	if cc := c.Container.Config; cc.StopSignal != "SIGTERM" || cc.StopTimeout == nil || *cc.StopTimeout != 3 {
		t.Errorf("stop signal %q timeout %v", cc.StopSignal, cc.StopTimeout)
	}

	if obs := observe(t, p, rt, r.Addr, resp.Handle); obs.State != providers.StateRunning || obs.ID != hi.ID {
		t.Errorf("observed %+v", obs)
	}

	// In place: memory and cpus through ContainerUpdate.
	cfg2 := load(t, project, strings.Replace(strings.Replace(webConfig(tag, port), `"64MiB"`, `"128MiB"`, 1), "0.5", "1", 1))
	if _, err := p.Update(ctx, providers.UpdateRequest{Runtime: rt, Resource: cfg2.Resource(r.Addr), Handle: resp.Handle}); err != nil {
		t.Fatalf("update: %v", err)
	}
	c, _ = cli.ContainerInspect(ctx, hi.ID, client.ContainerInspectOptions{})
	if hc := c.Container.HostConfig; hc.Memory != 128<<20 || hc.NanoCPUs != 1e9 {
		t.Errorf("after update: memory %d, nanocpus %d", hc.Memory, hc.NanoCPUs)
	}

	// Logs, without the Engine's stream headers.
	lr, err := p.Logs(ctx, providers.LogsRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(lr.Log)
	lr.Log.Close()
	if !strings.HasPrefix(string(logs), "listening on 8080 args [--flag x]\n") {
		t.Errorf("logs = %q", logs)
	}

	// Signal reaches the server: SIGTERM makes it exit 0.
	if _, err := p.Signal(ctx, providers.SignalRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle, Signal: spec.SIGTERM}); err != nil {
		t.Fatal(err)
	}
	if obs := waitState(t, p, rt, r.Addr, resp.Handle, providers.StateExited); obs.ExitCode != 0 {
		t.Errorf("after SIGTERM: %+v", obs)
	}

	// Start again: the stopped container that holds the name is replaced.
	resp2 := start(t, p, cli, cfg, r)
	hi2, _ := ParseHandle(resp2.Handle)
	if hi2.ID == hi.ID || hi2.Name != hi.Name {
		t.Errorf("restart: %+v after %+v", hi2, hi)
	}
	if _, err := cli.ContainerInspect(ctx, hi.ID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the old container is still there: %v", err)
	}

	// Delete refuses a running container; Stop then Delete remove it.
	if _, err := p.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle}); err == nil {
		t.Error("delete of a running container succeeded")
	}
	// Only once the server handles SIGTERM (it says so by listening):
	// before, the signal is lost (pid 1 without a handler) or ends it with
	// the Go runtime's exit code 2.
	waitListening(t, p, rt, r.Addr, resp2.Handle)
	began := time.Now()
	st, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout})
	if err != nil {
		t.Fatal(err)
	}
	if st.Killed || st.Observed.State != providers.StateExited || st.Observed.ExitCode != 0 {
		t.Errorf("stop: %+v", st)
	}
	t.Logf("stop took %v", time.Since(began))
	if _, err := p.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle}); err != nil {
		t.Fatal(err)
	}
	if obs := observe(t, p, rt, r.Addr, resp2.Handle); obs.State != providers.StateMissing {
		t.Errorf("after delete: %+v", obs)
	}
	// Both are idempotent.
	if st, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle}); err != nil || st.Observed.State != providers.StateMissing {
		t.Errorf("second stop: %+v %v", st, err)
	}
	if _, err := p.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: resp2.Handle}); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

// TestBehindOrchsBack: docker kill and docker rm -f, observed; adoption
// from the labels by a fresh provider; a no-op plan, then a replacement
// when the image changes.
func TestBehindOrchsBack(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	tag1, tag2 := uniqueTag("orch-test/server"), uniqueTag("orch-test/server")
	buildImage(t, cli, tag1)
	buildImage(t, cli, tag2)
	port := freePort(t)
	project := uniqueProject(t)
	cfg := load(t, project, webConfig(tag1, port))
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	rt := cfg.Runtime(r.Runtime)
	ctx := context.Background()
	schemas := map[string]spec.RuntimeSchema{Kind: Schema()}

	p := New(Options{})
	defer p.Close()
	resp := start(t, p, cli, cfg, r)
	hi, _ := ParseHandle(resp.Handle)

	// A fresh provider (orch restarted, state lost) adopts it from labels.
	p2 := New(Options{})
	defer p2.Close()
	ad, err := p2.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: project})
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Objects) != 1 || ad.Objects[0].Addr != r.Addr || ad.Objects[0].Observed.State != providers.StateRunning {
		t.Fatalf("adopt: %+v", ad.Objects)
	}
	if ahi, _ := ParseHandle(ad.Objects[0].Handle); ahi.ID != hi.ID {
		t.Errorf("adopted %s, started %s", ahi.ID, hi.ID)
	}
	if other, _ := p2.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: project + "-other"}); len(other.Objects) != 0 {
		t.Errorf("another project adopted %+v", other.Objects)
	}
	// Adopted with the same configuration: the plan is an adoption, and
	// once recorded, nothing.
	in := planner.Input{Config: cfg, Schemas: schemas, Adoptable: map[spec.Address]providers.Adoptable{r.Addr: ad.Objects[0]}}
	plan, diags := planner.Make(in)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if c := plan.Change(r.Addr); c == nil || c.Action != planner.Adopt {
		t.Fatalf("plan after adoption: %+v", c)
	}
	snap := planner.SnapshotOf(r, nil, ptr(Schema()))
	stored := map[spec.Address]*planner.Stored{r.Addr: {Addr: r.Addr, Runtime: r.Runtime, Snapshot: snap, ConfigHash: snap.Hash(), Handle: ad.Objects[0].Handle}}
	obs := map[spec.Address]providers.Observed{r.Addr: observe(t, p2, rt, r.Addr, ad.Objects[0].Handle)}
	plan, _ = planner.Make(planner.Input{Config: cfg, Schemas: schemas, Stored: stored, Observed: obs})
	if plan.HasChanges() {
		t.Errorf("no-op plan has changes: %+v", plan.Changes[0])
	}
	// Another image forces a replacement; memory alone updates in place.
	cfgImg := load(t, project, webConfig(tag2, port))
	plan, _ = planner.Make(planner.Input{Config: cfgImg, Schemas: schemas, Stored: stored, Observed: obs})
	if c := plan.Change(r.Addr); c == nil || c.Action != planner.Replace || len(c.ForcedBy) != 1 || c.ForcedBy[0] != AttrImage {
		t.Errorf("plan after an image change: %+v", c)
	}
	cfgMem := load(t, project, strings.Replace(webConfig(tag1, port), `"64MiB"`, `"96MiB"`, 1))
	plan, _ = planner.Make(planner.Input{Config: cfgMem, Schemas: schemas, Stored: stored, Observed: obs})
	if c := plan.Change(r.Addr); c == nil || c.Action != planner.Update {
		t.Errorf("plan after a memory change: %+v", c)
	}
	// The replacement as the executor does it: stop, delete, start.
	if _, err := p2.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout}); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: resp.Handle}); err != nil {
		t.Fatal(err)
	}
	rImg := cfgImg.Resource(r.Addr)
	resp = start(t, p2, cli, cfgImg, rImg)
	c, err := cli.ContainerInspect(ctx, mustID(t, resp.Handle), client.ContainerInspectOptions{})
	if err != nil || c.Container.Config.Image != tag2 {
		t.Fatalf("replacement runs %v (%v)", c.Container.Config, err)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))

	// docker kill behind orch's back: exited, with the signal's exit code.
	if _, err := cli.ContainerKill(ctx, mustID(t, resp.Handle), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	if o := waitState(t, p2, rt, r.Addr, resp.Handle, providers.StateExited); o.ExitCode != 137 {
		t.Errorf("after docker kill: %+v", o)
	}
	// docker rm -f behind orch's back: missing.
	resp = start(t, p2, cli, cfgImg, rImg)
	if _, err := cli.ContainerRemove(ctx, mustID(t, resp.Handle), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitState(t, p2, rt, r.Addr, resp.Handle, providers.StateMissing)
}

func mustID(t *testing.T, h providers.Handle) string {
	t.Helper()
	hi, err := ParseHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	return hi.ID
}

// TestStartErrors: a missing image and a port in use are clear errors
// that leave no container behind.
func TestStartErrors(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	tag := uniqueTag("orch-test/server")
	buildImage(t, cli, tag)
	project := uniqueProject(t)
	p := New(Options{PullTimeout: 30 * time.Second})
	defer p.Close()
	ctx := context.Background()

	t.Run("missing image", func(t *testing.T) {
		missing := uniqueTag("orch-test/missing")
		cfg := load(t, project, webConfig(missing, freePort(t)))
		r := cfg.Resource(mustAddr(t, "daemon.web"))
		began := time.Now()
		_, err := p.Start(ctx, providers.StartRequest{Runtime: cfg.Runtime(r.Runtime), Resource: r, Project: project, ConfigHash: "h"})
		if err == nil {
			t.Fatal("started an image that does not exist")
		}
		t.Logf("%v (after %v)", err, time.Since(began))
		for _, want := range []string{"daemon.web", fmt.Sprintf("image %q not found locally", missing), "cannot be pulled", DefaultHost()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if pe := (*providers.Error)(nil); !errors.As(err, &pe) || pe.Attr != "image" {
			t.Errorf("the error does not blame the image attribute: %#v", err)
		}
		assertNoContainers(t, cli, project)
	})

	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		cfg := load(t, project, webConfig(tag, port))
		r := cfg.Resource(mustAddr(t, "daemon.web"))
		_, err = p.Start(ctx, providers.StartRequest{Runtime: cfg.Runtime(r.Runtime), Resource: r, Project: project, ConfigHash: "h"})
		if err == nil {
			t.Fatal("started on a port in use")
		}
		t.Log(err)
		want := fmt.Sprintf("host port %d (ports entry \"127.0.0.1:%d:8080\") is already in use", port, port)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		if providers.IsRetryable(err) {
			t.Error("a port in use is retryable")
		}
		if pe := (*providers.Error)(nil); !errors.As(err, &pe) || pe.Attr != "ports" {
			t.Errorf("the error does not blame the ports attribute: %#v", err)
		}
		assertNoContainers(t, cli, project)
	})

	t.Run("not ours", func(t *testing.T) {
		// A container without orch's label is never touched, even with a
		// handle that names it.
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Image: tag, Name: ContainerName(project, mustAddr(t, "daemon.web"))})
		if err != nil {
			t.Fatal(err)
		}
		h := HandleInfo{ID: res.ID}.Encode()
		removeContainer(t, cli, h)
		cfg := load(t, project, webConfig(tag, freePort(t)))
		r := cfg.Resource(mustAddr(t, "daemon.web"))
		rt := cfg.Runtime(r.Runtime)
		if _, err := p.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: h}); err == nil || !strings.Contains(err.Error(), "not managed by orch") {
			t.Errorf("delete: %v", err)
		}
		if _, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: h}); err == nil {
			t.Error("stop of a container that is not orch's succeeded")
		}
		if obs := observe(t, p, rt, r.Addr, h); obs.State != providers.StateMissing {
			t.Errorf("observed %+v", obs)
		}
		// Start finds the name taken and says by whom.
		if _, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: project, ConfigHash: "h"}); err == nil || !strings.Contains(err.Error(), "is taken") {
			t.Errorf("start: %v", err)
		}
		if _, err := cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{}); err != nil {
			t.Errorf("the container that is not orch's: %v", err)
		}
	})
}

func assertNoContainers(t *testing.T, cli *client.Client, project string) {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", LabelProject+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		t.Errorf("left behind: %s %v", c.ID, c.Names)
		cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	}
}

func strconvQuote(s string) string { return strconv.Quote(s) }

func ctyString(s string) cty.Value { return cty.StringVal(s) }
