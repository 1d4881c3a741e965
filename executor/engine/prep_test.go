package engine

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// countingStore is a state.Store that counts its Lists.
type countingStore struct {
	*state.Store
	lists atomic.Int64
}

func (s *countingStore) List() ([]state.Instance, error) {
	s.lists.Add(1)
	return s.Store.List()
}

// TestShutdownListedAhead: orch up's shutdown plans from the records
// listed ahead while they are current (it lists nothing at the
// interrupt), and never from records a write has made stale.
func TestShutdownListedAhead(t *testing.T) {
	ip := newInProc(t, "daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n")
	st, events := ip.st, ip.events
	store := &countingStore{Store: st}
	eng, stop := ip.run(t, Options{Store: store})
	var pid int
	deadline := time.After(waitDeadline)
	for ready := false; !ready; {
		select {
		case ev := <-events:
			if ev.Type == EventStarted && ev.Addr.String() == "daemon.a" {
				pid = ev.Pid
				ip.own(pid)
			}
			ready = ev.Type == EventReady
		case <-deadline:
			t.Fatal("no ready")
		}
	}
	serial := func() uint64 {
		n, err := st.Serial()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// listedAt waits for the background listing of the records of serial n.
	listedAt := func(n uint64) {
		t.Helper()
		deadline := time.After(waitDeadline)
		for {
			next := eng.prep.listing() // taken before the look: none is missed
			eng.prep.mu.Lock()
			ok, at := eng.prep.ok, eng.prep.serial
			eng.prep.mu.Unlock()
			if ok && at == n {
				return
			}
			select {
			case <-next:
			case <-deadline:
				t.Fatalf("the records of serial %d were not listed ahead (listed: %v, at %d)", n, ok, at)
			}
		}
	}
	listedAt(serial())
	if eng.preparedStored() == nil {
		t.Fatal("the records listed ahead are not used while the state has not changed")
	}
	// A write: what was listed is stale, and not used.
	job := state.Instance{Addr: spec.Address{Kind: spec.KindJob, Name: "x"}, Status: "completed"}
	if err := st.Update(func(tx *state.Tx) error { return tx.Put(job) }); err != nil {
		t.Fatal(err)
	}
	if stored := eng.preparedStored(); stored != nil {
		t.Fatalf("records listed before a write are used after it: %v", stored)
	}
	listedAt(serial())
	if stored := eng.preparedStored(); stored == nil || stored[job.Addr] == nil {
		t.Fatalf("the records listed again after the write: %v", stored)
	}
	before := store.lists.Load()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := store.lists.Load() - before; n != 0 {
		t.Errorf("the shutdown listed the records %d times; it had them listed ahead", n)
	}
	if pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Fatalf("daemon.a (pid %d) still runs after the shutdown", pid)
	}
}

// gatedStore is a state.Store whose writes wait while its gate is shut.
type gatedStore struct {
	*state.Store
	shut atomic.Bool
	open chan struct{}
}

func (s *gatedStore) Update(fn func(tx *state.Tx) error) error {
	if s.shut.Load() {
		<-s.open
	}
	return s.Store.Update(fn)
}

// TestStatusListsAStartNotRecordedYet: a start's record is released (the
// next group commit writes it), so a daemon runs, supervised, before its
// record is written; status lists it running meanwhile, with its pid.
func TestStatusListsAStartNotRecordedYet(t *testing.T) {
	ip := newInProc(t, "daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n")
	store := &gatedStore{Store: ip.st, open: make(chan struct{})}
	store.shut.Store(true)
	eng, _ := ip.run(t, Options{Store: store})
	// Opened before the engine is stopped (cleanups run last first),
	// even on a failure: its shutdown waits for the apply, which waits
	// for the record.
	openGate := func() {
		if store.shut.Swap(false) {
			close(store.open)
		}
	}
	t.Cleanup(openGate)
	deadline := time.After(waitDeadline)
	var pid int
	for pid == 0 {
		if ev := ip.next(t, deadline, "daemon.a started"); ev.Type == EventStarted && ev.Addr.String() == "daemon.a" {
			pid = ev.Pid
		}
	}
	recs, err := ip.st.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("records written while the store's gate is shut: %+v", recs)
	}
	st, err := eng.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Addr.String() != "daemon.a" || st[0].Status != "running" || st[0].Observed.Pid != pid {
		t.Fatalf("status before the record is written: %+v, want daemon.a running as pid %d", st, pid)
	}
	openGate()
}
