package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/cobra"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// savedPlan is the file `orch plan -out FILE` writes and `orch apply FILE`
// reads. It records how to rebuild the plan (directory and variables) and
// the fingerprint the rebuilt plan must match: orch re-reads the
// configuration, re-observes the world and refuses the file when anything
// moved. It never holds the value of a sensitive variable: those are left
// out of Vars, Environ and VarFiles, and Sensitive holds a salted hash of
// each, which the values given again to orch apply FILE must match. It is
// written 0600 all the same.
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
	// Salt is random, for the hashes of Sensitive.
	Salt      string        `json:"salt,omitempty"`
	Sensitive []savedSecret `json:"sensitive_variables,omitempty"`
	// Targets and Replace are the plan's -target and -replace: applying
	// it plans with them again.
	Targets []string `json:"targets,omitempty"`
	Replace []string `json:"replace,omitempty"`
}

// savedSecret is a sensitive variable of a saved plan: its name and the
// SHA-256 of the salt, the name and its value as JSON.
type savedSecret struct {
	Name string `json:"name"`
	Hash string `json:"sha256"`
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
			a.checkPrograms, a.makesState = true, true
			a.fetchState(dirArg(args), "plan", destroy)
			if done, err := a.placementPlan(dirArg(args), &vf, asJSON, detailed); done || err != nil {
				return err
			}
			if c := a.agentFor(dirArg(args), &vf); c != nil {
				if err := a.partial.refuseAgent(dirArg(args)); err != nil {
					return err
				}
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
				planner.RenderTo(a.Stdout, p, planner.RenderOptions{Color: a.colour(a.Stdout)})
			}
			phase("render")
			if out != "" {
				if err := writeSavedPlan(out, s, &vf, p, a.partial); err != nil {
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
	a.partial.register(cmd.Flags(), true)
	return cmd
}

func writeSavedPlan(path string, s *session, vf *varFlags, p *planner.Plan, pf partialFlags) error {
	sp := savedPlan{FormatVersion: savedPlanFormat, Dir: s.cfg.Dir, Destroy: p.Destroy, StateDir: s.stateDir,
		ConfigHash: p.ConfigHash, Fingerprint: p.Fingerprint, Summary: planner.SummaryLine(p),
		Targets: pf.targets, Replace: pf.replace}
	sensitive := map[string]bool{}
	for name, v := range s.cfg.Variables {
		if v.Sensitive {
			sensitive[name] = true
		}
	}
	if len(sensitive) > 0 {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		sp.Salt = hex.EncodeToString(salt)
		for _, name := range sortedKeys(sensitive) {
			sp.Sensitive = append(sp.Sensitive, savedSecret{Name: name, Hash: secretHash(sp.Salt, s.cfg.Variables[name])})
		}
	}
	for _, kv := range vf.vars {
		if name, _, _ := strings.Cut(kv, "="); !sensitive[strings.TrimSpace(name)] {
			sp.Vars = append(sp.Vars, kv)
		}
	}
	for _, kv := range orchVarEnviron(os.Environ()) {
		if name, _, _ := strings.Cut(strings.TrimPrefix(kv, "ORCH_VAR_"), "="); !sensitive[name] {
			sp.Environ = append(sp.Environ, kv)
		}
	}
	for _, name := range vf.varFiles {
		src, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if src, err = withoutVariables(name, src, sensitive); err != nil {
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

// secretHash is the hash a saved plan keeps of a sensitive variable's
// value.
func secretHash(salt string, v *spec.Variable) string {
	b, err := ctyjson.Marshal(v.Value, v.Type)
	if err != nil {
		b = []byte(v.Value.GoString())
	}
	h := sha256.New()
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(v.Name))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// withoutVariables returns the variables file src (HCL, or JSON when name
// ends in .json) without its assignments of the variables in drop.
func withoutVariables(name string, src []byte, drop map[string]bool) ([]byte, error) {
	if len(drop) == 0 {
		return src, nil
	}
	if strings.HasSuffix(name, ".json") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(src, &m); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		found := false
		for k := range m {
			if drop[k] {
				delete(m, k)
				found = true
			}
		}
		if !found {
			return src, nil
		}
		return json.MarshalIndent(m, "", "  ")
	}
	f, d := hclwrite.ParseConfig(src, name, hcl.InitialPos)
	if d.HasErrors() {
		return nil, fmt.Errorf("%s", d.Error())
	}
	found := false
	for k := range f.Body().Attributes() {
		if drop[k] {
			f.Body().RemoveAttribute(k)
			found = true
		}
	}
	if !found {
		return src, nil
	}
	return f.Bytes(), nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkGiven refuses -var and -var-file with the plan file at path, but
// for the sensitive variables it left out: -var only for those, -var-file
// only with those.
func (sp *savedPlan) checkGiven(path string, vf *varFlags) error {
	if len(vf.vars) == 0 && len(vf.varFiles) == 0 {
		return nil
	}
	if len(sp.Sensitive) == 0 {
		return usageError{fmt.Errorf("a saved plan carries its own variables; -var and -var-file cannot be used with %s", path)}
	}
	for _, kv := range vf.vars {
		if name, _, _ := strings.Cut(kv, "="); !sp.isSensitive(strings.TrimSpace(name)) {
			return usageError{fmt.Errorf("-var %s: %s carries its own variables; only its sensitive ones (%s), which it does not hold, are given again", strings.TrimSpace(name), path, sp.sensitiveNames())}
		}
	}
	return nil
}

func (sp *savedPlan) isSensitive(name string) bool {
	for _, s := range sp.Sensitive {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (sp *savedPlan) sensitiveNames() string {
	names := make([]string, len(sp.Sensitive))
	for i, s := range sp.Sensitive {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
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
