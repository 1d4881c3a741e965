package cli

import (
	"testing"

	"github.com/orch-dev/orch/providers"
)

// TestOwnsListenersSaid: a built-in runtime's schema says OwnsListeners
// exactly when its provider tells whose processes listen on a port
// (providers.ListenerOwner): the planner leaves out its warning of a
// replace checked where the old instance answers on the strength of it,
// and the engine relies on the provider for it.
func TestOwnsListenersSaid(t *testing.T) {
	for kind, p := range providerSet() {
		_, owner := p.(providers.ListenerOwner)
		if said := p.Schema().OwnsListeners; said != owner {
			t.Errorf("runtime kind %q: schema says OwnsListeners %v, provider implements ListenerOwner: %v", kind, said, owner)
		}
	}
}
