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
//	          |                        |           (starts wait for their
//	          | healthy, or            v            dependencies: healthy,
//	          | an apply ended      supervise        running, or completed)
//	          |                   (Watcher, health)
//	          |                        | exit / unhealthy
//	          |                        v
//	          +--- deferred?       restart policy --> backoff --> one-change apply
//	                                   '--> crash loop: failed until the config changes
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
