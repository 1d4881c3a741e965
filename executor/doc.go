// Package executor carries out a plan: it walks the plan's dependency graph
// with bounded parallelism, calls the providers, and records every step's
// result in the state store as soon as it happens.
//
// It also gathers what the planner needs (Refresh): the stored instances,
// what the providers observe of them, and what they can adopt.
//
// Order of steps, for a plan over A -> B (A depends on B):
//
//	up(B) ---> up(A)                    creates and starts: dependencies first
//	down(A) -> down(B)                  deletions: dependents first
//	down(X) -> up(X)                    replace (default: destroy, then create)
//	up(X) ---> down(X)                  replace with create_before_destroy
//
// On a failure the executor skips what depends on the failed step, lets
// independent branches finish, records everything, and reports the root
// cause as a diagnostic pointing at the resource's file:line. When its
// context is cancelled (Ctrl-C) it starts nothing new, lets in-flight steps
// finish, records them, and returns ErrInterrupted.
//
// The executor must never decide what to do: that is the planner's job.
// It performs exactly the changes of the plan it is given.
package executor
