package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// cgroupRel is pid's path in the unified cgroup hierarchy.
func cgroupRel(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return rel
		}
	}
	return ""
}

// daemonCgroup is the cgroup the provider made for the daemon pid, nil
// when it has none (a daemon's cgroup is in a project cgroup "orch-*"
// below the test's own).
func daemonCgroup(pid int) *cgroup.Group {
	h := cgroup.Detect()
	rel, own := cgroupRel(strconv.Itoa(pid)), cgroupRel("self")
	if !h.Usable() || rel == "" || own == "" || !strings.HasPrefix(filepath.Base(filepath.Dir(rel)), "orch-") {
		return nil
	}
	rest, ok := strings.CutPrefix(rel, strings.TrimSuffix(own, "/")+"/")
	if !ok {
		return nil
	}
	return &cgroup.Group{Path: filepath.Join(h.Unified, rest)}
}

// killGroup SIGKILLs the process group pgid and removes the cgroup of its
// leader, which the provider made: tests that end their daemons so leave
// no cgroup behind.
func killGroup(pgid int) {
	g := daemonCgroup(pgid)
	syscall.Kill(-pgid, syscall.SIGKILL)
	if g != nil {
		g.Remove()
	}
}

func removeCgroupAtCleanup(t testing.TB, pid int) {
	if g := daemonCgroup(pid); g != nil {
		t.Cleanup(func() { g.Remove() })
	}
}

// needCgroups skips (fails under CI) where the host gives daemons no
// cgroup.
func needCgroups(t *testing.T) *cgroup.Host {
	t.Helper()
	h := cgroup.Detect()
	if !h.Usable() {
		if os.Getenv("CI") != "" {
			t.Fatalf("no writable cgroup on this CI machine: %s", h.Why)
		}
		t.Skipf("no writable cgroup: %s", h.Why)
	}
	return h
}

func procState(pid int) byte {
	st, _, _, _, _ := stat(pid)
	return st
}

// grandchildDaemon is a daemon whose child leaves its session and process
// group (setsid) and writes its pid to a file.
func grandchildDaemon(t *testing.T, name string) (*spec.Resource, func() int) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	r := res(name, "sh", "-c", "setsid sh -c 'echo $$ > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; exec sleep 600' & exec sleep 600")
	r.Stop = spec.Stop{Signal: spec.SIGTERM, Timeout: 5 * time.Second}
	return r, func() int {
		var gc int
		if !poll(10*time.Second, func() bool {
			b, _ := os.ReadFile(pidFile)
			gc, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return gc > 0
		}) {
			t.Fatal("the grandchild never wrote its pid")
		}
		t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
		if _, _, sid, _, _ := stat(gc); sid != gc {
			t.Fatalf("grandchild %d is not in a session of its own (sid %d)", gc, sid)
		}
		return gc
	}
}

// TestDestroyKillsSetsidGrandchild: stop and delete (what orch destroy
// does) leave nothing of a daemon whose grandchild left its process group,
// and no cgroup.
func TestDestroyKillsSetsidGrandchild(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	r, grandchild := grandchildDaemon(t, "forker")
	h, hi := e.start(r)
	gc := grandchild()
	if hi.Cgroup == nil {
		t.Fatal("no cgroup in the handle")
	}
	if got := daemonCgroup(gc); got == nil || got.Path != hi.Cgroup.Path {
		t.Fatalf("grandchild in cgroup %v, want %s", got, hi.Cgroup.Path)
	}
	ctx := context.Background()
	if _, err := e.p.Stop(ctx, providers.StopRequest{Addr: r.Addr, Handle: h, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Delete(ctx, providers.DeleteRequest{Addr: r.Addr, Handle: h}); err != nil {
		t.Fatal(err)
	}
	if st := procState(gc); st != 0 && st != 'Z' {
		t.Fatalf("grandchild %d survived destroy (state %c)", gc, st)
	}
	if hi.Cgroup.Exists() {
		t.Fatalf("cgroup %s left behind", hi.Cgroup.Path)
	}
}

// TestDestroyWithoutCgroupsMissesGrandchild is the fallback, and why
// cgroups matter: held by its process group only, the grandchild escapes.
func TestDestroyWithoutCgroupsMissesGrandchild(t *testing.T) {
	e := newEnv(t, process.Options{NoCgroups: true})
	if c := e.p.Containment(); !strings.Contains(c, "process groups") {
		t.Fatalf("containment %q", c)
	}
	r, grandchild := grandchildDaemon(t, "forker")
	h, hi := e.start(r)
	gc := grandchild()
	if hi.Cgroup != nil {
		t.Fatalf("a cgroup with cgroups off: %+v", hi.Cgroup)
	}
	if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: h, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout}); err != nil {
		t.Fatal(err)
	}
	if st := procState(gc); st == 0 || st == 'Z' {
		t.Fatal("the grandchild is gone without a cgroup: this test no longer shows what cgroups add")
	}
}

// TestAdoptedStopUsesCgroup: an orch started later (a new Provider) stops
// a daemon it did not start through the cgroup its handle names.
func TestAdoptedStopUsesCgroup(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	r, grandchild := grandchildDaemon(t, "adopted")
	_, hi := e.start(r)
	gc := grandchild()
	later := process.New(process.Options{})
	got, err := later.Adopt(context.Background(), providers.AdoptRequest{StateDir: e.state})
	if err != nil || len(got.Objects) != 1 {
		t.Fatalf("adopt: %+v %v", got, err)
	}
	ahi, err := process.ParseHandle(got.Objects[0].Handle)
	if err != nil || ahi.Cgroup == nil || ahi.Cgroup.Path != hi.Cgroup.Path {
		t.Fatalf("adopted handle %+v (%v), want cgroup %s", ahi, err, hi.Cgroup.Path)
	}
	if _, err := later.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: got.Objects[0].Handle, Signal: r.Stop.Signal, Timeout: r.Stop.Timeout}); err != nil {
		t.Fatal(err)
	}
	if st := procState(gc); st != 0 && st != 'Z' {
		t.Fatalf("grandchild %d survived the adopted stop", gc)
	}
	if hi.Cgroup.Exists() {
		t.Fatal("cgroup left behind")
	}
}

// TestPauseFreezes: SIGSTOP through the provider (orch pause) freezes the
// cgroup: the processes are frozen, not stopped by a signal, and count no
// further; SIGCONT thaws them.
func TestPauseFreezes(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	out := filepath.Join(t.TempDir(), "n")
	r := res("counter", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > "+out+"; done")
	h, hi := e.start(r)
	if !poll(10*time.Second, func() bool { _, err := os.Stat(out); return err == nil }) {
		t.Fatal("the counter never counted")
	}
	ctx := context.Background()
	stop, _ := spec.ParseSignal("STOP")
	cont, _ := spec.ParseSignal("CONT")
	if _, err := e.p.Signal(ctx, providers.SignalRequest{Addr: r.Addr, Handle: h, Signal: stop}); err != nil {
		t.Fatal(err)
	}
	if !hi.Cgroup.Frozen() {
		t.Fatal("cgroup not frozen")
	}
	if st := procState(hi.Pid); st == 'T' || st == 't' {
		t.Fatalf("process state %c: stopped by a signal, not frozen", st)
	}
	a, _ := os.ReadFile(out)
	time.Sleep(100 * time.Millisecond)
	b, _ := os.ReadFile(out)
	if string(a) != string(b) {
		t.Fatalf("a frozen counter counted on: %q -> %q", a, b)
	}
	resp, _ := e.p.Observe(ctx, providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{r.Addr: h}})
	if resp.Objects[r.Addr].State != providers.StateRunning {
		t.Fatalf("a frozen daemon observed %+v", resp.Objects[r.Addr])
	}
	if _, err := e.p.Signal(ctx, providers.SignalRequest{Addr: r.Addr, Handle: h, Signal: cont}); err != nil {
		t.Fatal(err)
	}
	if hi.Cgroup.Frozen() {
		t.Fatal("still frozen after SIGCONT")
	}
	if !poll(10*time.Second, func() bool { c, _ := os.ReadFile(out); return len(c) > 0 && string(c) != string(b) }) {
		t.Fatal("the thawed counter does not count")
	}
	// Stop works on a frozen daemon too.
	if _, err := e.p.Signal(ctx, providers.SignalRequest{Addr: r.Addr, Handle: h, Signal: stop}); err != nil {
		t.Fatal(err)
	}
	sresp, err := e.p.Stop(ctx, providers.StopRequest{Addr: r.Addr, Handle: h, Signal: spec.SIGTERM, Timeout: 5 * time.Second})
	if err != nil || sresp.Killed {
		t.Fatalf("stop of a frozen daemon: %+v %v", sresp, err)
	}
}

// TestMemoryMaxOOM: a daemon over memory_max is killed by the kernel and
// ends with the reason "out of memory".
func TestMemoryMaxOOM(t *testing.T) {
	h := needCgroups(t)
	e := newEnv(t, process.Options{})
	r := res("hog", "sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	r.Resources.MemoryMax = 16 << 20
	if err := h.Check(cgroup.Limits{MemoryMax: r.Resources.MemoryMax}); err != nil {
		t.Fatal(err)
	}
	hd, hi := e.start(r)
	w, err := e.p.Watch(context.Background(), providers.WatchRequest{Addr: r.Addr, Handle: hd})
	if err != nil {
		t.Fatal(err)
	}
	var obs providers.Observed
	select {
	case obs = <-w.Exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the hog was not killed; cgroup %+v", hi.Cgroup)
	}
	if obs.Signal != "SIGKILL" || !strings.Contains(obs.Error, "out of memory") {
		t.Fatalf("the hog ended %+v, want SIGKILL with out of memory", obs)
	}
	if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: hd}); err != nil {
		t.Fatal(err)
	}
	if hi.Cgroup.Exists() {
		t.Fatal("cgroup left behind")
	}
}

// TestResourcesWithoutCgroup: limits that no cgroup can enforce are an
// error naming the daemon and the resources attribute; nothing starts.
func TestResourcesWithoutCgroup(t *testing.T) {
	e := newEnv(t, process.Options{NoCgroups: true})
	r := res("limited", "sleep", "600")
	r.Resources.MemoryMax = 64 << 20
	_, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state})
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Attr != "resources" || !strings.Contains(err.Error(), "daemon.limited") || !strings.Contains(err.Error(), "cgroup") {
		t.Fatalf("start = %v, want a resources error naming daemon.limited", err)
	}
	if _, err := os.Stat(filepath.Join(e.state, "logs", "daemon.limited.log")); err == nil {
		t.Fatal("a log was made for a daemon that must not start")
	}
}

// TestObserveUsage: a running daemon's memory and CPU use are observed.
func TestObserveUsage(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	r := res("busy", "sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 600")
	h, _ := e.start(r)
	var o providers.Observed
	if !poll(20*time.Second, func() bool {
		resp, _ := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{r.Addr: h}})
		o = resp.Objects[r.Addr]
		return o.Memory > 0 && o.CPU >= 10*time.Millisecond
	}) {
		t.Fatalf("observed %+v", o)
	}
	// A plan asks for the state alone (NoUsage): the cgroup is not read.
	resp, err := e.p.Observe(context.Background(), providers.ObserveRequest{Handles: map[spec.Address]providers.Handle{r.Addr: h}, NoUsage: true})
	if err != nil {
		t.Fatal(err)
	}
	if o := resp.Objects[r.Addr]; o.State != providers.StateRunning || o.Memory != 0 || o.CPU != 0 {
		t.Fatalf("observed with NoUsage: %+v", o)
	}
}

// BenchmarkStartCgroup is BenchmarkStart with cgroups: their cost per
// native daemon start is the difference.
func BenchmarkStartCgroup(b *testing.B) {
	if !cgroup.Detect().Usable() {
		b.Skip("no writable cgroup")
	}
	benchStart(b, process.Options{})
}

func BenchmarkStartNoCgroup(b *testing.B) { benchStart(b, process.Options{NoCgroups: true}) }

func benchStart(b *testing.B, opts process.Options) {
	e := &env{p: process.New(opts), state: b.TempDir()}
	b.Cleanup(func() { stopLogd(nil, e.state) })
	r := res("bench", "sleep", "600")
	kill, _ := spec.ParseSignal("KILL")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := e.p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: e.state})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: r.Addr, Handle: resp.Handle, Signal: kill, Timeout: 5 * time.Second}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStartSweepsEarlierCgroupsOfItsName: the empty cgroup an earlier
// start of a name left (its daemon exited while no orch ran) is removed by
// the name's next start, by another orch (Provider); one of another name
// is left for that name's start.
func TestStartSweepsEarlierCgroupsOfItsName(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	_, hi := e.start(res("a", "sleep", "60"))
	g := daemonCgroup(hi.Pid)
	if g == nil {
		t.Skip("the daemon's cgroup is not below this process's")
	}
	parent := filepath.Dir(g.Path)
	staleB := filepath.Join(parent, "daemon.b.0123456789abcdef")
	staleC := filepath.Join(parent, "daemon.c.0123456789abcdef")
	for _, d := range []string{staleB, staleC} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(d) })
	}
	e2 := &env{t: t, p: process.New(process.Options{}), state: e.state}
	e2.start(res("b", "sleep", "60"))
	if _, err := os.Stat(staleB); !os.IsNotExist(err) {
		t.Errorf("the earlier cgroup of daemon.b is still there after its start: %v", err)
	}
	if _, err := os.Stat(staleC); err != nil {
		t.Errorf("the start of daemon.b removed daemon.c's cgroup: %v", err)
	}
	e2.start(res("c", "sleep", "60"))
	if _, err := os.Stat(staleC); !os.IsNotExist(err) {
		t.Errorf("the earlier cgroup of daemon.c is still there after its start: %v", err)
	}
}

// TestProjectCgroupGoesWithLastStop: stopping one of two daemons leaves
// the project's cgroup directory (the other's is in it); stopping the
// last removes it, and with it nothing of the project is left.
func TestProjectCgroupGoesWithLastStop(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	ha, hia := e.start(res("a", "sleep", "60"))
	hb, hib := e.start(res("b", "sleep", "60"))
	ga, gb := daemonCgroup(hia.Pid), daemonCgroup(hib.Pid)
	if ga == nil || gb == nil {
		t.Skip("the daemons' cgroups are not below this process's")
	}
	parent := filepath.Dir(ga.Path)
	stop := func(name string, h providers.Handle) {
		t.Helper()
		req := providers.StopRequest{Addr: addr(name), Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second}
		if _, err := e.p.Stop(context.Background(), req); err != nil {
			t.Fatalf("stop %s: %v", name, err)
		}
	}
	stop("a", ha)
	if _, err := os.Stat(ga.Path); !os.IsNotExist(err) {
		t.Fatalf("daemon.a's cgroup is still there after its stop: %v", err)
	}
	if _, err := os.Stat(gb.Path); err != nil {
		t.Fatalf("daemon.b's cgroup went with daemon.a's stop: %v", err)
	}
	stop("b", hb)
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("the project's cgroup %s is still there after its last daemon's stop: %v", parent, err)
	}
}

// TestStoppedCgroupRemovedAsReaped: the empty cgroup of a daemon told to
// stop (Presignal) is removed as the daemon is reaped, before its Stop
// runs; one that something escaped into is left to Stop, which kills
// what is in it. Either way Stop succeeds and nothing of the project is
// left.
func TestStoppedCgroupRemovedAsReaped(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	h, hi := e.start(res("plain", "sleep", "600"))
	esc, grandchildOf := grandchildDaemon(t, "esc")
	he, hie := e.start(esc)
	g, ge := daemonCgroup(hi.Pid), daemonCgroup(hie.Pid)
	if g == nil || ge == nil {
		t.Skip("the daemons' cgroups are not below this process's")
	}
	grandchild := grandchildOf()
	reqs := []providers.StopRequest{
		{Addr: addr("plain"), Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second},
		{Addr: addr("esc"), Handle: he, Signal: spec.SIGTERM, Timeout: 10 * time.Second},
	}
	e.p.Presignal(context.Background(), reqs)
	if !poll(10*time.Second, func() bool { _, err := os.Stat(g.Path); return os.IsNotExist(err) }) {
		t.Fatalf("daemon.plain's cgroup %s is still there after it ended", g.Path)
	}
	if !waitGone(hie.Pid, 10*time.Second) {
		t.Fatalf("daemon.esc (pid %d) still runs after its SIGTERM", hie.Pid)
	}
	if _, err := os.Stat(ge.Path); err != nil {
		t.Fatalf("daemon.esc's cgroup, where its grandchild still runs, was removed: %v", err)
	}
	for _, r := range reqs {
		if _, err := e.p.Stop(context.Background(), r); err != nil {
			t.Fatalf("stop %s: %v", r.Addr, err)
		}
	}
	if !waitGone(grandchild, 10*time.Second) {
		t.Errorf("the setsid grandchild (pid %d) outlived its daemon's stop", grandchild)
	}
	if _, err := os.Stat(filepath.Dir(g.Path)); !os.IsNotExist(err) {
		t.Errorf("the project's cgroup is still there after its last daemon's stop: %v", err)
	}
}

// TestProjectCgroupGoesWithConcurrentStops: daemons of a project stopped
// all at once, some with a cgroup that something escaped into (removed by
// their Stop) and some without (removed as they are reaped), leave no
// project cgroup behind, whichever removal comes last.
func TestProjectCgroupGoesWithConcurrentStops(t *testing.T) {
	needCgroups(t)
	for round := range 6 {
		e := newEnv(t, process.Options{})
		var reqs []providers.StopRequest
		var parent string
		for i := range 6 {
			name := fmt.Sprintf("r%dd%d", round, i)
			r := res(name, "sleep", "600")
			var grandchild func() int
			if i%2 == 1 {
				r, grandchild = grandchildDaemon(t, name)
			}
			h, hi := e.start(r)
			if grandchild != nil {
				grandchild()
			}
			g := daemonCgroup(hi.Pid)
			if g == nil {
				t.Skip("the daemons' cgroups are not below this process's")
			}
			parent = filepath.Dir(g.Path)
			reqs = append(reqs, providers.StopRequest{Addr: addr(name), Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second})
		}
		e.p.Presignal(context.Background(), reqs)
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.p.Stop(context.Background(), r); err != nil {
					t.Errorf("stop %s: %v", r.Addr, err)
				}
			}()
		}
		wg.Wait()
		if _, err := os.Stat(parent); !os.IsNotExist(err) {
			left, _ := os.ReadDir(parent)
			t.Fatalf("round %d: the project's cgroup %s is still there after every daemon's stop (%d entries): %v", round, parent, len(left), err)
		}
	}
}

// TestTidyLater: under TidyLater (orch up's shutdown), the registry lines
// of the deletes that follow the stops are written by flush, in one
// append, and the empty cgroups of the daemons its stops end are not
// removed by the stops: flush hands
// them to the log daemon, which removes them, and the project's, once the
// connection that handed them over ends (orch's exit). A cgroup that a
// grandchild escaped into is killed and removed by flush itself, before
// it returns, and so is every cgroup when no log daemon runs to take
// them. A stop after flush removes its cgroup itself, as before.
func TestTidyLater(t *testing.T) {
	needCgroups(t)
	e := newEnv(t, process.Options{})
	var hs []providers.Handle
	var gs []*cgroup.Group
	for _, n := range []string{"a", "b", "c"} {
		h, hi := e.start(res(n, "sleep", "600"))
		g := daemonCgroup(hi.Pid)
		if g == nil {
			t.Skip("the daemons' cgroups are not below this process's")
		}
		hs, gs = append(hs, h), append(gs, g)
	}
	parent := filepath.Dir(gs[0].Path)
	gone := func(p string) bool { _, err := os.Stat(p); return os.IsNotExist(err) }

	flush := e.p.TidyLater(e.state)
	var reqs []providers.StopRequest
	for i, n := range []string{"a", "b", "c"} {
		reqs = append(reqs, providers.StopRequest{Addr: addr(n), Handle: hs[i], Signal: spec.SIGTERM, Timeout: 10 * time.Second})
	}
	e.p.Presignal(context.Background(), reqs)
	goneLines := func() int {
		b, _ := os.ReadFile(filepath.Join(e.state, "logs", "logd.registry"))
		return strings.Count(string(b), `"gone":true`)
	}
	for _, r := range reqs {
		if _, err := e.p.Stop(context.Background(), r); err != nil {
			t.Fatalf("stop %s: %v", r.Addr, err)
		}
		if _, err := e.p.Delete(context.Background(), providers.DeleteRequest{Addr: r.Addr, Handle: r.Handle}); err != nil {
			t.Fatalf("delete %s: %v", r.Addr, err)
		}
	}
	if n := goneLines(); n != 0 {
		t.Fatalf("the registry has %d gone lines before flush, want them written by flush", n)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if n := goneLines(); n != 3 {
		t.Fatalf("the registry has %d gone lines after flush, want 3", n)
	}
	for _, g := range gs {
		if gone(g.Path) {
			t.Fatalf("%s was removed by its stop under TidyLater", g.Path)
		}
		if g.Populated() {
			t.Fatalf("%s holds a process after its stop", g.Path)
		}
	}
	process.EndLogdConns(e.p)
	if !poll(10*time.Second, func() bool { return gone(gs[0].Path) && gone(gs[1].Path) && gone(gs[2].Path) && gone(parent) }) {
		t.Fatalf("the log daemon did not remove the cgroups handed to it (or the project's %s) within 10 s of the connection's end", parent)
	}

	stop := func(n string, h providers.Handle) {
		t.Helper()
		if _, err := e.p.Stop(context.Background(), providers.StopRequest{Addr: addr(n), Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second}); err != nil {
			t.Fatalf("stop %s: %v", n, err)
		}
	}
	// stoppedUnderTidyLater starts daemon n and stops it under TidyLater:
	// its cgroup, and the flush to call.
	stoppedUnderTidyLater := func(n string) (*cgroup.Group, func() error) {
		t.Helper()
		h, hi := e.start(res(n, "sleep", "600"))
		g := daemonCgroup(hi.Pid)
		flush := e.p.TidyLater(e.state)
		stop(n, h)
		return g, flush
	}

	// A grandchild that left its daemon's process group: killed and its
	// cgroup removed when flush returns; a stop after flush removes its
	// cgroup itself.
	esc, grandchildOf := grandchildDaemon(t, "esc")
	he, hie := e.start(esc)
	hp, hip := e.start(res("plain", "sleep", "600"))
	ge, gp := daemonCgroup(hie.Pid), daemonCgroup(hip.Pid)
	grandchild := grandchildOf()
	flush = e.p.TidyLater(e.state)
	stop("esc", he)
	if !alive(grandchild) {
		t.Fatalf("the grandchild (pid %d) was killed by the stop itself under TidyLater", grandchild)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if alive(grandchild) {
		t.Fatalf("the setsid grandchild (pid %d) still runs after flush", grandchild)
	}
	if !gone(ge.Path) {
		t.Fatalf("the escaped daemon's cgroup %s is still there after flush", ge.Path)
	}
	stop("plain", hp)
	if !gone(gp.Path) || !gone(filepath.Dir(gp.Path)) {
		t.Fatalf("a stop after flush left its cgroup %s (or the project's)", gp.Path)
	}

	// The log daemon told to stop (SIGTERM) while orch's connection is
	// still open: it removes what it was handed before it exits.
	gt, flush := stoppedUnderTidyLater("term")
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if gone(gt.Path) {
		t.Fatalf("%s was removed before the connection ended", gt.Path)
	}
	stopLogd(t, e.state)
	if !gone(gt.Path) || !gone(filepath.Dir(gt.Path)) {
		t.Fatalf("the log daemon stopped by SIGTERM left %s (or the project's cgroup) it had been handed", gt.Path)
	}

	// No log daemon to hand them to (it was killed): flush removes them
	// itself before it returns.
	gl, flush := stoppedUnderTidyLater("lone")
	stopLogd(t, e.state)
	if gone(gl.Path) {
		t.Fatalf("%s was removed by its stop under TidyLater", gl.Path)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if !gone(gl.Path) || !gone(filepath.Dir(gl.Path)) {
		t.Fatalf("flush with no log daemon left %s (or the project's cgroup)", gl.Path)
	}
}
