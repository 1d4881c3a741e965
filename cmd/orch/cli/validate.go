package cli

import (
	"regexp"
	"strings"

	"fmt"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"

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
			a.checkPrograms = true
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
	var (
		vf     varFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "graph [DIR]",
		Short: "Print the dependency graph in Graphviz DOT",
		Long: `Load and validate the configuration in DIR (default: the current directory),
then print its dependency graph in Graphviz's DOT language on standard
output: one node per daemon, job and module instance and per runtime, and an
edge from each one to what it depends on (references, depends_on, its
runtime), as terraform graph draws them. Render it with, for example,
"orch graph | dot -Tsvg > graph.svg". -json prints {nodes: [address...],
edges: [{from, to}...]} instead, from depending on to.

The graph needs the configuration, not the values of its variables: a
required variable without a value (a secret kept out of this shell) is
given a placeholder of its type, and a note on standard error says so. An
invalid configuration prints its diagnostics on standard error and exits 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			res := a.loadConfig(dir, &vf)
			if names, vals := placeholders(res); len(names) > 0 {
				pf := vf
				pf.vars = append(append([]string{}, vf.vars...), vals...)
				if again := a.loadConfig(dir, &pf); !again.diags.HasErrors() && again.cfg != nil {
					fmt.Fprintf(a.Stderr, "Note: no value for %s: drawn with a placeholder value\n", strings.Join(names, ", "))
					res = again
				}
			}
			a.writeDiags(res.diags, res.files)
			if res.diags.HasErrors() || res.cfg == nil || res.cfg.Graph == nil {
				return silentFailure()
			}
			if asJSON {
				return writeJSON(a.Stdout, graphJSON(res.cfg.Graph))
			}
			if _, err := fmt.Fprint(a.Stdout, res.cfg.Graph.DOT()); err != nil {
				return &exitError{code: ExitError, msg: err.Error()}
			}
			return nil
		},
	}
	vf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the graph as JSON {nodes, edges}")
	return cmd
}

// JSONGraph is the output of `orch graph -json`.
type JSONGraph struct {
	Nodes []string   `json:"nodes"`
	Edges []JSONEdge `json:"edges"`
}

// JSONEdge says From depends on To.
type JSONEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func graphJSON(g *spec.Graph) JSONGraph {
	out := JSONGraph{Nodes: []string{}, Edges: []JSONEdge{}}
	for _, n := range g.Nodes() {
		out.Nodes = append(out.Nodes, n.String())
		for _, d := range g.DependenciesOf(n) {
			out.Edges = append(out.Edges, JSONEdge{From: n.String(), To: d.String()})
		}
	}
	return out
}

var noValueRE = regexp.MustCompile(`^Variable "([^"]+)" has no default`)

// placeholders returns, when the only errors of res are required
// variables without a value, their names and -var assignments giving each
// a value of its declared type (the zero value: "", 0, false, [], {}).
func placeholders(res loadResult) (names, vars []string) {
	for _, d := range res.diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		m := noValueRE.FindStringSubmatch(d.Detail)
		if d.Summary != "No value for required variable" || m == nil || d.Subject == nil {
			return nil, nil
		}
		ty := cty.DynamicPseudoType
		if f := res.files[d.Subject.Filename]; f != nil {
			ty = declaredType(f, m[1])
		}
		text := ""
		if ty != cty.String && ty != cty.DynamicPseudoType {
			text = string(hclwrite.TokensForValue(zeroValue(ty)).Bytes())
		}
		names = append(names, "var."+m[1])
		vars = append(vars, m[1]+"="+text)
	}
	return names, vars
}

// declaredType reads the type constraint of variable name in f; any when
// it has none or f is not native syntax.
func declaredType(f *hcl.File, name string) cty.Type {
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return cty.DynamicPseudoType
	}
	for _, b := range body.Blocks {
		if b.Type != "variable" || len(b.Labels) != 1 || b.Labels[0] != name {
			continue
		}
		if attr, ok := b.Body.Attributes["type"]; ok {
			if ty, diags := typeexpr.TypeConstraint(attr.Expr); !diags.HasErrors() {
				return ty
			}
		}
	}
	return cty.DynamicPseudoType
}

func zeroValue(ty cty.Type) cty.Value {
	switch {
	case ty == cty.String || ty == cty.DynamicPseudoType:
		return cty.StringVal("")
	case ty == cty.Number:
		return cty.Zero
	case ty == cty.Bool:
		return cty.False
	case ty.IsListType(), ty.IsSetType(), ty.IsTupleType() && len(ty.TupleElementTypes()) == 0:
		return cty.EmptyTupleVal
	case ty.IsTupleType():
		var vs []cty.Value
		for _, et := range ty.TupleElementTypes() {
			vs = append(vs, zeroValue(et))
		}
		return cty.TupleVal(vs)
	case ty.IsMapType():
		return cty.EmptyObjectVal
	case ty.IsObjectType():
		attrs := map[string]cty.Value{}
		for n, at := range ty.AttributeTypes() {
			attrs[n] = zeroValue(at)
		}
		return cty.ObjectVal(attrs)
	}
	return cty.StringVal("")
}
