package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
)

// stateCommand is `orch state`: inspect and repair the state file. Every
// subcommand but recover works without a valid configuration: it needs
// only the state directory (see statePath).
func (a *App) stateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect and repair orch's state file",
		Long: `Inspect and repair the state file, <state dir>/state.db: what orch has
started and how to find it again.

list, show, rm, pull, push and check need only the state directory: the
-state-dir setting when set, else the one the configuration in DIR names
(orch { state_dir }), else DIR/.orch when that configuration does not
load. recover needs the configuration, to ask its runtimes what runs.

rm and push take the state lock and keep a copy of the state file as it
was, in state.db.backup (0600), before they change it.`,
	}
	cmd.AddCommand(a.stateListCommand(), a.stateShowCommand(), a.stateRmCommand(), a.statePullCommand(),
		a.statePushCommand(), a.stateCheckCommand(), a.stateRecoverCommand(), a.stateMigrateCommand())
	return cmd
}

// statePath returns the state file of the configuration in dir, loading
// that configuration only to learn its state_dir: when it does not load,
// the default DIR/.orch is used with a warning.
func (a *App) statePath(dir string) string {
	if d := a.settings.StateDir; d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		return filepath.Join(d, "state.db")
	}
	res := a.loadConfig(dir, &varFlags{})
	if !res.diags.HasErrors() {
		return filepath.Join(a.settings.StateDirFor(res.cfg), "state.db")
	}
	d := filepath.Join(dir, ".orch")
	msg := "it has errors"
	if len(res.diags) > 0 {
		msg = res.diags[0].Summary
		if res.diags[0].Subject != nil {
			msg = res.diags[0].Subject.String() + ": " + msg
		}
	}
	fmt.Fprintf(a.Stderr, "Warning: the configuration in %s does not load (%s); using the state in %s (set -state-dir to use another)\n", dir, msg, d)
	return filepath.Join(d, "state.db")
}

// openStateRO opens the state file for reading; a missing one is an error.
func (a *App) openStateRO(dir string) (*state.Store, string, error) {
	path := a.statePath(dir)
	st, err := state.OpenReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, &exitError{code: ExitError, msg: fmt.Sprintf("no state at %s: nothing has been applied with this state directory", path)}
	}
	if err != nil {
		return nil, path, &exitError{code: ExitError, msg: err.Error()}
	}
	return st, path, nil
}

// openStateRW opens an existing state file for writing, with the lock.
func (a *App) openStateRW(dir string, lf *lockFlags, op string) (*state.Store, string, error) {
	path := a.statePath(dir)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ptr, _ := state.ReadPointer(path); ptr == nil {
			return nil, path, &exitError{code: ExitError, msg: fmt.Sprintf("no state at %s: nothing has been applied with this state directory", path)}
		}
	}
	st, err := state.Open(path, state.Options{Operation: op, LockTimeout: lf.timeout})
	if err != nil {
		return nil, path, stateOpenErr(err, path)
	}
	return st, path, nil
}

func stateOpenErr(err error, path string) error {
	var le *state.LockedError
	if errors.As(err, &le) {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%s.\nAnother orch is working on %s. Wait for it (an agent or orch up holds it while it runs), or pass -lock-timeout to wait.", err, filepath.Dir(path))}
	}
	return &exitError{code: ExitError, msg: err.Error()}
}

// dirAfter returns the optional DIR argument that follows n others.
func dirAfter(args []string, n int) string {
	if len(args) > n {
		return args[n]
	}
	return "."
}

func parseAddrArg(s string) (spec.Address, error) {
	addr, err := spec.ParseAddress(s)
	if err != nil {
		return addr, usageError{fmt.Errorf("invalid address %q: %w", s, err)}
	}
	return addr, nil
}

func (a *App) stateListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list [DIR]",
		Short: "List the addresses the state records",
		Long: `Print the address of every instance the state records, one per line, in
address order. It takes no lock and changes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := a.openStateRO(dirArg(args))
			if err != nil {
				return err
			}
			defer st.Close()
			insts, err := st.List()
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			for _, in := range insts {
				fmt.Fprintln(a.Stdout, in.Addr)
			}
			return nil
		},
	}
}

// JSONStateRecord is one record as `orch state show -json` prints it.
type JSONStateRecord struct {
	Address    string          `json:"address"`
	Runtime    string          `json:"runtime,omitempty"`
	Status     string          `json:"status,omitempty"`
	ConfigHash string          `json:"config_hash,omitempty"`
	Handle     json.RawMessage `json:"handle,omitempty"` // the provider's handle: JSON as it is, else a base64 string
	LastError  string          `json:"last_error,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	Config     json.RawMessage `json:"config,omitempty"`
}

func stateRecord(in state.Instance) JSONStateRecord {
	r := JSONStateRecord{Address: in.Addr.String(), Status: in.Status, ConfigHash: in.ConfigHash,
		LastError: in.LastError, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, Config: in.Config}
	if !in.Runtime.IsZero() {
		r.Runtime = in.Runtime.String()
	}
	if len(in.Handle) > 0 {
		if json.Valid(in.Handle) {
			r.Handle = json.RawMessage(in.Handle)
		} else {
			r.Handle, _ = json.Marshal([]byte(in.Handle))
		}
	}
	return r
}

func (a *App) stateShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ADDRESS [DIR]",
		Short: "Print what the state records about one instance",
		Long: `Print the record of one instance: its runtime, status, config hash, the
provider's handle (how orch finds it again), last error, when it was
created and updated, and the configuration it was started with.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := parseAddrArg(args[0])
			if err != nil {
				return err
			}
			st, path, err := a.openStateRO(dirAfter(args, 1))
			if err != nil {
				return err
			}
			defer st.Close()
			in, err := st.Get(addr)
			if errors.Is(err, state.ErrNotFound) {
				return &exitError{code: ExitError, msg: fmt.Sprintf("%s is not in the state %s (orch state list shows what is)", addr, path)}
			}
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			r := stateRecord(in)
			if asJSON {
				return writeJSON(a.Stdout, r)
			}
			tw := tabwriter.NewWriter(a.Stdout, 2, 4, 2, ' ', 0)
			row := func(k, v string) {
				if v != "" {
					fmt.Fprintf(tw, "%s\t%s\n", k, v)
				}
			}
			row("address", r.Address)
			row("runtime", r.Runtime)
			row("status", r.Status)
			row("config_hash", r.ConfigHash)
			row("handle", string(r.Handle))
			row("last_error", r.LastError)
			row("created_at", r.CreatedAt.Format(time.RFC3339))
			row("updated_at", r.UpdatedAt.Format(time.RFC3339))
			tw.Flush()
			if len(r.Config) > 0 {
				fmt.Fprintln(a.Stdout, "config:")
				var v any
				if json.Unmarshal(r.Config, &v) == nil {
					b, _ := json.MarshalIndent(v, "  ", "  ")
					fmt.Fprintf(a.Stdout, "  %s\n", b)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func (a *App) stateRmCommand() *cobra.Command {
	var lf lockFlags
	cmd := &cobra.Command{
		Use:   "rm ADDRESS [DIR]",
		Short: "Forget an instance without stopping it",
		Long: `Remove the record of one instance from the state. The instance is not
stopped: it keeps running, and orch no longer manages it. The next plan
adopts it again if it still runs, carries the project's marks and is still
declared; otherwise orch leaves it alone for good (stop it yourself).

The state file as it was is copied to state.db.backup first.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := parseAddrArg(args[0])
			if err != nil {
				return err
			}
			st, path, err := a.openStateRW(dirAfter(args, 1), &lf, "state rm")
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := st.Get(addr); errors.Is(err, state.ErrNotFound) {
				return &exitError{code: ExitError, msg: fmt.Sprintf("%s is not in the state %s (orch state list shows what is)", addr, path)}
			} else if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			backup, err := st.Backup()
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			if err := st.Delete(addr); err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			fmt.Fprintf(a.Stdout, "Removed %s from the state; it was not stopped. The state as it was is in %s.\n", addr, backup)
			return nil
		},
	}
	lf.register(cmd.Flags())
	return cmd
}

func (a *App) statePullCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pull [DIR]",
		Short: "Print the whole state as JSON",
		Long: `Print the whole state on standard output as one JSON document: format,
lineage, serial, every instance record (as stored) and the modules' key-value
state (values in base64). It takes no lock and changes nothing; orch state
push loads such a document back.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := a.openStateRO(dirArg(args))
			if err != nil {
				return err
			}
			defer st.Close()
			snap, err := st.Snapshot()
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return writeJSON(a.Stdout, snap)
		},
	}
}

func (a *App) statePushCommand() *cobra.Command {
	var (
		lf    lockFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "push FILE [DIR]",
		Short: "Replace the state with a document from orch state pull, or a state file",
		Long: `Replace the whole state with FILE ("-": standard input): a JSON document
printed by orch state pull, or a state file such as .orch/state.db.backup. As with Terraform, a document of another lineage (pulled
from another state) or with an older serial than the state's (the state has
changed since it was pulled) is refused unless -force. The state file as it
was is copied to state.db.backup first.

With -force, a damaged state file is moved aside (to
state.db.damaged-<time>) and the document becomes the new state: the way to
restore a copy pulled earlier.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := a.readPushed(args[0])
			if err != nil {
				return err
			}
			path := a.statePath(dirAfter(args, 1))
			_, statErr := os.Lstat(path)
			fresh := errors.Is(statErr, fs.ErrNotExist)
			opts := state.Options{Operation: "state push", LockTimeout: lf.timeout}
			st, err := state.Open(path, opts)
			moved := ""
			if errors.Is(err, state.ErrDamaged) && force {
				st, moved, err = state.Recover(path, opts, false)
				fresh = true
			}
			if err != nil {
				if errors.Is(err, state.ErrDamaged) {
					return &exitError{code: ExitError, msg: err.Error() + ".\nTo push onto it all the same (the damaged file is kept aside), pass -force"}
				}
				return stateOpenErr(err, path)
			}
			defer st.Close()
			backup, err := st.Replace(snap, force || fresh)
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			serial, _ := st.Serial()
			fmt.Fprintf(a.Stdout, "Pushed %d records to %s (lineage %s, serial %d).\n", len(snap.Instances), path, snap.Lineage, serial)
			if moved != "" {
				fmt.Fprintf(a.Stdout, "The damaged state file is in %s.\n", moved)
			} else if !fresh {
				fmt.Fprintf(a.Stdout, "The state as it was is in %s.\n", backup)
			}
			return nil
		},
	}
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "push a document of another lineage or an older serial, or onto a damaged state file")
	return cmd
}

// readPushed reads what orch state push is given: a JSON document from
// orch state pull ("-": standard input), or a bbolt state file.
func (a *App) readPushed(name string) (*state.Snapshot, error) {
	var src io.Reader = a.Stdin
	shown := "standard input"
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, &exitError{code: ExitError, msg: err.Error()}
		}
		defer f.Close()
		src, shown = f, name
	}
	br := bufio.NewReader(src)
	if b, _ := br.Peek(16); name != "-" && len(bytes.TrimSpace(b)) > 0 && bytes.TrimSpace(b)[0] != '{' {
		snap, err := state.ReadSnapshot(name)
		if err != nil {
			return nil, &exitError{code: ExitError, msg: fmt.Sprintf("%s is neither a state document from orch state pull nor a readable state file: %v", name, err)}
		}
		return snap, nil
	}
	var snap state.Snapshot
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return nil, &exitError{code: ExitError, msg: fmt.Sprintf("%s is not a state document from orch state pull: %v", shown, err)}
	}
	return &snap, nil
}

func (a *App) stateCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check [DIR]",
		Short: "Check the state file thoroughly",
		Long: `Run the full integrity check of the state file: its meta pages, every page
in use read back, bbolt's own consistency check (every page reachable or
free exactly once, keys in order) and a decode of every record. Every
command checks the meta pages and reads every page in use when it opens the
state; this check adds the rest. It takes no lock and changes nothing, and
exits 1 with what is wrong when the file is damaged.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := a.statePath(dirArg(args))
			n, err := state.Check(path)
			if errors.Is(err, fs.ErrNotExist) {
				return &exitError{code: ExitError, msg: fmt.Sprintf("no state at %s", path)}
			}
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			fmt.Fprintf(a.Stdout, "%s: OK, %d records.\n", path, n)
			return nil
		},
	}
}

func (a *App) stateRecoverCommand() *cobra.Command {
	var (
		vf    varFlags
		lf    lockFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "recover [DIR]",
		Short: "Rebuild a damaged state from what the runtimes report",
		Long: `Move a damaged state file aside (to state.db.damaged-<time>, kept) and
build a new state from what the runtimes of the configuration in DIR report
through adoption: every daemon that runs and carries this project's marks
(process daemons from orch's registry, containers from their labels) is
recorded as running, with its configuration when it runs the declared one.

What adoption cannot report is not recovered: jobs (completed or failed),
daemons that had exited or failed, instances on a runtime that cannot be
reached, and the modules' key-value state. The next apply starts again what
is declared and not recorded (jobs run again). The new state has a new
lineage: a plan saved before does not apply to it.

A state file that is not damaged is refused unless -force.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res := a.loadConfig(dirArg(args), &vf)
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() {
				return &exitError{code: ExitError, msg: "orch state recover needs a valid configuration: it asks the runtimes it declares what runs"}
			}
			stateDir := a.settings.StateDirFor(res.cfg)
			path := filepath.Join(stateDir, "state.db")
			st, moved, err := state.Recover(path, state.Options{Operation: "state recover", LockTimeout: lf.timeout}, force)
			if err != nil {
				return stateOpenErr(err, path)
			}
			defer st.Close()
			ctx, stop := a.interruptible(applyNotice)
			defer stop()
			recs, warn, err := a.recoverRecords(ctx, res.cfg, stateDir)
			if err != nil {
				return &exitError{code: ExitError, msg: fmt.Sprintf("%v\nThe new state %s is empty; run orch state recover -force again once the runtime answers.", err, path)}
			}
			for _, w := range warn {
				fmt.Fprintf(a.Stderr, "Warning: %s\n", w)
			}
			err = st.Update(func(tx *state.Tx) error {
				for _, r := range recs {
					if err := tx.Put(r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			if moved != "" {
				fmt.Fprintf(a.Stdout, "The old state file is in %s.\n", moved)
			}
			fmt.Fprintf(a.Stdout, "Recovered %d instances from the runtimes:\n", len(recs))
			for _, r := range recs {
				fmt.Fprintf(a.Stdout, "  %s\n", r.Addr)
			}
			fmt.Fprintln(a.Stdout, "Run orch plan to see what the next apply does.")
			return nil
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "set aside and rebuild a state file that is not damaged")
	return cmd
}

// recoverRecords asks the runtimes of cfg what of the project runs
// (executor.Refresh with nothing stored: adoption) and returns one record
// per instance: with its configuration when it runs the declared one (what
// apply records when it adopts), else with the handle and config hash
// alone (the next plan replaces or deletes it, as it would have adopted
// it).
func (a *App) recoverRecords(ctx context.Context, cfg *spec.Config, stateDir string) ([]state.Instance, []string, error) {
	in, err := executor.Refresh(ctx, cfg, nil, a.providerSet(), cfg.Project.Name, stateDir)
	if err != nil {
		return nil, nil, err
	}
	p, _ := planner.Make(in)
	changes := map[spec.Address]*planner.Change{}
	if p != nil {
		for _, c := range p.Changes {
			changes[c.Addr] = c
		}
	}
	var out []state.Instance
	var warn []string
	for addr, ad := range in.Adoptable {
		rec := state.Instance{Addr: addr, Runtime: ad.Runtime, Handle: ad.Handle, ConfigHash: ad.ConfigHash, Status: executor.StatusRunning.String()}
		switch c := changes[addr]; {
		case c != nil && c.Action == planner.Adopt:
			rec.Config, rec.ConfigHash = c.Encoded(), c.Hash()
		case c != nil && c.Action == planner.Delete:
			warn = append(warn, fmt.Sprintf("%s runs but is no longer declared: recorded, and the next apply stops it", addr))
		default:
			warn = append(warn, fmt.Sprintf("%s runs another configuration than the declared one: recorded, and the next apply replaces it", addr))
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	sort.Strings(warn)
	return out, warn, nil
}
