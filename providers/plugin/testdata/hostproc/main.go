// hostproc serves orch's own process runtime as a plugin of runtime kind
// "hostproc", for providers/plugin's tests of what crosses the protocol
// for a runtime whose instances share the host's network: the "listens"
// capability (providers.ListenerOwner), which the process runtime has, and
// the schema's OwnsListeners that goes with it.
package main

import (
	"os"

	"github.com/orch-dev/orch/providers/plugin/sdk"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

func main() {
	// The process runtime re-executes its binary for its helpers (the
	// exec wrapper, the log daemon): this plugin, here.
	if code, ok := process.HelperMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	sdk.ServeProvider(hostproc{process.New(process.Options{NoCgroups: true})})
}

// hostproc is the process runtime under another kind's name.
type hostproc struct{ *process.Provider }

func (h hostproc) Schema() spec.RuntimeSchema {
	s := h.Provider.Schema()
	s.Kind = "hostproc"
	return s
}
