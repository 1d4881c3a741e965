package engine

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/process"
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte("daemon \"a\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, ".orch")
	provs := executor.Providers{process.Kind: process.New(process.Options{SelfCommand: []string{orchBin}})}
	st, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	store := &countingStore{Store: st}
	cfg, diags := spec.Load(dir, spec.Options{Schemas: provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	events := make(chan Event, 256)
	eng := New(Options{Dir: dir, Config: cfg, Providers: provs, Store: store, StateDir: stateDir,
		Load: func() LoadResult { return LoadResult{Config: cfg} },
		Out:  func(ev Event) { events <- ev }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var pid int
	defer func() {
		cancel()
		<-done
		if pid > 0 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		if b, err := os.ReadFile(filepath.Join(stateDir, "logs", "logd.pid")); err == nil {
			if lp, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && lp > 0 {
				syscall.Kill(lp, syscall.SIGKILL)
			}
		}
	}()
	deadline := time.After(waitDeadline)
	for ready := false; !ready; {
		select {
		case ev := <-events:
			if ev.Type == EventStarted && ev.Addr.String() == "daemon.a" {
				pid = ev.Pid
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
	// listedAt waits for the records of serial n to be listed ahead.
	listedAt := func(n uint64) {
		t.Helper()
		for end := time.Now().Add(waitDeadline); ; {
			eng.prep.mu.Lock()
			ok, at := eng.prep.ok, eng.prep.serial
			eng.prep.mu.Unlock()
			if ok && at == n {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("the records of serial %d were not listed ahead (listed: %v, at %d)", n, ok, at)
			}
			time.Sleep(10 * time.Millisecond)
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
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred wait
	if n := store.lists.Load() - before; n != 0 {
		t.Errorf("the shutdown listed the records %d times; it had them listed ahead", n)
	}
	if pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Fatalf("daemon.a (pid %d) still runs after the shutdown", pid)
	}
}
