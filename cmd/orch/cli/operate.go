package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/mattn/go-isatty"
	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers/docker"
	"github.com/orch-dev/orch/providers/module"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/pflag"
)

// Exit code of plan -detailed-exitcode when the plan has changes.
const ExitChanges = 2

// providerSet wires the concrete backends. It is the one place that knows
// them all.
func providerSet() executor.Providers {
	return executor.Providers{process.Kind: process.New(process.Options{}), docker.Kind: docker.New(docker.Options{}),
		docker.KindPodman: docker.New(docker.Options{Kind: docker.KindPodman}),
		module.Kind:       module.New(module.Options{Unhosted: unhosted}), systemd.Kind: systemd.New(systemd.Options{})}
}

// unhosted is why a one-shot command cannot start a module.
const unhosted = "modules run inside the engine: start them with orch up or orch agent (orch apply talks to a running agent)"

// lockFlags are the state-locking flags of commands that write state.
type lockFlags struct{ timeout time.Duration }

func (l *lockFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&l.timeout, "lock-timeout", 0, "wait up to `DURATION` for another orch to release the state lock (default: fail at once)")
}

// session is one loaded configuration with its open state, ready to plan.
type session struct {
	res      loadResult
	cfg      *spec.Config
	stateDir string
	store    *state.Store
	provs    executor.Providers
	// away are the runtimes the last plan could not reach, and left the
	// changes it left out for them.
	away map[spec.Address]error
	left []*planner.Change
	// records are the state's, read while the configuration loaded
	// (fetched; prefetch.go), for the first plan to take.
	records []state.Instance
	fetched bool
}

// awayErr is the error of an apply that went on around unreachable
// runtimes: what it left out, by runtime; nil when it left out nothing.
func (s *session) awayErr() error {
	if len(s.away) == 0 {
		return nil
	}
	rts := make([]spec.Address, 0, len(s.away))
	for rt := range s.away {
		rts = append(rts, rt)
	}
	sort.Slice(rts, func(i, j int) bool { return rts[i].Less(rts[j]) })
	var b strings.Builder
	for i, rt := range rts {
		if i > 0 {
			b.WriteString("\n")
		}
		var names []string
		for _, c := range s.left {
			if c.Runtime() == rt {
				names = append(names, c.Addr.String())
			}
		}
		fmt.Fprintf(&b, "%s is unreachable (%v): ", rt, s.away[rt])
		if len(names) == 0 {
			b.WriteString("nothing on it needed a change, but what runs there could not be checked")
		} else {
			fmt.Fprintf(&b, "not applied: %s", strings.Join(names, ", "))
		}
	}
	b.WriteString("\nEverything else was applied; apply again once it is back.")
	return &exitError{code: ExitError, msg: b.String()}
}

func (s *session) close() {
	if s.store != nil {
		s.store.Close()
	}
}

// open loads the configuration in dir and opens its state for writing,
// taking the lock. Diagnostics are printed; a nil session means failure.
func (a *App) open(dir string, vf *varFlags, lf *lockFlags, op string) (*session, error) {
	res := a.loadConfig(dir, vf)
	phase("load")
	a.writeDiags(res.diags, res.files)
	if res.diags.HasErrors() {
		return nil, silentFailure()
	}
	s := &session{res: res, cfg: res.cfg, stateDir: a.settings.StateDirFor(res.cfg), provs: a.providerSet()}
	be, err := a.backendFor(res.cfg)
	if err != nil {
		return nil, &exitError{code: ExitError, msg: err.Error()}
	}
	path := filepath.Join(s.stateDir, "state.db")
	if st, records := a.takeFetch(path, be); st != nil {
		s.store, s.records, s.fetched = st, records, true
		phase("open state")
		return s, nil
	}
	st, err := state.Open(path, state.Options{Operation: op, LockTimeout: lf.timeout, Backend: be})
	if err != nil {
		var le *state.LockedError
		if errors.As(err, &le) {
			return nil, &exitError{code: ExitError, msg: fmt.Sprintf("%s.\nAnother orch is working on %s. Wait for it, or pass -lock-timeout to wait.", err, res.cfg.Dir)}
		}
		return nil, &exitError{code: ExitError, msg: err.Error()}
	}
	s.store = st
	phase("open state")
	return s, nil
}

// usesRuntime reports whether cfg declares a runtime of kind.
func usesRuntime(cfg *spec.Config, kind string) bool {
	for _, rt := range cfg.Runtimes {
		if rt.Kind == kind {
			return true
		}
	}
	return false
}

// plan refreshes and plans.
func (a *App) plan(ctx context.Context, s *session, destroy bool) (*planner.Plan, error) {
	// The process runtime's registry, which the refresh replays to find
	// what the state does not know, is read beside the state's records.
	warmed := make(chan struct{})
	if usesRuntime(s.cfg, "process") {
		go func() {
			defer close(warmed)
			process.WarmRegistry(s.stateDir)
		}()
	} else {
		close(warmed)
	}
	defer func() { <-warmed }()
	// The desired snapshots are made beside the refresh: the stored
	// configurations are read only where they differ (Prepared).
	var prep *planner.Prepared
	prepared := make(chan struct{})
	go func() {
		defer close(prepared)
		if !destroy {
			prep = planner.Prepare(s.cfg, s.provs.Schemas())
		}
	}()
	defer func() { <-prepared }()
	stored, err := s.records, error(nil)
	if !s.fetched {
		stored, err = s.store.ListWith(state.ListOptions{OmitConfig: !destroy && !a.partial.any()})
	}
	s.records, s.fetched = nil, false
	if err != nil {
		return nil, &exitError{code: ExitError, msg: "reading state: " + err.Error()}
	}
	phase("list")
	// A runtime that cannot be reached (a Docker Engine, a systemd bus
	// away) holds back nothing else: its changes are left out, said
	// here, and the apply fails at its end naming them.
	in, away, err := executor.RefreshAround(ctx, s.cfg, stored, s.provs, s.cfg.Project.Name, s.stateDir)
	if err != nil {
		return nil, &exitError{code: ExitError, msg: err.Error()}
	}
	// The process provider's registry was read for adoption; what the
	// apply may look up later is read again then.
	phase("refresh")
	<-warmed
	process.ReleaseRegistryCaches()
	process.ReleaseWarmStats()
	in.Destroy = destroy
	if in.Targets, in.Replace, err = a.partial.addresses(); err != nil {
		return nil, err
	}
	<-prepared
	if err := executor.ReadOmittedConfigs(s.store, &in, prep); err != nil {
		return nil, &exitError{code: ExitError, msg: "reading state: " + err.Error()}
	}
	p, diags := planner.Make(in)
	phase("make")
	if len(away) > 0 && p != nil {
		p, s.left = planner.Without(p, away)
		s.away = away
		rts := make([]spec.Address, 0, len(away))
		for rt := range away {
			rts = append(rts, rt)
		}
		sort.Slice(rts, func(i, j int) bool { return rts[i].Less(rts[j]) })
		for _, rt := range rts {
			var subject *hcl.Range
			if r := s.cfg.Runtime(rt); r != nil && r.DeclRange.Filename != "" {
				subject = &r.DeclRange
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Runtime unreachable",
				Detail:  fmt.Sprintf("%s cannot be reached (%v). What runs there is left as it is: its changes are not in this plan, and the rest goes on.", rt, away[rt]),
				Subject: subject})
		}
	}
	a.writeDiags(diags, s.res.files)
	if diags.HasErrors() {
		return p, silentFailure()
	}
	return p, nil
}

func (a *App) colour(w io.Writer) bool {
	f, ok := fileOf(w)
	if !ok || a.noColor {
		return false
	}
	_, noColour := os.LookupEnv("NO_COLOR")
	return !noColour && os.Getenv("TERM") != "dumb" && isatty.IsTerminal(f.Fd())
}

// interruptible returns a context cancelled by the first SIGINT or SIGTERM,
// saying notice on stderr; a second one exits 130 at once. Signals within
// signalCoalesce of the first count as one (GNU timeout, and some service
// managers, send two at once).
func (a *App) interruptible(notice string) (context.Context, func()) {
	ctx, hurry, stop := a.interruptibleHurry(notice, "")
	go func() {
		select {
		case <-hurry:
			os.Exit(130)
		case <-ctx.Done():
		}
	}()
	return ctx, stop
}

// signalCoalesce is how close together two interrupts count as one.
const signalCoalesce = 2 * time.Second

// interruptibleHurry is interruptible for orch up and orch agent: the
// first SIGINT or SIGTERM cancels the context (saying notice); one that
// comes later than signalCoalesce after it closes hurry (saying
// hurryNotice), and the caller stops what remains faster instead of
// exiting with daemons left running.
func (a *App) interruptibleHurry(notice, hurryNotice string) (context.Context, <-chan struct{}, func()) {
	return a.interruptibleHurryOr(notice, hurryNotice, nil, "")
}

// interruptibleHurryOr is interruptibleHurry where gone, when closed,
// counts as a first interrupt too (orch up's output was closed), with its
// own notice.
func (a *App) interruptibleHurryOr(notice, hurryNotice string, gone <-chan struct{}, goneNotice string) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	hurry := make(chan struct{})
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		var first time.Time
		for {
			select {
			case <-gone:
				gone = nil
				if first.IsZero() {
					first = time.Now()
					fmt.Fprintln(a.Stderr, goneNotice)
					cancel()
				}
				continue
			case _, ok := <-ch:
				if !ok {
					return
				}
			}
			switch {
			case first.IsZero():
				first = time.Now()
				fmt.Fprintln(a.Stderr, notice)
				cancel()
			case time.Since(first) < signalCoalesce:
				// the same interrupt, sent twice
			default:
				if hurryNotice != "" {
					fmt.Fprintln(a.Stderr, hurryNotice)
				}
				close(hurry)
				return
			}
		}
	}()
	return ctx, hurry, func() { signal.Stop(ch); cancel() }
}

// applyNotice is what an interrupted plan or apply says.
const applyNotice = "\nInterrupt received: finishing the steps in flight and recording state. Press Ctrl-C again to quit at once."

// confirm asks the user to type yes.
func (a *App) confirm(question string) bool {
	fmt.Fprintf(a.Stdout, "\n%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", question)
	line, _ := bufio.NewReader(a.Stdin).ReadString('\n')
	fmt.Fprintln(a.Stdout)
	return strings.TrimSpace(line) == "yes"
}

// execute applies p and reports progress and the result.
func (a *App) execute(ctx context.Context, s *session, p *planner.Plan, destroy bool) error {
	// The lock may have lapsed while orch waited at the prompt (an etcd
	// lease, when orch was paused or cut off): start nothing then.
	if err := s.store.CheckLock(); err != nil {
		return &exitError{code: ExitError, msg: err.Error() + ".\nNothing was started or stopped; plan again."}
	}
	ex := &executor.Executor{Providers: s.provs, Store: s.store, Parallelism: a.settings.Parallelism,
		Project: s.cfg.Project.Name, StateDir: s.stateDir, Progress: a.progress()}
	// The wait for the starts to prove alive reads every one: the
	// collector stays tight through it too.
	defer executor.TightenGC(len(p.Changes))()
	var ready *readiness
	if a.wait != nil && !destroy {
		ready = newReadiness(s, a.wait)
		ready.install(ex)
	}
	res, err := ex.Apply(ctx, s.cfg, p)
	phase("execute")
	var dead []error
	if ready != nil && err == nil {
		if ready.waits() && usesRuntime(s.cfg, "process") {
			// While the starts prove alive, the process runtime's
			// registry, which this apply wrote to, is summarised, so
			// that the next plan need not replay it (regsummary.go).
			summarised := make(chan struct{})
			go func() {
				defer close(summarised)
				process.SummarizeRegistry(s.stateDir)
				process.ReleaseRegistryCaches()
			}()
			defer func() { <-summarised }()
		}
		dead = ready.checkAlive(ctx)
		phase("alive")
		for _, d := range dead {
			if a.jsonApply {
				a.emit(JSONApplyLine{Type: "diagnostic", Diagnostic: &JSONDiagnostic{Severity: "error", Summary: d.Error()}})
				continue
			}
			fmt.Fprintf(a.Stderr, "Error: %v\n", d)
		}
	}
	if res != nil {
		a.writeDiags(res.Diagnostics, s.res.files)
		for _, o := range res.Outcomes {
			if !o.Skipped.IsZero() && o.Err == nil {
				if a.jsonApply {
					a.emit(JSONApplyLine{Type: "skipped", Address: o.Addr.String(), Reason: o.Skipped.String()})
					continue
				}
				fmt.Fprintf(a.Stderr, "%s: not applied, %s\n", o.Addr, o.Skipped)
			}
		}
	}
	if err != nil {
		return &exitError{code: ExitError, msg: err.Error()}
	}
	sum := res.Summary()
	verb := "Apply"
	if destroy {
		verb = "Destroy"
	}
	if a.jsonApply {
		ok := len(res.Diagnostics) == 0 && len(dead) == 0
		a.emitSummary(ok, sum.Add, sum.Change, sum.Replace, sum.Destroy)
		if !ok {
			return silentFailure()
		}
		return nil
	}
	if len(res.Diagnostics) > 0 || len(dead) > 0 {
		fmt.Fprintf(a.Stdout, "\n%s failed. Done: %d added, %d changed, %d replaced, %d destroyed.\n", verb, sum.Add, sum.Change, sum.Replace, sum.Destroy)
		return silentFailure()
	}
	if len(s.away) > 0 {
		// What could be reached was done; the error after says what not.
		fmt.Fprintf(a.Stdout, "\n%s incomplete: a runtime was unreachable. Done: %d added, %d changed, %d replaced, %d destroyed.\n", verb, sum.Add, sum.Change, sum.Replace, sum.Destroy)
		return nil
	}
	fmt.Fprintf(a.Stdout, "\n%s complete! Resources: %d added, %d changed, %d replaced, %d destroyed.\n", verb, sum.Add, sum.Change, sum.Replace, sum.Destroy)
	return nil
}

var progressVerbs = map[planner.Action][2]string{
	planner.Create:  {"Creating...", "Creation complete"},
	planner.Start:   {"Starting...", "Started"},
	planner.Update:  {"Updating in-place...", "Update complete"},
	planner.Reload:  {"Reloading...", "Reloaded"},
	planner.Adopt:   {"Adopting...", "Adopted"},
	planner.Delete:  {"Destroying...", "Destruction complete"},
	planner.Replace: {"Replacing...", "Replaced"},
}

// progress prints one line as a step starts and one as it ends, like
// Terraform; a replacement's two steps are told apart.
func (a *App) progress() func(executor.StepEvent) {
	if a.jsonApply {
		return a.emitStep
	}
	return func(ev executor.StepEvent) {
		v := progressVerbs[ev.Action]
		if ev.Action == planner.Replace {
			if ev.Kind == executor.StepDown {
				v = [2]string{"Destroying (replace)...", "Destroyed (replace)"}
			} else {
				v = [2]string{"Creating (replace)...", "Created (replace)"}
			}
		}
		switch {
		case ev.Skipped, ev.Running:
		case !ev.Done:
			fmt.Fprintf(a.Stdout, "%s: %s\n", ev.Addr, v[0])
		case ev.Err != nil:
			fmt.Fprintf(a.Stdout, "%s: failed after %s\n", ev.Addr, roundDur(ev.Elapsed))
		default:
			extra := ""
			if ev.Observed.Pid != 0 && ev.Kind == executor.StepUp {
				extra = fmt.Sprintf(" [pid=%d]", ev.Observed.Pid)
			}
			fmt.Fprintf(a.Stdout, "%s: %s after %s%s\n", ev.Addr, v[1], roundDur(ev.Elapsed), extra)
		}
	}
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func dirArg(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return "."
}
