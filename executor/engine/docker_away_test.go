package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers"
	pbus "github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/providers/docker"
	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/spec"
)

// eventLog collects an in-process engine's events (its Out) and calls a
// hook with each one, in order, on the engine's goroutine: what the hook
// does happens before the engine goes on.
type eventLog struct {
	mu   sync.Mutex
	evs  []Event
	hook func(Event)
}

func (l *eventLog) out(ev Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	hook := l.hook
	l.mu.Unlock()
	if hook != nil {
		hook(ev)
	}
}

func (l *eventLog) setHook(h func(Event)) {
	l.mu.Lock()
	l.hook = h
	l.mu.Unlock()
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.evs...)
}

func (l *eventLog) dump() string {
	var b strings.Builder
	for _, ev := range l.all() {
		b.WriteString("  " + ev.Time.Format("15:04:05.000") + ev.String()[8:] + "\n")
	}
	return b.String()
}

// waitFor polls the events until cond holds, or fails after a generous
// minute (a deadline for waiting, not a bound on how fast it must be).
func (l *eventLog) waitFor(t *testing.T, what string, cond func([]Event) bool) []Event {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		evs := l.all()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events:\n%s", what, l.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// about says whether ev is about addr ("": the engine as a whole).
func about(ev Event, addr string) bool {
	if addr == "" {
		return ev.Addr.IsZero()
	}
	return !ev.Addr.IsZero() && ev.Addr.String() == addr
}

// countOf counts the events of type typ about addr, from the from-th on.
func countOf(evs []Event, from int, addr string, typ EventType) int {
	n := 0
	for _, ev := range evs[min(from, len(evs)):] {
		if about(ev, addr) && ev.Type == typ {
			n++
		}
	}
	return n
}

// lastOf returns the last event of type typ about addr, and whether there
// is one.
func lastOf(evs []Event, addr string, typ EventType) (Event, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if about(evs[i], addr) && evs[i].Type == typ {
			return evs[i], true
		}
	}
	return Event{}, false
}

// ourContainers lists every container, running or not, of addr in project.
func ourContainers(t *testing.T, cli *client.Client, project, addr string) []string {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "org.orch.project="+project).Add("label", "org.orch.address="+addr)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// soleContainer checks that addr has exactly one container, that it runs,
// and that it carries orch's labels; it returns its id.
func soleContainer(t *testing.T, cli *client.Client, project, addr, runtime string) string {
	t.Helper()
	ids := ourContainers(t, cli, project, addr)
	if len(ids) != 1 {
		t.Fatalf("%d containers of %s (want exactly one): %v", len(ids), addr, ids)
	}
	res, err := cli.ContainerInspect(context.Background(), ids[0], client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running {
		t.Errorf("the container of %s does not run: %+v", addr, c.State)
	}
	for k, v := range map[string]string{docker.LabelManagedBy: docker.ManagedBy, docker.LabelProject: project,
		docker.LabelAddress: addr, docker.LabelRuntime: runtime} {
		if got := c.Config.Labels[k]; got != v {
			t.Errorf("the container of %s has %s=%q, want %q", addr, k, got, v)
		}
	}
	return ids[0]
}

// TestDockerEngineAway: under orch up (the engine in this process, with
// the real process and docker providers), the Docker Engine is reached
// through a dockertest.Proxy, which the test cuts (the Engine "goes away":
// socket gone, connections and event streams broken) and restores.
//
//  1. While the Engine is away, the container of daemon.web is removed
//     behind orch's back. The engine says the runtime is unreachable,
//     keeps supervising the process daemon (killed, restarted), reports
//     web's state as unknown (not exited, not restarting), and once the
//     Engine is back says so and creates web's container again from a
//     fresh look: a new container, running, labelled as orch's, the only
//     one of its address.
//  2. The Engine goes away just as web is about to be restarted (its
//     container removed again): the start that cannot reach it is not a
//     crash (web's crash-loop limit, 2 restarts, would be spent
//     otherwise); web waits for its runtime and is created again once it
//     is back.
func TestDockerEngineAway(t *testing.T) {
	cli := dockertest.Engine(t)
	project := dockertest.Project("orch-up-away")
	dockertest.RemoveProject(t, cli, project)
	image := "orch-test/server:" + project
	dockertest.BuildImage(t, cli, dockertest.ServerContext(t, ""), image, project)
	px := dockertest.NewProxy(t)

	dir := t.TempDir()
	config := fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "away" {
  host = %q
}
daemon "web" {
  runtime = runtime.docker.away
  image   = %q
  restart {
    policy       = "always"
    backoff      = "50ms"
    max_backoff  = "200ms"
    max_restarts = 2
    window       = "10m"
  }
  stop {
    timeout = "1s"
  }
}
daemon "tick" {
  command = [%q, "-addr", "127.0.0.1:0"]
  restart {
    policy       = "always"
    backoff      = "10ms"
    max_restarts = 0
  }
}
`, project, px.Host(), image, httpdBin)
	eng, log, ctx := runAway(t, px, dir, config, nil)
	const web, tick, rt = "daemon.web", "daemon.tick", "runtime.docker.away"
	log.waitFor(t, "ready", func(evs []Event) bool { return countOf(evs, 0, "", EventReady) == 1 })
	if evs := log.all(); countOf(evs, 0, web, EventStarted) != 1 || countOf(evs, 0, tick, EventStarted) != 1 {
		t.Fatalf("not both started:\n%s", log.dump())
	}
	first := soleContainer(t, cli, project, web, rt)

	// 1. The Engine goes away; web's container is removed behind orch's
	// back meanwhile.
	mark := len(log.all())
	px.Down()
	log.waitFor(t, "the runtime said unreachable", func(evs []Event) bool { return countOf(evs, mark, rt, EventUnreachable) == 1 })
	if _, err := cli.ContainerRemove(context.Background(), first, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	// The process daemon is still supervised: killed, it is restarted.
	tickPid, _ := lastOf(log.all(), tick, EventStarted)
	if err := syscall.Kill(-tickPid.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, "tick restarted while the Engine is away", func(evs []Event) bool { return countOf(evs, mark, tick, EventStarted) == 1 })
	// What the engine says of web meanwhile: unknown, not exited, not
	// restarting; of tick: running.
	status, err := eng.Status(ctx)
	if err != nil {
		t.Fatalf("status while the Engine is away: %v", err)
	}
	for _, s := range status {
		switch s.Addr.String() {
		case web:
			if s.Observed.State != providers.StateUnknown || s.Status != executor.StatusRunning.String() {
				t.Errorf("status of web while the Engine is away: %+v; want state unknown, status running", s)
			}
		case tick:
			if s.Observed.State != providers.StateRunning || s.Restarts != 1 {
				t.Errorf("status of tick while the Engine is away: %+v; want running, 1 restart", s)
			}
		}
	}
	evs := log.all()
	for _, typ := range []EventType{EventExited, EventRestarting, EventFailed, EventStarted, EventError} {
		if n := countOf(evs, mark, web, typ); n > 0 {
			t.Errorf("%d %s events of web while the Engine is away:\n%s", n, typ, log.dump())
		}
	}
	if n := countOf(evs, mark, "", EventError); n > 0 {
		t.Errorf("%d errors while the Engine is away:\n%s", n, log.dump())
	}

	// The Engine is back: reconnected, and web is created again, once.
	px.Up()
	evs = log.waitFor(t, "web created again", func(evs []Event) bool { return countOf(evs, mark, web, EventStarted) == 1 })
	log.waitFor(t, "the runtime said reconnected", func(evs []Event) bool { return countOf(evs, mark, rt, EventReconnected) == 1 })
	if ex, ok := lastOf(evs, web, EventExited); !ok || !strings.Contains(ex.Detail, "gone") {
		t.Errorf("web's exit: %+v (want it gone)", ex)
	}
	second := soleContainer(t, cli, project, web, rt)
	if second == first {
		t.Fatal("web's container is the removed one")
	}

	// 2. The Engine goes away as web is about to be restarted: the hook
	// runs before the engine schedules the restart.
	mark = len(log.all())
	var once sync.Once
	log.setHook(func(ev Event) {
		if ev.Type == EventRestarting && ev.Addr.String() == web {
			once.Do(px.Down)
		}
	})
	if _, err := cli.ContainerRemove(context.Background(), second, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	evs = log.waitFor(t, "web waiting for its runtime, or failed", func(evs []Event) bool {
		w, ok := lastOf(evs[mark:], web, EventWaiting)
		return ok && strings.Contains(w.Detail, rt) || countOf(evs, mark, web, EventFailed) > 0
	})
	if n := countOf(evs, mark, web, EventFailed); n > 0 {
		t.Fatalf("web failed because the Engine was away:\n%s", log.dump())
	}
	if countOf(evs, mark, rt, EventUnreachable) != 1 {
		log.waitFor(t, "the runtime said unreachable", func(evs []Event) bool { return countOf(evs, mark, rt, EventUnreachable) == 1 })
	}
	log.setHook(nil)
	px.Up()
	evs = log.waitFor(t, "web created again after the second outage", func(evs []Event) bool {
		return countOf(evs, mark, web, EventStarted) == 1 && countOf(evs, mark, rt, EventReconnected) == 1
	})
	third := soleContainer(t, cli, project, web, rt)
	if third == second || third == first {
		t.Fatal("web's container is a removed one")
	}
	if n := countOf(evs, mark, web, EventFailed); n > 0 {
		t.Errorf("web failed:\n%s", log.dump())
	}
	// Its crash-loop budget is whole: two removals behind orch's back were
	// two restarts (max_restarts = 2 within 10m); a third is one too many.
	status, err = eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.Addr.String() == web && (s.Restarts != 2 || s.Observed.State != providers.StateRunning || s.Waiting != "") {
			t.Errorf("status of web: %+v; want running, 2 restarts, waiting for nothing", s)
		}
	}
	t.Logf("events:\n%s", log.dump())
}

// runAway runs orch up's engine in this process over config, written to
// dir, with the real process and docker providers (and bus, when not
// nil). Its cleanup brings the proxy up again (the engine stops the
// containers through it), stops the engine, and SIGKILLs what daemon.tick
// ran and the log daemon.
func runAway(t *testing.T, px *dockertest.Proxy, dir, config string, bus *pbus.Bus) (*Engine, *eventLog, context.Context) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	provs := executor.Providers{process.Kind: process.New(process.Options{SelfCommand: []string{orchBin}}),
		docker.Kind: docker.New(docker.Options{})}
	cfg, diags := spec.Load(dir, spec.Options{Schemas: provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	stateDir := filepath.Join(dir, ".orch")
	st, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "up"})
	if err != nil {
		t.Fatal(err)
	}
	log := &eventLog{}
	eng := New(Options{Dir: dir, Config: cfg, Providers: provs, Store: st, StateDir: stateDir, Out: log.out, Bus: bus})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		log.setHook(nil)
		px.Down() // then Up: whether a test left it down or not
		px.Up()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		st.Close()
		for _, ev := range log.all() {
			if ev.Pid > 0 && ev.Addr.String() == "daemon.tick" {
				syscall.Kill(-ev.Pid, syscall.SIGKILL)
			}
		}
		processtest.RemoveCgroups(stateDir)
		processtest.StopLogd(stateDir)
	})
	return eng, log, ctx
}
