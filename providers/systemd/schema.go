package systemd

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/spec"
)

// Kind is the runtime kind this provider serves.
const Kind = "systemd"

// Attribute names of the runtime block.
const AttrScope = "scope"

// The two systemd instances a runtime can talk to.
const (
	ScopeSystem = "system" // the system manager (PID 1), on the system bus
	ScopeUser   = "user"   // the calling user's manager, on the user's bus
)

// Schema describes the runtime kind "systemd": daemons and jobs as
// transient service units. It adds one runtime attribute, scope; the
// process settings (command, env, dir, user, group, umask, rlimits) are the
// core attributes of daemons and jobs, and a command is needed.
func Schema() spec.RuntimeSchema {
	return spec.RuntimeSchema{
		Kind:            Kind,
		CommandRequired: true,
		Runtime: []spec.AttrSchema{
			{Name: AttrScope, Type: cty.String, Default: cty.StringVal(ScopeSystem), Check: checkScope,
				Doc: `which systemd to run units in: "system" (PID 1, on the system bus) or "user" (the user's own manager, on the user's bus)`},
		},
	}
}

func checkScope(v cty.Value) error {
	if s := v.AsString(); s != ScopeSystem && s != ScopeUser {
		return &spec.CheckError{Summary: "Invalid systemd scope", Err: fmt.Errorf("scope must be %q or %q, not %q", ScopeSystem, ScopeUser, s)}
	}
	return nil
}

// scopeOf is rt's scope attribute, ScopeSystem when it has none.
func scopeOf(rt *spec.Runtime) string {
	if rt != nil {
		if v, ok := rt.Attrs[AttrScope]; ok && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			return v.AsString()
		}
	}
	return ScopeSystem
}
