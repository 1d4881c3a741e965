package engine

import (
	"context"
	"fmt"
	"sort"

	"github.com/orch-dev/orch/spec"
)

// A cascade is an orch restart -cascade in progress: its roots were
// restarted (a job run again, a daemon stopped and started; the instances
// of a counted block one at a time), and every instance that depends on
// one of them, directly or through others, is restarted once, after all
// of its dependencies among them are ready again: a migration run again,
// then the app instances that depend on it (one at a time), then the
// proxy in front of them. A member whose dependency does not become ready
// again (a job that fails, a daemon that crash-loops) is not restarted,
// nor is what depends on it.
type cascade struct {
	root    spec.Address          // what orch restart named: an instance, or a block of several
	pending map[spec.Address]bool // members not restarted yet
	ready   map[spec.Address]bool // members restarted and ready again
	members map[spec.Address]bool // the roots and their dependents
}

// RestartCascade is Restart of a, then of everything that depends on it
// (orch restart -cascade): each dependent is restarted once every one of
// its dependencies among them is ready again. a may name a block of
// several instances (daemon.app with count = 2): they are the roots,
// restarted one at a time, and what depends on several of them is
// restarted once, after the last (one cascade per instance restarted a
// proxy in front of two app instances twice). It returns once the first
// root's restart is under way; the events tell the rest. It returns what
// it will restart after that, in dependency order.
func (e *Engine) RestartCascade(ctx context.Context, a spec.Address) ([]spec.Address, error) {
	var (
		members []spec.Address
		rerr    error
	)
	err := e.callFree(ctx, func() spec.Address { return e.rootsOf(a)[0] }, func() {
		roots := e.rootsOf(a)
		if rerr = e.requestRestart(roots[0]); rerr != nil {
			return
		}
		c := &cascade{root: a, pending: map[spec.Address]bool{}, ready: map[spec.Address]bool{}, members: map[spec.Address]bool{roots[0]: true}}
		for _, m := range append(roots[1:], e.dependentsOf(roots)...) {
			c.pending[m], c.members[m] = true, true
			members = append(members, m)
		}
		if len(members) > 0 {
			e.cascades = append(e.cascades, c)
		}
	})
	if err != nil {
		return nil, err
	}
	return members, rerr
}

// rootsOf is the instances a names: a itself, or, for a block of several
// instances, those applied, in order.
func (e *Engine) rootsOf(a spec.Address) []spec.Address {
	if e.insts[a] != nil || a.Key != spec.NoKey {
		return []spec.Address{a}
	}
	var out []spec.Address
	for m, inst := range e.insts {
		if m.Block() == a && inst.res != nil && e.desired[m] != nil {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return []spec.Address{a} // requestRestart says what is wrong with it
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// dependentsOf lists the applied daemons and jobs that depend on one of
// roots, directly or through others, in dependency order; the roots
// themselves are not among them.
func (e *Engine) dependentsOf(roots []spec.Address) []spec.Address {
	if e.cfg == nil || e.cfg.Graph == nil {
		return nil
	}
	seen := map[spec.Address]bool{}
	var queue []spec.Address
	for _, r := range roots {
		if e.cfg.Graph.Has(r) {
			seen[r] = true
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, m := range e.cfg.Graph.DependentsOf(d) {
			if !seen[m] {
				seen[m] = true
				queue = append(queue, m)
			}
		}
	}
	for _, r := range roots {
		delete(seen, r)
	}
	var out []spec.Address
	for _, m := range e.cfg.Graph.TopoOrder() {
		if !seen[m] || m.Kind != spec.KindDaemon && m.Kind != spec.KindJob {
			continue
		}
		if inst := e.insts[m]; inst != nil && inst.res != nil && e.desired[m] != nil {
			out = append(out, m)
		}
	}
	return out
}

// cascadeReady takes a, restarted (or run again) and ready, into the
// cascades in progress: each member whose dependencies among its cascade
// are all ready now is restarted.
func (e *Engine) cascadeReady(a spec.Address) {
	kept := e.cascades[:0]
	for _, c := range e.cascades {
		if c.members[a] && !c.pending[a] {
			c.ready[a] = true
		}
		// The instances of one block are restarted one at a time, each
		// once the one before is ready again, as orch restart of a block
		// does: two app instances restarted at once left the proxy in
		// front of them with no upstream, and its own check failed.
		busy := map[spec.Address]bool{}
		for m := range c.members {
			if !c.pending[m] && !c.ready[m] {
				busy[m.Block()] = true
			}
		}
		var due []spec.Address
		for m := range c.pending {
			if e.cascadeDue(c, m) {
				due = append(due, m)
			}
		}
		sort.Slice(due, func(i, j int) bool { return due[i].Less(due[j]) })
		for _, m := range due {
			if busy[m.Block()] {
				continue
			}
			busy[m.Block()] = true
			delete(c.pending, m)
			if err := e.requestRestart(m); err != nil {
				c.ready[m] = true // not restarted: it runs on as it was
				e.emit(Event{Type: EventError, Addr: m, Detail: fmt.Sprintf("not restarted with %s (-cascade): %v", c.root, err)})
			} else {
				e.emit(Event{Type: EventRestarting, Addr: m, Detail: "now, with " + c.root.String() + " (-cascade)"})
			}
		}
		if len(c.pending) > 0 {
			kept = append(kept, c)
		}
	}
	e.cascades = kept
}

// cascadeFailed ends the cascades that a, their root or a member already
// restarted, held back by failing: what they still had to restart is not
// restarted (said by a skipped event each), now or when a is restarted
// again later for another reason.
func (e *Engine) cascadeFailed(a spec.Address) {
	kept := e.cascades[:0]
	for _, c := range e.cascades {
		if !c.members[a] || c.pending[a] {
			kept = append(kept, c)
			continue
		}
		left := make([]spec.Address, 0, len(c.pending))
		for m := range c.pending {
			left = append(left, m)
		}
		sort.Slice(left, func(i, j int) bool { return left[i].Less(left[j]) })
		for _, m := range left {
			e.emit(Event{Type: EventSkipped, Addr: m, Detail: fmt.Sprintf("not restarted with %s (-cascade): %s failed", c.root, a)})
		}
	}
	e.cascades = kept
}

// cascadeDue: every dependency of m that is a member of c (a root among
// them) is ready again.
func (e *Engine) cascadeDue(c *cascade, m spec.Address) bool {
	for _, d := range e.cfg.Graph.DependenciesOf(m) {
		if c.members[d] && !c.ready[d] {
			return false
		}
	}
	return true
}
