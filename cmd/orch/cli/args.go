package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NormaliseArgs rewrites Terraform-style single-dash long flags into the
// double-dash form cobra parses: once the subcommand is known, a token
// "-name" or "-name=value" whose name (two letters or more) is a flag of
// that command, local or inherited, becomes "--name" or "--name=value".
// An unknown name that does not read as a cluster of shorthands (-bogus)
// becomes --bogus too, so that cobra reports it as the unknown flag it is
// (see suggestFlag). Anything else is left as it is: one-letter shorthands
// ("-h", "-fn5"), arguments, the value that follows a flag
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
		var f *pflag.Flag
		if double || len(name) >= 2 {
			f = lookupFlag(cmd, name)
		}
		if f == nil {
			switch {
			case double:
			case shorthands(cmd, body):
				// -h, -n 5, -fn5: one-letter flags; the value of the
				// last one, when it needs one and has none here, is
				// the next argument, verbatim (-n -1)
				if needsValue(cmd, body) && i+1 < len(args) {
					out = append(out, arg)
					i++
					arg = args[i]
				}
			case len(name) >= 2 && cmd.HasParent():
				// -bogus: an unknown long flag, reported as one (not as
				// the shorthands -b -o -g ...).
				arg = "-" + arg
			}
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

// shorthands reports whether s (a token without its dash) reads as a
// cluster of one-letter flags of cmd: -fn5 is -f -n 5.
func shorthands(cmd *cobra.Command, s string) bool {
	for i := 0; i < len(s); i++ {
		f := shorthandFlag(cmd, s[i:i+1])
		if s[i] == 'h' && f == nil {
			continue // help, added when cobra executes
		}
		if f == nil {
			return false
		}
		if f.NoOptDefVal == "" {
			return true // the rest is its value
		}
	}
	return true
}

// needsValue reports whether the cluster of one-letter flags s ends with
// one that takes a value, with no value after it: -n, -fn.
func needsValue(cmd *cobra.Command, s string) bool {
	for i := 0; i < len(s); i++ {
		f := shorthandFlag(cmd, s[i:i+1])
		if f == nil {
			return false
		}
		if f.NoOptDefVal == "" {
			return i == len(s)-1
		}
	}
	return false
}

func shorthandFlag(cmd *cobra.Command, c string) *pflag.Flag {
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
		if f := fs.ShorthandLookup(c); f != nil {
			return f
		}
	}
	return nil
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

// suggestFlag rewrites cobra's unknown-flag errors in orch's own words,
// with the single dash orch documents and the nearest flag of the
// command: "unknown flag -jsn; did you mean -json?".
func suggestFlag(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var name string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		name = strings.TrimPrefix(msg, "unknown flag: --")
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'j' in -json": a long flag cobra
		// read as shorthands because the command has no such flag.
		_, word, ok := strings.Cut(msg, " in -")
		if !ok {
			return err
		}
		name = strings.TrimPrefix(word, "-")
	default:
		return err
	}
	name, _, _ = strings.Cut(name, "=")
	if name == "chdir" {
		return fmt.Errorf("-chdir must come before the subcommand: orch -chdir=DIR %s ...", cmd.Name())
	}
	best, bestD := "", 3
	visit := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := editDistance(name, f.Name); d < bestD || d == bestD && f.Name < best {
			best, bestD = f.Name, d
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if len(name) > 1 && best == "" {
		// a prefix: -auto for -auto-approve
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if best == "" && strings.HasPrefix(f.Name, name) {
				best = f.Name
			}
		})
	}
	if best == "" {
		return fmt.Errorf("unknown flag -%s", name) // Run then says: Run 'orch CMD -help' for usage.
	}
	return fmt.Errorf("unknown flag -%s; did you mean -%s?", name, best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
