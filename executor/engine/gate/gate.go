// Package gate decides which starts of a plan may run now: a pure
// function of the plan's changes, the dependency graph and the readiness
// of every instance, with no process, clock or provider behind it. orch
// up's engine (package executor/engine) asks it at each round and each
// time a dependency may have become ready; its table tests need nothing
// running.
//
// A start waits until each of its dependencies lets it through:
//
//	daemon   running and ready (healthy, when its dependents are gated on
//	         its health); a daemon started in the same apply is waited for
//	         when it has a health check (Input.Gated)
//	job      completed, and then, transitively, what the job depended on
//	         is ready too (a warm start with the migration done in an
//	         earlier run still waits for the database behind it)
//	module   running
//
// A reload (planner.Reload: a signal that makes a running daemon take a
// new configuration) waits only for the dependencies that start with it,
// or started and have no health verdict yet (Instance.Starting): a
// dependency already running that turned unhealthy does not hold it back.
//
// A dependency that failed, or that the user stopped (held, orch stop),
// blocks its dependents: the decision names it (Wait.BlockedBy), also
// when it is not a direct dependency. The changes of a held instance do
// not run at all (Decision.Held): a hold is released only by orch start.
package gate

import (
	"sort"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

// Readiness is what one instance's state lets its dependents do: a
// closed vocabulary.
type Readiness uint8

const (
	Down      Readiness = iota // not running (not started yet, exited, or unknown)
	Running                    // running, not ready yet (its health check has not passed)
	Ready                      // running and ready
	Completed                  // a job that exited 0
	Failed                     // failed (a failed start or job, a crash loop)
	Held                       // stopped by the user (orch stop) until orch start
	Away                       // its start waits for its runtime to be reachable again
)

var readinessNames = [...]string{"down", "running", "ready", "completed", "failed", "held", "away"}

func (r Readiness) String() string {
	if int(r) < len(readinessNames) {
		return readinessNames[r]
	}
	return "Readiness(?)"
}

// blocks says whether r blocks the dependents (as opposed to being waited for).
func (r Readiness) blocks() bool { return r == Failed || r == Held }

// Instance is what the gate knows of one instance.
type Instance struct {
	Readiness Readiness
	Runtime   spec.Address // its runtime (named when it is Away)
	// Starting: Running since its start, with no health verdict yet (as
	// opposed to running and found unhealthy later). A reload waits for
	// such a dependency: it started with it, or just before.
	Starting bool
}

// Input is one decision's facts.
type Input struct {
	Graph *spec.Graph
	// Changes are the candidates, keyed by address: the changes of
	// declared instances (no deletions) that the caller would apply now.
	Changes map[spec.Address]*planner.Change
	// Instances is the readiness of every instance the caller knows of;
	// one missing is Down.
	Instances map[spec.Address]Instance
	// Gated holds, for the daemons of Changes whose start is followed by
	// a health check, what their dependents wait for ("to be healthy"):
	// a dependent is not started in the same apply as them.
	Gated map[spec.Address]string
}

// Wait is why one start waits.
type Wait struct {
	Why string // "for daemon.db to be healthy"
	// BlockedBy, when not zero, is the failed or held instance at the
	// root of what it waits for; Blocker is which of the two.
	BlockedBy spec.Address
	Blocker   Readiness
}

// Decision is what may run now and what waits.
type Decision struct {
	Now  []*planner.Change // in dependency order's set, sorted by address
	Wait map[spec.Address]Wait
	Held []spec.Address // changes of held instances, not run; sorted
}

// Starts reports whether c starts its instance.
func Starts(c *planner.Change) bool {
	return c.Action == planner.Create || c.Action == planner.Start || c.Action == planner.Replace
}

// Decide splits in.Changes into the changes that may run now and the
// starts that must wait, in dependency order: a start waits when a
// dependency is not ready, or is itself a start that waits, or starts in
// the same apply and is gated on its health. A reload waits only for the
// last two: the new configuration it signals may name what starts with
// it (nginx's upstream list, with the instance a count added), which it
// must not be sent to before that is ready; a dependency that was
// already not ready does not hold it back (the new configuration may be
// what routes around it).
func Decide(in Input) Decision {
	d := Decision{Wait: map[spec.Address]Wait{}}
	var now []*planner.Change
	for _, a := range in.Graph.TopoOrder() {
		c := in.Changes[a]
		if c == nil {
			continue
		}
		if in.Instances[a].Readiness == Held {
			d.Held = append(d.Held, a)
			continue
		}
		start := Starts(c)
		if start || c.Action == planner.Reload {
			if why := waitsFor(in, a, d.Wait, !start); why != "" {
				w := Wait{Why: why}
				if start {
					// (a reload waits for starts alone, never for what failed)
					w.BlockedBy, w.Blocker, _ = BlockedBy(in.Graph, in.Instances, a)
				}
				d.Wait[a] = w
				continue
			}
		}
		now = append(now, c)
	}
	sort.Slice(now, func(i, j int) bool { return now[i].Addr.Less(now[j].Addr) })
	sort.Slice(d.Held, func(i, j int) bool { return d.Held[i].Less(d.Held[j]) })
	d.Now = now
	return d
}

// waitsFor says what a start of a waits for, or "". For a reload (reload
// true) only a dependency that waits itself, starts in the same apply
// gated on its health, or started and has no health verdict yet
// (Instance.Starting, in an earlier apply of the same round) holds it
// back.
func waitsFor(in Input, a spec.Address, waiting map[spec.Address]Wait, reload bool) string {
	for _, dep := range in.Graph.DependenciesOf(a) {
		if dep.Kind == spec.KindRuntime {
			continue
		}
		if _, ok := waiting[dep]; ok {
			return "for " + dep.String() + ", which waits itself"
		}
		if c := in.Changes[dep]; c != nil && Starts(c) && in.Instances[dep].Readiness != Held {
			if why := in.Gated[dep]; why != "" {
				return "for " + dep.String() + " " + why
			}
			continue // started (or run to completion) first in the same apply
		}
		if reload {
			if in.Instances[dep].Starting {
				return "for " + dep.String() + " to be healthy"
			}
			continue
		}
		if why := NotReady(in.Graph, in.Instances, dep); why != "" {
			return why
		}
	}
	return ""
}

// NotReady says why dependency d does not let its dependents start, or "".
func NotReady(g *spec.Graph, insts map[spec.Address]Instance, d spec.Address) string {
	i := insts[d]
	switch i.Readiness {
	case Failed:
		return "for " + d.String() + ", which failed"
	case Held:
		return "for " + d.String() + ", which was stopped by user (orch start runs it again)"
	}
	switch d.Kind {
	case spec.KindJob:
		if i.Readiness != Completed {
			return "for " + d.String() + " to complete"
		}
		// Readiness gates through a completed job: what it depended on
		// must be ready too.
		for _, dd := range g.DependenciesOf(d) {
			if dd.Kind == spec.KindRuntime {
				continue
			}
			if why := NotReady(g, insts, dd); why != "" {
				return why
			}
		}
		return ""
	case spec.KindDaemon:
		switch i.Readiness {
		case Away:
			return "for " + d.String() + ", which waits for " + i.Runtime.String() + " to be reachable again"
		case Down, Completed:
			return "for " + d.String() + " to run"
		case Running:
			return "for " + d.String() + " to be healthy"
		}
		return ""
	case spec.KindModule:
		if i.Readiness != Running && i.Readiness != Ready {
			return "for " + d.String() + " to run"
		}
		return ""
	}
	return "for " + d.String() + ", which orch up cannot host"
}

// BlockedBy finds a failed or held instance among what a depends on,
// transitively, in dependency order (the first found).
func BlockedBy(g *spec.Graph, insts map[spec.Address]Instance, a spec.Address) (spec.Address, Readiness, bool) {
	return blockedBy(g, insts, a, map[spec.Address]bool{})
}

func blockedBy(g *spec.Graph, insts map[spec.Address]Instance, a spec.Address, seen map[spec.Address]bool) (spec.Address, Readiness, bool) {
	if g == nil {
		return spec.Address{}, Down, false
	}
	for _, d := range g.DependenciesOf(a) {
		if d.Kind == spec.KindRuntime || seen[d] {
			continue
		}
		seen[d] = true
		if r := insts[d].Readiness; r.blocks() {
			return d, r, true
		}
		if by, r, ok := blockedBy(g, insts, d, seen); ok {
			return by, r, true
		}
	}
	return spec.Address{}, Down, false
}
