package engine

import (
	"context"

	"github.com/orch-dev/orch/executor/engine/gate"
	"github.com/orch-dev/orch/spec"
)

// A project on several hosts (executor/cluster) runs an engine per node,
// each on the part of the configuration placed on its node; the graph of
// that part keeps the dependencies placed on other nodes. Their
// readiness comes from Options.Elsewhere (what the other nodes' agents
// published), so that a start waits for a dependency on another node
// exactly as for one of its own: the same gate, the same words.

// addElsewhere adds to m the readiness of the instances the
// configuration does not declare, as Options.Elsewhere says.
func (e *Engine) addElsewhere(m map[spec.Address]gate.Instance) {
	if e.opts.Elsewhere == nil || e.cfg == nil {
		return
	}
	for a, r := range e.opts.Elsewhere() {
		if e.cfg.Resource(a) == nil {
			m[a] = gate.Instance{Readiness: r}
		}
	}
}

// ElsewhereChanged tells the engine that Options.Elsewhere may say
// something new: the starts that wait for a dependency are decided again
// (promote). Calls while one is queued are folded into it.
func (e *Engine) ElsewhereChanged() {
	if e.elsewhereDue.Swap(true) {
		return
	}
	e.post(func() {
		e.elsewhereDue.Store(false)
		e.promote()
	})
}

// Gating is what one instance of the engine lets its dependents do, and
// what its own start waits for.
type Gating struct {
	Readiness gate.Readiness
	Waiting   string // "" unless its start waits: "for daemon.db to be healthy"
	Blocked   bool   // what it waits for failed or is held
}

// Gatings returns the Gating of every instance the configuration
// declares and the engine knows of: what an agent publishes for the
// dependents on other nodes.
func (e *Engine) Gatings(ctx context.Context) (map[spec.Address]Gating, error) {
	var out map[spec.Address]Gating
	err := e.call(ctx, func() {
		out = make(map[spec.Address]Gating, len(e.insts))
		for a, inst := range e.insts {
			if e.cfg == nil || e.cfg.Resource(a) == nil {
				continue
			}
			g := Gating{Readiness: e.readinessOf(inst)}
			if _, waits := e.deferred[a]; waits {
				g.Waiting, g.Blocked = inst.waiting, !inst.blockedBy.IsZero()
			}
			out[a] = g
		}
	})
	return out, err
}
