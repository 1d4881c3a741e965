package engine

import (
	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// A reload plans as orch plan does: the records are listed without their
// configurations, the desired side is prepared beside the listing and
// the refresh (planner.Prepare), and only the configurations that differ
// are read; after the apply, only the records of what it changed are
// read. Measured on a one-line edit under orch up at 10,000 daemons (2
// cores, five edits each): the records read after the apply took 34-52
// ms, now 2-3.5 ms; Make 55-143 ms, now 22-55 ms; orch up's CPU per edit
// fell from 1.07 s to 0.82 s (perf, three edits). The reconcile's wall
// time did not fall with it (a median of 246 ms, then 233 ms): Prepare
// now runs beside the listing and the refresh, on the same two cores.

// configOmitter is a Store whose records can be listed without their
// configurations, read apart where the plan needs them (state.Store).
type configOmitter interface {
	ListWith(state.ListOptions) ([]state.Instance, error)
	executor.ConfigReader
}

// recordReader is a Store that reads chosen records alone (state.Store).
type recordReader interface {
	Records(addrs []spec.Address) (map[spec.Address]state.Instance, error)
}

// listForPlan lists the records for a reconcile's plan, without their
// configurations when the Store can (co, then, reads those needed).
func (e *Engine) listForPlan() (stored []state.Instance, co configOmitter, err error) {
	if co, ok := e.opts.Store.(configOmitter); ok {
		stored, err := co.ListWith(state.ListOptions{OmitConfig: true})
		return stored, co, err
	}
	stored, err = e.opts.Store.List()
	return stored, nil, err
}

// recordsOf returns the records of addrs that exist: read alone when the
// Store can (recordReader), else picked out of a listing.
func (e *Engine) recordsOf(addrs []spec.Address) (map[spec.Address]state.Instance, error) {
	if rr, ok := e.opts.Store.(recordReader); ok {
		return rr.Records(addrs)
	}
	stored, err := e.opts.Store.List()
	if err != nil {
		return nil, err
	}
	return state.Pick(stored, addrs), nil
}

// withConfigs reads into recs the configurations their listing left out
// (ConfigOmitted), in one read. Should that fail, it says so and they
// stay without: what is read from them (the stop settings an instance was
// applied with) falls back to the defaults, as for a record that cannot
// be decoded.
func (e *Engine) withConfigs(recs []state.Instance) {
	var need []spec.Address
	for _, r := range recs {
		if r.ConfigOmitted {
			need = append(need, r.Addr)
		}
	}
	co, ok := e.opts.Store.(configOmitter)
	if len(need) == 0 || !ok {
		return
	}
	configs, err := co.Configs(need)
	if err != nil {
		e.emit(Event{Type: EventError, Detail: "reading state: " + err.Error()})
		return
	}
	for i := range recs {
		if recs[i].ConfigOmitted {
			recs[i].Config, recs[i].ConfigOmitted = configs[recs[i].Addr], false
		}
	}
}
