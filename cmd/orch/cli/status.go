package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

// JSONStatus is one line of `orch status -json`.
type JSONStatus struct {
	Address   string     `json:"address"`
	Runtime   string     `json:"runtime,omitempty"`
	State     string     `json:"state"`
	Status    string     `json:"status"`
	Pid       int        `json:"pid,omitempty"`
	ID        string     `json:"id,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	UptimeSec float64    `json:"uptime_seconds,omitempty"`
	// ConfigHash and UpdatedAt are absent for an instance with no
	// record yet (waiting, blocked, pending).
	ConfigHash string    `json:"config_hash,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
	// Set when an agent (or orch up) answers for the directory.
	Supervised bool   `json:"supervised,omitempty"`
	Health     string `json:"health,omitempty"` // starting, healthy, unhealthy
	Restarts   *int   `json:"restarts,omitempty"`
	Waiting    string `json:"waiting,omitempty"`
	// HeldBy: an unhealthy daemon that liveness does not restart while
	// this dependency of it is not ready.
	HeldBy string `json:"held_by,omitempty"`
	// Service and Route are the daemon's service name and proxy route,
	// as declared (status_services.go).
	Service string `json:"service,omitempty"`
	Route   string `json:"route,omitempty"`
	// Registered says, through an agent, that it is published now (in
	// DNS, on the proxy); Unpublished, of a running instance that is
	// not, why not ("not listening on port 8080").
	Registered  bool   `json:"registered,omitempty"`
	Unpublished string `json:"unpublished,omitempty"`
	// Memory and CPU use while it runs, when its runtime can tell (a
	// native daemon in a cgroup of its own).
	MemoryBytes uint64  `json:"memory_bytes,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	// Says is what it says of itself: the last STATUS= of a daemon with
	// health { notify = true }.
	Says string `json:"says,omitempty"`
	// Node is the node that runs it, in a project on several hosts
	// (orch agent -node); "" on one host.
	Node string `json:"node,omitempty"`
}

func (a *App) statusCommand() *cobra.Command {
	var (
		vf     varFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status [DIR [NAME...]]",
		Short: "List what orch manages and how it is doing",
		Long: `List every instance the state of DIR records with what runs now: its state
(running, exited, missing), the status orch recorded, pid, uptime and the
config hash it runs. It reads the state without taking the lock, and
changes nothing. When an agent (or orch up) runs for DIR, it asks the agent
instead, which also knows each daemon's health and how many times it
restarted it. NAMEs after DIR keep only those instances: api, daemon.api,
worker (every instance of a block with count: worker[0], worker[1], ...)
or worker[1]. The state and the agent are found through the state
directory: this works while the configuration on disk is invalid or lacks
a variable's value (it says so in one line on stderr).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) > 0 {
				dir = args[0]
			}
			filter, err := parseFilter(args)
			if err != nil {
				return err
			}
			l, err := a.locate(dir, &vf)
			if err != nil {
				return err
			}
			// A project on several hosts: every node's state, from
			// etcd, whichever agent answers here (it knows its own
			// node only).
			lines, multi, err := a.clusterStatusOf(l.cfg)
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			if !multi {
				if c := a.agentOf(l); c != nil {
					return a.statusViaAgent(c, asJSON, filter)
				}
				if lines, err = a.status(l.cfg, l.stateDir); err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
			}
			lines = filter.keep(lines)
			if len(lines) == 0 && len(filter) > 0 {
				return filter.none(dir)
			}
			if lines == nil {
				lines = []JSONStatus{}
			}
			if asJSON {
				return writeJSON(a.Stdout, lines)
			}
			if len(lines) == 0 {
				fmt.Fprintln(a.Stdout, "Nothing is managed by orch here yet: run orch apply.")
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 2, 4, 2, ' ', 0)
			if multi {
				fmt.Fprint(tw, "NODE\t")
			}
			fmt.Fprintln(tw, "ADDRESS\tSTATE\tSTATUS\tPID\tUPTIME\tMEM\tCPU\tCONFIG\tSERVICE\tROUTE")
			for _, l := range lines {
				if multi {
					fmt.Fprint(tw, dash(l.Node)+"\t")
				}
				pid, up := "-", "-"
				if l.Pid != 0 {
					pid = fmt.Sprint(l.Pid)
				}
				if l.StartedAt != nil {
					up = (time.Duration(l.UptimeSec) * time.Second).String()
				}
				hash := l.ConfigHash
				if len(hash) > 12 {
					hash = hash[:12]
				}
				mem, cpu := usageColumns(l.MemoryBytes, l.CPUSeconds)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Address, l.State, withSays(l.Status, l.Says), pid, up, mem, cpu, hash,
					dash(l.Service), dash(l.Route))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			rts := make([]string, len(lines))
			for i, l := range lines {
				rts[i] = l.Runtime
			}
			printContainment(a.Stdout, rts)
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func (a *App) status(cfg *spec.Config, stateDir string) ([]JSONStatus, error) {
	path := filepath.Join(stateDir, "state.db")
	st, err := state.OpenReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // never applied: nothing to show
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", path, err)
	}
	defer st.Close()
	insts, err := st.List()
	if err != nil {
		return nil, err
	}
	return a.statusLines(cfg, insts, true), nil
}

// clusterStatus reads the states of every node of a project on several
// hosts; nil in an orch built without etcd (backend_cluster.go sets it).
// multi is false for a project on one host.
var clusterStatus func(a *App, cfg *spec.Config, be *state.BackendConfig) (lines []JSONStatus, multi bool, err error)

func (a *App) clusterStatusOf(cfg *spec.Config) ([]JSONStatus, bool, error) {
	if cfg == nil || clusterStatus == nil {
		return nil, false, nil
	}
	be, err := a.backendFor(cfg)
	if err != nil || be == nil {
		return nil, false, err
	}
	return clusterStatus(a, cfg, be)
}

// statusLines is orch status's line of each recorded instance, with what
// runs now when observe is set (else each reads unknown).
func (a *App) statusLines(cfg *spec.Config, insts []state.Instance, observe bool) []JSONStatus {
	// What cannot be observed (a Docker Engine away) reads as unknown,
	// with a warning; the rest is shown all the same.
	observed := map[spec.Address]providers.Observed{}
	if observe {
		observed = executor.ObserveRecorded(context.Background(), a.providerSet(), cfg, insts)
	}
	warned := map[spec.Address]bool{}
	now := time.Now()
	out := make([]JSONStatus, 0, len(insts))
	for _, inst := range insts {
		o := observed[inst.Addr]
		if o.State == providers.StateUnknown && o.Error != "" && !warned[inst.Runtime] {
			warned[inst.Runtime] = true
			fmt.Fprintf(a.Stderr, "Warning: %s: %s; its instances show as unknown\n", inst.Runtime, o.Error)
		}
		l := JSONStatus{Address: inst.Addr.String(), State: o.State.String(), Status: inst.Status,
			Pid: o.Pid, ID: o.ID, ConfigHash: inst.ConfigHash, LastError: inst.LastError, UpdatedAt: inst.UpdatedAt}
		if !inst.Runtime.IsZero() {
			l.Runtime = inst.Runtime.String()
		}
		l.Service, l.Route = serviceOf(cfg, inst.Addr)
		if o.State == providers.StateRunning && !o.StartedAt.IsZero() {
			started := o.StartedAt
			l.StartedAt = &started
			l.UptimeSec = now.Sub(o.StartedAt).Truncate(time.Second).Seconds()
			l.MemoryBytes, l.CPUSeconds, l.Says = o.Memory, o.CPU.Seconds(), o.Says
		} else {
			l.Pid = 0
		}
		out = append(out, l)
	}
	return out
}

// nameFilter is the NAMEs of orch status; empty keeps everything.
type nameFilter []spec.Address

func parseFilter(args []string) (nameFilter, error) {
	if len(args) < 2 {
		return nil, nil
	}
	var f nameFilter
	for _, s := range args[1:] {
		addr, err := parseName(s)
		if err != nil {
			return nil, err
		}
		f = append(f, addr)
	}
	return f, nil
}

// match reports whether the instance address s is one the filter names:
// the address itself, or an instance of a block named without a key.
func (f nameFilter) match(s string) bool {
	if len(f) == 0 {
		return true
	}
	addr, err := spec.ParseAddress(s)
	if err != nil {
		return false
	}
	for _, n := range f {
		if n == addr || n.Key == spec.NoKey && addr.Block() == n {
			return true
		}
	}
	return false
}

func (f nameFilter) keep(lines []JSONStatus) []JSONStatus {
	if len(f) == 0 {
		return lines
	}
	out := lines[:0:0]
	for _, l := range lines {
		if f.match(l.Address) {
			out = append(out, l)
		}
	}
	return out
}

// none is the error of a filter that matched no instance.
func (f nameFilter) none(dir string) error {
	names := make([]string, len(f))
	for i, n := range f {
		names[i] = n.String()
	}
	return &exitError{code: ExitError, msg: fmt.Sprintf("no instance of %s matches %s", dir, strings.Join(names, ", "))}
}
