package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/orch-dev/orch/planner"
	"github.com/spf13/cobra"
)

func (a *App) applyCommand() *cobra.Command {
	var (
		vf          varFlags
		lf          lockFlags
		wf          waitFlags
		autoApprove bool
	)
	cmd := &cobra.Command{
		Use:   "apply [DIR | PLANFILE]",
		Short: "Make the host match the configuration",
		Long: `Plan as orch plan does, show the plan, ask for confirmation (unless
-auto-approve), then perform it in dependency order: dependencies start
before what depends on them, deletions run in reverse order, independent
branches in parallel (--parallelism). Each step's result is recorded in the
state as it happens. A failure skips what depends on it and lets the rest
finish. Ctrl-C lets the steps in flight finish, records them and exits 1.

It waits for what it started to be ready (-wait=false: it does not): a
daemon with a health check until a probe passes (within health.start_timeout
or -wait-timeout), and only then starts what depends on it; a daemon
without one must still run 500ms after its start. It exits 1 naming each
daemon that exited or never became ready, with the last lines of its log.

Given a plan file saved by orch plan -out, apply performs exactly that plan
without asking, and refuses it when the configuration or the observed world
changed since it was made.

-json prints JSON lines instead of text (plan, step, skipped, diagnostic,
event, summary; docs/cli.md); it needs -auto-approve or a plan file, as
there is no prompt to answer.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.makesState = true
			if wf.wait {
				a.wait = &wf
			}
			arg := dirArg(args)
			if a.jsonApply && !autoApprove {
				if _, isPlan, _ := readSavedPlan(arg); !isPlan {
					return usageError{fmt.Errorf("-json needs -auto-approve (or a saved plan): there is no prompt to answer")}
				}
			}
			sp, isPlan, err := readSavedPlan(arg)
			if err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			if isPlan {
				if a.partial.set() {
					return usageError{fmt.Errorf("-target and -replace are part of a saved plan: give them to orch plan -out")}
				}
				if err := sp.checkGiven(arg, &vf); err != nil {
					return err
				}
				if a.agentFor(sp.Dir, &varFlags{vars: append(append([]string{}, sp.Vars...), vf.vars...), varFiles: vf.varFiles}) != nil {
					return &exitError{code: ExitError, msg: "an agent (or orch up) runs for " + sp.Dir + ": run orch apply " + sp.Dir + " instead of a saved plan"}
				}
				return a.applySaved(sp, &vf, &lf)
			}
			return a.applyDir(arg, &vf, &lf, autoApprove, false)
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	wf.register(cmd.Flags())
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "apply without asking for confirmation")
	cmd.Flags().BoolVar(&a.jsonApply, "json", false, "print JSON lines (needs -auto-approve or a plan file)")
	a.partial.register(cmd.Flags(), true)
	return cmd
}

func (a *App) destroyCommand() *cobra.Command {
	var (
		vf          varFlags
		lf          lockFlags
		autoApprove bool
	)
	cmd := &cobra.Command{
		Use:   "destroy [DIR]",
		Short: "Stop and remove everything orch manages for a configuration",
		Long: `Plan the destruction of every instance the state of DIR records (and every
running object of this project a provider can find), show it, ask for
confirmation (unless -auto-approve), and stop and remove them in reverse
dependency order. Instances with lifecycle.prevent_destroy refuse. -json
prints JSON lines as apply -json does; it needs -auto-approve.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.jsonApply && !autoApprove {
				return usageError{fmt.Errorf("-json needs -auto-approve: there is no prompt to answer")}
			}
			return a.applyDir(dirArg(args), &vf, &lf, autoApprove, true)
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "destroy without asking for confirmation")
	cmd.Flags().BoolVar(&a.jsonApply, "json", false, "print JSON lines (needs -auto-approve)")
	a.partial.register(cmd.Flags(), false)
	return cmd
}

func (a *App) applyDir(dir string, vf *varFlags, lf *lockFlags, autoApprove, destroy bool) error {
	op := "apply"
	if destroy {
		op = "destroy"
	}
	a.fetchState(dir, op, destroy)
	if err := a.refuseOnSeveralHosts(dir, vf); err != nil {
		return err
	}
	if c := a.agentFor(dir, vf); c != nil {
		if err := a.partial.refuseAgent(dir); err != nil {
			return err
		}
		return a.applyViaAgent(c, autoApprove, destroy)
	}
	s, err := a.open(dir, vf, lf, op)
	if err != nil {
		return err
	}
	defer s.close()
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	p, err := a.plan(ctx, s, destroy)
	if err != nil {
		return err
	}
	if a.jsonApply {
		a.emitPlan(p)
		if !p.HasChanges() {
			a.emitSummary(s.awayErr() == nil, 0, 0, 0, 0)
			return s.awayErr()
		}
	} else {
		planner.RenderTo(a.Stdout, p, planner.RenderOptions{Color: a.colour(a.Stdout)})
	}
	if !p.HasChanges() {
		return s.awayErr()
	}
	if !autoApprove {
		q := "Do you want to perform these actions?\n  orch will perform the actions described above."
		if destroy {
			q = "Do you really want to destroy everything orch manages here?\n  orch will stop and remove every instance described above."
		}
		if !a.confirm(q) {
			return &exitError{code: ExitError, msg: op + " cancelled: only 'yes' approves."}
		}
	}
	if ctx.Err() != nil {
		return &exitError{code: ExitError, msg: op + " interrupted before it started; nothing was changed."}
	}
	if err := a.execute(ctx, s, p, destroy); err != nil {
		return err
	}
	return s.awayErr()
}

// applySaved re-plans from the plan file's recorded inputs and applies only
// if the result is the same plan.
//
// The values of its sensitive variables are not in the file: they come
// from given (-var, -var-file) and the environment (ORCH_VAR_<name>), and
// must be those the plan was made with.
func (a *App) applySaved(sp *savedPlan, given *varFlags, lf *lockFlags) error {
	vf := varFlags{vars: append(append([]string{}, sp.Vars...), given.vars...),
		environ: append([]string{}, sp.Environ...), varFiles: append([]string{}, given.varFiles...)}
	for _, kv := range orchVarEnviron(os.Environ()) {
		name, _, _ := strings.Cut(strings.TrimPrefix(kv, "ORCH_VAR_"), "=")
		if sp.isSensitive(name) {
			vf.environ = append(vf.environ, kv)
		}
	}
	tmp, err := os.MkdirTemp("", "orch-plan-vars-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, v := range sp.VarFiles {
		name := filepath.Join(tmp, fmt.Sprintf("%d-%s", i, filepath.Base(v.Name)))
		if err := os.WriteFile(name, []byte(v.Src), 0o600); err != nil {
			return err
		}
		vf.varFiles = append(vf.varFiles, name)
	}
	a.partial = partialFlags{targets: sp.Targets, replace: sp.Replace}
	s, err := a.open(sp.Dir, &vf, lf, "apply")
	if err != nil {
		if len(sp.Sensitive) > 0 {
			fmt.Fprintf(a.Stderr, "The plan file does not hold the values of its sensitive variables (%s): give them again, as when the plan was made, with -var, -var-file or ORCH_VAR_<name>.\n", sp.sensitiveNames())
		}
		return err
	}
	defer s.close()
	for _, sec := range sp.Sensitive {
		v := s.cfg.Variables[sec.Name]
		if v == nil || !v.Sensitive || secretHash(sp.Salt, v) != sec.Hash {
			return &exitError{code: ExitError, msg: fmt.Sprintf("Saved plan was made with another value of the sensitive variable %q: a plan file does not hold sensitive values, so give the one the plan was made with (-var, -var-file or ORCH_VAR_%s).", sec.Name, sec.Name)}
		}
	}
	if sp.StateDir != "" && sp.StateDir != s.stateDir {
		return &exitError{code: ExitError, msg: fmt.Sprintf("Saved plan is for the state in %s, but this apply would use %s (check --state-dir and ORCH_STATE_DIR).", sp.StateDir, s.stateDir)}
	}
	ctx, stop := a.interruptible(applyNotice)
	defer stop()
	p, err := a.plan(ctx, s, sp.Destroy)
	if err != nil {
		return err
	}
	if p.Fingerprint != sp.Fingerprint {
		why := "what runs, or the state, changed since the plan was made (something started, stopped or was applied)"
		if p.ConfigHash != sp.ConfigHash {
			why = "the configuration in " + sp.Dir + " changed since the plan was made"
		}
		return &exitError{code: ExitError, msg: "Saved plan is stale: " + why + ".\nThe plan was: " + sp.Summary + "\nRun orch plan again and review the new plan."}
	}
	if a.jsonApply {
		a.emitPlan(p)
		if !p.HasChanges() {
			a.emitSummary(s.awayErr() == nil, 0, 0, 0, 0)
			return s.awayErr()
		}
	} else {
		planner.RenderTo(a.Stdout, p, planner.RenderOptions{Color: a.colour(a.Stdout)})
	}
	if !p.HasChanges() {
		return s.awayErr()
	}
	if err := a.execute(ctx, s, p, sp.Destroy); err != nil {
		return err
	}
	return s.awayErr()
}
