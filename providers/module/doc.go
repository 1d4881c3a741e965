// Package module is the provider of module instances: the engine hosts
// them in its own process (WebAssembly, through providers/wasm) or as
// plugin processes it launches (providers/plugin), and this package gives
// both the same provider contract as daemons, so that the planner, the
// executor and the engine's supervision treat a module like any other
// instance: planned, started, watched, restarted by its policy, stopped.
//
// The contract a kind of module implements is small: a Loader loads a
// Guest, and a Guest runs until its context is done or it fails (see
// Guest). The Provider dispatches on the source: a file that starts with
// WebAssembly's magic bytes goes to the wasm Loader, anything else is a
// plugin executable. It publishes every transition (loaded, starting,
// running, stopping, stopped, failed) on the bus as orch.module.<state>;
// loaders must not.
//
// A hosted module lives as long as the process that hosts it: its handle
// names that host, and a handle of another host (an earlier orch up, a
// one-shot orch apply) observes as missing, so that the engine starts it
// again. This package must not import providers/wasm or providers/plugin:
// the binary wires the loaders in.
package module
