package etcdstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/executor/state/etcdstate"
	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// The fencing test runs a writer in a child process (this test binary
// again), so that it can be paused with SIGSTOP.
const (
	envChild     = "ORCH_ETCDSTATE_CHILD"
	envEndpoints = "ORCH_ETCDSTATE_ENDPOINTS"
	envPrefix    = "ORCH_ETCDSTATE_PREFIX"
)

func TestMain(m *testing.M) {
	etcdstate.Register()
	if os.Getenv(envChild) == "writer" {
		childWriter()
		return
	}
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func inst(name string, i int) state.Instance {
	return state.Instance{
		Addr:       spec.Address{Kind: spec.KindDaemon, Name: name, Key: spec.IntKey(i)},
		Runtime:    spec.Address{Kind: spec.KindRuntime, Type: "process", Name: "host"},
		Config:     []byte(`{"command":["/bin/svc","` + strconv.Itoa(i) + `"]}`),
		ConfigHash: fmt.Sprintf("%064x", i),
		Handle:     providers.Handle(fmt.Sprintf(`{"pid":%d}`, 1000+i)),
		Status:     "running",
	}
}

func cfgOf(c *etcdtest.Cluster, prefix string, ttl time.Duration) state.BackendConfig {
	return state.BackendConfig{Kind: etcdstate.Kind, Endpoints: c.Endpoints(), Prefix: prefix, LockTTL: ttl}
}

func open(t testing.TB, cfg state.BackendConfig, opts state.Options) *state.Store {
	t.Helper()
	st, err := state.OpenBackend(filepath.Join(t.TempDir(), "state.db"), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var cluster *etcdtest.Cluster

// shared returns one cluster for the tests that do not stop members.
func shared(t testing.TB) *etcdtest.Cluster {
	if cluster == nil {
		cluster = etcdtest.Start(&noCleanup{t}, 3)
	}
	return cluster
}

var sharedDirs []string

// noCleanup hands the shared cluster's cleanup to TestMain rather than to
// the first test that uses it.
type noCleanup struct{ testing.TB }

func (n *noCleanup) Cleanup(func()) {}
func (n *noCleanup) TempDir() string {
	d, err := os.MkdirTemp("", "etcdstate-test-")
	if err != nil {
		n.Fatal(err)
	}
	sharedDirs = append(sharedDirs, d)
	return d
}

func TestRecordsKVAndSerial(t *testing.T) {
	c := shared(t)
	st := open(t, cfgOf(c, "/orch/records", 0), state.Options{Operation: "apply"})
	if len(st.Lineage()) != 32 {
		t.Fatalf("lineage %q", st.Lineage())
	}
	for i := range 3 {
		if err := st.Put(inst("web", i)); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := st.Serial(); s != 3 {
		t.Fatalf("serial %d, want 3", s)
	}
	got, err := st.Get(inst("web", 1).Addr)
	if err != nil || got.ConfigHash != inst("web", 1).ConfigHash || got.CreatedAt.IsZero() {
		t.Fatalf("get: %+v %v", got, err)
	}
	created := got.CreatedAt
	time.Sleep(10 * time.Millisecond)
	if err := st.Put(inst("web", 1)); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Get(inst("web", 1).Addr)
	if !got.CreatedAt.Equal(created) || !got.UpdatedAt.After(created) {
		t.Fatalf("created_at %v (was %v), updated_at %v", got.CreatedAt, created, got.UpdatedAt)
	}
	// An update that fails commits nothing; one that succeeds commits all.
	boom := errors.New("boom")
	err = st.Update(func(tx *state.Tx) error {
		tx.Put(inst("api", 0))
		tx.Delete(inst("web", 0).Addr)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	err = st.Update(func(tx *state.Tx) error {
		if err := tx.Put(inst("api", 0)); err != nil {
			return err
		}
		if _, err := tx.Get(inst("api", 0).Addr); err != nil {
			return fmt.Errorf("a tx sees its own put: %w", err)
		}
		return tx.Delete(inst("web", 0).Addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, i := range list {
		addrs = append(addrs, i.Addr.String())
	}
	if strings.Join(addrs, " ") != "daemon.api[0] daemon.web[1] daemon.web[2]" {
		t.Fatalf("list: %v", addrs)
	}
	if _, err := st.Get(inst("web", 0).Addr); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("deleted record: %v", err)
	}
	// KV: namespaces are isolated, even with a "/" in their name.
	a, b := st.KV("module.a/b"), st.KV("module.a")
	if err := a.Put("k1", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put("b/k1", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get("k1"); err != nil || string(v) != "v1" {
		t.Fatalf("kv get %q %v", v, err)
	}
	if l, _ := b.List(""); len(l) != 1 || l[0].Key != "b/k1" {
		t.Fatalf("kv list %v", l)
	}
	if err := a.Drop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get("k1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("dropped: %v", err)
	}
	if s, _ := st.Serial(); s != 5 {
		t.Fatalf("serial %d after 5 changing writes (KV writes do not count)", s)
	}
	// A reader sees the same, and cannot write.
	ro, err := etcdstate.Open(cfgOf(c, "/orch/records", 0), state.Options{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.Lineage() != st.Lineage() {
		t.Fatal("reader's lineage differs")
	}
	if err := ro.Update(func(state.BackendTx) (bool, error) { return true, nil }); !errors.Is(err, state.ErrReadOnly) {
		t.Fatalf("reader's write: %v", err)
	}
	// Snapshot and Load round-trip, byte for byte.
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st2 := open(t, cfgOf(c, "/orch/records-copy", 0), state.Options{Operation: "migrate", Import: true})
	if err := st2.Load(snap); err != nil {
		t.Fatal(err)
	}
	snap2, _ := st2.Snapshot()
	if snap2.Lineage != snap.Lineage || len(snap2.Instances) != len(snap.Instances) || snap2.Serial != snap.Serial+1 {
		t.Fatalf("loaded snapshot differs: %+v vs %+v", snap2, snap)
	}
	for i := range snap.Instances {
		if string(snap.Instances[i]) != string(snap2.Instances[i]) {
			t.Fatalf("record %d: %s vs %s", i, snap.Instances[i], snap2.Instances[i])
		}
	}
	// An import refuses a prefix that holds a state.
	st2.Close()
	if _, err := etcdstate.Open(cfgOf(c, "/orch/records-copy", 0), state.Options{Operation: "migrate", Import: true}, false); err == nil ||
		!strings.Contains(err.Error(), "already holds a state") {
		t.Fatalf("import over a state: %v", err)
	}
}

func TestLockWaitsOrNamesHolder(t *testing.T) {
	c := shared(t)
	cfg := cfgOf(c, "/orch/lock", 0)
	first := open(t, cfg, state.Options{Operation: "apply"})
	_, err := etcdstate.Open(cfg, state.Options{Operation: "apply"}, false)
	var le *state.LockedError
	if !errors.As(err, &le) || le.Pid != os.Getpid() || le.Operation != "apply" {
		t.Fatalf("second writer: %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("state locked by pid %d", os.Getpid())) {
		t.Fatalf("message: %v", err)
	}
	// With a timeout it waits for the holder to close.
	go func() {
		time.Sleep(300 * time.Millisecond)
		first.Close()
	}()
	second, err := etcdstate.Open(cfg, state.Options{Operation: "apply", LockTimeout: 20 * time.Second}, false)
	if err != nil {
		t.Fatal(err)
	}
	second.Close()
	// A closed writer's writes are refused.
	if err := first.Put(inst("x", 0)); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestPausedHolderIsFenced pauses the lock holder (a child process) with
// SIGSTOP past its lease, lets another writer take the lock and write,
// and resumes it: its write is refused with ErrLockLost, and nothing is
// lost or written twice.
func TestPausedHolderIsFenced(t *testing.T) {
	c := shared(t)
	prefix := "/orch/fence"
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=writer", envEndpoints+"="+strings.Join(c.Endpoints(), ","), envPrefix+"="+prefix)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	out := bufio.NewReader(stdout)
	expect := func(want string) string {
		t.Helper()
		line, err := out.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, want) {
			t.Fatalf("child said %q (%v), want %q", line, err, want)
		}
		return strings.TrimSpace(line)
	}
	expect("locked")
	io.WriteString(stdin, "daemon.child[0]\n")
	expect("ok")

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The child's lease is 1s: another writer gets the lock once it lapses.
	st, err := state.OpenBackend(filepath.Join(t.TempDir(), "state.db"), cfgOf(c, prefix, 0),
		state.Options{Operation: "apply", LockTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(inst("parent", 0)); err != nil {
		t.Fatal(err)
	}
	serial, _ := st.Serial()

	cmd.Process.Signal(syscall.SIGCONT)
	io.WriteString(stdin, "daemon.child[1]\n")
	line := expect("error")
	if !strings.Contains(line, "lock was lost") || !strings.Contains(line, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("the paused writer's error: %s", line)
	}
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, i := range list {
		addrs = append(addrs, i.Addr.String())
	}
	if strings.Join(addrs, " ") != "daemon.child[0] daemon.parent[0]" {
		t.Fatalf("records after the fenced write: %v", addrs)
	}
	if s, _ := st.Serial(); s != serial {
		t.Fatalf("serial moved from %d to %d", serial, s)
	}
	if err := st.Put(inst("parent", 1)); err != nil {
		t.Fatalf("the new holder's write: %v", err)
	}
}

// childWriter takes the lock with a 1s lease, says "locked", then puts a
// record for each address read from stdin and says "ok" or "error ...".
func childWriter() {
	cfg := state.BackendConfig{Kind: etcdstate.Kind, Endpoints: strings.Split(os.Getenv(envEndpoints), ","),
		Prefix: os.Getenv(envPrefix), LockTTL: time.Second}
	st, err := state.OpenBackend(filepath.Join(os.TempDir(), "unused-state.db"), cfg, state.Options{Operation: "apply"})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		addr, err := spec.ParseAddress(in.Text())
		if err == nil {
			i := inst("x", 0)
			i.Addr = addr
			err = st.Put(i)
		}
		if err != nil {
			fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Println("ok")
	}
	st.Close()
	os.Exit(0)
}

// TestMemberKilled: with one member of three gone, writes go on.
func TestMemberKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	st := open(t, cfgOf(c, "/orch/kill", 0), state.Options{Operation: "apply"})
	if err := st.Put(inst("a", 0)); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Stop()
	for i := 1; i < 20; i++ {
		if err := st.Put(inst("a", i)); err != nil {
			t.Fatalf("write %d with one member down: %v", i, err)
		}
	}
	if l, err := st.List(); err != nil || len(l) != 20 {
		t.Fatalf("list: %d %v", len(l), err)
	}
}

// TestQuorumLost: with two members of three gone, nothing is written
// (each write fails after RequestTimeout, changing nothing); when they
// are back, the same writer goes on.
func TestQuorumLost(t *testing.T) {
	old := etcdstate.RequestTimeout
	etcdstate.RequestTimeout = 2 * time.Second
	defer func() { etcdstate.RequestTimeout = old }()
	c := etcdtest.Start(t, 3)
	st := open(t, cfgOf(c, "/orch/quorum", 0), state.Options{Operation: "apply"})
	if err := st.Put(inst("a", 0)); err != nil {
		t.Fatal(err)
	}
	c.Members[1].Stop()
	c.Members[2].Stop()
	err := st.Put(inst("a", 1))
	if err == nil || !strings.Contains(err.Error(), "majority of the etcd members") {
		t.Fatalf("write without quorum: %v", err)
	}
	if _, err := etcdstate.Open(cfgOf(c, "/orch/quorum", 0), state.Options{Operation: "apply"}, false); err == nil {
		t.Fatal("a second writer opened without quorum")
	}
	c.Members[1].Restart(t)
	c.Members[2].Restart(t)
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var perr error
	for range 50 {
		if perr = st.Put(inst("a", 2)); perr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if perr != nil {
		t.Fatalf("write after quorum came back: %v", perr)
	}
	l, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, i := range l {
		addrs = append(addrs, i.Addr.String())
	}
	if strings.Join(addrs, " ") != "daemon.a[0] daemon.a[2]" {
		t.Fatalf("records: %v", addrs)
	}
}

// TestDeadHolderLapses: a holder killed with SIGKILL (no Close) keeps the
// lock only until its lease lapses; the next writer waiting with a
// timeout gets it then, with no force-unlock.
func TestDeadHolderLapses(t *testing.T) {
	c := shared(t)
	prefix := "/orch/dead"
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=writer", envEndpoints+"="+strings.Join(c.Endpoints(), ","), envPrefix+"="+prefix)
	cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", line)
	}
	_, err := etcdstate.Open(cfgOf(c, prefix, 0), state.Options{Operation: "apply"}, false)
	var le *state.LockedError
	if !errors.As(err, &le) || le.Pid != cmd.Process.Pid {
		t.Fatalf("while the child holds it: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	st := open(t, cfgOf(c, prefix, 0), state.Options{Operation: "apply", LockTimeout: 30 * time.Second})
	if err := st.Put(inst("after", 0)); err != nil {
		t.Fatal(err)
	}
}

// TestLockLostIsSignalled: when the lease is gone (revoked here, as etcd
// does when it lapses), LockLost is closed and writes are refused with
// ErrLockLost.
func TestLockLostIsSignalled(t *testing.T) {
	c := shared(t)
	st := open(t, cfgOf(c, "/orch/lost", 0), state.Options{Operation: "up"})
	if err := st.Put(inst("a", 0)); err != nil {
		t.Fatal(err)
	}
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/orch/lost/lock")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock key: %v", err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.LockLost():
	case <-time.After(30 * time.Second):
		t.Fatal("LockLost not closed 30s after the lease was revoked")
	}
	if err := st.Put(inst("a", 1)); !errors.Is(err, state.ErrLockLost) {
		t.Fatalf("write after the lease was revoked: %v", err)
	}
}

// TestUpdateWritesReturnsWhatCommitted: UpdateWrites on etcd returns the
// records as written (times set) and the deletions, in the order of the
// transaction; nothing when the update fails. A node of several hosts
// keeps its copy of its records from these (cmd/orch/cli nodeStore).
func TestUpdateWritesReturnsWhatCommitted(t *testing.T) {
	c := shared(t)
	st := open(t, cfgOf(c, "/orch/writes", 0), state.Options{Operation: "apply"})
	if err := st.Put(inst("web", 0)); err != nil {
		t.Fatal(err)
	}
	ws, err := st.UpdateWrites(func(tx *state.Tx) error {
		if err := tx.Put(inst("web", 1)); err != nil {
			return err
		}
		if err := tx.Delete(inst("web", 0).Addr); err != nil {
			return err
		}
		return tx.Delete(inst("web", 7).Addr) // not there: no write
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Put == nil || ws[0].Addr != inst("web", 1).Addr || ws[0].Put.UpdatedAt.IsZero() ||
		ws[1].Put != nil || ws[1].Addr != inst("web", 0).Addr {
		t.Fatalf("UpdateWrites returned %+v, want the put of web[1] then the delete of web[0]", ws)
	}
	got, err := st.Get(inst("web", 1).Addr)
	if err != nil || !got.UpdatedAt.Equal(ws[0].Put.UpdatedAt) || !got.CreatedAt.Equal(ws[0].Put.CreatedAt) {
		t.Fatalf("stored %+v (%v), returned %+v", got, err, *ws[0].Put)
	}
	boom := errors.New("boom")
	ws, err = st.UpdateWrites(func(tx *state.Tx) error {
		if err := tx.Put(inst("web", 2)); err != nil {
			return err
		}
		return boom
	})
	if err != boom || ws != nil {
		t.Fatalf("a failed UpdateWrites returned %+v, %v", ws, err)
	}
}
