package cluster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

func daemons(names ...string) []planner.PlaceInstance {
	var out []planner.PlaceInstance
	for _, n := range names {
		out = append(out, planner.PlaceInstance{Addr: spec.Address{Kind: spec.KindDaemon, Name: n}, Placement: &spec.Placement{Spread: true}})
	}
	return out
}

// watcher records the assignments a member sees.
type watcher struct {
	mu   sync.Mutex
	last *Assignments
}

func (w *watcher) get() *Assignments {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func join(t *testing.T, c *etcdtest.Cluster, name string) (*Member, *watcher) {
	t.Helper()
	m, err := Join(context.Background(), Options{
		Backend: state.BackendConfig{Kind: "etcd", Endpoints: c.Endpoints(), Prefix: "/orch/t", LockTTL: 2 * time.Second},
		Node:    Info{Name: name},
		Logf:    func(f string, a ...any) { t.Logf(name+": "+f, a...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Watch(ctx, func(a *Assignments) { w.mu.Lock(); w.last = a; w.mu.Unlock() })
	}()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	return m, w
}

// TestMembersPlaceAndFailOver: two members, one leader; the leader places
// what was declared, one per node; when the leader leaves, the other
// becomes leader and takes everything.
func TestMembersPlaceAndFailOver(t *testing.T) {
	c := etcdtest.Start(t, 3)
	m1, w1 := join(t, c, "a")
	m2, w2 := join(t, c, "b")
	m1.Declare(daemons("x", "y"))
	m2.Declare(daemons("x", "y"))
	// Both members' watches see the placement (each in its own time: a
	// watch is told after the write, a busy machine delays one or the
	// other).
	waitUntil(t, "x and y on a and b, seen by both", func() bool {
		for _, w := range []*watcher{w1, w2} {
			a := w.get()
			if a == nil || len(a.Assign) != 2 || a.Assign["daemon.x"] == a.Assign["daemon.y"] || len(a.Nodes) != 2 {
				return false
			}
		}
		return true
	})
	if m1.Leading() == m2.Leading() {
		t.Fatalf("leading: a %v, b %v", m1.Leading(), m2.Leading())
	}
	leader, other, ow := m1, m2, w2
	if m2.Leading() {
		leader, other, ow = m2, m1, w1
	}
	leader.Close() // revokes its lease: its node goes at once
	waitUntil(t, "the other to lead and take both", func() bool {
		a := ow.get()
		return other.Leading() && a != nil && len(a.Mine(other.opts.Node.Name)) == 2 && len(a.Nodes) == 1
	})
}

// TestLeaderWritesAreFenced: a leader whose election key is gone (its
// lease lapsed while it was paused) writes no assignment.
func TestLeaderWritesAreFenced(t *testing.T) {
	c := etcdtest.Start(t, 3)
	m, w := join(t, c, "a")
	m.Declare(daemons("x"))
	waitUntil(t, "x placed", func() bool { a := w.get(); return a != nil && a.Assign["daemon.x"] == "a" })
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// What a lapse does to the election: the key goes.
	if _, err := cli.Delete(ctx, m.k.Leader()+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	before, _ := cli.Get(ctx, m.k.Assign())
	m.Declare(daemons("x", "y"))
	// The member notices it no longer leads (its Observe ends or the
	// write fails) and campaigns again; until it leads again nothing
	// may be written by the old term: every write after the delete must
	// come from a new election key.
	waitUntil(t, "y placed by a new term", func() bool { a := w.get(); return a != nil && a.Assign["daemon.y"] == "a" })
	after, _ := cli.Get(ctx, m.k.Leader()+"/", clientv3.WithPrefix())
	if len(after.Kvs) != 1 || after.Kvs[0].CreateRevision <= before.Header.Revision {
		t.Fatalf("assignments written without a new election key: %+v", after.Kvs)
	}
}

// TestLostWhenLeaseGone: a member whose lease etcd revoked is Lost.
func TestLostWhenLeaseGone(t *testing.T) {
	c := etcdtest.Start(t, 3)
	m, _ := join(t, c, "a")
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Revoke(ctx, m.lease); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("not lost")
	}
	if why := m.LostWhy(); !strings.Contains(why, "lease") && !strings.Contains(why, "session") {
		t.Errorf("why = %q", why)
	}
	// The node key went with the lease: the node can join again.
	m2, err := Join(context.Background(), Options{
		Backend: state.BackendConfig{Kind: "etcd", Endpoints: c.Endpoints(), Prefix: "/orch/t", LockTTL: 2 * time.Second},
		Node:    Info{Name: "a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
}

func TestOnly(t *testing.T) {
	x := spec.Address{Kind: spec.KindDaemon, Name: "x"}
	y := spec.Address{Kind: spec.KindDaemon, Name: "y"}
	z := spec.Address{Kind: spec.KindDaemon, Name: "z"}
	rt := spec.Address{Kind: spec.KindRuntime, Type: "process", Name: "default"}
	cfg := &spec.Config{Hash: "h", Resources: []*spec.Resource{{Addr: x}, {Addr: y}, {Addr: z}},
		Graph: spec.NewGraph([]spec.Address{x, y, z, rt}, map[spec.Address][]spec.Address{y: {x, rt}, x: {rt}, z: {rt}})}
	got := Only(cfg, func(a spec.Address) bool { return a == y }, "n1\x00daemon.y")
	if len(got.Resources) != 1 || got.Resource(y) == nil || got.Resource(x) != nil {
		t.Fatalf("resources: %v", got.Resources)
	}
	// x runs on another node: it stays in the graph (the gate waits for
	// it), not among the resources; z, which nothing kept depends on,
	// does not.
	if deps := got.Graph.DependenciesOf(y); len(deps) != 2 || deps[0] != x || deps[1] != rt {
		t.Fatalf("y depends on %v, want daemon.x and the runtime", deps)
	}
	if !got.Graph.Has(x) || got.Graph.Has(z) {
		t.Fatalf("graph nodes: %v", got.Graph.Nodes())
	}
	if got.Hash == cfg.Hash || Only(cfg, func(spec.Address) bool { return true }, "other").Hash == got.Hash {
		t.Fatal("the hash does not follow the assignment")
	}
	if len(cfg.Resources) != 3 {
		t.Fatal("the original changed")
	}
}
