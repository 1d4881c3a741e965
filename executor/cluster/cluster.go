// Package cluster runs a project on the agents of several hosts, with its
// state in etcd: each agent (orch agent -node NAME) registers its node
// under a lease, one of them is elected leader and places every declared
// instance on a node (planner.Place), and every agent runs the engine on
// the instances assigned to it, with its own state.
//
// # Keys, under the project's prefix P (orch { backend "etcd" { prefix } })
//
//	P/cluster/nodes/<node>    the node's Info (JSON), bound to its lease
//	P/cluster/leader/<lease>  the election (go.etcd.io/etcd/client/v3/concurrency)
//	P/cluster/assign          the Assignments (JSON), written by the leader only
//	P/cluster/ready/<node>    the Gates of the node's instances (JSON), bound to its lease
//	P/nodes/<node>/...        the node's own state: records, KV, serial and its writer lock (executor/state/etcdstate)
//
// A node's records live under its own prefix so that one node's refresh
// never sees, and never deletes, another node's instances.
//
// # Dependencies across nodes
//
// Each agent publishes, under P/cluster/ready/<node>, what each of its
// instances lets its dependents do (running, ready, failed ...: the
// engine's gate words) and what each start that waits waits for. The key
// is bound to the node's lease: when the node is lost its instances read
// as down, as they are. An agent whose instance depends on one placed on
// another node reads that node's key (WatchGates), and its engine's gate
// waits for it as for one of its own (Only keeps such dependencies in the
// graph).
//
// # Leases
//
// A node's key and its candidacy are bound to one lease of TTL (the
// backend's lock_ttl, default 10s). The agent renews it every TTL/3 and
// counts, on its own monotonic clock, from the moment it sent the last
// renewal that etcd acknowledged: when TTL has passed since without a new
// acknowledgment (the agent was cut off, or paused and resumed), or etcd
// answers that the lease is gone, the member is Lost. The agent then
// stops its instances: etcd's expiry of the same lease comes no earlier
// than the agent's own deadline, so the agent stops before the leader can
// see the node gone and place its instances elsewhere (a paused agent
// cannot stop anything while paused; it stops them the moment it runs
// again, before it writes anything: see docs/state.md).
//
// # Fencing
//
// The leader writes the assignments in a transaction that compares its
// election key's CreateRevision: a leader whose lease lapsed (paused, cut
// off) and whose key was deleted, or replaced by a new leader's, writes
// nothing.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

// DefaultTTL is a node's lease when the backend declares no lock_ttl.
const DefaultTTL = 10 * time.Second

// Info is what a node registers.
type Info struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity int               `json:"capacity,omitempty"` // 0: no limit
	Address  string            `json:"address,omitempty"`  // where its agent runs (host name)
	PID      int               `json:"pid"`
}

// Assignments is what the leader writes: where each instance runs.
type Assignments struct {
	Assign   map[string]string `json:"assign"`             // address -> node
	Unplaced map[string]string `json:"unplaced,omitempty"` // address -> why no node takes it
	Nodes    []string          `json:"nodes"`              // the live nodes it was made with
	Leader   string            `json:"leader"`
}

// Mine lists the addresses assigned to node, sorted.
func (a *Assignments) Mine(node string) []string {
	var out []string
	for addr, n := range a.Assign {
		if n == node {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

// Options configure a Member.
type Options struct {
	Backend state.BackendConfig // the project's: endpoints, prefix, TLS; LockTTL is the lease
	Node    Info
	// Logf reports what the member does (joined, leader, placed, lost).
	Logf func(format string, args ...any)
}

// Keys names the keys of a project's cluster under its prefix.
type Keys struct{ P string }

func (k Keys) Nodes() string             { return k.P + "/cluster/nodes/" }
func (k Keys) Node(n string) string      { return k.P + "/cluster/nodes/" + n }
func (k Keys) Leader() string            { return k.P + "/cluster/leader" }
func (k Keys) Assign() string            { return k.P + "/cluster/assign" }
func (k Keys) NodeState(n string) string { return k.P + "/nodes/" + n }
func (k Keys) Gates() string             { return k.P + "/cluster/ready/" }
func (k Keys) Gate(n string) string      { return k.P + "/cluster/ready/" + n }

// NodeBackend is the backend of node's own state within the project's.
func NodeBackend(project state.BackendConfig, node string) state.BackendConfig {
	project.Prefix = Keys{strings.TrimSuffix(project.Prefix, "/")}.NodeState(node)
	return project
}

// ErrLost is the cause of a Member's end when its lease was lost.
var ErrLost = errors.New("the node's lease was lost")

// Member is one node of the cluster, from Join to Close or until Lost.
type Member struct {
	cli  *clientv3.Client
	opts Options
	k    Keys
	ttl  time.Duration

	lease    clientv3.LeaseID
	sess     *concurrency.Session
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	lost     chan struct{}
	lostOnce sync.Once
	lostWhy  string

	mu       sync.Mutex
	declared []planner.PlaceInstance
	declHash string
	declCh   chan struct{}
	leading  bool
	// deadline: the end of the lease as this process knows it (the last
	// acknowledged renewal's sending time plus TTL).
	deadline time.Time
}

func (m *Member) logf(format string, args ...any) {
	if m.opts.Logf != nil {
		m.opts.Logf(format, args...)
	}
}

// Join registers the node and starts its lease and its candidacy. When a
// previous registration of the same node still holds (an agent killed
// and started again within its lease), it waits until that one lapses,
// or ctx ends.
func Join(ctx context.Context, opts Options) (*Member, error) {
	if opts.Node.Name == "" {
		return nil, errors.New("cluster: a node needs a name")
	}
	ttl := opts.Backend.LockTTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	cli, err := etcdstate.NewClient(opts.Backend)
	if err != nil {
		return nil, err
	}
	m := &Member{cli: cli, opts: opts, k: Keys{strings.TrimSuffix(opts.Backend.Prefix, "/")}, ttl: ttl,
		lost: make(chan struct{}), declCh: make(chan struct{}, 1)}
	if opts.Node.PID == 0 {
		m.opts.Node.PID = os.Getpid()
	}
	if err := m.register(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(2)
	go m.keepAlive()
	go m.campaign()
	return m, nil
}

func (m *Member) register(ctx context.Context) error {
	info, _ := json.Marshal(m.opts.Node)
	key := m.k.Node(m.opts.Node.Name)
	waiting := false
	for {
		rctx, cancel := context.WithTimeout(ctx, etcdstate.RequestTimeout)
		sent := time.Now()
		g, err := m.cli.Grant(rctx, int64((m.ttl+time.Second-1)/time.Second))
		if err != nil {
			cancel()
			return fmt.Errorf("cluster: etcd %v: grant a lease: %w", m.opts.Backend.Endpoints, err)
		}
		resp, err := m.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(info), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(key)).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("cluster: etcd %v: register node %s: %w", m.opts.Backend.Endpoints, m.opts.Node.Name, err)
		}
		if resp.Succeeded {
			m.lease = g.ID
			m.ttl = time.Duration(g.TTL) * time.Second
			m.renewed(sent)
			sess, err := concurrency.NewSession(m.cli, concurrency.WithLease(g.ID))
			if err != nil {
				return err
			}
			m.sess = sess
			return nil
		}
		m.cli.Revoke(context.Background(), g.ID)
		var other Info
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			json.Unmarshal(kvs[0].Value, &other)
		}
		if !waiting {
			m.logf("node %s is still registered (pid %d on %s): waiting for that registration's lease to lapse", m.opts.Node.Name, other.PID, other.Address)
			waiting = true
		}
		wctx, wcancel := context.WithTimeout(ctx, m.ttl+etcdstate.RequestTimeout)
		for ev := range m.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
			if ev.Err() != nil || len(ev.Events) > 0 {
				break
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (m *Member) renewed(sent time.Time) {
	m.mu.Lock()
	m.deadline = sent.Add(m.ttl)
	m.mu.Unlock()
}

// keepAlive renews the lease every TTL/3 and declares the member lost
// when TTL passed since the last acknowledged renewal was sent.
func (m *Member) keepAlive() {
	defer m.wg.Done()
	every := m.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.sess.Done():
			m.lose("etcd ended the node's session")
			return
		case <-t.C:
		}
		m.mu.Lock()
		deadline := m.deadline
		m.mu.Unlock()
		if !time.Now().Before(deadline) {
			m.lose(fmt.Sprintf("no renewal of its lease acknowledged within %s", m.ttl))
			return
		}
		sent := time.Now()
		kctx, cancel := context.WithDeadline(m.ctx, deadline)
		resp, err := m.cli.KeepAliveOnce(kctx, m.lease)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			m.renewed(sent)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			m.lose("etcd says its lease expired")
			return
		case m.ctx.Err() != nil:
			return
		}
		// The next renewal in TTL/3, or at once the deadline passes:
		// a failed renewal must not make it late.
		m.mu.Lock()
		left := time.Until(m.deadline)
		m.mu.Unlock()
		t.Reset(max(0, min(every, left)))
	}
}

func (m *Member) lose(why string) {
	m.lostOnce.Do(func() {
		m.lostWhy = why
		m.logf("node %s lost its lease: %s", m.opts.Node.Name, why)
		close(m.lost)
	})
}

// Lost is closed when the member's lease is found lost: its instances
// must stop, and it must Join again to run any.
func (m *Member) Lost() <-chan struct{} { return m.lost }

// LostWhy says why the member was lost ("" while it is not).
func (m *Member) LostWhy() string {
	select {
	case <-m.lost:
		return m.lostWhy
	default:
		return ""
	}
}

// TTL is the lease's TTL as granted.
func (m *Member) TTL() time.Duration { return m.ttl }

// Leading reports whether the member is the leader now.
func (m *Member) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

// Declare hands the member the instances of the configuration it loaded:
// the leader places these (every agent declares; the leader's count).
func (m *Member) Declare(insts []planner.PlaceInstance) {
	h := sha256.New()
	for _, in := range insts {
		b, _ := json.Marshal(in.Placement)
		fmt.Fprintf(h, "%s\x00%s\x00", in.Addr, b)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	m.mu.Lock()
	if sum == m.declHash {
		m.mu.Unlock()
		return
	}
	m.declared, m.declHash = insts, sum
	m.mu.Unlock()
	select {
	case m.declCh <- struct{}{}:
	default:
	}
}

// campaign runs for leader until the member ends; as leader it places.
func (m *Member) campaign() {
	defer m.wg.Done()
	for m.ctx.Err() == nil {
		el := concurrency.NewElection(m.sess, m.k.Leader())
		if err := el.Campaign(m.ctx, m.opts.Node.Name); err != nil {
			select {
			case <-m.ctx.Done():
				return
			case <-m.lost:
				return
			case <-m.sess.Done():
				return
			case <-time.After(250 * time.Millisecond):
				continue
			}
		}
		m.mu.Lock()
		m.leading = true
		m.mu.Unlock()
		m.logf("node %s is the leader", m.opts.Node.Name)
		err := m.lead(el)
		m.mu.Lock()
		m.leading = false
		m.mu.Unlock()
		if m.ctx.Err() != nil {
			return
		}
		m.logf("node %s is no longer the leader: %v", m.opts.Node.Name, err)
		rctx, cancel := context.WithTimeout(context.Background(), etcdstate.RequestTimeout)
		el.Resign(rctx)
		cancel()
	}
}

var errNotLeader = errors.New("another node is the leader")

// lead places the declared instances whenever a node joins or leaves or
// the declaration changes, until the member ends or loses leadership.
func (m *Member) lead(el *concurrency.Election) error {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	wch := m.cli.Watch(ctx, m.k.Nodes(), clientv3.WithPrefix())
	obs := el.Observe(ctx)
	for {
		if err := m.place(ctx, el); err != nil {
			if errors.Is(err, errNotLeader) {
				return err
			}
			m.logf("placing: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.lost:
			return ErrLost
		case _, ok := <-wch:
			if !ok {
				wch = m.cli.Watch(ctx, m.k.Nodes(), clientv3.WithPrefix())
			}
		case <-m.declCh:
		case r, ok := <-obs:
			if !ok {
				return errNotLeader
			}
			if len(r.Kvs) > 0 && string(r.Kvs[0].Key) != el.Key() {
				return errNotLeader
			}
		}
	}
}

// ReadNodes returns the live nodes and the current assignments at one
// revision.
func ReadNodes(ctx context.Context, cli *clientv3.Client, k Keys) ([]Info, *Assignments, int64, error) {
	resp, err := cli.Txn(ctx).Then(clientv3.OpGet(k.Nodes(), clientv3.WithPrefix()), clientv3.OpGet(k.Assign())).Commit()
	if err != nil {
		return nil, nil, 0, err
	}
	var nodes []Info
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var in Info
		if json.Unmarshal(kv.Value, &in) == nil && in.Name != "" {
			nodes = append(nodes, in)
		}
	}
	cur := &Assignments{Assign: map[string]string{}}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, cur); err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", k.Assign(), err)
		}
	}
	return nodes, cur, resp.Header.Revision, nil
}

func (m *Member) place(ctx context.Context, el *concurrency.Election) error {
	m.mu.Lock()
	decl := m.declared
	m.mu.Unlock()
	if decl == nil {
		return nil // nothing loaded yet
	}
	rctx, cancel := context.WithTimeout(ctx, etcdstate.RequestTimeout)
	defer cancel()
	infos, cur, _, err := ReadNodes(rctx, m.cli, m.k)
	if err != nil {
		return err
	}
	var nodes []planner.Node
	var names []string
	for _, in := range infos {
		nodes = append(nodes, planner.Node{Name: in.Name, Labels: in.Labels, Capacity: in.Capacity})
		names = append(names, in.Name)
	}
	sort.Strings(names)
	p := planner.Place(decl, nodes, cur.Assign)
	next := &Assignments{Assign: p.Assign, Unplaced: p.Unplaced, Nodes: names, Leader: m.opts.Node.Name}
	if len(next.Unplaced) == 0 {
		next.Unplaced = nil
	}
	if maps.Equal(cur.Assign, next.Assign) && maps.Equal(cur.Unplaced, next.Unplaced) &&
		reflect.DeepEqual(cur.Nodes, next.Nodes) && cur.Leader == next.Leader {
		return nil
	}
	b, _ := json.Marshal(next)
	resp, err := m.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())).
		Then(clientv3.OpPut(m.k.Assign(), string(b))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errNotLeader
	}
	if len(p.Moved) > 0 {
		m.logf("placed %d instance(s) on %d node(s) %v: %s", len(p.Moved), len(names), names, summarize(p.Moved, p.Assign))
	}
	for addr, why := range p.Unplaced {
		m.logf("%s is placed on no node: %s", addr, why)
	}
	return nil
}

func summarize(moved []string, assign map[string]string) string {
	var parts []string
	for i, a := range moved {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(moved)-i))
			break
		}
		parts = append(parts, a+" -> "+assign[a])
	}
	return strings.Join(parts, ", ")
}

// bound is ctx, also done once the member ends or loses its lease.
func (m *Member) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-m.ctx.Done():
		case <-m.lost:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

// pause waits a moment before a watch reads again after an error; false
// once ctx is done.
func pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(250 * time.Millisecond):
		return true
	}
}

// Watch calls fn with the current assignments, then with each new value,
// until ctx ends or the member does.
func (m *Member) Watch(ctx context.Context, fn func(*Assignments)) {
	ctx, cancel := m.bound(ctx)
	defer cancel()
	for ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, etcdstate.RequestTimeout)
		_, cur, rev, err := ReadNodes(rctx, m.cli, m.k)
		rcancel()
		if err != nil {
			m.logf("reading the assignments: %v", err)
			if !pause(ctx) {
				return
			}
			continue
		}
		fn(cur)
		for wr := range m.cli.Watch(ctx, m.k.Assign(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				var a Assignments
				if json.Unmarshal(ev.Kv.Value, &a) == nil {
					fn(&a)
				}
			}
		}
	}
}

// Close ends the member: it resigns, and revokes its lease so that its
// node is gone at once (the leader places its instances elsewhere). Stop
// the node's instances before.
func (m *Member) Close() error {
	m.cancel()
	// A candidate that is not the leader resigns as it stops campaigning
	// (concurrency.Election.Campaign), on the client's own context: cut
	// off from etcd, that waits until the client is closed.
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	closed := false
	select {
	case <-done:
	case <-m.lost:
		closed = true
	case <-time.After(etcdstate.RequestTimeout):
		closed = true
	}
	var err error
	if closed {
		m.cli.Close()
		<-done
		select {
		case <-m.lost:
		default:
			err = fmt.Errorf("cluster: etcd %v: did not answer within %s; node %s's registration lapses with its lease", m.opts.Backend.Endpoints, etcdstate.RequestTimeout, m.opts.Node.Name)
		}
		m.sess.Orphan()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdstate.RequestTimeout)
	defer cancel()
	select {
	case <-m.lost:
	default:
		if _, rerr := m.cli.Revoke(ctx, m.lease); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			err = rerr
		}
	}
	m.sess.Orphan()
	if cerr := m.cli.Close(); err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr
	}
	return err
}

// Only returns cfg restricted to the instances keep accepts: the same
// runtimes, the other resources left out, and a Hash that differs with
// tag (the assignment), so that an engine sees a new configuration when
// its assignment changes. The instances left out that those kept depend
// on, directly or through one another, stay in the graph (not among the
// resources): they run on other nodes, and the engine's gate waits for
// them as their agents publish them (WatchGates, engine Options.Elsewhere).
// (The runtimes stay: each node runs its own.)
func Only(cfg *spec.Config, keep func(spec.Address) bool, tag string) *spec.Config {
	out := cfg.Subset(keep)
	if g := cfg.Graph; g != nil {
		in := map[spec.Address]bool{}
		var nodes []spec.Address
		var visit func(a spec.Address)
		visit = func(a spec.Address) {
			if in[a] {
				return
			}
			in[a] = true
			nodes = append(nodes, a)
			for _, d := range g.DependenciesOf(a) {
				visit(d)
			}
		}
		for _, n := range g.Nodes() {
			if n.Kind == spec.KindRuntime || out.Resource(n) != nil {
				visit(n)
			}
		}
		deps := make(map[spec.Address][]spec.Address, len(nodes))
		for _, n := range nodes {
			deps[n] = g.DependenciesOf(n)
		}
		out.Graph = spec.NewGraph(nodes, deps)
	}
	sum := sha256.Sum256([]byte(cfg.Hash + "\x00" + tag))
	out.Hash = hex.EncodeToString(sum[:])
	return out
}

// Gate is what an agent publishes of one of its instances.
type Gate struct {
	// Readiness is the engine's gate word: down, running, ready,
	// completed, failed, held, away (executor/engine/gate).
	Readiness string `json:"readiness"`
	// Waiting is what its start waits for ("for daemon.db to be
	// healthy"); Blocked: on a failed or held instance.
	Waiting string `json:"waiting,omitempty"`
	Blocked bool   `json:"blocked,omitempty"`
}

// PublishGates writes the Gates of the node's instances (address ->
// Gate), bound to its lease: gone when the node is.
func (m *Member) PublishGates(ctx context.Context, gates map[string]Gate) error {
	b, err := json.Marshal(gates)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, etcdstate.RequestTimeout)
	defer cancel()
	if _, err := m.cli.Put(rctx, m.k.Gate(m.opts.Node.Name), string(b), clientv3.WithLease(m.lease)); err != nil {
		return fmt.Errorf("cluster: etcd %v: publish the readiness of node %s: %w", m.opts.Backend.Endpoints, m.opts.Node.Name, err)
	}
	return nil
}

// ReadGates returns the Gates every live node published: node -> address
// -> Gate.
func ReadGates(ctx context.Context, cli *clientv3.Client, k Keys) (map[string]map[string]Gate, int64, error) {
	resp, err := cli.Get(ctx, k.Gates(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := map[string]map[string]Gate{}
	for _, kv := range resp.Kvs {
		var g map[string]Gate
		if json.Unmarshal(kv.Value, &g) == nil {
			out[strings.TrimPrefix(string(kv.Key), k.Gates())] = g
		}
	}
	return out, resp.Header.Revision, nil
}

// WatchGates calls fn with every live node's Gates (ReadGates), then
// again on each change, until ctx ends or the member does. fn has the
// map to keep.
func (m *Member) WatchGates(ctx context.Context, fn func(map[string]map[string]Gate)) {
	ctx, cancel := m.bound(ctx)
	defer cancel()
	for ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, etcdstate.RequestTimeout)
		all, rev, err := ReadGates(rctx, m.cli, m.k)
		rcancel()
		if err != nil {
			if !pause(ctx) {
				return
			}
			continue
		}
		fn(maps.Clone(all))
		for wr := range m.cli.Watch(ctx, m.k.Gates(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				node := strings.TrimPrefix(string(ev.Kv.Key), m.k.Gates())
				if ev.Type == clientv3.EventTypeDelete {
					delete(all, node)
					continue
				}
				var g map[string]Gate
				if json.Unmarshal(ev.Kv.Value, &g) == nil {
					all[node] = g
				}
			}
			fn(maps.Clone(all))
		}
	}
}
