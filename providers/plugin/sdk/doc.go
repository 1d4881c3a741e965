// Package sdk is the plugin side of orch's native plugins: a plugin is an
// executable whose main hands its implementation to ServeProvider (a
// runtime backend) or ServeModule (a module), which serve it to orch over
// gRPC with github.com/hashicorp/go-plugin until orch is done with it.
//
//	func main() { sdk.ServeProvider(myprovider.New()) }
//
// A provider plugin implements the same contract as orch's built-in
// backends: providers.Provider plus any of the optional capabilities
// (providers.Deleter, providers.Adopter, providers.Watcher, ...), found by
// type assertion and declared to orch in the schema response, so that
// orch calls only those. A module plugin is a Module: hooks for init,
// start, stop and events, and a Host for its calls back into orch.
//
// # Standard output
//
// go-plugin's handshake is the first line a plugin writes to its standard
// output, so a stray print would break it. When orch launches a plugin,
// this package's init points file descriptor 1 at standard error, before
// any code of the plugin's own main package runs, and keeps the real
// standard output for the handshake alone: whatever the plugin prints, at
// any time, ends up in orch's log of the plugin. Only the init functions
// of packages initialised before this one (its own dependencies, and
// packages whose import path sorts before it that it does not depend on)
// could print before that; do not print from init.
//
// # GOMAXPROCS
//
// A plugin runs with GOMAXPROCS 1 unless GOMAXPROCS is set in its
// environment (orch's, which it inherits) or its main sets
// runtime.GOMAXPROCS before calling ServeProvider or ServeModule. Each call
// from orch passes between several goroutines of gRPC and of this package;
// with one P that costs a switch within a thread rather than waking other
// threads: the plugin's CPU per small call falls by nearly a third and its
// context switches by half. Blocking
// system calls still run in parallel; only CPU-bound Go code is limited to
// one core.
//
// # Lifetime
//
// ServeProvider and ServeModule never return: the process exits when orch
// closes the plugin, kills it, or itself exits (the plugin notices that
// its parent changed and exits).
package sdk
