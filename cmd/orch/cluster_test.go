package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/cluster"
	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
	"github.com/orch-dev/orch/providers/process/processtest"
)

// Several hosts, as several orch agent -node processes on this host, each
// with its own state directory, against a real 3-member etcd.
//
// A partition is simulated by SIGSTOP of an agent past its lease: from
// etcd's side it is the same as a cut (no renewal; the lease lapses and
// the node's key goes), and, as on a partitioned host, the agent's daemons
// go on running meanwhile, which is exactly the duplicate hazard. It
// needs no privileges, no veth pairs and no routing between namespaces.
// What it does not show is an agent that runs while cut off; that one
// stops its instances on its own deadline (cluster.Member's keepAlive),
// the same code path a SIGCONT takes.

// clusterTTL is the node lease of the tests (the backend's lock_ttl).
const clusterTTL = 3 * time.Second

type clusterTest struct {
	t      testing.TB
	dir    string
	token  string
	config string
	etcd   *etcdtest.Cluster
	env    string // ORCH_BACKEND=...
	cli    *clientv3.Client
	keys   cluster.Keys
	nodes  map[string]*nodeProc
	pids   *pidSet
	// args are more flags of orch agent, per node.
	args map[string][]string
	// nodeEnv replaces env for a node (another ORCH_BACKEND).
	nodeEnv map[string]string
	// backendFlag: the agents are given the backend as the flag -backend
	// URL, not as ORCH_BACKEND.
	backendFlag bool
}

// backendURL is the etcd://... the agents use.
func (c *clusterTest) backendURL() string { return strings.TrimPrefix(c.env, "ORCH_BACKEND=") }

type nodeProc struct {
	name     string
	stateDir string
	cmd      *exec.Cmd
	exited   chan struct{}
	out      *syncBuffer
}

const clusterConfig = `orch {
  name = "multi"
}

daemon "web" {
  count   = 3
  command = ["/bin/sh", "-c", "while :; do sleep 1; done", "TOKEN-web-${count.index}"]
  placement {
    spread = true
  }
}

daemon "pinned" {
  command = ["/bin/sh", "-c", "while :; do sleep 1; done", "TOKEN-pinned"]
  placement {
    node = "n2"
  }
}
`

func newClusterTest(t testing.TB, config string) *clusterTest {
	c := &clusterTest{t: t, nodes: map[string]*nodeProc{}, pids: &pidSet{pids: map[int]bool{}}}
	c.token = fmt.Sprintf("orch-cl-%d-%d", os.Getpid(), time.Now().UnixNano())
	c.config = strings.ReplaceAll(config, "TOKEN", c.token)
	// The agents start on a project that declares nothing; startAll
	// writes the configuration once every node joined, so that where
	// instances land does not depend on which agent came first.
	c.dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(c.dir, "main.hcl"), []byte("orch {\n  name = \"multi\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.etcd = etcdtest.Start(t, 3)
	c.env = etcdEnv(c.etcd, "/orch/multi") + "?lock_ttl=" + clusterTTL.String()
	c.cli = c.etcd.Client()
	c.keys = cluster.Keys{P: "/orch/multi"}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.cmd.Process.Signal(syscall.SIGCONT)
			n.cmd.Process.Kill()
			<-n.exited
			c.pids.add(registeredPids(n.stateDir)...)
		}
		c.pids.mu.Lock()
		for pid := range c.pids.pids {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		c.pids.mu.Unlock()
		for _, n := range c.nodes {
			processtest.RemoveCgroups(n.stateDir)
			processtest.StopLogd(n.stateDir)
		}
	})
	return c
}

// start runs orch agent -node name (again, when it ran before).
func (c *clusterTest) start(name string, args ...string) *nodeProc {
	c.t.Helper()
	n := c.nodes[name]
	if n == nil {
		n = &nodeProc{name: name, stateDir: filepath.Join(c.t.TempDir(), name), out: &syncBuffer{}}
		c.nodes[name] = n
	} else {
		fmt.Fprintf(n.out, "--- started again\n")
	}
	n.cmd = orchCmdTB(c.t, c.dir, append([]string{"agent", "-node", name}, append(args, c.dir)...)...)
	env := c.env
	if e, ok := c.nodeEnv[name]; ok {
		env = e
	}
	if c.backendFlag {
		n.cmd.Args = append(n.cmd.Args[:1], append([]string{"-backend", c.backendURL()}, n.cmd.Args[1:]...)...)
		env = "ORCH_STATE_DIR=" + n.stateDir
	}
	n.cmd.Env = append(n.cmd.Env, env, "ORCH_STATE_DIR="+n.stateDir)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(n.cmd, n.exited)
	return n
}

// startAll starts an agent per name, waits until every one joined, then
// declares the configuration (the agents reload it, as after an edit).
func (c *clusterTest) startAll(names ...string) {
	c.t.Helper()
	for _, n := range names {
		c.start(n, c.args[n]...)
	}
	// Joined, and their engines watch the directory (ready is said after
	// the watch began).
	c.waitFor("every node to join", func() bool {
		for _, n := range names {
			if !strings.Contains(c.nodes[n].out.String(), "ready:") {
				return false
			}
		}
		return len(c.liveNodes()) == len(names)
	})
	if err := os.WriteFile(filepath.Join(c.dir, "main.hcl"), []byte(c.config), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *clusterTest) liveNodes() map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes, _, _, err := cluster.ReadNodes(ctx, c.cli, c.keys)
	if err != nil {
		c.t.Logf("reading the nodes: %v", err)
		return nil
	}
	out := map[string]bool{}
	for _, n := range nodes {
		out[n.Name] = true
	}
	return out
}

func (c *clusterTest) outputs() string {
	var b strings.Builder
	names := make([]string, 0, len(c.nodes))
	for name := range c.nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "--- agent %s:\n%s\n", name, tail(c.nodes[name].out.String(), 3000))
	}
	return b.String()
}

// waitFor polls cond until it holds, failing the test at a deadline or
// when an agent that should run has exited.
func (c *clusterTest) waitFor(what string, cond func() bool) {
	c.t.Helper()
	c.waitWithin(60*time.Second, what, cond)
}

// waitForLong is waitFor for the benchmarks of 1,000 daemons.
func (c *clusterTest) waitForLong(what string, cond func() bool) {
	c.t.Helper()
	c.waitWithin(10*time.Minute, what, cond)
}

func (c *clusterTest) waitWithin(limit time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 25*time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s\nassignments: %+v\n%s", what, c.assignments(), c.outputs())
		}
		time.Sleep(wait)
	}
}

func (c *clusterTest) assignments() *cluster.Assignments {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, a, _, err := cluster.ReadNodes(ctx, c.cli, c.keys)
	if err != nil {
		// An etcd member was just killed (a new etcd leader): the
		// waits read again.
		c.t.Logf("reading the assignments: %v", err)
		return &cluster.Assignments{}
	}
	return a
}

// status is what node's agent says runs, by address (through the agent
// API on that node's state directory; orch status shows every node).
func (c *clusterTest) status(node string) map[string]agentStatus {
	n := c.nodes[node]
	cl, err := agent.Dial(filepath.Join(n.stateDir, "agent.sock"))
	if err != nil || cl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cl.Status(ctx)
	if err != nil {
		return nil
	}
	out := map[string]agentStatus{}
	for _, in := range st.Instances {
		out[in.Address] = agentStatus{Address: in.Address, State: in.State, Status: in.Status, Pid: in.Pid, Supervised: in.Supervised}
		c.pids.add(in.Pid)
	}
	return out
}

// placedAndRunning reports whether every address is assigned to a live
// node whose agent runs it (supervised, its pid alive), and returns
// address -> node.
func (c *clusterTest) placedAndRunning(addrs ...string) (map[string]string, bool) {
	a := c.assignments()
	got := map[string]string{}
	stats := map[string]map[string]agentStatus{}
	for _, addr := range addrs {
		node := a.Assign[addr]
		if node == "" || c.nodes[node] == nil {
			return nil, false
		}
		if stats[node] == nil {
			stats[node] = c.status(node)
		}
		s := stats[node][addr]
		if s.State != "running" || !s.Supervised || !alive(s.Pid) {
			return nil, false
		}
		got[addr] = node
	}
	return got, true
}

// exactlyOne reports whether one process, and only one, runs each
// instance (by its token in argv).
func (c *clusterTest) exactlyOne(names ...string) bool {
	for _, n := range names {
		if procsWith(c.t, c.token+"-"+n) != 1 {
			return false
		}
	}
	return true
}

// spreadRunning waits until the web instances run one per node and the
// pinned one on n2, each once.
func (c *clusterTest) spreadRunning() map[string]string {
	c.t.Helper()
	var got map[string]string
	c.waitFor("one web instance per node, pinned on n2", func() bool {
		var ok bool
		if got, ok = c.placedAndRunning(webAddrs...); !ok {
			return false
		}
		seen := map[string]bool{got["daemon.web[0]"]: true, got["daemon.web[1]"]: true, got["daemon.web[2]"]: true}
		return len(seen) == 3 && got["daemon.pinned"] == "n2" && c.exactlyOne(webTokens...)
	})
	return got
}

// orchCmdTB is newOrchCmd for a test or a benchmark.
func orchCmdTB(t testing.TB, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(orchBin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	return cmd
}

var webAddrs = []string{"daemon.web[0]", "daemon.web[1]", "daemon.web[2]", "daemon.pinned"}
var webTokens = []string{"web-0", "web-1", "web-2", "pinned"}

// TestClusterSpreadAndPin: three agents; the three instances of a spread
// daemon land one per node, the pinned one on its node, every one running
// once.
func TestClusterSpreadAndPin(t *testing.T) {
	c := newClusterTest(t, clusterConfig+`
daemon "fast" {
  command = ["/bin/sh", "-c", "while :; do sleep 1; done", "TOKEN-fast"]
  placement {
    labels = { disk = "ssd" }
  }
}
`)
	c.args = map[string][]string{"n1": {"-labels", "disk=hdd,zone=a"}, "n3": {"-labels", "zone=b,disk=ssd", "-capacity", "5"}}
	c.startAll("n1", "n2", "n3")
	c.spreadRunning()
	c.waitFor("daemon.fast on n3, the node labelled disk=ssd", func() bool {
		got, ok := c.placedAndRunning("daemon.fast")
		return ok && got["daemon.fast"] == "n3" && c.exactlyOne("fast")
	})
	// Each node's state holds its own instances only.
	a := c.assignments()
	for _, n := range []string{"n1", "n2", "n3"} {
		st := c.status(n)
		for addr := range st {
			if a.Assign[addr] != n {
				t.Errorf("node %s's state records %s, assigned to %q", n, addr, a.Assign[addr])
			}
		}
	}
	// orch status shows every node's instances with their node, from any
	// state directory (here: no agent's).
	cmd := newOrchCmd(t, c.dir, "status", "-json", c.dir)
	cmd.Env = append(cmd.Env, c.env, "ORCH_STATE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("orch status -json: %v\n%s", err, out)
	}
	var lines []struct {
		Address, Node, State string
		Pid                  int
	}
	if err := json.Unmarshal(out, &lines); err != nil {
		t.Fatalf("orch status -json: %v\n%s", err, out)
	}
	if len(lines) != len(webAddrs)+1 {
		t.Fatalf("orch status -json: %d lines, want %d:\n%s", len(lines), len(webAddrs)+1, out)
	}
	for _, l := range lines {
		if l.Node != a.Assign[l.Address] || l.State != "running" || !alive(l.Pid) {
			t.Errorf("orch status: %+v; assigned to %s", l, a.Assign[l.Address])
		}
	}
	cmd = newOrchCmd(t, c.dir, "status", c.dir)
	cmd.Env = append(cmd.Env, c.env, "ORCH_STATE_DIR="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "NODE") || !strings.Contains(string(out), "n2    daemon.pinned") {
		t.Errorf("orch status: %v\n%s", err, out)
	}
	t.Logf("orch status:\n%s", out)

	// orch plan shows the placement: everything stays; after an edit, a
	// fourth web instance is placed, and a pin to a node that is not
	// there is unplaced.
	plan := func(dir string, args ...string) (string, int) {
		cmd := newOrchCmd(t, dir, append([]string{"plan"}, append(args, dir)...)...)
		cmd.Env = append(cmd.Env, c.env, "ORCH_STATE_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := plan(c.dir, "-detailed-exitcode"); code != 0 || !strings.Contains(out, "Placement: 0 to place, 0 to move, 0 to remove, 0 unplaced, 5 staying.") {
		t.Errorf("orch plan with nothing to place: exit %d\n%s", code, out)
	}
	edited := strings.Replace(c.config, "count   = 3", "count   = 4", 1) + `
daemon "lost" {
  command = ["/bin/true"]
  placement {
    node = "n9"
  }
}
`
	// The edit is planned from a copy of the directory (the same project,
	// multi, on the same etcd prefix): the agents watch c.dir and would
	// apply an edit there at once, leaving nothing for plan to show.
	editDir := writeFiles(t, map[string]string{"main.hcl": edited})
	out2, code := plan(editDir, "-detailed-exitcode")
	if code != 2 || !strings.Contains(out2, "daemon.web[3]  + n") || !strings.Contains(out2, `daemon.lost    ! nowhere  no live node is named "n9" (placement.node)`) ||
		!strings.Contains(out2, "Placement: 1 to place, 0 to move, 0 to remove, 1 unplaced, 5 staying.") {
		t.Errorf("orch plan of an edit: exit %d\n%s", code, out2)
	}
	t.Logf("orch plan:\n%s", out2)
	// orch apply here would start everything on this host: refused.
	cmd = newOrchCmd(t, c.dir, "apply", "-auto-approve", c.dir)
	cmd.Env = append(cmd.Env, c.env, "ORCH_STATE_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "runs on several hosts") {
		t.Errorf("orch apply on several hosts: %v\n%s", err, out)
	}
}

// TestClusterFailoverPaused: an agent stopped (SIGSTOP) past its lease has
// its instances placed and started on the other nodes; once it runs again
// (SIGCONT) it stops its own copies, and one process runs per instance.
func TestClusterFailoverPaused(t *testing.T) {
	c := newClusterTest(t, clusterConfig)
	c.startAll("n1", "n2", "n3")
	before := c.spreadRunning()
	// Cut n3 (never n2: the pinned daemon has nowhere else to go).
	victim := "n3"
	var moved []string
	for addr, n := range before {
		if n == victim {
			moved = append(moved, addr)
		}
	}
	oldPids := map[string]int{}
	st := c.status(victim)
	for _, addr := range moved {
		oldPids[addr] = st[addr].Pid
	}
	cut := time.Now()
	c.nodes[victim].cmd.Process.Signal(syscall.SIGSTOP)
	c.waitFor(victim+"'s instances running elsewhere", func() bool {
		got, ok := c.placedAndRunning(webAddrs...)
		if !ok {
			return false
		}
		for _, addr := range moved {
			if got[addr] == victim {
				return false
			}
		}
		return true
	})
	failover := time.Since(cut)
	t.Logf("failover after SIGSTOP of %s (lease %s): %s to run %v elsewhere", victim, clusterTTL, failover.Round(time.Millisecond), moved)
	// The paused agent's daemons ran on: two copies meanwhile, as on a
	// partitioned host; the resumed agent must end its own.
	for _, addr := range moved {
		tok := strings.TrimSuffix(strings.NewReplacer("daemon.", "", "[", "-").Replace(addr), "]")
		if n := procsWith(t, c.token+"-"+tok); n != 2 {
			t.Fatalf("%s runs %d times while %s is paused, want 2 (the paused copy and its replacement)", addr, n, victim)
		}
	}
	c.nodes[victim].cmd.Process.Signal(syscall.SIGCONT)
	c.waitFor("the resumed agent to stop its own copies", func() bool {
		for _, pid := range oldPids {
			if alive(pid) {
				return false
			}
		}
		return c.exactlyOne(webTokens...)
	})
	// It joins again, and takes nothing back (placement is stable).
	c.waitFor(victim+" to join again", func() bool { return c.liveNodes()[victim] })
	if got, ok := c.placedAndRunning(webAddrs...); !ok || !c.exactlyOne(webTokens...) {
		t.Fatalf("after %s came back: %v running=%v\n%s", victim, got, ok, c.outputs())
	}
	if !strings.Contains(c.nodes[victim].out.String(), "lost its lease") {
		t.Errorf("%s does not say it lost its lease:\n%s", victim, c.outputs())
	}
}

// TestClusterFailoverKilled: the leader's agent killed with SIGKILL (its
// daemons left running, as after a crash of orch): another agent is
// elected and places the dead node's instances on the others (a daemon
// pinned to it is unplaced meanwhile); started again, the agent stops
// what it no longer runs, takes its pinned daemon back, and one process
// runs per instance.
func TestClusterFailoverKilled(t *testing.T) {
	c := newClusterTest(t, clusterConfig)
	c.startAll("n1", "n2", "n3")
	before := c.spreadRunning()
	victim := c.assignments().Leader
	if c.nodes[victim] == nil {
		t.Fatalf("no leader in the assignments: %+v", c.assignments())
	}
	var moved []string
	for addr, n := range before {
		if n == victim && addr != "daemon.pinned" {
			moved = append(moved, addr)
		}
	}
	var others []string // what must run elsewhere while the victim is gone
	for _, addr := range webAddrs {
		if before[addr] != victim || addr != "daemon.pinned" {
			others = append(others, addr)
		}
	}
	orphans := map[string]int{}
	st := c.status(victim)
	for addr, s := range st {
		orphans[addr] = s.Pid
	}
	cut := time.Now()
	c.nodes[victim].cmd.Process.Kill()
	<-c.nodes[victim].exited
	c.waitFor(victim+"'s instances running elsewhere", func() bool {
		a := c.assignments()
		if a.Leader == victim || a.Leader == "" {
			return false
		}
		got, ok := c.placedAndRunning(others...)
		if !ok {
			return false
		}
		for _, addr := range moved {
			if got[addr] == victim {
				return false
			}
		}
		return true
	})
	t.Logf("failover after SIGKILL of the leader %s (lease %s): %s to run %v elsewhere; leader now %s", victim, clusterTTL,
		time.Since(cut).Round(time.Millisecond), moved, c.assignments().Leader)
	if victim == "n2" {
		if why := c.assignments().Unplaced["daemon.pinned"]; !strings.Contains(why, `no live node is named "n2"`) {
			t.Errorf("daemon.pinned while n2 is gone: %q", why)
		}
	}
	for addr, pid := range orphans {
		if !alive(pid) {
			t.Fatalf("%s (pid %d) died with its agent: the test shows nothing", addr, pid)
		}
	}
	c.start(victim)
	c.waitFor("one process per instance after "+victim+" came back", func() bool {
		a := c.assignments()
		for addr, pid := range orphans {
			if alive(pid) && a.Assign[addr] != victim {
				return false
			}
		}
		_, ok := c.placedAndRunning(webAddrs...)
		return ok && c.exactlyOne(webTokens...)
	})
}

// TestAgentNodeFlags: bad -node, -labels and -capacity, and -node without
// the etcd backend, are each one clear error.
func TestAgentNodeFlags(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": "orch {\n  name = \"one\"\n}\n"})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-labels", "a=b"}, "-labels and -capacity need -node NAME"},
		{[]string{"-node", "1x"}, `-node "1x": a node name uses letters, digits, '-' and '_', starting with a letter`},
		{[]string{"-node", "n1", "-labels", "a=b,c"}, `-labels "a=b,c": "c" is not KEY=VALUE`},
		{[]string{"-node", "n1", "-labels", "a=b,a=c"}, `-labels "a=b,a=c": "a" is given twice`},
		{[]string{"-node", "n1", "-capacity", "-1"}, "-capacity -1: it is 0 (no limit) or more"},
		{[]string{"-node", "n1"}, "orch agent -node n1: a project on several hosts keeps its state in etcd"},
	} {
		r := orch(t, dir, nil, append(append([]string{"agent"}, c.args...), dir)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "Error:") != 1 {
			t.Errorf("orch agent %v: exit %d\n%s\nwant %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// TestClusterIsolatedNodeStopsItself: a real cut, with the agent running:
// n3 talks to etcd member 3 only, and that member is killed (the other
// two keep the quorum). n3 can no longer renew its lease; on its own
// deadline it stops its instance, while the leader, once etcd expires
// the lease, places it on another node. When the member is back, n3
// joins again and one process runs per instance.
func TestClusterIsolatedNodeStopsItself(t *testing.T) {
	c := newClusterTest(t, clusterConfig)
	m3 := c.etcd.Members[2]
	c.nodeEnv = map[string]string{"n3": "ORCH_BACKEND=etcd://" + strings.TrimPrefix(m3.ClientURL, "http://") + "/orch/multi?lock_ttl=" + clusterTTL.String()}
	c.startAll("n1", "n2", "n3")
	before := c.spreadRunning()
	var mine []string
	for addr, n := range before {
		if n == "n3" {
			mine = append(mine, addr)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("n3 runs %v", mine)
	}
	st := c.status("n3")
	old := st[mine[0]].Pid
	cut := time.Now()
	m3.Stop()
	var stopped, replaced time.Duration
	c.waitFor("n3's instance stopped by n3 and running elsewhere", func() bool {
		if stopped == 0 && !alive(old) {
			stopped = time.Since(cut)
		}
		if replaced == 0 {
			if got, ok := c.placedAndRunning(mine...); ok && got[mine[0]] != "n3" {
				replaced = time.Since(cut)
			}
		}
		return stopped != 0 && replaced != 0
	})
	t.Logf("n3 cut off (lease %s): it stopped its instance after %s; the instance ran on another node after %s",
		clusterTTL, stopped.Round(time.Millisecond), replaced.Round(time.Millisecond))
	if !strings.Contains(c.nodes["n3"].out.String(), "lost its lease") {
		t.Errorf("n3 does not say it lost its lease:\n%s", c.outputs())
	}
	m3.Restart(t)
	c.waitFor("n3 to join again, one process per instance", func() bool {
		_, ok := c.placedAndRunning(webAddrs...)
		return ok && c.liveNodes()["n3"] && c.exactlyOne(webTokens...)
	})
}
