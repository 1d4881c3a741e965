package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/orch-dev/orch/executor/state"
	"github.com/spf13/cobra"
)

// stateMigrateCommand is `orch state migrate -to etcd|file`: move the
// state of a configuration between the state file and a backend, under
// both locks, without touching what runs.
func (a *App) stateMigrateCommand() *cobra.Command {
	var (
		vf varFlags
		lf lockFlags
		to string
	)
	cmd := &cobra.Command{
		Use:   "migrate -to etcd|file [DIR]",
		Short: "Move the state between the state file and etcd",
		Long: `Move the whole state of the configuration in DIR, records, module
key-value state, lineage and serial, byte for byte:

  -to etcd   from the state file to the etcd the configuration declares
             (orch { backend "etcd" { ... } }) or the backend setting names. The
             prefix must hold no state. The state file is kept, renamed
             state.db.migrated-<time>, and state.db.backend records where the
             state went, for the commands that find it through the state
             directory (status, logs, orch state list).
  -to file   from etcd back to <state dir>/state.db. The keys under the
             prefix are deleted but for <prefix>/meta/moved, which names the
             file. Remove the backend block (or the setting) afterwards.

It holds the lock of both sides while it copies (waiting up to
-lock-timeout for another orch), and checks the copy before it switches.
Daemons are not stopped or touched: their records, handles included, move
as they are.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != "etcd" && to != "file" {
				return usageError{fmt.Errorf("-to is etcd or file, not %q", to)}
			}
			res := a.loadConfig(dirArg(args), &vf)
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() {
				return &exitError{code: ExitError, msg: "orch state migrate needs a valid configuration: it names the state directory and the backend"}
			}
			path := filepath.Join(a.settings.StateDirFor(res.cfg), "state.db")
			opts := state.Options{Operation: "state migrate", LockTimeout: lf.timeout}
			if to == "etcd" {
				be, err := a.backendFor(res.cfg)
				if err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				if be == nil {
					return &exitError{code: ExitError, msg: `orch state migrate -to etcd needs the etcd to move to: declare orch { backend "etcd" { endpoints = [...] } }, or pass -backend etcd://HOST:PORT,.../PREFIX (ORCH_BACKEND)`}
				}
				return a.migrateToBackend(path, be, opts)
			}
			return a.migrateToFile(path, opts)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "where to move the state: `etcd` or file")
	lf.register(cmd.Flags())
	vf.register(cmd.Flags())
	return cmd
}

func (a *App) migrateToBackend(path string, be *state.BackendConfig, opts state.Options) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ptr, _ := state.ReadPointer(path); ptr != nil {
			return &exitError{code: ExitError, msg: fmt.Sprintf("the state is already in %s (%s says so)", ptr, state.PointerPath(path))}
		}
		return &exitError{code: ExitError, msg: fmt.Sprintf("no state at %s: nothing to migrate (declare the backend, and orch apply starts the state there)", path)}
	}
	src, err := state.Open(path, opts)
	if err != nil {
		return stateOpenErr(err, path)
	}
	defer src.Close()
	snap, err := src.Snapshot()
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	opts.Import = true
	dst, err := state.OpenBackend(path, *be, opts)
	if err != nil {
		return stateOpenErr(err, be.String())
	}
	defer dst.Close()
	if err := dst.Load(snap); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%v\nThe state is still in %s; nothing was switched.", err, path)}
	}
	if err := sameState(snap, dst); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%v\nThe state is still in %s; nothing was switched.", err, path)}
	}
	if err := state.WritePointer(path, be); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	old, err := src.RetireFile()
	if err != nil {
		state.RemovePointer(path)
		return &exitError{code: ExitError, msg: fmt.Sprintf("%v\nThe state is still in %s.", err, path)}
	}
	fmt.Fprintf(a.Stdout, "Moved %d records to %s (lineage %s). The state file as it was is in %s; no daemon was touched.\n",
		len(snap.Instances), dst.Where(), snap.Lineage, old)
	return nil
}

func (a *App) migrateToFile(path string, opts state.Options) error {
	if _, err := os.Lstat(path); err == nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("the state is already in the file %s", path)}
	}
	ptr, err := state.ReadPointer(path)
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	if ptr == nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("no state at %s, and %s does not say where it is: nothing to migrate", path, state.PointerPath(path))}
	}
	src, err := state.OpenBackend(path, *ptr, opts)
	if err != nil {
		return stateOpenErr(err, ptr.String())
	}
	defer src.Close()
	snap, err := src.Snapshot()
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	if err := state.WriteFile(path, snap); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	check, err := state.OpenReadOnly(path)
	if err == nil {
		err = sameState(snap, check)
		check.Close()
	}
	if err != nil {
		os.Remove(path)
		return &exitError{code: ExitError, msg: fmt.Sprintf("%v\nThe state is still in %s; nothing was switched.", err, src.Where())}
	}
	if err := state.RemovePointer(path); err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	if err := src.MoveOut(path); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("the state is now in %s, but its keys in %s could not be deleted: %v", path, src.Where(), err)}
	}
	fmt.Fprintf(a.Stdout, "Moved %d records to %s (lineage %s); no daemon was touched. Remove the configuration's backend block (or ORCH_BACKEND) now.\n",
		len(snap.Instances), path, snap.Lineage)
	return nil
}

// sameState checks that st holds exactly the records, KV and lineage of
// snap.
func sameState(snap *state.Snapshot, st *state.Store) error {
	got, err := st.Snapshot()
	if err != nil {
		return err
	}
	if got.Lineage != snap.Lineage || len(got.Instances) != len(snap.Instances) || len(got.KV) != len(snap.KV) {
		return fmt.Errorf("the copy in %s differs from the state (lineage %s, %d records, %d KV namespaces; want %s, %d, %d)",
			st.Where(), got.Lineage, len(got.Instances), len(got.KV), snap.Lineage, len(snap.Instances), len(snap.KV))
	}
	for i := range snap.Instances {
		if !bytes.Equal(got.Instances[i], snap.Instances[i]) {
			return fmt.Errorf("the copy in %s differs from the state at record %d", st.Where(), i)
		}
	}
	for ns, m := range snap.KV {
		for k, v := range m {
			if !bytes.Equal(got.KV[ns][k], v) {
				return fmt.Errorf("the copy in %s differs from the state at KV %s %q", st.Where(), ns, k)
			}
		}
	}
	return nil
}
