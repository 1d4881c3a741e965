//go:build !noetcd

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/cluster"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/engine/gate"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// orch agent -node: one node of a project on several hosts. The cluster
// (registration, election, placement) is executor/cluster's; here it is
// wired to the ordinary engine, which runs on a configuration restricted
// to this node's assignments (cluster.Only) and keeps its records in the
// node's own state (<prefix>/nodes/NAME). A change of assignments is
// applied as orch apply through an agent is (engine.Apply); the engine is
// not told about nodes.

func init() { runNodeAgent = (*App).runNode }

func (a *App) runNode(dir string, vf *varFlags, lf *lockFlags, asJSON bool, nf nodeFlags) error {
	res := a.loadConfig(dir, vf)
	a.writeDiags(res.diags, res.files)
	if res.diags.HasErrors() {
		return silentFailure()
	}
	be, err := a.backendFor(res.cfg)
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	if be == nil || be.Kind != etcdstate.Kind {
		return &exitError{code: ExitError, msg: fmt.Sprintf("orch agent -node %s: a project on several hosts keeps its state in etcd: declare orch { backend \"etcd\" { endpoints = [...] } }, or pass -backend etcd://HOST:PORT/PREFIX (or set %s)", nf.node, envBackend)}
	}
	ctx, hurry, stop := a.interruptibleHurry("\nStopping this node's instances, dependents first. Press Ctrl-C again to kill what still runs.",
		"\nKilling what still runs (SIGKILL), dependents first.")
	defer stop()
	logf := nodeLogger(a.Stderr, nf.node, asJSON)
	rejoin := false
	for {
		err := a.nodeRound(ctx, hurry, dir, vf, lf, asJSON, nf, *be, logf, rejoin)
		if ctx.Err() != nil {
			return nil
		}
		var je *joinError
		switch {
		case errors.Is(err, cluster.ErrLost):
			logf("its instances are stopped; joining the cluster again")
			rejoin = true
		case rejoin && errors.As(err, &je):
			// Cut off from etcd after it ran: it waits for etcd to
			// answer again, as long as it takes.
			logf("cannot join the cluster again (%v); trying again in %s", je.err, rejoinPause)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(rejoinPause):
			}
		default:
			return err
		}
	}
}

// rejoinPause is the wait between two attempts of a node cut off from
// etcd to join again.
const rejoinPause = time.Second

// joinError is a failure to join the cluster: the first time, the
// agent exits with it; after the node ran, the agent tries again.
type joinError struct{ err error }

func (e *joinError) Error() string { return e.err.Error() }

// nodeLogger writes what the node does to w, a line each (a JSON object
// with -json, of type "node").
func nodeLogger(w io.Writer, node string, asJSON bool) func(string, ...any) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		msg := fmt.Sprintf(format, args...)
		if asJSON {
			enc.Encode(map[string]any{"time": time.Now(), "type": "node", "node": node, "detail": msg})
			return
		}
		fmt.Fprintf(w, "%s node %s: %s\n", time.Now().Format("15:04:05.000"), node, msg)
	}
}

// nodeRound joins the cluster and runs this node's instances until ctx
// ends (nil) or the node's lease is lost (cluster.ErrLost, once its
// instances are stopped).
func (a *App) nodeRound(ctx context.Context, hurry <-chan struct{}, dir string, vf *varFlags, lf *lockFlags, asJSON bool,
	nf nodeFlags, be state.BackendConfig, logf func(string, ...any), rejoin bool) error {
	host, _ := os.Hostname()
	m, err := cluster.Join(ctx, cluster.Options{Backend: be, Logf: logf,
		Node: cluster.Info{Name: nf.node, Labels: nf.parsed, Capacity: nf.capacity, Address: host}})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if rejoin {
			return &joinError{err}
		}
		return &exitError{code: ExitError, msg: err.Error()}
	}
	logf("joined the cluster at %s (lease %s)", strings.Join(be.Endpoints, ","), m.TTL())
	closed := false
	leave := func() {
		if closed {
			return
		}
		closed = true
		if err := m.Close(); err != nil {
			logf("leaving the cluster: %v", err)
		}
	}
	defer leave()

	res := a.loadConfig(dir, vf)
	if res.diags.HasErrors() {
		a.writeDiags(res.diags, res.files)
		return silentFailure()
	}
	s := &session{res: res, cfg: res.cfg, stateDir: a.settings.StateDirFor(res.cfg), provs: a.providerSet()}
	if err := owned.Dir(s.stateDir); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	// This node's own state. A previous agent of the node (killed) holds
	// its lock until its lease lapses: wait for that at least.
	timeout := lf.timeout
	if least := 2*m.TTL() + etcdstate.RequestTimeout; timeout < least {
		timeout = least
	}
	st, err := state.OpenBackend(filepath.Join(s.stateDir, "state.db"), cluster.NodeBackend(be, nf.node),
		state.Options{Operation: "agent -node " + nf.node, LockTimeout: timeout})
	if err != nil {
		if rejoin {
			return &joinError{err}
		}
		return &exitError{code: ExitError, msg: err.Error()}
	}
	defer st.Close()
	s.store = st

	// What is assigned to this node, and the configuration restricted to it.
	rem := &remoteGates{node: nf.node}
	var mine atomic.Pointer[map[string]bool]
	mine.Store(&map[string]bool{})
	restrict := func(r loadResult) engine.LoadResult {
		if r.diags.HasErrors() || r.cfg == nil {
			return engine.LoadResult{Config: r.cfg, Diags: r.diags, Files: r.files}
		}
		m.Declare(planner.PlaceInstancesOf(r.cfg))
		used := mine.Load()
		set := *used
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		cfg := cluster.Only(r.cfg, func(a spec.Address) bool { return set[a.String()] }, nf.node+"\x00"+strings.Join(keys, "\x00"))
		// A reload made with an older assignment than the engine has
		// applied since would undo it (TestClusterSpreadAndPin, under
		// load: the node's instances destroyed after their start).
		return engine.LoadResult{Config: cfg, Diags: r.diags, Files: r.files, Current: func() bool { return mine.Load() == used }}
	}
	load := func() engine.LoadResult { return restrict(a.loadConfig(dir, vf)) }
	first := restrict(res) // declares: the leader can place

	kick := make(chan struct{}, 1)
	gotFirst := make(chan struct{})
	var firstOnce sync.Once
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		m.Watch(watchCtx, func(as *cluster.Assignments) {
			rem.setAssign(as.Assign)
			set := map[string]bool{}
			for _, x := range as.Mine(nf.node) {
				set[x] = true
			}
			changed := !maps.Equal(set, *mine.Load())
			if changed {
				mine.Store(&set)
				logf("assigned %d instance(s) by leader %s: %s", len(set), as.Leader, strings.Join(as.Mine(nf.node), " "))
			}
			firstOnce.Do(func() { close(gotFirst) })
			if changed {
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		})
	}()
	// What the other nodes publish of their instances: this node's
	// starts that depend on one of them wait for it (engine Elsewhere).
	gatesDone := make(chan struct{})
	go func() {
		defer close(gatesDone)
		m.WatchGates(watchCtx, rem.setGates)
	}()
	defer func() { stopWatch(); <-watchDone; <-gatesDone }()
	select {
	case <-gotFirst:
		first = load()
		select {
		case <-kick: // the engine starts with these
		default:
		}
	case <-m.Lost():
		return cluster.ErrLost
	case <-ctx.Done():
		return nil
	}

	a.pluginSet().freeze()
	// Every event may change what this node's instances let their
	// dependents on other nodes do: it pokes the publisher.
	publish := make(chan struct{}, 1)
	poke := func() {
		select {
		case publish <- struct{}{}:
		default:
		}
	}
	out := func(ev engine.Event) { fmt.Fprintln(a.Stderr, ev.String()); poke() }
	if asJSON {
		enc := json.NewEncoder(a.Stderr)
		enc.SetEscapeHTML(false)
		out = func(ev engine.Event) { enc.Encode(ev); poke() }
	}
	mods, closeMods, err := hostModules(s)
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	defer closeMods()
	engCtx, stopEng := context.WithCancel(ctx)
	defer stopEng()
	ns := newNodeStore(engCtx, st)
	eng := engine.New(engine.Options{
		Dir: s.cfg.Dir, Config: first.Config, Files: first.Files, Load: load, WatchFiles: vf.varFiles,
		Providers: s.provs, Store: ns, StateDir: s.stateDir, Project: s.cfg.Project.Name,
		Parallelism: a.settings.Parallelism, Out: out, Bus: mods.Bus(), Hurry: hurry,
		Elsewhere: rem.readiness,
	})
	defer eng.ForwardBus(mods.Bus())()
	rem.notify(eng.ElsewhereChanged)
	published := make(chan struct{})
	go func() {
		defer close(published)
		publishGates(engCtx, eng, m, publish, logf)
	}()
	defer func() { stopEng(); <-published }()

	ln, err := agent.Listen(a.settings.AgentSocketFor(s.stateDir))
	if err != nil {
		return &exitError{code: ExitError, msg: "cannot serve the agent API: " + err.Error()}
	}
	srvCtx, srvStop := context.WithCancel(context.Background())
	served := make(chan struct{})
	srv := &agent.Server{Engine: eng, Dir: s.cfg.Dir, Load: load, LogPath: func(addr spec.Address) string {
		return process.LogPath(s.stateDir, addr)
	}}
	go func() {
		defer close(served)
		srv.Serve(srvCtx, ln)
	}()
	defer func() { srvStop(); <-served }()

	// A lost lease stops the engine, and with it every instance of the
	// node (its stops cannot be recorded: the node's state lock went
	// with the lease; the next round's refresh finds them stopped).
	// The node's state lock has a lease of its own: lost alone (etcd
	// expired it while the node's lease held on), the engine could no
	// longer record anything; that ends the round the same way.
	var lost atomic.Bool
	go func() {
		select {
		case <-m.Lost():
			ns.lose()
			lost.Store(true)
			stopEng()
		case <-st.LockLost():
			logf("the node's state lock was lost: stopping its instances")
			ns.lose()
			lost.Store(true)
			stopEng()
		case <-engCtx.Done():
		}
	}()
	// New assignments are applied as orch apply does through an agent.
	// An apply returns once its round settled, which a start that waits
	// for an instance of another node holds up: a newer assignment does
	// not wait for that (the engine goes on with the round; the newer
	// apply plans afresh).
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for {
			select {
			case <-engCtx.Done():
				return
			case <-kick:
			}
			lr := load()
			if lr.Diags.HasErrors() {
				continue // the engine reports it from its own reload
			}
			actx, acancel := context.WithCancel(engCtx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				r, err := eng.Apply(actx, engine.ApplyRequest{Config: lr.Config, Files: lr.Files})
				switch {
				case err != nil && actx.Err() == nil:
					logf("applying the new assignment: %v", err)
				case r != nil && r.Err != "":
					logf("applying the new assignment: %s", r.Err)
				}
			}()
			select {
			case <-done:
			case <-kick:
				acancel()
				<-done
				select {
				case kick <- struct{}{}: // the next round applies it
				default:
				}
			case <-engCtx.Done():
				acancel()
				<-done
			}
			acancel()
		}
	}()
	runErr := eng.Run(engCtx)
	stopEng()
	<-applied
	if lost.Load() {
		return cluster.ErrLost
	}
	leave() // only now: the leader moves nothing before this node stopped it
	if runErr != nil && ctx.Err() == nil {
		return &exitError{code: ExitError, msg: runErr.Error()}
	}
	return nil
}

// gatesSpacing is the least time between two publications of a node's
// Gates, and gatesRefresh the most: a burst of events (a thousand
// starts) is published a few times, not a thousand, and a change that
// came with no event of its own is published all the same.
const (
	gatesSpacing = 100 * time.Millisecond
	gatesRefresh = time.Second
)

// publishGates publishes this node's Gates (cluster.Member.PublishGates)
// whenever they change, looking at each poke and every gatesRefresh,
// until ctx ends.
func publishGates(ctx context.Context, eng *engine.Engine, m *cluster.Member, poke <-chan struct{}, logf func(string, ...any)) {
	t := time.NewTicker(gatesRefresh)
	defer t.Stop()
	var last map[string]cluster.Gate
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-poke:
		case <-t.C:
		}
		gs, err := eng.Gatings(ctx)
		if err != nil {
			continue
		}
		cur := make(map[string]cluster.Gate, len(gs))
		for a, g := range gs {
			cur[a.String()] = cluster.Gate{Readiness: g.Readiness.String(), Waiting: g.Waiting, Blocked: g.Blocked}
		}
		if last != nil && maps.Equal(cur, last) {
			continue
		}
		if err := m.PublishGates(ctx, cur); err != nil {
			if ctx.Err() == nil && !failing {
				logf("%v", err)
			}
			failing = true
			continue
		}
		failing = false
		last = cur
		select {
		case <-ctx.Done():
			return
		case <-time.After(gatesSpacing):
		}
	}
}

// remoteGates is what the other nodes publish of their instances (their
// Gates), read for the instances assigned to them: the engine's
// Elsewhere.
type remoteGates struct {
	node string

	mu      sync.Mutex
	gates   map[string]map[string]cluster.Gate // node -> address -> Gate
	assign  map[string]string                  // address -> node
	ready   map[spec.Address]gate.Readiness    // made of both at each change
	changed func()
}

func (r *remoteGates) setGates(g map[string]map[string]cluster.Gate) {
	r.mu.Lock()
	r.gates = g
	r.update()
}

func (r *remoteGates) setAssign(a map[string]string) {
	r.mu.Lock()
	r.assign = a
	r.update()
}

// update remakes ready and tells the engine; r.mu is held, and released.
func (r *remoteGates) update() {
	ready := map[spec.Address]gate.Readiness{}
	for addr, node := range r.assign {
		g, ok := r.gates[node][addr]
		if node == r.node || !ok {
			continue
		}
		rd, ok := parseReadiness(g.Readiness)
		a, err := spec.ParseAddress(addr)
		if ok && err == nil {
			ready[a] = rd
		}
	}
	same := maps.Equal(ready, r.ready)
	r.ready = ready
	f := r.changed
	r.mu.Unlock()
	if f != nil && !same {
		f()
	}
}

// notify sets what to call when the readiness changes (once the engine
// exists), and calls it once.
func (r *remoteGates) notify(f func()) {
	r.mu.Lock()
	r.changed = f
	r.mu.Unlock()
	f()
}

// readiness is the engine's Elsewhere: the caller must not change it.
func (r *remoteGates) readiness() map[spec.Address]gate.Readiness {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// parseReadiness reads a gate word as gate.Readiness.String writes it.
func parseReadiness(s string) (gate.Readiness, bool) {
	for r := gate.Down; r <= gate.Away; r++ {
		if r.String() == s {
			return r, true
		}
	}
	return gate.Down, false
}

func init() { clusterStatus = (*App).clusterStatus }

// clusterStatus is orch status of a project on several hosts: the
// records of every node's state, each line with its node; what runs on a
// node of this host (its registered address is this host's name) is
// observed, the rest reads unknown. Instances no node takes are listed
// as unplaced, with why. multi is false when no node ever ran the
// project.
func (a *App) clusterStatus(cfg *spec.Config, be *state.BackendConfig) ([]JSONStatus, bool, error) {
	if be.Kind != etcdstate.Kind {
		return nil, false, nil
	}
	cli, err := etcdstate.NewClient(*be)
	if err != nil {
		return nil, false, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdstate.RequestTimeout)
	defer cancel()
	k := cluster.Keys{P: strings.TrimSuffix(be.Prefix, "/")}
	infos, as, _, err := cluster.ReadNodes(ctx, cli, k)
	if err != nil {
		return nil, false, etcdstate.Err(*be, "read the nodes", err)
	}
	states, err := cli.Get(ctx, k.NodeState(""), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, false, etcdstate.Err(*be, "read the nodes", err)
	}
	names := map[string]bool{}
	for _, kv := range states.Kvs {
		if n, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), k.NodeState("")), "/"); ok {
			names[n] = true
		}
	}
	if len(names) == 0 && len(infos) == 0 {
		return nil, false, nil
	}
	host, _ := os.Hostname()
	live := map[string]cluster.Info{}
	for _, in := range infos {
		live[in.Name] = in
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []JSONStatus
	for _, n := range sorted {
		st, err := state.OpenBackendReadOnly(filepath.Join(a.settings.StateDirFor(cfg), "state.db"), cluster.NodeBackend(*be, n))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, true, err
		}
		insts, err := st.List()
		st.Close()
		if err != nil {
			return nil, true, err
		}
		info, up := live[n]
		node := n
		if !up {
			node += " (down)"
		}
		for _, l := range a.statusLines(cfg, insts, up && info.Address == host) {
			l.Node = node
			out = append(out, l)
		}
	}
	// What waits to start, as its node publishes it (an instance that
	// waits for one on another node has no record yet).
	gates, _, err := cluster.ReadGates(ctx, cli, k)
	if err != nil {
		return nil, true, etcdstate.Err(*be, "read the nodes", err)
	}
	for node, gs := range gates {
		for addr, g := range gs {
			if g.Waiting == "" || as.Assign[addr] != node {
				continue
			}
			word := "waiting"
			if g.Blocked {
				word = "blocked"
			}
			found := false
			for i := range out {
				if out[i].Address == addr && out[i].Node == node {
					out[i].Status, out[i].Waiting, found = word+" "+g.Waiting, g.Waiting, true
				}
			}
			if !found {
				out = append(out, JSONStatus{Address: addr, Node: node, State: word, Status: word + " " + g.Waiting, Waiting: g.Waiting})
			}
		}
	}
	for addr, why := range as.Unplaced {
		out = append(out, JSONStatus{Address: addr, State: "unplaced", Status: why})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, true, nil
}

func init() { clusterPlan = (*App).clusterPlan }

// PlacementJSON is one line of orch plan -json in a project on several
// hosts.
type PlacementJSON struct {
	Address string `json:"address"`
	// Action: "stay", "place" (new), "move" (its node is gone or no
	// longer qualifies), "remove" (no longer declared), "unplaced".
	Action string `json:"action"`
	Node   string `json:"node,omitempty"`
	From   string `json:"from,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// clusterPlan prints where each instance runs now and where the leader
// would place it with the configuration in the directory and the live
// nodes (planner.Place, as the leader runs it).
func (a *App) clusterPlan(cfg *spec.Config, be *state.BackendConfig, asJSON, detailed bool) (bool, error) {
	cli, err := etcdstate.NewClient(*be)
	if err != nil {
		return false, &exitError{code: ExitError, msg: err.Error()}
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdstate.RequestTimeout)
	defer cancel()
	k := cluster.Keys{P: strings.TrimSuffix(be.Prefix, "/")}
	infos, cur, _, err := cluster.ReadNodes(ctx, cli, k)
	if err != nil {
		return false, &exitError{code: ExitError, msg: etcdstate.Err(*be, "read the nodes", err).Error()}
	}
	if len(infos) == 0 && len(cur.Assign) == 0 {
		return false, nil // one host
	}
	var nodes []planner.Node
	var names []string
	live := map[string]bool{}
	for _, in := range infos {
		nodes = append(nodes, planner.Node{Name: in.Name, Labels: in.Labels, Capacity: in.Capacity})
		names = append(names, in.Name)
		live[in.Name] = true
	}
	sort.Strings(names)
	p := planner.Place(planner.PlaceInstancesOf(cfg), nodes, cur.Assign)
	var rows []PlacementJSON
	changes := 0
	for addr, node := range p.Assign {
		r := PlacementJSON{Address: addr, Node: node, Action: "stay"}
		if from, ok := cur.Assign[addr]; !ok {
			r.Action = "place"
		} else if from != node {
			r.Action, r.From = "move", from
			if !live[from] {
				r.Reason = from + " is down"
			} else {
				r.Reason = from + " no longer qualifies"
			}
		}
		rows = append(rows, r)
	}
	for addr, why := range p.Unplaced {
		rows = append(rows, PlacementJSON{Address: addr, Action: "unplaced", From: cur.Assign[addr], Reason: why})
	}
	for addr, from := range cur.Assign {
		if _, ok := p.Assign[addr]; !ok {
			if _, ok := p.Unplaced[addr]; !ok {
				rows = append(rows, PlacementJSON{Address: addr, Action: "remove", From: from, Reason: "no longer declared"})
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Address < rows[j].Address })
	count := map[string]int{}
	for _, r := range rows {
		count[r.Action]++
		if r.Action != "stay" {
			changes++
		}
	}
	if asJSON {
		if rows == nil {
			rows = []PlacementJSON{}
		}
		if err := writeJSON(a.Stdout, map[string]any{"nodes": names, "leader": cur.Leader, "placements": rows}); err != nil {
			return true, err
		}
	} else {
		fmt.Fprintf(a.Stdout, "Placement on %d live node(s) (%s), leader %s:\n\n", len(names), strings.Join(names, ", "), dash(cur.Leader))
		tw := tabwriter.NewWriter(a.Stdout, 2, 4, 2, ' ', 0)
		for _, r := range rows {
			var where string
			switch r.Action {
			case "stay":
				where = r.Node
			case "place":
				where = "+ " + r.Node
			case "move":
				where = r.From + " -> " + r.Node
			case "remove":
				where = "- " + r.From
			case "unplaced":
				where = "! nowhere"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Address, where, r.Reason)
		}
		tw.Flush()
		fmt.Fprintf(a.Stdout, "\nPlacement: %d to place, %d to move, %d to remove, %d unplaced, %d staying.\n",
			count["place"], count["move"], count["remove"], count["unplaced"], count["stay"])
		fmt.Fprintln(a.Stdout, "Each agent (orch agent -node) applies its part of an edit of the configuration itself.")
	}
	if detailed && changes > 0 {
		return true, &exitError{code: ExitChanges}
	}
	return true, nil
}

// nodeStore is the node's state as the engine sees it: the etcd store,
// and a copy of its records kept in memory. The copy follows the node's
// own writes as they commit (the node alone writes its records: it holds
// their lock), and is read again from etcd after writes, at most every
// nodeStoreRefresh. Once the node is lost, List answers from the copy
// (also a List already waiting for etcd), Serial fails, and new writes
// fail at once: the engine's shutdown lists what to stop, and a node cut
// off from etcd could otherwise read nothing (and stop nothing), or wait
// RequestTimeout per read before it stops anything.
//
// The copy must hold every write that committed: a start recorded just
// before the cut, whose reading back failed because etcd was already out
// of reach, was left out of the shutdown, and its daemon ran on beside
// the copy another node started (TestHostsPartition, under load).
type nodeStore struct {
	*state.Store
	lostCh   chan struct{}
	lostOnce sync.Once
	dirty    chan struct{}

	mu   sync.Mutex
	last map[string]state.Instance
	// writes counts the writes applied to last: a reading from etcd that
	// began before one of them is older than the copy and is dropped.
	writes uint64
}

const nodeStoreRefresh = 250 * time.Millisecond

// newNodeStore makes the copy of st's records and keeps it fresh until
// ctx ends or the node is lost.
func newNodeStore(ctx context.Context, st *state.Store) *nodeStore {
	s := openNodeStore(st)
	go s.refresh(ctx)
	return s
}

func openNodeStore(st *state.Store) *nodeStore {
	s := &nodeStore{Store: st, dirty: make(chan struct{}, 1), lostCh: make(chan struct{}), last: map[string]state.Instance{}}
	s.List()
	return s
}

func (s *nodeStore) refresh(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.lostCh:
			return
		case <-s.dirty:
		}
		s.List()
		select {
		case <-ctx.Done():
			return
		case <-time.After(nodeStoreRefresh):
		}
	}
}

// lose makes the store answer from its copy from now on.
func (s *nodeStore) lose() { s.lostOnce.Do(func() { close(s.lostCh) }) }

func (s *nodeStore) isLost() bool {
	select {
	case <-s.lostCh:
		return true
	default:
		return false
	}
}

func (s *nodeStore) cached() []state.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]state.Instance, 0, len(s.last))
	for _, inst := range s.last {
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// ListWith and Records answer as List does, from the copy when the node
// is lost (the methods of the embedded *state.Store would read the
// backend): the engine lists through them (executor/engine/records.go).
// ListWith leaves no configuration out.
func (s *nodeStore) ListWith(state.ListOptions) ([]state.Instance, error) { return s.List() }

func (s *nodeStore) Records(addrs []spec.Address) (map[spec.Address]state.Instance, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	return state.Pick(all, addrs), nil
}

func (s *nodeStore) List() ([]state.Instance, error) {
	if s.isLost() {
		return s.cached(), nil
	}
	s.mu.Lock()
	writes := s.writes
	s.mu.Unlock()
	type result struct {
		insts []state.Instance
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		insts, err := s.Store.List()
		ch <- result{insts, err}
	}()
	select {
	case r := <-ch:
		if r.err == nil {
			s.mu.Lock()
			if s.writes == writes {
				s.last = make(map[string]state.Instance, len(r.insts))
				for _, inst := range r.insts {
					s.last[inst.Addr.String()] = inst
				}
			}
			s.mu.Unlock()
		}
		return r.insts, r.err
	case <-s.lostCh:
		return s.cached(), nil
	}
}

// Serial fails once the node is lost: what the engine listed ahead is not
// compared with etcd (out of reach), and the shutdown lists the copy.
func (s *nodeStore) Serial() (uint64, error) {
	if s.isLost() {
		return 0, fmt.Errorf("%w: the node lost its lease", state.ErrLockLost)
	}
	return s.Store.Serial()
}

func (s *nodeStore) Update(fn func(tx *state.Tx) error) error {
	defer func() {
		select {
		case s.dirty <- struct{}{}:
		default:
		}
	}()
	// A write already under way is not abandoned: fn may not have run
	// yet, and runs on the caller's data.
	if s.isLost() {
		return fmt.Errorf("%w: the node lost its lease", state.ErrLockLost)
	}
	ws, err := s.Store.UpdateWrites(fn)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		if w.Put != nil {
			s.last[w.Addr.String()] = *w.Put
		} else {
			delete(s.last, w.Addr.String())
		}
	}
	s.writes++
	return nil
}
