package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor/agent"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// located is what the commands that operate on what runs (status, logs,
// events, restart, signal) know about a directory: where its state is and,
// when the configuration on disk loads, the configuration. They never need
// the configuration to be valid: an agent keeps running the last valid one
// while a bad edit is on disk, and that is exactly when they are needed.
type located struct {
	dir      string
	stateDir string
	// cfg is nil when the configuration on disk does not load (invalid,
	// or a required variable has no value here).
	cfg *spec.Config
	res loadResult
}

// where is the directory l was located for, absolute, to name it in a
// message ("no agent runs for /srv/app", not "for .").
func (l *located) where() string {
	if l.cfg != nil && l.cfg.Dir != "" {
		return l.cfg.Dir
	}
	if abs, err := filepath.Abs(l.dir); err == nil {
		return abs
	}
	return l.dir
}

// locate finds the state directory of dir: the state_dir setting
// (-state-dir, ORCH_STATE_DIR, settings file) when set, else the
// configuration's. When the configuration does not load it says so in one
// line on stderr and goes on with what it could read of orch { state_dir }
// (a literal value), else <dir>/.orch.
func (a *App) locate(dir string, vf *varFlags) (*located, error) {
	res := a.loadConfig(dir, vf)
	if !res.diags.HasErrors() && res.cfg != nil {
		return &located{dir: dir, stateDir: a.settings.StateDirFor(res.cfg), cfg: res.cfg, res: res}, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &exitError{code: ExitError, msg: err.Error()}
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		if a.settings.StateDir == "" {
			a.writeDiags(res.diags, res.files)
			return nil, silentFailure()
		}
	}
	proj := &spec.Config{Dir: abs}
	if res.cfg != nil {
		proj.Project = res.cfg.Project
	}
	l := &located{dir: dir, stateDir: a.settings.StateDirFor(proj), res: res}
	fmt.Fprintf(a.Stderr, "Warning: the configuration in %s does not load (%s); going on with the state in %s\n",
		dir, firstError(res.diags), l.stateDir)
	return l, nil
}

// firstError is the first error of diags in one line: file:line:col:
// summary, and how many more there are.
func firstError(diags hcl.Diagnostics) string {
	var first *hcl.Diagnostic
	n := 0
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if first == nil {
			first = d
		}
		n++
	}
	if first == nil {
		return "no error"
	}
	s := first.Summary
	if first.Subject != nil {
		r := first.Subject
		s = fmt.Sprintf("%s:%d:%d: %s", r.Filename, r.Start.Line, r.Start.Column, s)
	} else if first.Detail != "" {
		s += ": " + first.Detail
	}
	if n > 1 {
		s += fmt.Sprintf("; %d more errors", n-1)
	}
	return s
}

// agentOf returns a client of the agent (or orch up) running on l's state
// directory, or nil when none answers. Its Variables are not set: the
// requests these commands make (status, events, restart, signal) do not
// plan.
func (a *App) agentOf(l *located) *agent.Client {
	c, err := agent.Dial(a.settings.AgentSocketFor(l.stateDir))
	if err != nil {
		return nil // none, or a killed agent's socket (agent.Dial asks it)
	}
	c.Waiting = func(addr string) {
		fmt.Fprintf(a.Stderr, "%s is being changed right now (a start, a replace or a restart); waiting for that to end\n", addr)
	}
	return c
}

// recorded lists the instances the state of l records; none when it was
// never applied.
func (l *located) recorded() ([]state.Instance, error) {
	path := filepath.Join(l.stateDir, "state.db")
	st, err := state.OpenReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", path, err)
	}
	defer st.Close()
	insts, err := st.List()
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", path, err)
	}
	return insts, nil
}

// expand resolves the addresses a user named against the instances that
// exist: a name with a key (worker[1], daemon.web["eu"]) is that instance;
// one without (worker) is itself when such an instance exists (a block
// without count), else every instance of the block, in key order. A name
// nothing matches stays as it is, for the caller to report.
func expand(names []spec.Address, known []spec.Address) []spec.Address {
	var out []spec.Address
	seen := map[spec.Address]bool{}
	add := func(a spec.Address) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	isKnown := map[spec.Address]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	for _, n := range names {
		if n.Key != spec.NoKey || isKnown[n] {
			add(n)
			continue
		}
		var all []spec.Address
		for _, k := range known {
			if k.Block() == n {
				all = append(all, k)
			}
		}
		if len(all) == 0 {
			add(n)
			continue
		}
		sort.Slice(all, func(i, j int) bool { return all[i].Less(all[j]) })
		for _, k := range all {
			add(k)
		}
	}
	return out
}

// instancesOf resolves name to the instances it addresses (worker: every
// worker[i]), against what the agent c supervises when c is not nil (asked
// once), the state and the configuration.
func (a *App) instancesOf(ctx context.Context, l *located, c *agent.Client, name spec.Address) ([]spec.Address, error) {
	var st *agent.StatusResponse
	if c != nil {
		var err error
		if st, err = c.Status(ctx); err != nil {
			return nil, a.agentErr(err)
		}
	}
	return expand([]spec.Address{name}, a.knownInstances(l, st)), nil
}

// knownInstances lists the instances to resolve names against: what the
// agent supervises (st, when one runs), what the state records, and what the
// configuration declares when it loads.
func (a *App) knownInstances(l *located, st *agent.StatusResponse) []spec.Address {
	var out []spec.Address
	if st != nil {
		for _, in := range st.Instances {
			if addr, err := spec.ParseAddress(in.Address); err == nil {
				out = append(out, addr)
			}
		}
	}
	if insts, err := l.recorded(); err == nil {
		for _, in := range insts {
			out = append(out, in.Addr)
		}
	}
	if l.cfg != nil {
		for _, r := range l.cfg.Resources {
			out = append(out, r.Addr)
		}
	}
	return out
}
