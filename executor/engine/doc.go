// Package engine is orch up: it applies a configuration, supervises what
// runs, and applies every valid edit of the configuration directory, until
// its context is done; then it stops everything in reverse dependency
// order. orch agent runs the same engine; package executor/agent serves
// its control methods (control.go) on a unix socket.
//
// It decides nothing that the planner decides and performs nothing that
// the executor performs: each round refreshes (executor.Refresh), plans
// (planner.Make), and applies (executor.Executor.Apply) the part of the
// plan that may run now. What it adds is time:
//
//	fsnotify(dir) --debounce--> load + validate --invalid--> report, keep running
//	                                   | valid, new hash
//	                                   v
//	          +-----------------> reconcile: Refresh, Make, select, Apply
//	          | again?                 |           (starts wait for their
//	          |                        v            dependencies: healthy,
//	          |                     supervise        running, or completed)
//	          |                   (Watcher, health)
//	   promote: the deferred starts    |
//	   now ready, applied at once <----+ healthy, or an apply ended
//	   (no Refresh, alongside the      | exit / unhealthy
//	   applies in flight)              v
//	                               restart policy --> backoff --> one-change apply
//	                                   '--> crash loop: failed until the config changes
//
// A start that waits for a dependency is held with its change from the
// plan that deferred it. When a dependency turns healthy (or runs, or
// completes) it is applied at once, in an apply of its own beside those
// in flight (Engine.promote): only this engine acts on an instance that
// waits, so its planned change still holds, and refreshing the world for
// every event would put each dependent behind every other one. When the
// configuration or the instance changed since, the round is planned again.
//
// Which starts may run now is decided by a pure function, gate.Decide
// (package executor/engine/gate): the plan's changes and the readiness of
// every instance in, what starts now, what waits (and the failed or held
// instance blocking it) out. Each instance's own state is its supervisor
// (supervisor.go: starting, ready, unhealthy, paused, stopping, down,
// held), changed only through its transitions. orch stop holds an
// instance stopped (hold.go) until orch start. The engine writes no
// record: the executor does, also for a crash loop (executor.MarkFailed).
//
// A runtime whose backend goes away (a Docker Engine restarted) is
// followed through its provider's optional providers.EventSource: the
// engine says "unreachable", leaves what runs there as it is (a watch
// that cannot reach its backend reports nothing), never counts a start
// that could not reach the backend as a crash (the daemon waits for its
// runtime instead; runtimes.go), and once the stream says "reconnected"
// it says so, starts what waited, and reconciles from a fresh listing.
//
// One goroutine (Run's) owns all of the engine's books; watches, health
// monitors, timers, applies and the directory watcher hand it closures.
// Exits are pushed by the provider's optional providers.Watcher (the
// process provider: its reaper, or a pidfd); only providers without it
// are observed periodically.
//
// After ctx is done the records of the daemons it stopped stay in the
// state, marked "stopped" (StatusStopped), like `docker compose up` then
// Ctrl-C: a later orch up starts them again, orch status shows them
// stopped, orch destroy removes them. Completed jobs keep their result.
//
// The engine must never decide an action the planner decides, hold the
// state lock itself (its caller does, for the whole Run), or print:
// everything it has to say is an Event.
package engine
