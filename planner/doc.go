// Package planner decides what to do: it diffs the declared configuration
// against what was applied (the stored state) and what runs (the observed
// state) and returns a deterministic Plan of changes per instance: create,
// update in place, replace, delete, start, adopt or nothing.
//
// The planner is pure: declared + stored + observed in, Plan out. It must
// never do I/O, read a clock, start a goroutine or import a backend or the
// executor. That is what makes it testable without processes (golden plans
// under testdata/, property tests) and what makes a plan exact: the
// executor performs exactly the changes of the Plan it is given.
//
// How one instance is decided:
//
//	declared? stored? observed        -> action
//	yes       no      (adoptable)     -> adopt, or replace if its config differs
//	yes       no      -               -> create
//	yes       yes     (adoptable)     -> adopt, or replace if its config differs
//	                                     (the caller found the recorded instance gone
//	                                     and a newer one of ours running)
//	yes       yes     forcing diff    -> replace (-/+, or +/- with create_before_destroy)
//	yes       yes     in-place diff   -> update (and start, when not running)
//	yes       yes     not running     -> start (a job that exited 0: nothing)
//	yes       yes     running, same   -> no-op
//	no        yes     any             -> delete
//	no        no      (adoptable)     -> delete (ours, left over)
package planner
