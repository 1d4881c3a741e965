// Package providers is the contract between orch and its runtime backends
// (the native process supervisor, Docker, systemd, go-plugin and wazero
// transports). It holds small interfaces and plain request/response
// structs, and nothing else: no backend lives here.
//
// A Provider must do little: describe its schema, observe, start, stop.
// Everything else is an optional one-method capability interface (Deleter,
// HealthChecker, Adopter, Signaler, LogReader, EventSource), discovered by
// type assertion and listed by Capabilities, so the contract grows without
// breaking a backend. Methods take ctx first and a request struct and
// return a response struct, so new fields never break a signature.
//
// Lifecycle of one instance as the executor drives it:
//
//	          Start            (health ok)
//	absent ---------> running ------------> healthy
//	   ^                 |  \                  |
//	   |    Delete       |   \ exits           | Stop
//	   +---- stopped <---+    +--> exited <----+
//	              Stop
//
// Every method is idempotent where a crash can replay it: Stop of an
// instance that is already gone succeeds, Start after a half-finished
// Start cleans up first. Handles are opaque to orch: the provider encodes
// what it needs to find its object again (pid and start time, container
// id), orch stores the bytes and hands them back.
//
// This package must never import a backend, the planner or the executor.
package providers
