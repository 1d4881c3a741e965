package planner

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/spec"
)

// resolveNames turns -target or -replace addresses into the instances
// they name: an instance address names itself, a block address (daemon.api)
// every instance of the block, declared or recorded. A name that matches
// nothing is an error naming the flag.
func resolveNames(in Input, names []spec.Address, flag string) (map[spec.Address]bool, hcl.Diagnostics) {
	out := map[spec.Address]bool{}
	if len(names) == 0 {
		return out, nil
	}
	known := map[spec.Address]bool{}
	if in.Config != nil {
		for _, r := range in.Config.Resources {
			known[r.Addr] = true
		}
	}
	for a := range in.Stored {
		known[a] = true
	}
	for a := range in.Adoptable {
		known[a] = true
	}
	var diags hcl.Diagnostics
	for _, n := range names {
		found := false
		if known[n] {
			out[n], found = true, true
		} else if n.Key == spec.NoKey {
			for a := range known {
				if a.Block() == n {
					out[a], found = true, true
				}
			}
		}
		if !found {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No such instance",
				Detail: fmt.Sprintf("-%s %s names nothing that is declared or recorded.", flag, n)})
		}
	}
	return out, diags
}

// targeted is the set of instances a plan with -target covers: the
// targets and, transitively, what they depend on (they cannot run without
// it), as Terraform's -target does; for a destroy, the targets and what
// depends on them (it cannot run without them).
func targeted(in Input, targets map[spec.Address]bool, dec *SnapshotDecoder) map[spec.Address]bool {
	set := map[spec.Address]bool{}
	var next func(spec.Address) []spec.Address
	switch {
	case in.Destroy:
		// A recorded instance depends on what its snapshot says.
		dependents := map[spec.Address][]spec.Address{}
		for b, st := range in.Stored {
			if st = st.decoded(dec); st.Snapshot == nil {
				continue
			}
			for _, d := range st.Snapshot.DependsOn {
				dependents[d] = append(dependents[d], b)
			}
		}
		next = func(a spec.Address) []spec.Address {
			var out []spec.Address
			if in.Config != nil && in.Config.Graph != nil && in.Config.Graph.Has(a) {
				out = in.Config.Graph.DependentsOf(a)
			}
			return append(out, dependents[a]...)
		}
	default:
		next = func(a spec.Address) []spec.Address {
			if in.Config != nil && in.Config.Graph != nil && in.Config.Graph.Has(a) {
				return in.Config.Graph.DependenciesOf(a)
			}
			return nil
		}
	}
	var walk func(spec.Address)
	walk = func(a spec.Address) {
		if set[a] {
			return
		}
		set[a] = true
		for _, b := range next(a) {
			if b.Kind != spec.KindRuntime {
				walk(b)
			}
		}
	}
	for a := range targets {
		walk(a)
	}
	return set
}

// targetWarning says, as Terraform does, that the plan is partial.
func targetWarning(targets map[spec.Address]bool) *hcl.Diagnostic {
	names := make([]string, 0, len(targets))
	for a := range targets {
		names = append(names, a.String())
	}
	sort.Strings(names)
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Resource targeting is in effect",
		Detail: "This plan covers only " + strings.Join(names, ", ") + " and what they need; the rest of the " +
			"configuration may differ from what runs. Use -target for exceptional cases (recovering from a " +
			"mistake, working around a limitation), not routinely."}
}
