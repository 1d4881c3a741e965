package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/hashicorp/hcl/v2"
	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/spec"
)

func TestContextHashAndDockerignore(t *testing.T) {
	fsys := fstest.MapFS{
		"Dockerfile":        {Data: []byte("FROM scratch\n")},
		".dockerignore":     {Data: []byte("# comment\n*.log\nbuild/\n**/tmp\n!keep.log\nDockerfile\n")},
		"main.go":           {Data: []byte("package main")},
		"x.log":             {Data: []byte("noise")},
		"keep.log":          {Data: []byte("kept")},
		"build/out":         {Data: []byte("artefact")},
		"src/tmp/scratch":   {Data: []byte("tmp")},
		"src/deep/tmp/file": {Data: []byte("tmp")},
		"src/a.go":          {Data: []byte("package src")},
		"run.sh":            {Data: []byte("#!/bin/sh"), Mode: 0o755},
	}
	files, err := contextFiles(fsys, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := ".dockerignore Dockerfile keep.log main.go run.sh src src/a.go src/deep"
	if got := strings.Join(files, " "); got != want {
		t.Errorf("context files:\n got %s\nwant %s", got, want)
	}
	h1, err := hashContext(fsys, files)
	if err != nil {
		t.Fatal(err)
	}
	hash := func(mut func(fstest.MapFS)) string {
		m := fstest.MapFS{}
		for k, v := range fsys {
			c := *v
			m[k] = &c
		}
		mut(m)
		fs, err := contextFiles(m, "Dockerfile")
		if err != nil {
			t.Fatal(err)
		}
		h, err := hashContext(m, fs)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := hash(func(m fstest.MapFS) { m["x.log"].Data = []byte("other noise") }); h != h1 {
		t.Error("an ignored file changed the hash")
	}
	if h := hash(func(m fstest.MapFS) { m["src/a.go"].Data = []byte("package src // edited") }); h == h1 {
		t.Error("an edited file left the hash alone")
	}
	if h := hash(func(m fstest.MapFS) { m["run.sh"].Mode = 0o644 }); h == h1 {
		t.Error("a lost executable bit left the hash alone")
	}
	if h := hash(func(m fstest.MapFS) { m["new.txt"] = &fstest.MapFile{Data: []byte("x")} }); h == h1 {
		t.Error("a new file left the hash alone")
	}
}

// buildConfig writes a configuration directory with a build context of the
// test server and loads it; extra goes inside daemon "web".
func buildConfig(t *testing.T, dir, project, dockerfile, extra string) (*spec.Config, hcl.Diagnostics) {
	t.Helper()
	ctxDir := filepath.Join(dir, "web")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(dockertest.ServerBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "server"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "local" {}
daemon "web" {
  runtime = runtime.docker.local
  build {
    context = "./web"
  }
  ports = ["127.0.0.1:%d:8080"]
%s
}
`, project, freePort(t), extra)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Load(dir, spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema()}})
	return cfg, diags
}

// removeImages removes the images orch built for project when the test ends.
func removeImages(t *testing.T, cli *client.Client, project string) {
	t.Cleanup(func() {
		ctx := context.Background()
		list, err := cli.ImageList(ctx, client.ImageListOptions{All: true,
			Filters: client.Filters{}.Add("label", LabelProject+"="+project)})
		if err != nil {
			t.Errorf("listing images: %v", err)
			return
		}
		for _, img := range list.Items {
			if _, err := cli.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("removing image %s: %v", img.ID, err)
			}
		}
	})
}

const serverDockerfile = "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"

// TestBuild: a build block builds the image through the Engine API into
// orch-build/<project>/web:<hash>; an edit in the context changes the plan
// (a replacement forced by build); a Dockerfile that fails is an error
// naming the daemon with the Engine's message.
func TestBuild(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	project := uniqueProject(t) + "-build"
	removeImages(t, cli, project)
	dir := t.TempDir()
	cfg, diags := buildConfig(t, dir, project, serverDockerfile, "")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	bv := r.Attrs[BlockBuild]
	if bv.GetAttr(BuildContext).AsString() != filepath.Join(dir, "web") || !strings.HasPrefix(bv.GetAttr(BuildContextHash).AsString(), "sha256:") {
		t.Fatalf("build = %#v", bv)
	}
	p := New(Options{})
	defer p.Close()
	resp := start(t, p, cli, cfg, r)
	c, err := cli.ContainerInspect(context.Background(), mustID(t, resp.Handle), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := buildOf(r)
	if want := BuildTag(project, "web", b.buildHash()); c.Container.Config.Image != want {
		t.Errorf("image %q, want %q", c.Container.Config.Image, want)
	}
	port := strings.Split(r.Attrs[AttrPorts].AsValueSlice()[0].AsString(), ":")[1]
	get(t, "http://127.0.0.1:"+port+"/healthz")

	// The same configuration again: the image is there, nothing is built.
	img1, err := cli.ImageInspect(context.Background(), c.Container.Config.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ensureBuilt(context.Background(), mustEngine(t, p, cfg), r.Addr, b, c.Container.Config.Image, project); err != nil {
		t.Fatal(err)
	}
	if img2, _ := cli.ImageInspect(context.Background(), c.Container.Config.Image); img2.ID != img1.ID {
		t.Error("the image was built again")
	}

	// An edit in the context: the plan replaces the daemon, forced by build.
	snap := planner.SnapshotOf(r, nil, ptr(Schema()))
	stored := map[spec.Address]*planner.Stored{r.Addr: {Addr: r.Addr, Runtime: r.Runtime, Snapshot: snap, ConfigHash: snap.Hash(), Handle: resp.Handle}}
	obs := map[spec.Address]providers.Observed{r.Addr: {State: providers.StateRunning}}
	schemas := map[string]spec.RuntimeSchema{Kind: Schema()}
	if err := os.WriteFile(filepath.Join(dir, "web", "extra.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg2, _ := spec.Load(dir, spec.Options{Schemas: schemas})
	plan, d := planner.Make(planner.Input{Config: cfg2, Schemas: schemas, Stored: stored, Observed: obs})
	if d.HasErrors() {
		t.Fatal(d)
	}
	ch := plan.Change(r.Addr)
	if ch == nil || ch.Action != planner.Replace || len(ch.ForcedBy) != 1 || ch.ForcedBy[0] != BlockBuild {
		t.Fatalf("plan after an edit of the context: %+v", ch)
	}
	text := planner.Render(plan, planner.RenderOptions{})
	if !strings.Contains(text, "context_hash") || !strings.Contains(text, "forces replacement") {
		t.Errorf("the plan does not show the context's change:\n%s", text)
	}
	t.Logf("plan:\n%s", text)
}

func mustEngine(t *testing.T, p *Provider, cfg *spec.Config) engine {
	e, err := p.engine(cfg.Runtimes[0])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestBuildErrors(t *testing.T) {
	cli := dockertest.Engine(t)
	t.Parallel()
	project := uniqueProject(t) + "-buildfail"
	removeImages(t, cli, project)
	cfg, diags := buildConfig(t, t.TempDir(), project, "FROM scratch\nCOPY missing-file /x\n", `  image = "orch-test/built-`+project+`:1"`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Resource(mustAddr(t, "daemon.web"))
	p := New(Options{})
	defer p.Close()
	_, err := p.Start(context.Background(), providers.StartRequest{Runtime: cfg.Runtime(r.Runtime), Resource: r, Project: project, ConfigHash: "h"})
	if err == nil {
		t.Fatal("a failing build started")
	}
	t.Log(err)
	for _, want := range []string{"daemon.web", "building image orch-test/built-" + project + ":1", "missing-file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Attr != BlockBuild || pe.Retryable {
		t.Errorf("error %#v", err)
	}
	assertNoContainers(t, cli, project)

	// At load time: a missing context and a missing Dockerfile.
	dir := t.TempDir()
	buildConfig(t, dir, project, serverDockerfile, "")
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(`runtime "docker" "local" {}
daemon "a" {
  runtime = runtime.docker.local
  build {
    context = "./nope"
  }
}
daemon "b" {
  runtime = runtime.docker.local
  build {
    context    = "./web"
    dockerfile = "Nope.Dockerfile"
  }
}
`), 0o644)
	_, ld := spec.Load(dir, spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema()}})
	got := map[string]int{}
	for _, d := range ld {
		got[d.Summary] = d.Subject.Start.Line
	}
	if got["Build context not found"] != 5 || got["Dockerfile not found"] != 12 {
		t.Errorf("diagnostics: %v", ld)
	}
}
