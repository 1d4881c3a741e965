package cli

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// TestNodeStoreKeepsItsWrites: once a node is lost, its store answers
// List from its copy, and the copy holds every write that committed, even
// one that was never read back from the store (the node cut off right
// after it recorded a start: TestHostsPartition under load left that
// daemon running beside the copy another node started). Without a
// refresher here, only the node's own writes can bring the copy up to
// date.
func TestNodeStoreKeepsItsWrites(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := spec.Address{Kind: spec.KindDaemon, Name: "web"}
	b := spec.Address{Kind: spec.KindDaemon, Name: "db"}
	if err := st.Put(state.Instance{Addr: b, Status: "running"}); err != nil {
		t.Fatal(err)
	}
	ns := openNodeStore(st) // read once: db
	if err := ns.Update(func(tx *state.Tx) error {
		if err := tx.Put(state.Instance{Addr: a.Instance(spec.IntKey(2)), Status: "running", Handle: []byte("h")}); err != nil {
			return err
		}
		return tx.Delete(b)
	}); err != nil {
		t.Fatal(err)
	}
	// A write that fails commits nothing and changes nothing in the copy.
	if err := ns.Update(func(tx *state.Tx) error {
		if err := tx.Put(state.Instance{Addr: a.Instance(spec.IntKey(3)), Status: "running"}); err != nil {
			return err
		}
		return errTestAbort
	}); err != errTestAbort {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	ns.lose()
	if _, err := ns.Serial(); err == nil {
		t.Error("Serial of a lost node answered: the engine would compare what it listed ahead with a store out of reach")
	}
	if err := ns.Update(func(tx *state.Tx) error { return nil }); err == nil {
		t.Error("a lost node's write succeeded")
	}
	got, err := ns.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Addr != a.Instance(spec.IntKey(2)) || string(got[0].Handle) != "h" || got[0].CreatedAt.IsZero() {
		t.Fatalf("the lost node's copy holds %+v, want only %s as written (the start recorded before the loss)", got, a.Instance(spec.IntKey(2)))
	}
}

var errTestAbort = errors.New("aborted by the test")
