package planner

import (
	"bytes"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

const lazySrc = `
daemon "same" {
  command = ["/bin/sleep", "1"]
}
daemon "edited" {
  command = ["/bin/sleep", "2"]
  env     = { A = "new" }
}
daemon "garbled" {
  command = ["/bin/sleep", "3"]
}
`

// TestStoredConfigDecodedOnlyWhereNeeded: records given as their encoded
// configuration (Stored.Config, as Refresh leaves them) plan as decoded
// ones do. One byte for byte the desired configuration is a no-op whose
// Prior carries the desired snapshot; an edited one is decoded and
// diffed (env forces a replacement); a removed one is decoded for its delete; an unreadable one is
// replaced. The input is not changed.
func TestStoredConfigDecodedOnlyWhereNeeded(t *testing.T) {
	cfg := tryLoad(lazySrc)
	if cfg == nil {
		t.Fatal("configuration does not load")
	}
	// What each was applied with: the desired snapshots of an earlier
	// configuration where "edited" had another env and "gone" existed.
	before := tryLoad(lazySrc + `daemon "gone" {
  command = ["/bin/sleep", "4"]
}
`)
	before.Resource(spec.Address{Kind: spec.KindDaemon, Name: "edited"}).Env = map[string]string{"A": "old"}
	stored := map[spec.Address]*Stored{}
	observed := map[spec.Address]providers.Observed{}
	for _, r := range before.Resources {
		enc := SnapshotOf(r, nil, nil).Encode()
		if r.Addr.Name == "garbled" {
			enc = []byte(`{"format":1,"kind":`)
		}
		stored[r.Addr] = &Stored{Addr: r.Addr, Runtime: r.Runtime, Config: enc, Handle: providers.Handle("h"), Status: StatusRunning}
		observed[r.Addr] = providers.Observed{State: providers.StateRunning, Pid: 1}
	}
	p, diags := Make(Input{Config: cfg, Schemas: testSchemas, Stored: stored, Observed: observed})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := map[string]Action{"same": NoOp, "edited": Replace, "garbled": Replace, "gone": Delete}
	if len(p.Changes) != len(want) {
		t.Fatalf("%d changes, want %d", len(p.Changes), len(want))
	}
	for _, c := range p.Changes {
		if c.Action != want[c.Addr.Name] {
			t.Errorf("%s: %s, want %s", c.Addr, c.Action, want[c.Addr.Name])
		}
		switch c.Addr.Name {
		case "same":
			if c.Prior.Snapshot != c.Desired {
				t.Errorf("%s: the prior snapshot of a no-op is not the desired one", c.Addr)
			}
			if !bytes.Equal(c.Encoded(), stored[c.Addr].Config) || c.Hash() != c.Desired.Hash() {
				t.Errorf("%s: Encoded or Hash differ from the desired snapshot's", c.Addr)
			}
		case "edited":
			if c.Prior.Snapshot == nil || len(c.Diffs) != 1 || c.Diffs[0].Name != "env" {
				t.Errorf("%s: prior %v, diffs %+v; want a decoded prior and a diff of env", c.Addr, c.Prior.Snapshot, c.Diffs)
			}
		case "gone":
			if c.Prior.Snapshot == nil || c.Prior.Snapshot.Values["command"].LengthInt() != 2 {
				t.Errorf("%s: the prior snapshot of a delete is not decoded", c.Addr)
			}
		case "garbled":
			if c.Reason.Kind != ReasonUnreadable || c.Prior.Snapshot != nil {
				t.Errorf("%s: reason %v, prior snapshot %v; want unreadable", c.Addr, c.Reason, c.Prior.Snapshot)
			}
		}
	}
	for a, st := range stored {
		if st.Snapshot != nil || st.Config == nil {
			t.Errorf("%s: Make changed its input", a)
		}
	}
}

// TestSharedSnapshotsEncodeAlike: the snapshots Make builds with shared
// values encode exactly as those SnapshotOf builds alone, and instances
// with the same blocks share them.
func TestSharedSnapshotsEncodeAlike(t *testing.T) {
	cfg := tryLoad(`
daemon "a" {
  command = ["/bin/sleep", "1"]
  stop {
    signal = "SIGINT"
  }
}
daemon "b" {
  count   = 3
  command = ["/bin/sleep", "1"]
  env     = { I = "x" }
  restart {
    policy = "always"
  }
}
job "c" {
  command = ["/bin/true"]
}
`)
	if cfg == nil {
		t.Fatal("configuration does not load")
	}
	sh := newSharer()
	var snaps []*Snapshot
	for _, r := range cfg.Resources {
		deps := cfg.Graph.DependenciesOf(r.Addr)
		shared := snapshotOf(r, deps, nil, sh)
		alone := SnapshotOf(r, deps, nil)
		if !bytes.Equal(shared.Encode(), alone.Encode()) {
			t.Errorf("%s: shared %s, alone %s", r.Addr, shared.Encode(), alone.Encode())
		}
		snaps = append(snaps, shared)
	}
	b0, b1 := snaps[1], snaps[2] // daemon.b[0], daemon.b[1]
	if b0.Values["restart"].GoString() != b1.Values["restart"].GoString() || len(sh.restart) != 3 {
		t.Errorf("restart blocks: %d made, want 3 (default daemon, always, job)", len(sh.restart))
	}
}
