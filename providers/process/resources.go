package process

import (
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/spec"
)

// limitsOf is the resources block of r as cgroup limits.
func limitsOf(r *spec.Resource) cgroup.Limits {
	return cgroup.Limits{}
}
