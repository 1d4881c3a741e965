package planner

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
)

// Prepared is the desired side of a plan, made from the configuration
// alone, before the state and the runtimes are looked at: each declared
// instance's desired snapshot and its config hash. It lets a caller read
// the stored configurations only where they differ (ConfigsNeeded), and
// Make then uses it instead of making the desired snapshots again.
//
// The state of 10,000 daemons holds 10 MB of stored configurations; a
// no-op plan compares each with the desired one and keeps none. With
// Prepare, orch plan reads none of them: the state's list leaves out each
// configuration whose SHA-256 is its record's config hash (Stored.
// ConfigOmitted), and an equal hash is an equal configuration (issue 19).
type Prepared struct {
	cfg     *spec.Config
	desired []*Snapshot // by index in cfg.Resources; nil: left to Make
	hashes  []string
}

// Prepare makes the desired snapshots of cfg's instances and their hashes,
// on every CPU. An instance with lifecycle.ignore_changes is left to Make
// (its desired snapshot depends on the stored one).
func Prepare(cfg *spec.Config, schemas map[string]spec.RuntimeSchema) *Prepared {
	if cfg == nil {
		return nil
	}
	rs := cfg.Resources
	p := &Prepared{cfg: cfg, desired: make([]*Snapshot, len(rs)), hashes: make([]string, len(rs))}
	workers.Split(len(rs), workers.Count(len(rs), decideAllMin), func(lo, hi int) {
		sh := newSharer()
		buf := make([]byte, 0, 2048)
		for i := lo; i < hi; i++ {
			r := rs[i]
			if len(r.Lifecycle.IgnoreChanges) > 0 {
				continue
			}
			d := snapshotOf(r, cfg.Graph.DependenciesOf(r.Addr), schemaFor(cfg, schemas, r), sh)
			b, ok := d.appendEncode(buf[:0])
			if !ok {
				b = d.Encode()
			} else {
				buf = b
			}
			h := sha256.Sum256(b)
			p.desired[i], p.hashes[i] = d, hex.EncodeToString(h[:])
		}
	})
	return p
}

// schemaFor is the runtime schema of r: a plugin runtime's is its
// plugin's, when orch has it (its ForcesReplacement flags count); without
// one every unknown attribute forces replacement.
func schemaFor(cfg *spec.Config, schemas map[string]spec.RuntimeSchema, r *spec.Resource) *spec.RuntimeSchema {
	if rt := cfg.Runtime(r.Runtime); rt != nil {
		if s, ok := schemas[rt.Kind]; ok {
			return &s
		}
	}
	return nil
}

// of returns the prepared desired snapshot and hash of the i-th instance
// of cfg, if any.
func (p *Prepared) of(cfg *spec.Config, i int) (*Snapshot, string, bool) {
	if p == nil || p.cfg != cfg || i >= len(p.desired) || p.desired[i] == nil {
		return nil, "", false
	}
	return p.desired[i], p.hashes[i], true
}

// ConfigsNeeded lists the stored instances of in whose configuration was
// left out (Stored.ConfigOmitted) and that Make needs: those whose hash is
// not the desired one, those no longer declared (their stop settings),
// all of them for a destroy or a plan with -target or -replace. The
// caller reads them and sets Config (and clears ConfigOmitted) before Make.
func (p *Prepared) ConfigsNeeded(in Input) []spec.Address {
	all := in.Destroy || len(in.Targets) > 0 || len(in.Replace) > 0 || in.Config == nil
	desired := map[spec.Address]string{}
	if !all {
		for i, r := range in.Config.Resources {
			if _, h, ok := p.of(in.Config, i); ok {
				desired[r.Addr] = h
			} else {
				desired[r.Addr] = "" // made by Make: compared with the stored one
			}
		}
	}
	var out []spec.Address
	for addr, st := range in.Stored {
		if !st.ConfigOmitted || st.Snapshot != nil {
			continue
		}
		if h, ok := desired[addr]; all || !ok || h == "" || h != st.ConfigHash {
			out = append(out, addr)
		}
	}
	return out
}
