package process

import "github.com/orch-dev/orch/spec"

// Kind is the runtime kind this provider serves.
const Kind = "process"

// Schema describes the built-in runtime "process": it adds no attributes of
// its own (command, env, dir, user, group, umask and rlimits are core
// attributes of daemons and jobs) and it needs a command. Its daemons
// share the host's network, and it tells which of them listen on a port
// (Listens).
func Schema() spec.RuntimeSchema {
	return spec.RuntimeSchema{Kind: Kind, CommandRequired: true, OwnsListeners: true}
}
