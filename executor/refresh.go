package executor

import (
	"context"
	"fmt"
	"sort"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
	"github.com/zclconf/go-cty/cty"
)

// Providers maps a runtime kind ("process", "docker") to its provider.
type Providers map[string]providers.Provider

// Schemas returns the schemas of all providers, for spec.Options.
func (ps Providers) Schemas() map[string]spec.RuntimeSchema {
	out := make(map[string]spec.RuntimeSchema, len(ps))
	for k, p := range ps {
		out[k] = p.Schema()
	}
	return out
}

// runtimeFor returns the runtime block at addr, or a stand-in when it is no
// longer declared (its instances are being deleted).
func runtimeFor(cfg *spec.Config, addr spec.Address) *spec.Runtime {
	if cfg != nil {
		if rt := cfg.Runtime(addr); rt != nil {
			return rt
		}
	}
	return &spec.Runtime{Addr: addr, Kind: addr.Type, Name: addr.Name, Attrs: map[string]cty.Value{}}
}

// Refresh reads the stored instances, observes them through their
// providers (one batched call per runtime) and asks adopting providers for
// objects of the project that state does not know. The result is the
// planner's input, without Config-independent fields filled by the caller.
func Refresh(ctx context.Context, cfg *spec.Config, stored []state.Instance, ps Providers, project, stateDir string) (planner.Input, error) {
	in, _, err := refresh(ctx, cfg, stored, ps, project, stateDir, false)
	return in, err
}

// RefreshAround is Refresh that goes on around the runtimes it cannot
// reach (providers.IsUnreachable: a Docker Engine away): their recorded
// instances read as StateUnknown (why in Error), nothing of theirs is
// adopted, and they are returned, with the error, so that the caller
// leaves their changes out of what it applies. orch up uses it, so that an
// Engine away does not hold back the process daemons.
func RefreshAround(ctx context.Context, cfg *spec.Config, stored []state.Instance, ps Providers, project, stateDir string) (planner.Input, map[spec.Address]error, error) {
	return refresh(ctx, cfg, stored, ps, project, stateDir, true)
}

func refresh(ctx context.Context, cfg *spec.Config, stored []state.Instance, ps Providers, project, stateDir string, around bool) (planner.Input, map[spec.Address]error, error) {
	away := map[spec.Address]error{}
	in := planner.Input{
		Config: cfg, Schemas: ps.Schemas(),
		Stored:    make(map[spec.Address]*planner.Stored, len(stored)),
		Observed:  make(map[spec.Address]providers.Observed, len(stored)),
		Adoptable: map[spec.Address]providers.Adoptable{},
	}
	// The stored configurations are left encoded: the planner decodes
	// those it compares (a no-op plan of thousands decodes none). A
	// record listed without its configuration (state.ListOptions.
	// OmitConfig) is marked so, and the records are not needed after
	// this: a caller may let them go before it plans (at 10,000 they
	// are 3 MB of the peak of a no-op plan).
	for _, inst := range stored {
		in.Stored[inst.Addr] = &planner.Stored{Addr: inst.Addr, Runtime: inst.Runtime, ConfigHash: inst.ConfigHash, Handle: inst.Handle,
			Status: planner.ParseStatus(inst.Status), Config: inst.Config, ConfigOmitted: inst.ConfigOmitted && len(inst.Config) == 0}
	}
	byRuntime := handlesByRuntime(stored)
	rts := make([]spec.Address, 0, len(byRuntime))
	for a := range byRuntime {
		rts = append(rts, a)
	}
	sort.Slice(rts, func(i, j int) bool { return rts[i].Less(rts[j]) })
	for _, rtAddr := range rts {
		p := ps[rtAddr.Type]
		if p == nil {
			return in, away, fmt.Errorf("state holds instances on %s, but orch has no provider for runtime kind %q", rtAddr, rtAddr.Type)
		}
		resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: runtimeFor(cfg, rtAddr), Handles: byRuntime[rtAddr], NoUsage: true})
		if err != nil && around && providers.IsUnreachable(err) {
			away[rtAddr] = err
			for a := range byRuntime[rtAddr] {
				in.Observed[a] = providers.Observed{State: providers.StateUnknown, Error: "cannot observe it: " + err.Error()}
			}
			continue
		}
		if err != nil {
			return in, away, fmt.Errorf("observing instances on %s: %w", rtAddr, err)
		}
		for a, o := range resp.Objects {
			in.Observed[a] = o
		}
	}
	// Adoption: objects of ours the state does not know. A declared
	// daemon whose record's instance no longer runs counts as unknown
	// too: a running instance of it that a dead orch started after that
	// record was written (a start whose record was released, or not yet
	// written, when orch was killed; the record is the one orch up wrote
	// when it last stopped it) is adopted, not stopped as a leftover and
	// started again.
	known := func(a spec.Address) bool {
		if _, ok := in.Stored[a]; !ok {
			return false
		}
		if a.Kind == spec.KindDaemon && cfg.Resource(a) != nil && in.Observed[a].Gone() {
			return false
		}
		return true
	}
	if cfg != nil {
		for _, rt := range cfg.Runtimes {
			ad, ok := ps[rt.Kind].(providers.Adopter)
			if !ok || away[rt.Addr] != nil {
				continue
			}
			resp, err := ad.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: project, StateDir: stateDir,
				Known: known,
				KnownHandle: func(a spec.Address) providers.Handle {
					if st := in.Stored[a]; st != nil {
						return st.Handle
					}
					return nil
				}})
			if err != nil && around && providers.IsUnreachable(err) {
				away[rt.Addr] = err
				continue
			}
			if err != nil {
				return in, away, fmt.Errorf("listing adoptable instances on %s: %w", rt.Addr, err)
			}
			for _, o := range resp.Objects {
				o.Runtime = rt.Addr
				if known(o.Addr) || o.Observed.State != providers.StateRunning {
					continue
				}
				in.Adoptable[o.Addr] = o
			}
		}
	}
	return in, away, nil
}

// decodeSnapshots decodes the stored configurations (nil where one is
// unreadable). Decoding is most of the CPU time of refreshing thousands of
// instances, so large states are decoded on every CPU.
func decodeSnapshots(stored []state.Instance) []*planner.Snapshot {
	out := make([]*planner.Snapshot, len(stored))
	decode := func(lo, hi int) {
		// one decoder per goroutine: the values the instances have in
		// common are decoded once and shared
		dec := planner.NewSnapshotDecoder()
		for i := lo; i < hi; i++ {
			if snap, err := dec.Decode(stored[i].Config); err == nil {
				out[i] = snap
			}
		}
	}
	// Split from 256 on: orch up's shutdown decodes every record before
	// its first stop signal (about 10 us a snapshot).
	workers.Split(len(stored), workers.Count(len(stored), 256), decode)
	return out
}

// handlesByRuntime groups the handles of the recorded instances by
// runtime, for one batched Observe each.
func handlesByRuntime(stored []state.Instance) map[spec.Address]map[spec.Address]providers.Handle {
	by := map[spec.Address]map[spec.Address]providers.Handle{}
	for _, rec := range stored {
		if rec.Runtime.IsZero() || len(rec.Handle) == 0 {
			continue
		}
		if by[rec.Runtime] == nil {
			by[rec.Runtime] = map[spec.Address]providers.Handle{}
		}
		by[rec.Runtime][rec.Addr] = rec.Handle
	}
	return by
}

// ObserveRecorded observes the recorded instances through their
// providers, one batched call per runtime, each with its settings in cfg
// (a runtime cfg does not declare is observed with none). Unlike Refresh,
// which a plan needs whole, it never fails: the instances of a runtime
// that cannot be observed (a Docker Engine away) read as StateUnknown,
// with why in Error, and the others are observed all the same. For status.
// A job that ended (completed or failed) reads exited, also once its
// process is no longer there to tell (missing, as after a restart of
// orch): its record says how it ended; so does a daemon or module that
// orch stopped (stopped: orch up's shutdown, orch stop), whose process
// exited then. An instance whose start failed, and so has no handle for
// its runtime to look up, reads missing: nothing of it runs (not unknown,
// which says its runtime cannot be asked).
func ObserveRecorded(ctx context.Context, ps Providers, cfg *spec.Config, stored []state.Instance) map[spec.Address]providers.Observed {
	out := map[spec.Address]providers.Observed{}
	for rtAddr, handles := range handlesByRuntime(stored) {
		p := ps[rtAddr.Type]
		if p == nil {
			continue
		}
		resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: runtimeFor(cfg, rtAddr), Handles: handles})
		if err != nil {
			for a := range handles {
				out[a] = providers.Observed{State: providers.StateUnknown, Error: "cannot observe it: " + err.Error()}
			}
			continue
		}
		for a, o := range resp.Objects {
			out[a] = o
		}
	}
	for _, inst := range stored {
		o, ok := out[inst.Addr]
		ended := planner.ParseStatus(inst.Status)
		switch {
		case ok && o.State == providers.StateMissing && (ended == planner.StatusStopped ||
			inst.Addr.Kind == spec.KindJob && (ended == planner.StatusCompleted || ended == planner.StatusFailed)):
			o.State = providers.StateExited
			out[inst.Addr] = o
		case !ok && len(inst.Handle) == 0 && ended == planner.StatusFailed:
			// not looked up (handlesByRuntime): there was nothing to ask
			out[inst.Addr] = providers.Observed{State: providers.StateMissing}
		}
	}
	return out
}

// StoredOf turns state records into the planner's view of them, their
// configurations decoded (in parallel for many).
func StoredOf(stored []state.Instance) map[spec.Address]*planner.Stored {
	out := make(map[spec.Address]*planner.Stored, len(stored))
	snaps := decodeSnapshots(stored)
	for i, inst := range stored {
		out[inst.Addr] = &planner.Stored{Addr: inst.Addr, Runtime: inst.Runtime, ConfigHash: inst.ConfigHash, Handle: inst.Handle,
			Status: planner.ParseStatus(inst.Status), Snapshot: snaps[i], Config: inst.Config}
	}
	return out
}

// ConfigReader reads recorded configurations by address
// (state.Store.Configs).
type ConfigReader interface {
	Configs(addrs []spec.Address) (map[spec.Address][]byte, error)
}

// ReadOmittedConfigs completes the planner's input made from records
// listed without their configurations (state.ListOptions.OmitConfig,
// marked so by the refresh): the configurations the plan needs
// (Prepared.ConfigsNeeded: those that differ from the desired ones, those
// no longer declared; all of them for a destroy, where prep is nil) are
// read, in one read of st. in.Prepared is set to prep. orch plan,
// orch apply and orch up's reloads plan so.
func ReadOmittedConfigs(st ConfigReader, in *planner.Input, prep *planner.Prepared) error {
	in.Prepared = prep
	var need []spec.Address // without prep: every one left out
	for a, sd := range in.Stored {
		if sd.ConfigOmitted {
			need = append(need, a)
		}
	}
	if len(need) > 0 && prep != nil {
		need = prep.ConfigsNeeded(*in)
	}
	if len(need) == 0 {
		return nil
	}
	configs, err := st.Configs(need)
	if err != nil {
		return err
	}
	for _, a := range need {
		sd := *in.Stored[a]
		sd.Config, sd.ConfigOmitted = configs[a], false
		in.Stored[a] = &sd
	}
	return nil
}
