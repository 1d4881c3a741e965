package engine

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/spec"
)

// inProc is an engine run in the test's process on a directory of its
// own (main.hcl), with its own state and process runtime. At cleanup the
// engine is stopped, the daemons noted with own are killed (by process
// group) and so is the log daemon.
type inProc struct {
	dir, stateDir string
	provs         executor.Providers
	st            *state.Store
	cfg           *spec.Config
	events        chan Event
	pids          []int
}

// newInProc writes config to a fresh directory's main.hcl, opens its
// state and loads it.
func newInProc(t *testing.T, config string) *inProc {
	t.Helper()
	ip := &inProc{dir: t.TempDir(), events: make(chan Event, 256)}
	if err := os.WriteFile(filepath.Join(ip.dir, "main.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ip.stateDir = filepath.Join(ip.dir, ".orch")
	ip.provs = executor.Providers{process.Kind: process.New(process.Options{SelfCommand: []string{orchBin}})}
	st, err := state.Open(filepath.Join(ip.stateDir, "state.db"), state.Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ip.st = st
	t.Cleanup(func() {
		st.Close()
		for _, pid := range ip.pids {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		processtest.RemoveCgroups(ip.stateDir)
		processtest.StopLogd(ip.stateDir)
	})
	cfg, diags := spec.Load(ip.dir, spec.Options{Schemas: ip.provs.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ip.cfg = cfg
	return ip
}

// next returns the engine's next event, noting the pid of what it says
// started (own); it fails the test, naming what it waited for, once
// deadline passes.
func (ip *inProc) next(t *testing.T, deadline <-chan time.Time, what string) Event {
	t.Helper()
	select {
	case ev := <-ip.events:
		if ev.Type == EventStarted {
			ip.own(ev.Pid)
		}
		return ev
	case <-deadline:
		t.Fatalf("no %s", what)
	}
	return Event{}
}

// own notes a daemon's pid, killed at cleanup if it still runs.
func (ip *inProc) own(pid int) {
	if pid > 0 {
		ip.pids = append(ip.pids, pid)
	}
}

// run runs an engine on opts, with what ip holds filled in where opts
// leaves it empty (Dir, Config, Load, Providers, Store, StateDir, Out),
// until stop is called, which returns Run's error; the test's cleanup
// calls it too.
func (ip *inProc) run(t *testing.T, opts Options) (eng *Engine, stop func() error) {
	t.Helper()
	opts.Dir, opts.Providers, opts.StateDir = ip.dir, ip.provs, ip.stateDir
	if opts.Config == nil {
		opts.Config = ip.cfg
	}
	if opts.Load == nil {
		cfg := opts.Config
		opts.Load = func() LoadResult { return LoadResult{Config: cfg} }
	}
	if opts.Store == nil {
		opts.Store = ip.st
	}
	if opts.Out == nil {
		opts.Out = func(ev Event) { ip.events <- ev }
	}
	eng = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var once bool
	var err error
	stop = func() error {
		if !once {
			once = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return eng, stop
}
