// Package agent serves a running engine (orch up, orch agent) on a local
// unix socket, and is that API's client, for the orch commands that talk
// to it. The protocol is HTTP/1.1 with JSON bodies under versioned paths
// (/v1/...); docs/agent-api.md describes it.
//
//	orch status / events / restart / signal / plan / apply / destroy
//	      |  Client: HTTP over <state dir>/agent.sock (0600, dir 0700)
//	      v
//	Server (one goroutine per request)
//	      |  engine.Engine's control methods: each hands a closure to
//	      v  the engine's controller goroutine and waits for it
//	engine (owns its books; plans, applies, supervises)
//
// A handler never touches the engine's data itself: it calls the
// engine's methods (Status, Restart, Signal, Plan, Apply, Subscribe).
// Logs are the one exception that needs no engine: they are files
// (Tail), read the same way with or without an agent.
//
// The package must never print, decide what to apply, or open the state
// for writing: the engine's owner (orch up) holds the state lock.
package agent
