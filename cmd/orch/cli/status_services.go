package cli

import (
	"github.com/orch-dev/orch/spec"
)

// serviceOf is the service name and route a declares (its service
// block), for orch status; "" when none or when cfg is unknown.
func serviceOf(cfg *spec.Config, a spec.Address) (name, route string) {
	if cfg == nil {
		return "", ""
	}
	r := cfg.Resource(a)
	if r == nil || r.Service == nil {
		return "", ""
	}
	name = r.Service.Name
	if r.Service.Route != nil {
		route = r.Service.Route.String()
	}
	return name, route
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
