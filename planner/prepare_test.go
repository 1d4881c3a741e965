package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// TestPreparedOmittedConfigs: a plan whose stored configurations were left
// out where their hash is their config hash (Stored.ConfigOmitted), with
// those Prepared.ConfigsNeeded names read back, is the plan made from all
// of them: same actions, diffs, fingerprint. It needs exactly the edited
// and the removed ones (and all of them for a destroy or -target), and
// the no-ops' priors carry the desired snapshots.
func TestPreparedOmittedConfigs(t *testing.T) {
	cfg := tryLoad(lazySrc)
	before := tryLoad(lazySrc + `daemon "gone" {
  command = ["/bin/sleep", "4"]
}
`)
	if cfg == nil || before == nil {
		t.Fatal("configuration does not load")
	}
	before.Resource(spec.Address{Kind: spec.KindDaemon, Name: "edited"}).Env = map[string]string{"A": "old"}
	full := map[spec.Address]*Stored{}
	observed := map[spec.Address]providers.Observed{}
	for _, r := range before.Resources {
		enc := SnapshotOf(r, before.Graph.DependenciesOf(r.Addr), nil).Encode()
		h := sha256.Sum256(enc)
		full[r.Addr] = &Stored{Addr: r.Addr, Runtime: r.Runtime, Config: enc, ConfigHash: hex.EncodeToString(h[:]),
			Handle: providers.Handle("h"), Status: StatusRunning}
		observed[r.Addr] = providers.Observed{State: providers.StateRunning, Pid: 1}
	}
	omitted := func() map[spec.Address]*Stored {
		out := map[spec.Address]*Stored{}
		for a, st := range full {
			cp := *st
			cp.Config, cp.ConfigOmitted = nil, true
			out[a] = &cp
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		in      Input
		needAll bool
	}{
		{"plan", Input{}, false},
		{"destroy", Input{Destroy: true}, true},
		{"target", Input{Targets: []spec.Address{{Kind: spec.KindDaemon, Name: "same"}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Config, in.Schemas, in.Observed = cfg, testSchemas, observed
			in.Stored = full
			want, wd := Make(in)

			in.Stored = omitted()
			prep := Prepare(cfg, testSchemas)
			need := prep.ConfigsNeeded(in)
			wantNeed := map[string]bool{"edited": true, "gone": true}
			if tc.needAll {
				wantNeed = map[string]bool{"edited": true, "gone": true, "same": true, "garbled": true}
			}
			got := map[string]bool{}
			for _, a := range need {
				got[a.Name] = true
			}
			if !reflect.DeepEqual(got, wantNeed) {
				t.Fatalf("ConfigsNeeded = %v, want %v", got, wantNeed)
			}
			for _, a := range need {
				cp := *in.Stored[a]
				cp.Config, cp.ConfigOmitted = full[a].Config, false
				in.Stored[a] = &cp
			}
			in.Prepared = prep
			p, d := Make(in)
			if len(d) != len(wd) || p.Fingerprint != want.Fingerprint || len(p.Changes) != len(want.Changes) {
				t.Fatalf("with omitted configurations: %d diags, fingerprint %s, %d changes; want %d, %s, %d",
					len(d), p.Fingerprint, len(p.Changes), len(wd), want.Fingerprint, len(want.Changes))
			}
			for i, c := range p.Changes {
				w := want.Changes[i]
				if c.Addr != w.Addr || c.Action != w.Action || c.Hash() != w.Hash() || !reflect.DeepEqual(c.ForcedBy, w.ForcedBy) || len(c.Diffs) != len(w.Diffs) {
					t.Errorf("%s: %s %v (%d diffs), want %s %v (%d diffs)", c.Addr, c.Action, c.ForcedBy, len(c.Diffs), w.Action, w.ForcedBy, len(w.Diffs))
				}
				if c.Action == NoOp && (c.Prior.Snapshot != c.Desired || c.Prior.ConfigOmitted) {
					t.Errorf("%s: a no-op's prior is not the desired snapshot", c.Addr)
				}
			}
		})
	}
}

// TestPreparedCreates: with Prepared, a create's hash is the prepared one,
// and its encoding, made when asked, hashes to it.
func TestPreparedCreates(t *testing.T) {
	cfg := tryLoad(lazySrc)
	if cfg == nil {
		t.Fatal("configuration does not load")
	}
	p, _ := Make(Input{Config: cfg, Schemas: testSchemas, Prepared: Prepare(cfg, testSchemas)})
	want, _ := Make(Input{Config: cfg, Schemas: testSchemas})
	if p.Fingerprint != want.Fingerprint || len(p.Changes) != 3 {
		t.Fatalf("fingerprint %s, %d changes; want %s", p.Fingerprint, len(p.Changes), want.Fingerprint)
	}
	for _, c := range p.Changes {
		sum := sha256.Sum256(c.Encoded())
		if c.Action != Create || c.Hash() != c.Desired.Hash() || hex.EncodeToString(sum[:]) != c.Hash() {
			t.Errorf("%s: %s, hash %s; want a create whose encoding hashes to its hash", c.Addr, c.Action, c.Hash())
		}
	}
}
