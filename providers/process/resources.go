package process

import (
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/spec"
)

// limitsOf is r's resources block as cgroup limits.
func limitsOf(r *spec.Resource) cgroup.Limits {
	return cgroup.Limits{MemoryMax: r.Resources.MemoryMax, CPUMax: r.Resources.CPUMax, PidsMax: r.Resources.PidsMax}
}
