package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/orch-dev/orch/planner"
	"github.com/spf13/cobra"
)

// savedPlan is the file `orch plan -out FILE` writes and `orch apply FILE`
// reads. It records how to rebuild the plan (directory and variables) and
// the fingerprint the rebuilt plan must match: orch re-reads the
// configuration, re-observes the world and refuses the file when anything
// moved. It may hold sensitive variable values, so it is written 0600.
type savedPlan struct {
	FormatVersion string   `json:"format_version"`
	Dir           string   `json:"dir"`
	Vars          []string `json:"vars,omitempty"`
	// Environ holds the ORCH_VAR_* variables the plan was made with.
	Environ     []string   `json:"environ,omitempty"`
	StateDir    string     `json:"state_dir"`
	VarFiles    []savedVar `json:"var_files,omitempty"`
	Destroy     bool       `json:"destroy,omitempty"`
	ConfigHash  string     `json:"configuration_hash"`
	Fingerprint string     `json:"fingerprint"`
	Summary     string     `json:"summary"`
}

type savedVar struct {
	Name string `json:"name"`
	Src  string `json:"src"`
}

const savedPlanFormat = "1"

func (a *App) planCommand() *cobra.Command {
	var (
		vf       varFlags
		lf       lockFlags
		out      string
		asJSON   bool
		detailed bool
		destroy  bool
	)
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what apply would change",
		Long: `Load the configuration in DIR (default: the current directory), observe what
runs, and print what apply would do: + create, ~ update in place or start,
-/+ replace (+/- with create_before_destroy), - destroy, and a summary line.
Nothing is changed. -out FILE saves the plan; apply FILE then refuses it if
the configuration or the observed world moved since. -json prints the plan
as JSON (docs/plan-json.md). With -detailed-exitcode the exit code is 0 for
no changes, 2 for changes and 1 for an error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.checkPrograms = true
			if c := a.agentFor(dirArg(args), &vf); c != nil {
				if out != "" {
					return &exitError{code: ExitError, msg: "an agent (or orch up) runs for " + dirArg(args) + ": it applies edits itself, so a plan cannot be saved; use orch apply, which asks the agent"}
				}
				return a.planViaAgent(c, destroy, asJSON, detailed)
			}
			s, err := a.open(dirArg(args), &vf, &lf, "plan")
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
			if asJSON {
				if err := writeJSON(a.Stdout, planner.ToJSON(p)); err != nil {
					return err
				}
			} else {
				fmt.Fprint(a.Stdout, planner.Render(p, planner.RenderOptions{Color: a.colour(a.Stdout)}))
			}
			if out != "" {
				if err := writeSavedPlan(out, s, &vf, p); err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				if !asJSON {
					fmt.Fprintf(a.Stdout, "\nSaved the plan to %s. To perform exactly these actions, run:\n    orch apply %s\n", out, out)
				}
			}
			if detailed && p.HasChanges() {
				return &exitError{code: ExitChanges}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	lf.register(cmd.Flags())
	cmd.Flags().StringVar(&out, "out", "", "save the plan to `FILE` for orch apply FILE")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 when there are no changes, 2 when there are, 1 on error")
	cmd.Flags().BoolVar(&destroy, "destroy", false, "plan the destruction of everything orch manages for this configuration")
	return cmd
}

func writeSavedPlan(path string, s *session, vf *varFlags, p *planner.Plan) error {
	sp := savedPlan{FormatVersion: savedPlanFormat, Dir: s.cfg.Dir, Vars: vf.vars, Destroy: p.Destroy,
		Environ: orchVarEnviron(os.Environ()), StateDir: s.stateDir,
		ConfigHash: p.ConfigHash, Fingerprint: p.Fingerprint, Summary: planner.SummaryLine(p)}
	for _, name := range vf.varFiles {
		src, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		abs, _ := filepath.Abs(name)
		sp.VarFiles = append(sp.VarFiles, savedVar{Name: abs, Src: string(src)})
	}
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return err
	}
	return writeFileMode(path, append(b, '\n'), 0o600)
}

func writeFileMode(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readSavedPlan reads a plan file, or reports that path is not one.
func readSavedPlan(path string) (*savedPlan, bool, error) {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() {
		return nil, false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, true, err
	}
	var sp savedPlan
	if err := json.Unmarshal(b, &sp); err != nil || sp.Fingerprint == "" {
		return nil, true, fmt.Errorf("%s is not a plan file saved by orch plan -out", path)
	}
	if sp.FormatVersion != savedPlanFormat {
		return nil, true, fmt.Errorf("%s has plan format %s; this orch reads format %s", path, sp.FormatVersion, savedPlanFormat)
	}
	return &sp, true, nil
}

// orchVarEnviron keeps the ORCH_VAR_* entries of an environment.
func orchVarEnviron(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "ORCH_VAR_") {
			out = append(out, kv)
		}
	}
	return out
}
