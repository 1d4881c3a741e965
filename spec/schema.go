package spec

import (
	"github.com/zclconf/go-cty/cty"
)

// AttrSchema describes one attribute a runtime backend adds to the language:
// on its runtime block, or on the daemons and jobs that run on it.
type AttrSchema struct {
	Name     string
	Type     cty.Type  // the value is converted to this type; cty.DynamicPseudoType accepts any
	Required bool      // an error when absent
	Default  cty.Value // used when absent and not required; cty.NilVal means null
	// ForcesReplacement marks attributes whose change needs a new instance
	// (image, ports); the others are updated in place.
	ForcesReplacement bool
	Sensitive         bool   // never printed, whatever its source
	Doc               string // one line for docs and diagnostics
}

// RuntimeSchema is what a backend declares about itself. spec never imports
// providers: cmd/orch collects these from the providers and passes them in
// Options.Schemas, keyed by runtime kind.
type RuntimeSchema struct {
	Kind string
	// Runtime lists the attributes of `runtime "<kind>" "<name>" {}`.
	Runtime []AttrSchema
	// Daemon lists the attributes this backend adds to daemons and jobs
	// that name a runtime of this kind.
	Daemon []AttrSchema
	// CommandRequired makes `command` mandatory on daemons and jobs of this
	// kind (true for native processes; a container may use its image's).
	CommandRequired bool
}

func (s RuntimeSchema) daemonAttr(name string) (AttrSchema, bool) {
	for _, a := range s.Daemon {
		if a.Name == name {
			return a, true
		}
	}
	return AttrSchema{}, false
}
