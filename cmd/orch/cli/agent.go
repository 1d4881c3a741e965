package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

func (a *App) agentCommand() *cobra.Command {
	var (
		vf     varFlags
		lf     lockFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "agent [DIR]",
		Short: "Run the engine of orch up as a service, controlled through its socket",
		Long: `Run the same engine as orch up for DIR: apply the configuration, supervise
every daemon, apply every valid edit, and serve the agent API on the agent
socket (agent_socket, default <state dir>/agent.sock; owner-only). orch
status, events, logs, restart, signal, plan, apply and destroy talk to it.

It runs in the foreground of its own process, like dockerd: run it under
systemd, or with nohup orch agent DIR 2>agent.log &. What it does is logged
to stderr, one line per event (-json: one JSON object per line). SIGTERM or
SIGINT stops every daemon, dependents first, and exits 0.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runEngine(dirArg(args), &vf, &lf, asJSON, a.Stderr, "agent")
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "log events as JSON lines")
	return cmd
}

// agentFor returns a client of the agent (or orch up) that runs for the
// configuration in dir, or nil when none does (or the configuration does
// not load: the caller reports that itself).
func (a *App) agentFor(dir string, vf *varFlags) *agent.Client {
	res := a.loadConfig(dir, vf)
	if res.diags.HasErrors() || res.cfg == nil {
		return nil
	}
	c, err := agent.Dial(a.settings.AgentSocketFor(a.settings.StateDirFor(res.cfg)))
	if err != nil {
		return nil
	}
	// The agent plans with its own variables: it refuses when this
	// command's values differ, rather than ignore them.
	c.Variables = res.cfg.VariablesHash()
	return c
}

// agentErr turns an error of the agent's API into the command's error,
// printing the diagnostics it carries.
func (a *App) agentErr(err error) error {
	var ae *agent.APIError
	if errors.As(err, &ae) && ae.Diagnostics != "" {
		fmt.Fprintln(a.Stderr, ae.Diagnostics)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return &exitError{code: ExitError, msg: err.Error()}
}

// parseName reads NAME: an address (daemon.api, job.migrate,
// daemon.web[1]), or a daemon's name alone (api).
func parseName(s string) (spec.Address, error) {
	if !strings.Contains(s, ".") {
		s = "daemon." + s
	}
	a, err := spec.ParseAddress(s)
	if err != nil {
		return a, usageError{err}
	}
	return a, nil
}

// splitDir reads [NAME... ] [DIR] positional arguments: want names, then
// an optional directory.
func splitDir(args []string, want int) ([]string, string) {
	if len(args) > want {
		return args[:want], args[want]
	}
	return args, "."
}

// renderEvent renders an event of the API as orch up prints it, in local
// time; what it cannot read it prints as it came.
func renderEvent(raw json.RawMessage) string {
	var e engine.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return string(raw)
	}
	e.Time = e.Time.Local()
	return e.String()
}

func (a *App) eventsCommand() *cobra.Command {
	var (
		vf     varFlags
		asJSON bool
		since  string
	)
	cmd := &cobra.Command{
		Use:   "events [DIR]",
		Short: "Stream what the agent (or orch up) does and sees",
		Long: `Stream the events of the agent or orch up that runs for DIR, one per line,
until Ctrl-C: started, exited (code or signal), healthy, unhealthy,
restarting in Xs, failed, config reloaded, plan applied, adopted, ...
-json prints each as a JSON object {time, type, address, pid, exit_code,
signal, detail}. -since also prints the recent events kept by the agent
(the last 4,096) from a time (RFC 3339), a duration back from now (5m), or
all. It needs a running agent.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			c := a.agentFor(dir, &vf)
			if c == nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no agent or orch up is running for %s: start one with orch agent %s (or orch up %s)", dir, dir, dir)}
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			err := c.Events(ctx, since, func(raw json.RawMessage) error {
				var err error
				if asJSON {
					_, err = fmt.Fprintf(a.Stdout, "%s\n", raw)
				} else {
					_, err = fmt.Fprintln(a.Stdout, renderEvent(raw))
				}
				return err
			})
			if err != nil && ctx.Err() == nil {
				return a.agentErr(err)
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines")
	cmd.Flags().StringVar(&since, "since", "", "also print the kept events since `WHEN` (RFC 3339 time, duration such as 5m, or all)")
	return cmd
}

// quietInterruptible returns a context cancelled by SIGINT or SIGTERM,
// for commands that only read and stop quietly.
func (a *App) quietInterruptible() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

func (a *App) logsCommand() *cobra.Command {
	var (
		vf     varFlags
		follow bool
		n      int
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] [-n N] NAME [DIR]",
		Short: "Print a daemon's or a job's log",
		Long: `Print the last N lines (default 10; -n -1: all) of the log of NAME (daemon.api,
job.migrate, or a daemon's name alone: api), taking older lines from the
rotated files (.log.1, .log.2, ...) when needed. -f then prints what is
written, following the log across rotations, until Ctrl-C. The logs are
files under <state dir>/logs/ written by orch's log daemon: this works the
same with or without an agent running. The log of a container (runtime
docker or podman) is the one its Engine keeps, read through the Engine's
API (-f follows it until the container stops or Ctrl-C).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, dir := splitDir(args, 1)
			addr, err := parseName(names[0])
			if err != nil {
				return err
			}
			res := a.loadConfig(dir, &vf)
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() {
				return silentFailure()
			}
			ctx, stop := a.quietInterruptible()
			defer stop()
			stateDir := a.settings.StateDirFor(res.cfg)
			if ok, err := a.providerLogs(ctx, res.cfg, stateDir, addr, n, follow); ok {
				if err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				return nil
			}
			path := filepath.Join(stateDir, "logs", process.FileName(addr)+".log")
			if _, err := os.Stat(path); err != nil && !follow {
				return &exitError{code: ExitError, msg: fmt.Sprintf("%s has no log yet (%s): has it been started?", addr, path)}
			}
			if err := agent.Tail(ctx, path, n, follow, a.Stdout); err != nil && ctx.Err() == nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is written")
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "print the last `N` lines (-1: all)")
	return cmd
}

func (a *App) restartCommand() *cobra.Command {
	var (
		vf varFlags
		lf lockFlags
	)
	cmd := &cobra.Command{
		Use:   "restart NAME [DIR]",
		Short: "Restart a daemon",
		Long: `Stop daemon NAME (daemon.api, or api) with its stop signal and timeout, and
start it again. When an agent (or orch up) runs for DIR, it does this and
goes on supervising the new process; its backoff and crash-loop count
start afresh, and a daemon a crash loop marked failed runs again.
Without an agent, orch takes the state lock, stops the daemon through its
runtime, starts it with the configuration on disk, and records the new
process in the state.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, dir := splitDir(args, 1)
			addr, err := parseName(names[0])
			if err != nil {
				return err
			}
			if c := a.agentFor(dir, &vf); c != nil {
				ctx, stop := a.interruptible(applyNotice)
				defer stop()
				r, err := c.Restart(ctx, addr.String())
				if err != nil {
					return a.agentErr(err)
				}
				if r.Pid != 0 {
					fmt.Fprintf(a.Stdout, "%s restarted [pid=%d]\n", addr, r.Pid)
				} else {
					fmt.Fprintf(a.Stdout, "%s restarting\n", addr)
				}
				return nil
			}
			return a.restartLocal(dir, &vf, &lf, addr)
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	return cmd
}

// runtimeOf returns the declared runtime a, or the built-in one of that
// kind.
func runtimeOf(cfg *spec.Config, a spec.Address) *spec.Runtime {
	if cfg != nil {
		if rt := cfg.Runtime(a); rt != nil {
			return rt
		}
	}
	return &spec.Runtime{Addr: a, Kind: a.Type, Name: a.Name}
}

// restartLocal is orch restart without an agent: stop, then a one-change
// start through the executor, which records the new handle.
func (a *App) restartLocal(dir string, vf *varFlags, lf *lockFlags, addr spec.Address) error {
	switch addr.Kind {
	case spec.KindDaemon:
	case spec.KindModule:
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s: no agent runs for this directory, and %s", addr, unhosted)}
	default:
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s is a %s: only daemons and modules can be restarted", addr, addr.Kind)}
	}
	s, err := a.open(dir, vf, lf, "restart")
	if err != nil {
		return err
	}
	defer s.close()
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	p, err := a.plan(ctx, s, false)
	if err != nil {
		return err
	}
	c := p.Change(addr)
	if c == nil || c.Resource == nil || c.Desired == nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s is not declared in %s", addr, s.cfg.Dir)}
	}
	rec, err := s.store.Get(addr)
	if err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s has not been applied yet: run orch apply", addr)}
	}
	prov := s.provs[rec.Runtime.Type]
	if prov == nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s runs on %s, which this orch does not have", addr, rec.Runtime)}
	}
	rt := runtimeOf(s.cfg, rec.Runtime)
	if len(rec.Handle) > 0 {
		if _, err := prov.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: addr, Handle: rec.Handle,
			Signal: c.Resource.Stop.Signal, Timeout: c.Resource.Stop.Timeout}); err != nil {
			return &exitError{code: ExitError, msg: fmt.Sprintf("stopping %s: %s", addr, err)}
		}
	}
	start := &planner.Change{Addr: addr, Action: planner.Start, Resource: c.Resource, Desired: c.Desired,
		Prior:    &planner.Stored{Addr: addr, Runtime: rec.Runtime, ConfigHash: rec.ConfigHash, Handle: rec.Handle, Status: rec.Status},
		Observed: providers.Observed{State: providers.StateExited}, Reason: "orch restart"}
	ex := &executor.Executor{Providers: s.provs, Store: s.store, Parallelism: 1, Project: s.cfg.Project.Name, StateDir: s.stateDir}
	res, err := ex.Apply(context.WithoutCancel(ctx), s.cfg, &planner.Plan{Changes: []*planner.Change{start}, ConfigHash: p.ConfigHash})
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	if len(res.Diagnostics) > 0 {
		a.writeDiags(res.Diagnostics, s.res.files)
		return silentFailure()
	}
	fmt.Fprintf(a.Stdout, "%s restarted [pid=%d]\n", addr, res.Outcomes[0].Pid)
	return nil
}

func (a *App) signalCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "signal NAME SIGNAL [DIR]",
		Short: "Send a signal to a daemon",
		Long: `Send SIGNAL (HUP, SIGHUP, usr1, ...) to daemon NAME (daemon.api, or api): to
its whole process group, for the process runtime. Through the agent (or
orch up) when one runs for DIR, else straight through the daemon's
runtime; either way the pid is checked to still be the daemon's first.
The signal changes nothing in orch's state; a daemon that exits because of
it is handled by its restart policy when an agent runs.`,
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
			ctx, stop := a.interruptible(applyNotice)
			defer stop()
			if c := a.agentFor(dir, &vf); c != nil {
				if err := c.Signal(ctx, addr.String(), sig.Name); err != nil {
					return a.agentErr(err)
				}
			} else if err := a.signalLocal(ctx, dir, &vf, addr, sig); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "%s sent to %s\n", sig.Name, addr)
			return nil
		},
	}
	vf.register(cmd.Flags())
	return cmd
}

func (a *App) signalLocal(ctx context.Context, dir string, vf *varFlags, addr spec.Address, sig spec.Signal) error {
	res := a.loadConfig(dir, vf)
	a.writeDiags(res.diags, res.files)
	if res.diags.HasErrors() {
		return silentFailure()
	}
	stateDir := a.settings.StateDirFor(res.cfg)
	st, err := state.OpenReadOnly(filepath.Join(stateDir, "state.db"))
	if err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s has not been applied yet: %s", addr, err)}
	}
	rec, err := st.Get(addr)
	st.Close()
	if err != nil || len(rec.Handle) == 0 {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s is not running (nothing recorded)", addr)}
	}
	prov, ok := a.providerSet()[rec.Runtime.Type].(providers.Signaler)
	if !ok {
		return &exitError{code: ExitError, msg: fmt.Sprintf("the runtime of %s cannot send signals", addr)}
	}
	if _, err := prov.Signal(ctx, providers.SignalRequest{Runtime: runtimeOf(res.cfg, rec.Runtime), Addr: addr, Handle: rec.Handle, Signal: sig}); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	return nil
}

// statusViaAgent is orch status while an agent runs.
func (a *App) statusViaAgent(c *agent.Client, asJSON bool) error {
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	st, err := c.Status(ctx)
	if err != nil {
		return a.agentErr(err)
	}
	if asJSON {
		lines := make([]JSONStatus, 0, len(st.Instances))
		for _, in := range st.Instances {
			restarts := in.Restarts
			l := JSONStatus{Address: in.Address, Runtime: in.Runtime, State: in.State, Status: in.Status, Pid: in.Pid,
				ID: in.ID, StartedAt: in.StartedAt, UptimeSec: in.UptimeSec, ConfigHash: in.ConfigHash, LastError: in.LastError,
				Health: in.Health, Restarts: &restarts, Supervised: in.Supervised, Waiting: in.Waiting}
			if in.UpdatedAt != nil {
				l.UpdatedAt = *in.UpdatedAt
			}
			lines = append(lines, l)
		}
		return writeJSON(a.Stdout, lines)
	}
	fmt.Fprintf(a.Stdout, "Agent: pid %d, supervising %s\n\n", st.Pid, st.Dir)
	if len(st.Instances) == 0 {
		fmt.Fprintln(a.Stdout, "Nothing is managed by orch here yet.")
		return nil
	}
	tw := tabwriter.NewWriter(a.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSTATE\tSTATUS\tHEALTH\tRESTARTS\tPID\tUPTIME\tCONFIG")
	for _, l := range st.Instances {
		pid, up, health := "-", "-", l.Health
		if l.Pid != 0 {
			pid = strconv.Itoa(l.Pid)
		}
		if l.StartedAt != nil {
			up = (time.Duration(l.UptimeSec) * time.Second).String()
		}
		if health == "" {
			health = "-"
		}
		hash := l.ConfigHash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		status := l.Status
		if l.Waiting != "" && status == "waiting" {
			status = "waiting " + l.Waiting
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.Address, l.State, status, health, l.Restarts, pid, up, hash)
	}
	return tw.Flush()
}

// planViaAgent is orch plan while an agent runs for the directory.
func (a *App) planViaAgent(c *agent.Client, destroy, asJSON, detailed bool) error {
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	pr, err := c.Plan(ctx, destroy)
	if err != nil {
		return a.agentErr(err)
	}
	if pr.Diagnostics != "" {
		fmt.Fprintln(a.Stderr, pr.Diagnostics)
	}
	if asJSON {
		if err := writeJSON(a.Stdout, pr.Plan); err != nil {
			return err
		}
	} else {
		fmt.Fprint(a.Stdout, pr.Text)
	}
	if detailed && pr.HasChanges {
		return &exitError{code: ExitChanges}
	}
	return nil
}

// applyViaAgent is orch apply (destroy) while an agent runs: the agent
// plans and applies; without -auto-approve the user approves a plan the
// agent made, and the agent refuses to apply another one.
func (a *App) applyViaAgent(c *agent.Client, autoApprove, destroy bool) error {
	op := "apply"
	if destroy {
		op = "destroy"
	}
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	fp := ""
	if !autoApprove {
		pr, err := c.Plan(ctx, destroy)
		if err != nil {
			return a.agentErr(err)
		}
		if pr.Diagnostics != "" {
			fmt.Fprintln(a.Stderr, pr.Diagnostics)
		}
		fmt.Fprint(a.Stdout, pr.Text)
		if !pr.HasChanges {
			return nil
		}
		q := "Do you want to perform these actions?\n  The agent running for this directory will perform the actions described above."
		if destroy {
			q = "Do you really want to destroy everything orch manages here?\n  The agent will stop and remove every instance described above, and stop supervising until the next orch apply."
		}
		if !a.confirm(q) {
			return &exitError{code: ExitError, msg: op + " cancelled: only 'yes' approves."}
		}
		fp = pr.Plan.Fingerprint
	}
	changes := true
	res, err := c.Apply(ctx, destroy, fp, func(l agent.ApplyLine) {
		switch {
		case l.Plan != nil:
			changes = l.Plan.HasChanges
			if autoApprove {
				if l.Plan.Diagnostics != "" {
					fmt.Fprintln(a.Stderr, l.Plan.Diagnostics)
				}
				fmt.Fprint(a.Stdout, l.Plan.Text)
				if changes {
					fmt.Fprintln(a.Stdout)
				}
			}
		case l.Event != nil:
			var e engine.Event
			if json.Unmarshal(l.Event, &e) == nil && e.Type == engine.EventPlan {
				return // printed above
			}
			fmt.Fprintln(a.Stdout, renderEvent(l.Event))
		}
	})
	if err != nil {
		return a.agentErr(err)
	}
	if !changes && res.OK {
		return nil
	}
	verb := "Apply"
	if destroy {
		verb = "Destroy"
	}
	if !res.OK {
		msg := ""
		if res.Error != "" {
			msg = res.Error
		} else if len(res.Failed) > 0 {
			msg = "failed: " + strings.Join(res.Failed, ", ") + " (see the events above)"
		}
		fmt.Fprintf(a.Stdout, "\n%s failed. Planned: %d to add, %d to change, %d to replace, %d to destroy.\n", verb, res.Add, res.Change, res.Replace, res.Destroy)
		return &exitError{code: ExitError, msg: msg}
	}
	fmt.Fprintf(a.Stdout, "\n%s complete through the agent! Resources: %d added, %d changed, %d replaced, %d destroyed.\n", verb, res.Add, res.Change, res.Replace, res.Destroy)
	return nil
}
