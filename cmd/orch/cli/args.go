package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NormaliseArgs rewrites Terraform-style single-dash long flags into the
// double-dash form cobra parses: once the subcommand is known, a token
// "-name" or "-name=value" whose name (two letters or more) is a flag of
// that command, local or inherited, becomes "--name" or "--name=value".
// Anything else is left as it is: one-letter shorthands ("-h"), arguments,
// unknown names (cobra then reports them), the value that follows a flag
// taking one (so "-var -x=1" keeps "-x=1"), and everything after "--".
func NormaliseArgs(root *cobra.Command, args []string) []string {
	// First with the root's flags only, so that a persistent flag before
	// the subcommand (-settings FILE validate) does not hide it from Find;
	// then with the subcommand's.
	out := normaliseFor(root, args)
	if cmd, _, err := root.Find(out); err == nil && cmd != nil && cmd != root {
		out = normaliseFor(cmd, out)
	}
	return out
}

func normaliseFor(cmd *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			out = append(out, arg)
			continue
		}
		body := strings.TrimPrefix(arg[1:], "-")
		double := arg[1] == '-'
		name, _, hasValue := strings.Cut(body, "=")
		if !double && len(name) < 2 {
			out = append(out, arg) // a shorthand such as -h
			continue
		}
		f := lookupFlag(cmd, name)
		if f == nil {
			out = append(out, arg)
			continue
		}
		out = append(out, "--"+body)
		if !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i]) // the flag's value, verbatim
		}
	}
	return out
}

// lookupFlag finds a long flag of cmd: its own, its inherited persistent
// ones, or help (which cobra adds only when it executes).
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if name == "help" {
		return &pflag.Flag{Name: "help", NoOptDefVal: "true"}
	}
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags(), cmd.InheritedFlags()} {
		if f := fs.Lookup(name); f != nil {
			return f
		}
	}
	return nil
}
