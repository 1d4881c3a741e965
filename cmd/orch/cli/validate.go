package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) validateCommand() *cobra.Command {
	var (
		vf     varFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check that a configuration is valid",
		Long: `Load the configuration in DIR (default: the current directory) the way every
other command does: parse every *.hcl and *.hcl.json file, resolve variables
(-var-file, then -var, then ORCH_VAR_<name> from the environment, then
defaults), evaluate, and check references, types, runtimes and the
dependency graph. Nothing is started and no state is read. Problems are
printed with their file, line and a snippet of source on standard error;
with -json, a JSON report (see docs/cli.md) is printed on standard output
instead. Exits 0 when the configuration is valid, 1 otherwise.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			res := a.loadConfig(dir, &vf)
			if asJSON {
				out := newJSONDiagnostics(res.diags, res.files)
				if err := writeJSON(a.Stdout, out); err != nil {
					return &exitError{code: ExitError, msg: err.Error()}
				}
				if !out.Valid {
					return silentFailure()
				}
				return nil
			}
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() {
				return silentFailure()
			}
			fmt.Fprintln(a.Stdout, "Success! The configuration is valid.")
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON report on standard output instead of text")
	return cmd
}

func (a *App) graphCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "graph [DIR]",
		Short: "Print the dependency graph in Graphviz DOT",
		Long: `Load and validate the configuration in DIR (default: the current directory),
then print its dependency graph in Graphviz's DOT language on standard
output: one node per daemon, job and module instance and per runtime, and an
edge from each one to what it depends on (references, depends_on, its
runtime), as terraform graph draws them. Render it with, for example,
"orch graph | dot -Tsvg > graph.svg". An invalid configuration prints its
diagnostics on standard error and exits 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			res := a.loadConfig(dir, &vf)
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() || res.cfg == nil || res.cfg.Graph == nil {
				return silentFailure()
			}
			if _, err := fmt.Fprint(a.Stdout, res.cfg.Graph.DOT()); err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	return cmd
}
