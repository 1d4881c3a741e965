// Package plugin is the host side of orch's native plugins: executables
// that orch launches and talks to over gRPC with
// github.com/hashicorp/go-plugin, in the protocol orch.plugin.v1
// (providers/plugin/proto; docs/plugins.md). Plugins are written with
// providers/plugin/sdk.
//
// Two kinds:
//
//   - Provider: a runtime backend served by a plugin
//     (runtime "<kind>" "<name>" { plugin = "..." }). It implements
//     providers.Provider and every optional capability, so that the
//     planner, executor and engine treat it as a built-in backend.
//   - Loader: modules whose source is an executable (module.Loader). Each
//     module instance is its own plugin process; the engine's services
//     (the bus, the module's KV namespace, its log) are served back to it
//     through go-plugin's GRPCBroker.
//
// # Capabilities
//
// A provider plugin declares its schema and capabilities in GetSchema. A
// capability it does not declare is never called on it; the adapter
// stands in:
//
//	capability  declared    not declared
//	delete      forwarded   nothing to delete: success
//	health      forwarded   healthy while Observe says running
//	adopt       forwarded   nothing found
//	signal      forwarded   an error naming the instance
//	logs        forwarded   an error naming the instance
//	events      forwarded   only the adapter's own events
//	update      forwarded   success, with a warning: the change takes
//	                        effect when the instance next starts
//	watch       forwarded   Observe every Options.WatchPoll
//
// The adapter's own events, whether or not events is declared:
// "disconnected" when the plugin ends unasked and "reconnected" when it
// runs again, without an address (look at everything again).
//
// # Launching
//
// Every launch verifies the executable first: it must exist and be
// executable, and when the configuration pins sha256 its SHA-256 must
// match (a *ChecksumError names the block and both hashes); go-plugin's
// SecureConfig checks again just before it starts the file. The process
// runs in its own process group (a Ctrl-C in orch's terminal is orch's to
// handle), with Pdeathsig; the SDK also exits when its parent changes, so
// no plugin outlives orch. The handshake uses AutoMTLS: a fresh
// certificate pair per launch, so only this orch can talk to the plugin's
// socket. What the plugin writes to stdout or stderr goes to Options.Log
// (providers) or Services.Log (modules), line by line; the SDK keeps
// stray prints away from the handshake line.
//
// # Faults
//
// A provider plugin that exits unasked is noticed at once (a thread
// waits on its pidfd): calls in flight fail with a retryable *providers.Error
// naming the instance and how the plugin ended (exit status, its panic
// line), Events callers get "disconnected", and the plugin is relaunched
// after a backoff (200ms doubling to 30s; reset once a plugin has lived
// longer than that), then "reconnected". Watches survive: after the
// relaunch the instance is watched again from its handle, so an instance
// that outlived the crash is not reported exited. A call that exceeds its
// budget (Options.CallTimeout, plus a Stop's own timeout) kills the
// plugin, which is then relaunched. A module plugin that crashes, hangs
// past limits.call_timeout in a hook or an event, or returns an error
// makes Run return that error; the process is gone when Run returns.
//
// Calls to a provider plugin go through one long-lived stream (service
// Provider's Calls, when the plugin declares call_stream), each answered
// as its unary call would be; docs/plugins.md says why and how.
//
// This package must never publish module lifecycle events (the module
// provider does), keep global state, or let a plugin process outlive the
// Provider or Guest that launched it.
package plugin
