package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

// The commands that operate on what runs: events, logs, restart, signal
// (status is in status.go). They find the agent and the state from the
// state directory (locate), so they work while the configuration on disk
// is invalid or lacks a variable's value. A NAME without a key (worker)
// addresses every instance of a counted block (worker[0], worker[1]).

// JSONLogLine is one line of `orch logs -json`.
type JSONLogLine struct {
	Address string `json:"address"`
	Line    string `json:"line"`
}

func (a *App) logsCommand() *cobra.Command {
	var (
		vf     varFlags
		follow bool
		n      int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] [-n N] [NAME...] [DIR]",
		Short: "Print the logs of daemons, jobs and modules",
		Long: `Print the last N lines (default 10; -n -1: all) of the log of each NAME
(daemon.api, job.migrate, module.counter, or a daemon's name alone: api),
taking older lines from the rotated files (.log.1, .log.2, ...) when
needed. -f then prints what is written, following the logs across
rotations, until Ctrl-C. Without a NAME, every instance's log. A NAME
without a key names every instance of a block with count or for_each
(worker: worker[0], worker[1], ...). When several logs are printed, each
line is prefixed with its instance's address. -json prints one JSON object
per line, {address, line}. The last argument is the configuration
directory when it is one and is written as a path (".", "./app",
"/srv/app"); otherwise it is a NAME.

The logs are files under <state dir>/logs/ written by orch's log daemon
(the modules' by the engine): this works the same with or without an agent
running, and while the configuration on disk is invalid. The log of a
container (runtime docker or podman) is the one its Engine keeps, read
through the Engine's API (-f follows it until the container stops or
Ctrl-C).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, dir := splitPathDir(args)
			var want []spec.Address
			for _, n := range names {
				addr, err := parseName(n)
				if err != nil {
					return err
				}
				want = append(want, addr)
			}
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			known := a.knownInstances(l, nil)
			if len(want) == 0 {
				want = loggable(known)
				if len(want) == 0 {
					return &exitError{code: ExitError, msg: "nothing has run here yet: no daemon, job or module is declared or recorded"}
				}
			}
			addrs := expand(want, known)
			ctx, stop := a.quietInterruptible()
			defer stop()
			var mu sync.Mutex
			writers := make([]*lineWriter, len(addrs))
			for i, ad := range addrs {
				writers[i] = &lineWriter{mu: &mu, w: a.Stdout, addr: ad.String(), asJSON: asJSON, prefix: len(addrs) > 1}
			}
			errs := make([]error, len(addrs))
			if follow && len(addrs) > 1 {
				var wg sync.WaitGroup
				for i, ad := range addrs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = a.logsOf(ctx, l, ad, n, follow, writers[i])
						writers[i].flush()
					}()
				}
				wg.Wait()
			} else {
				for i, ad := range addrs {
					var w io.Writer = writers[i]
					if !asJSON && len(addrs) == 1 {
						w = a.Stdout // as it is: no line to rewrite
					}
					errs[i] = a.logsOf(ctx, l, ad, n, follow, w)
					writers[i].flush()
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			if err := errors.Join(errs...); err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is written")
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "print the last `N` lines (-1: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each line as a JSON object {address, line}")
	return cmd
}

// logsOf prints the log of one instance: through its runtime's provider
// when that one keeps it (a container's), else the file under the state
// directory.
func (a *App) logsOf(ctx context.Context, l *located, addr spec.Address, n int, follow bool, w io.Writer) error {
	if ok, err := a.providerLogs(ctx, l.cfg, l.stateDir, addr, n, follow, w); ok {
		return err
	}
	path := process.LogPath(l.stateDir, addr)
	if _, err := os.Stat(path); err != nil && !follow {
		return fmt.Errorf("%s has no log yet (%s): has it been started?", addr, path)
	}
	if err := agent.Tail(ctx, path, n, follow, w); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	return nil
}

// lineWriter writes whole lines to w under a lock shared by the writers of
// one command, prefixed with the instance's address when several logs are
// printed together, or as JSON objects.
type lineWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	addr   string
	asJSON bool
	prefix bool
	buf    []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf = append(lw.buf, p...)
	for {
		i := bytes.IndexByte(lw.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := lw.emit(string(lw.buf[:i])); err != nil {
			return 0, err
		}
		lw.buf = lw.buf[i+1:]
	}
}

func (lw *lineWriter) flush() {
	if len(lw.buf) > 0 {
		lw.emit(string(lw.buf))
		lw.buf = nil
	}
}

func (lw *lineWriter) emit(line string) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	var err error
	switch {
	case lw.asJSON:
		var b []byte
		b, err = json.Marshal(JSONLogLine{Address: lw.addr, Line: line})
		if err == nil {
			_, err = fmt.Fprintf(lw.w, "%s\n", b)
		}
	case lw.prefix:
		_, err = fmt.Fprintf(lw.w, "%s | %s\n", lw.addr, line)
	default:
		_, err = fmt.Fprintln(lw.w, line)
	}
	return err
}

// JSONRestart is one element of the array `orch restart -json` prints.
type JSONRestart struct {
	Address string `json:"address"`
	// Pid is the new process's; 0 while the agent is still starting it
	// (Restarting is then true).
	Pid        int  `json:"pid,omitempty"`
	Restarting bool `json:"restarting,omitempty"`
	// Cascade, with -cascade, lists what is restarted after it.
	Cascade []string `json:"cascade,omitempty"`
}

func (a *App) restartCommand() *cobra.Command {
	var (
		vf      varFlags
		lf      lockFlags
		asJSON  bool
		cascade bool
	)
	cmd := &cobra.Command{
		Use:   "restart NAME [DIR]",
		Short: "Restart a daemon or a module, or run a job again",
		Long: `Stop daemon NAME (daemon.api, or api) with its stop signal and timeout, and
start it again. A NAME without a key restarts every instance of a block
with count or for_each (worker: worker[0], worker[1], ...), one after the
other; worker[1] only that one. When an agent (or orch up) runs for DIR, it
does this and goes on supervising the new process; its backoff and
crash-loop count start afresh, and a daemon a crash loop marked failed
runs again. The agent is found through the state directory, so this works
while the configuration on disk is invalid.

Without an agent, orch takes the state lock, stops the daemon through its
runtime, starts it with the configuration on disk (which must then be
valid), and records the new process in the state. -json prints an array
of {address, pid}.

Under an agent (or orch up), a job NAME (job.migrate) runs again; orch
restart answers once it has completed, or fails naming how it ended.
-cascade then restarts everything that depends on NAME, directly or
through others, each once all of its dependencies among them are ready
again (a migration run again, then the app instances that depend on it,
one at a time, then the proxy in front of them); a dependency that does not become ready
again (a failed job) holds back what depends on it. NAME may be a block
of several instances: one cascade restarts them one at a time, then what
depends on any of them, each once. -cascade needs the agent.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, dir := splitDir(args, 1)
			addr, err := parseName(names[0])
			if err != nil {
				return err
			}
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			var out []JSONRestart
			defer func() {
				if asJSON && out != nil {
					writeJSON(a.Stdout, out)
				}
			}()
			if c := a.agentOf(l); c != nil {
				ctx, stop := a.interruptible(applyNotice)
				defer stop()
				targets, err := a.instancesOf(ctx, l, c, addr)
				if err != nil {
					return err
				}
				if cascade && len(targets) > 1 {
					// One cascade of the whole block: its instances one
					// at a time, then what depends on them, each once.
					targets = []spec.Address{addr}
				}
				out = []JSONRestart{}
				for _, ad := range targets {
					r, err := c.Restart(ctx, ad.String(), cascade)
					if err != nil {
						return a.agentErr(err)
					}
					name := ad.String()
					if r.Address != "" {
						name = r.Address // of a block (-cascade): the instance restarted first
					}
					out = append(out, JSONRestart{Address: name, Pid: r.Pid, Restarting: r.Pid == 0, Cascade: r.Cascade})
					if asJSON {
						continue
					}
					verb := "restarted"
					if ad.Kind == spec.KindJob {
						verb = "ran again"
					}
					if r.Pid != 0 {
						fmt.Fprintf(a.Stdout, "%s %s [pid=%d]\n", name, verb, r.Pid)
					} else {
						fmt.Fprintf(a.Stdout, "%s restarting\n", name)
					}
					if len(r.Cascade) > 0 {
						fmt.Fprintf(a.Stdout, "then, each once what it depends on is ready again: %s\n", strings.Join(r.Cascade, ", "))
					}
				}
				return nil
			}
			if cascade {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent runs for %s: orch restart -cascade needs one (orch up %s, or orch agent %s)", dir, dir, dir)}
			}
			if l.cfg == nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent runs for %s, and without one orch restart starts %s with the configuration on disk, which does not load: fix it (orch validate %s), or run orch agent %s", dir, addr, dir, dir)}
			}
			out = []JSONRestart{}
			for _, ad := range expand([]spec.Address{addr}, a.knownInstances(l, nil)) {
				pid, err := a.restartLocal(dir, &vf, &lf, ad)
				if err != nil {
					return err
				}
				out = append(out, JSONRestart{Address: ad.String(), Pid: pid})
				if !asJSON {
					fmt.Fprintf(a.Stdout, "%s restarted [pid=%d]\n", ad, pid)
				}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {address, pid}")
	cmd.Flags().BoolVar(&cascade, "cascade", false, "then restart what depends on NAME, in dependency order (needs an agent)")
	return cmd
}

// restartLocal is orch restart without an agent: stop, then a one-change
// start through the executor, which records the new handle. It returns the
// new pid.
func (a *App) restartLocal(dir string, vf *varFlags, lf *lockFlags, addr spec.Address) (int, error) {
	switch addr.Kind {
	case spec.KindDaemon:
	case spec.KindModule:
		return 0, &exitError{code: ExitError, msg: fmt.Sprintf("%s: no agent runs for this directory, and %s", addr, unhosted)}
	default:
		return 0, &exitError{code: ExitError, msg: fmt.Sprintf("%s is a %s: only daemons and modules can be restarted", addr, addr.Kind)}
	}
	s, err := a.open(dir, vf, lf, "restart")
	if err != nil {
		return 0, err
	}
	defer s.close()
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	p, err := a.plan(ctx, s, false)
	if err != nil {
		return 0, err
	}
	c := p.Change(addr)
	if c == nil || c.Resource == nil || c.Desired == nil {
		return 0, &exitError{code: ExitError, msg: fmt.Sprintf("%s is not declared in %s", addr, s.cfg.Dir)}
	}
	rec, err := s.store.Get(addr)
	if err != nil {
		return 0, &exitError{code: ExitError, msg: fmt.Sprintf("%s has not been applied yet: run orch apply", addr)}
	}
	prov := s.provs[rec.Runtime.Type]
	if prov == nil {
		return 0, &exitError{code: ExitError, msg: fmt.Sprintf("%s runs on %s, which this orch does not have", addr, rec.Runtime)}
	}
	rt := runtimeOf(s.cfg, rec.Runtime)
	if len(rec.Handle) > 0 {
		// Stopped as it was applied: an edit of its stop block that is
		// not applied yet does not change how it is stopped.
		var applied *planner.Snapshot
		if snap, err := planner.DecodeSnapshot(rec.Config); err == nil {
			applied = snap
		}
		sig, timeout := executor.StopSettings(applied)
		if _, err := prov.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: addr, Handle: rec.Handle,
			Signal: sig, Timeout: timeout}); err != nil {
			return 0, &exitError{code: ExitError, msg: fmt.Sprintf("stopping %s: %s", addr, err)}
		}
	}
	start := planner.Restart(c.Resource, c.Desired,
		&planner.Stored{Addr: addr, Runtime: rec.Runtime, ConfigHash: rec.ConfigHash, Handle: rec.Handle, Status: planner.ParseStatus(rec.Status)}, planner.Reason{Kind: planner.ReasonRestartRequested})
	start.ConfigHash = p.ConfigHash
	ex := &executor.Executor{Providers: s.provs, Store: s.store, Parallelism: 1, Project: s.cfg.Project.Name, StateDir: s.stateDir}
	res, err := ex.Apply(context.WithoutCancel(ctx), s.cfg, start)
	if err != nil {
		return 0, &exitError{code: ExitError, msg: err.Error()}
	}
	if len(res.Diagnostics) > 0 {
		a.writeDiags(res.Diagnostics, s.res.files)
		return 0, silentFailure()
	}
	return res.Outcomes[0].Pid, nil
}

// JSONSignal is one element of the array `orch signal -json` prints.
type JSONSignal struct {
	Address string `json:"address"`
	Signal  string `json:"signal"`
}

func (a *App) signalCommand() *cobra.Command {
	var (
		vf       varFlags
		asJSON   bool
		mainOnly bool
	)
	cmd := &cobra.Command{
		Use:   "signal NAME SIGNAL [DIR]",
		Short: "Send a signal to a daemon",
		Long: `Send SIGNAL (HUP, SIGHUP, usr1, ...) to daemon NAME (daemon.api, or api): to
its whole process group, for the process runtime. A NAME without a key
signals every instance of a block with count or for_each (worker:
worker[0], worker[1], ...). Through the agent (or orch up) when one runs
for DIR, else straight through the daemon's runtime; either way the pid is
checked to still be the daemon's first. Both find the daemon from the state
directory, so this works while the configuration on disk is invalid.
The signal changes nothing in orch's state; a daemon that exits because of
it is handled by its restart policy when an agent runs. -json prints an
array of {address, signal}.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, dir := splitDir(args, 2)
			addr, err := parseName(names[0])
			if err != nil {
				return err
			}
			sig, err := spec.ParseSignal(names[1])
			if err != nil {
				return usageError{err}
			}
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			ctx, stop := a.interruptible(applyNotice)
			defer stop()
			out := []JSONSignal{}
			c := a.agentOf(l)
			targets, err := a.instancesOf(ctx, l, c, addr)
			if err != nil {
				return err
			}
			for _, ad := range targets {
				if c != nil {
					if err := c.SignalMain(ctx, ad.String(), sig.Name, mainOnly); err != nil {
						return a.agentErr(err)
					}
				} else if err := a.signalLocal(ctx, l, ad, sig, mainOnly); err != nil {
					return err
				}
				out = append(out, JSONSignal{Address: ad.String(), Signal: sig.Name})
				if !asJSON {
					fmt.Fprintf(a.Stdout, "%s sent to %s\n", sig.Name, ad)
				}
			}
			if asJSON {
				return writeJSON(a.Stdout, out)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {address, signal}")
	cmd.Flags().BoolVar(&mainOnly, "main", false, "signal the daemon's main process only, not its whole process group")
	return cmd
}

func (a *App) signalLocal(ctx context.Context, l *located, addr spec.Address, sig spec.Signal, mainOnly bool) error {
	insts, err := l.recorded()
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	for _, in := range insts {
		if in.Addr != addr {
			continue
		}
		if len(in.Handle) == 0 {
			break
		}
		prov, ok := a.providerSet()[in.Runtime.Type].(providers.Signaler)
		if !ok {
			return &exitError{code: ExitError, msg: fmt.Sprintf("the runtime of %s cannot send signals", addr)}
		}
		if _, err := prov.Signal(ctx, providers.SignalRequest{Runtime: runtimeOf(l.cfg, in.Runtime), Addr: addr, Handle: in.Handle, Signal: sig, MainOnly: mainOnly}); err != nil {
			return &exitError{code: ExitError, msg: err.Error()}
		}
		return nil
	}
	return &exitError{code: ExitError, msg: fmt.Sprintf("%s is not running (nothing recorded)", addr)}
}

// splitPathDir splits the arguments of a command taking names and an
// optional directory: the last argument is the directory when it is
// written as a path (".", "..", or with a '/') and is a directory.
func splitPathDir(args []string) ([]string, string) {
	if n := len(args); n > 0 {
		last := args[n-1]
		if last == "." || last == ".." || strings.Contains(last, "/") {
			if st, err := os.Stat(last); err == nil && st.IsDir() {
				return args[:n-1], last
			}
		}
	}
	return args, "."
}

// loggable is every instance in known that keeps a log (daemons, jobs,
// modules), sorted, without duplicates.
func loggable(known []spec.Address) []spec.Address {
	seen := map[spec.Address]bool{}
	var out []spec.Address
	for _, a := range known {
		if seen[a] || (a.Kind != spec.KindDaemon && a.Kind != spec.KindJob && a.Kind != spec.KindModule) {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
