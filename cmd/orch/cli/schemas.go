package cli

import (
	"github.com/orch-dev/orch/providers/docker"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/spec"
)

// Schemas returns the runtime schemas of every backend this binary carries,
// keyed by runtime kind, for spec.Options.Schemas. A new backend adds one
// line here; nothing registers itself from init().
func Schemas() map[string]spec.RuntimeSchema {
	return map[string]spec.RuntimeSchema{
		process.Kind:      process.Schema(),
		docker.Kind:       docker.Schema(),
		docker.KindPodman: docker.PodmanSchema(),
		systemd.Kind:      systemd.Schema(),
	}
}
