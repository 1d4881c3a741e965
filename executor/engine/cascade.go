package engine

import (
	"context"
	"fmt"
	"sort"

	"github.com/orch-dev/orch/spec"
)

// A cascade is an orch restart -cascade in progress: its root was
// restarted (a job run again, a daemon stopped and started), and every
// instance that depends on the root, directly or through others, is
// restarted once, after all of its dependencies among them are ready
// again: a migration run again, then the app instances that depend on it
// (one at a time), then the proxy in front of them. A member whose dependency does not
// become ready again (a job that fails, a daemon that crash-loops) is not
// restarted, nor is what depends on it.
type cascade struct {
	root    spec.Address
	pending map[spec.Address]bool // members not restarted yet
	ready   map[spec.Address]bool // the root and members restarted and ready again
	members map[spec.Address]bool
}

// RestartCascade is Restart of a, then of everything that depends on it
// (orch restart -cascade): each dependent is restarted once every one of
// its dependencies among them is ready again. It returns once a's restart
// is under way; the events tell the rest. It returns the dependents it
// will restart, in dependency order.
func (e *Engine) RestartCascade(ctx context.Context, a spec.Address) ([]spec.Address, error) {
	var (
		members []spec.Address
		rerr    error
	)
	err := e.call(ctx, func() {
		if rerr = e.requestRestart(a); rerr != nil {
			return
		}
		c := &cascade{root: a, pending: map[spec.Address]bool{}, ready: map[spec.Address]bool{}, members: map[spec.Address]bool{}}
		for _, m := range e.dependentsOf(a) {
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

// dependentsOf lists the applied daemons and jobs that depend on a,
// directly or through others, in dependency order.
func (e *Engine) dependentsOf(a spec.Address) []spec.Address {
	if e.cfg == nil || e.cfg.Graph == nil || !e.cfg.Graph.Has(a) {
		return nil
	}
	seen := map[spec.Address]bool{a: true}
	queue := []spec.Address{a}
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
	var out []spec.Address
	for _, m := range e.cfg.Graph.TopoOrder() {
		if m == a || !seen[m] || m.Kind != spec.KindDaemon && m.Kind != spec.KindJob {
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
		if a == c.root || c.members[a] && !c.pending[a] {
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
		if a != c.root && (!c.members[a] || c.pending[a]) {
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

// cascadeDue: every dependency of m that is the root or a member of c is
// ready again.
func (e *Engine) cascadeDue(c *cascade, m spec.Address) bool {
	for _, d := range e.cfg.Graph.DependenciesOf(m) {
		if (d == c.root || c.members[d]) && !c.ready[d] {
			return false
		}
	}
	return true
}
