package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

func (a *App) agentCommand() *cobra.Command {
	var (
		vf     varFlags
		lf     lockFlags
		asJSON bool
		nf     nodeFlags
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
SIGINT stops every daemon, dependents first, and exits 0.

With -node NAME the project runs on several hosts: its state must be in
etcd (orch { backend "etcd" }, or -backend etcd://HOST:PORT/PREFIX, or
ORCH_BACKEND=etcd://...). The agent
registers its node (with -labels and -capacity) under a lease of the
backend's lock_ttl; one agent of the project is elected leader and places
every instance on a node (placement { node, labels, spread }); each agent
runs and supervises the instances placed on its own node only, with its
records under <prefix>/nodes/NAME. When a node's lease lapses (the agent
died, or was cut off), the leader places its instances on the other nodes;
an agent that finds its own lease lapsed stops its instances, then joins
again. Each agent needs its own state directory (ORCH_STATE_DIR).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.makesState = true
			if nf.node != "" || cmd.Flags().Changed("labels") || cmd.Flags().Changed("capacity") {
				if err := nf.check(); err != nil {
					return err
				}
				if runNodeAgent == nil {
					return &exitError{code: ExitError, msg: "orch agent -node: this orch was built without etcd (-tags noetcd), and several hosts need it"}
				}
				return runNodeAgent(a, dirArg(args), &vf, &lf, asJSON, nf)
			}
			return a.runEngine(dirArg(args), &vf, &lf, asJSON, a.Stderr, "agent", upOutput{})
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "log events as JSON lines")
	cmd.Flags().StringVar(&nf.node, "node", "", "run as node `NAME` of a project on several hosts (needs the etcd backend)")
	cmd.Flags().StringVar(&nf.labels, "labels", "", "the node's labels, `K=V,...`, matched by placement { labels }")
	cmd.Flags().IntVar(&nf.capacity, "capacity", 0, "the most instances the node runs (`N`; 0: no limit)")
	return cmd
}

// nodeFlags are orch agent's flags of a node of several hosts.
type nodeFlags struct {
	node     string
	labels   string
	capacity int
	parsed   map[string]string
}

// runNodeAgent runs orch agent -node; nil in an orch built without etcd
// (backend_cluster.go sets it).
var runNodeAgent func(a *App, dir string, vf *varFlags, lf *lockFlags, asJSON bool, nf nodeFlags) error

func (nf *nodeFlags) check() error {
	if nf.node == "" {
		return usageError{errors.New("-labels and -capacity need -node NAME")}
	}
	if !validNodeName(nf.node) {
		return usageError{fmt.Errorf("-node %q: a node name uses letters, digits, '-' and '_', starting with a letter", nf.node)}
	}
	if nf.capacity < 0 {
		return usageError{fmt.Errorf("-capacity %d: it is 0 (no limit) or more", nf.capacity)}
	}
	nf.parsed = map[string]string{}
	if nf.labels == "" {
		return nil
	}
	for _, kv := range strings.Split(nf.labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError{fmt.Errorf("-labels %q: %q is not KEY=VALUE", nf.labels, kv)}
		}
		if _, dup := nf.parsed[k]; dup {
			return usageError{fmt.Errorf("-labels %q: %q is given twice", nf.labels, k)}
		}
		nf.parsed[k] = v
	}
	return nil
}

// validNodeName is spec's rule for placement.node.
func validNodeName(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '_'):
		default:
			return false
		}
	}
	return s != ""
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
		a.loaded = &pendingLoad{dir: dir, vf: vf, checkPrograms: a.checkPrograms, res: res}
		return nil
	}
	// The agent works on the state: a read started beside the load lets
	// go of it.
	a.dropFetch()
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
	arg := s
	if !strings.Contains(s, ".") {
		s = "daemon." + s
	}
	a, err := spec.ParseAddress(s)
	if err != nil {
		if st, serr := os.Stat(arg); serr == nil && st.IsDir() {
			// orch stop . (a directory where a name goes): what HCL says
			// of "." does not tell that.
			if cwd, cerr := os.Stat("."); cerr == nil && os.SameFile(st, cwd) {
				return a, usageError{fmt.Errorf("%q is a directory (the current one), where the name of a daemon, job or module was expected; leave it out: the command acts for the current directory", arg)}
			}
			return a, usageError{fmt.Errorf("%q is a directory, where the name of a daemon, job or module was expected; to act on what runs for another directory, put -chdir before the command: orch -chdir=%s COMMAND NAME", arg, arg)}
		}
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

// quietInterruptible returns a context cancelled by SIGINT or SIGTERM,
// for commands that only read and stop quietly.
func (a *App) quietInterruptible() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
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

// statusViaAgent is orch status while an agent runs.
func (a *App) statusViaAgent(c *agent.Client, asJSON bool, filter nameFilter) error {
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	st, err := c.Status(ctx)
	if err != nil {
		return a.agentErr(err)
	}
	kept := st.Instances[:0:0]
	for _, in := range st.Instances {
		if filter.match(in.Address) {
			kept = append(kept, in)
		}
	}
	st.Instances = kept
	if len(kept) == 0 && len(filter) > 0 {
		return filter.none(st.Dir)
	}
	if asJSON {
		lines := make([]JSONStatus, 0, len(st.Instances))
		for _, in := range st.Instances {
			restarts := in.Restarts
			l := JSONStatus{Address: in.Address, Runtime: in.Runtime, State: in.State, Status: in.Status, Pid: in.Pid,
				ID: in.ID, StartedAt: in.StartedAt, UptimeSec: in.UptimeSec, ConfigHash: in.ConfigHash, LastError: in.LastError,
				Health: in.Health, Restarts: &restarts, Supervised: in.Supervised, Waiting: in.Waiting, HeldBy: in.HeldBy,
				MemoryBytes: in.MemoryBytes, CPUSeconds: in.CPUSeconds, Says: in.Says, Service: in.Service, Route: in.Route,
				Registered: in.Registered, Unpublished: in.Unpublished}
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
	fmt.Fprintln(tw, "ADDRESS\tSTATE\tSTATUS\tHEALTH\tRESTARTS\tPID\tUPTIME\tMEM\tCPU\tCONFIG\tSERVICE\tROUTE")
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
		if l.HeldBy != "" {
			health += " (held: " + l.HeldBy + " not ready)"
		}
		hash := l.ConfigHash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		status := l.Status
		if l.Waiting != "" && status == "waiting" {
			status = "waiting " + l.Waiting
		}
		mem, cpu := usageColumns(l.MemoryBytes, l.CPUSeconds)
		status = withSays(status, l.Says)
		service := dash(l.Service)
		if l.Service != "" && !l.Registered {
			why := l.Unpublished
			if why == "" {
				why = "not ready"
			}
			service += " (" + why + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Address, l.State, status, health, l.Restarts, pid, up, mem, cpu, hash,
			service, dash(l.Route))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rts := make([]string, len(st.Instances))
	for i, l := range st.Instances {
		rts[i] = l.Runtime
	}
	printContainment(a.Stdout, rts)
	return nil
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
		if a.jsonApply {
			switch {
			case l.Plan != nil:
				changes = l.Plan.HasChanges
				a.emit(JSONApplyLine{Type: "plan", Plan: l.Plan.Plan})
			case l.Event != nil:
				a.emit(JSONApplyLine{Type: "event", Event: l.Event})
			}
			return
		}
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
	if a.jsonApply {
		a.emitSummary(res.OK, res.Add, res.Change, res.Replace, res.Destroy)
		if !res.OK {
			return &exitError{code: ExitError, msg: res.Error}
		}
		return nil
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
