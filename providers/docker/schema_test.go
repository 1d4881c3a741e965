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
