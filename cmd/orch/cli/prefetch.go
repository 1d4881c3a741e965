package cli

import (
	"os"
	"path/filepath"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/process"
)

// stateFetch is the state read while the configuration loads: orch plan,
// apply and destroy take the lock of the state file where the state
// usually is, and read its records (and the process runtime's registry),
// on other CPUs while the configuration is parsed and evaluated, for the
// session to take once the configuration says that is indeed its state
// (open). Reading 10,000 records and replaying the registry beside the
// load of 10,000 daemons takes a tenth of a second off a no-op plan on
// two cores (issue 19); reading the stat of every process after them
// (process.WarmStats), about as much again.
//
// It is only tried where nothing is created and nothing waited for: the
// state file exists, no backend is set, and the lock is free now (a held
// lock leaves the usual open to wait or refuse, as it always did). A
// fetch the session does not take (another state directory, a backend,
// an agent that answers, a configuration with errors) is closed, which
// releases its lock, before anything else takes the state.
type stateFetch struct {
	path string
	done chan struct{}

	store   *state.Store
	records []state.Instance
	err     error
}

// fetchState starts reading the state of the configuration in dir for op
// (a plan of its destruction with destroy), when it can be done without
// side effects (above).
func (a *App) fetchState(dir, op string, destroy bool) {
	a.dropFetch()
	if a.settings.Backend != "" {
		return
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	sd := a.settings.StateDir
	if sd == "" {
		sd = ".orch"
	}
	if !filepath.IsAbs(sd) {
		sd = filepath.Join(abs, sd)
	}
	path := filepath.Join(sd, "state.db")
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return
	}
	// A plan compares the stored configurations with the desired ones:
	// it reads only those that differ (readOmittedConfigs). A destroy,
	// or a plan with -target or -replace, needs them all.
	omit := !destroy && !a.partial.any()
	f := &stateFetch{path: path, done: make(chan struct{})}
	a.fetch = f
	go func() {
		defer close(f.done)
		warmed := make(chan struct{})
		go func() {
			defer close(warmed)
			if _, err := os.Lstat(filepath.Join(sd, "logs", "logd.registry")); err == nil {
				process.WarmRegistry(sd)
			}
		}()
		defer func() { <-warmed }()
		st, err := state.Open(path, state.Options{Operation: op})
		if err != nil {
			f.err = err
			return
		}
		f.store = st
		f.records, f.err = st.ListWith(state.ListOptions{OmitConfig: omit})
		// The processes of the records are read too (after the records,
		// so that each one alive is seen), for the refresh to take.
		n := 0
		for _, r := range f.records {
			if r.Runtime.Type == process.Kind {
				n++
			}
		}
		process.WarmStats(n)
	}()
}

// takeFetch returns the fetched store and records when they are those of
// path and no backend; otherwise it drops the fetch (nil store).
func (a *App) takeFetch(path string, be *state.BackendConfig) (*state.Store, []state.Instance) {
	f := a.fetch
	if f == nil {
		return nil, nil
	}
	a.fetch = nil
	<-f.done
	if f.err != nil || be != nil || f.path != path {
		// Whatever went wrong, the usual open meets it again and says so.
		if f.store != nil {
			f.store.Close()
		}
		process.ReleaseRegistryCaches()
		process.ReleaseWarmStats()
		return nil, nil
	}
	return f.store, f.records
}

// dropFetch closes a fetch nothing took, releasing its lock.
func (a *App) dropFetch() {
	if a.fetch != nil {
		a.takeFetch("", nil)
	}
}
