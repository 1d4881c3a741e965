// Package wire is what both ends of a native plugin share: go-plugin's
// handshake, the names of the plugin kinds, and the mapping between orch's
// Go types (spec, providers) and the messages of the protocol
// orch.plugin.v1 (package orchpluginv1).
//
// Both the host (providers/plugin) and the plugin side
// (providers/plugin/sdk) import it, so that a value crosses the wire
// through exactly one pair of functions. It must never launch, serve or
// hold anything.
package wire
