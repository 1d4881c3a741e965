package docker

import (
	"testing"
	"testing/fstest"

	"github.com/orch-dev/orch/spec"
)

// TestPodmanKind: runtime "podman" is this provider with Podman's default
// host; a daemon on it takes the docker attributes.
func TestPodmanKind(t *testing.T) {
	t.Setenv("CONTAINER_HOST", "unix:///tmp/podman-test.sock")
	p := New(Options{Kind: KindPodman})
	if s := p.Schema(); s.Kind != KindPodman {
		t.Fatalf("kind %q", s.Kind)
	}
	src := `runtime "podman" "local" {}
daemon "web" {
  runtime = runtime.podman.local
  image   = "docker.io/library/nginx:1.27"
  ports   = ["127.0.0.1:8080:80"]
}
`
	cfg, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, "/cfg",
		spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema(), KindPodman: p.Schema()}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rt := cfg.Runtimes[0]
	if got := p.hostOf(rt); got != "unix:///tmp/podman-test.sock" {
		t.Errorf("host %q", got)
	}
	if got := New(Options{}).hostOf(&spec.Runtime{}); got != DefaultHost() {
		t.Errorf("docker's host %q", got)
	}
}

// TestReservedLabelRefusedAtLoad: a label under orch's own prefix is an
// error at load, at the line of that entry, not at apply.
func TestReservedLabelRefusedAtLoad(t *testing.T) {
	src := `runtime "docker" "local" {}
daemon "web" {
  runtime = runtime.docker.local
  image   = "web:1"
  labels = {
    team           = "shop"
    "org.orch.own" = "mine"
  }
}
`
	_, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, "/cfg",
		spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema()}})
	if len(diags) != 1 || diags[0].Summary != "Reserved label" || diags[0].Subject == nil || diags[0].Subject.Start.Line != 7 {
		t.Fatalf("want one Reserved label error at line 7, got %v", diags)
	}
}
