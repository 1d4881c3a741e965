package cli

import (
	"reflect"
	"testing"
)

func TestNormaliseArgs(t *testing.T) {
	root := (&App{}).rootCommand()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"validate", "-json"}, []string{"validate", "--json"}},
		{[]string{"validate", "-json=false", "dir"}, []string{"validate", "--json=false", "dir"}},
		{[]string{"validate", "-var", "a=1", "-var=b=2", "-var-file", "f.vars"}, []string{"validate", "--var", "a=1", "--var=b=2", "--var-file", "f.vars"}},
		// The value of a flag is kept verbatim even when it looks like one.
		{[]string{"validate", "-var", "-json"}, []string{"validate", "--var", "-json"}},
		{[]string{"validate", "--var", "-json"}, []string{"validate", "--var", "-json"}},
		{[]string{"fmt", "-check", "-diff", "-list=true", "-write=true", "a.hcl"}, []string{"fmt", "--check", "--diff", "--list=true", "--write=true", "a.hcl"}},
		// Persistent flags, before or after the subcommand.
		{[]string{"-settings", "s.toml", "validate", "-json"}, []string{"--settings", "s.toml", "validate", "--json"}},
		{[]string{"settings", "-parallelism=3", "-log-level", "debug"}, []string{"settings", "--parallelism=3", "--log-level", "debug"}},
		// Shorthands, unknown names, stdin and everything after -- stay.
		{[]string{"fmt", "-h"}, []string{"fmt", "-h"}},
		{[]string{"fmt", "-help"}, []string{"fmt", "--help"}},
		// An unknown long name is reported as one, not as shorthands;
		// a cluster of shorthands stays.
		{[]string{"validate", "-bogus"}, []string{"validate", "--bogus"}},
		{[]string{"logs", "-fn5", "api"}, []string{"logs", "-fn5", "api"}},
		{[]string{"logs", "-follw", "api"}, []string{"logs", "--follw", "api"}},
		// The value of a one-letter flag is kept verbatim too.
		{[]string{"logs", "-n", "-10", "api"}, []string{"logs", "-n", "-10", "api"}},
		{[]string{"logs", "-fn", "-5", "-json", "api"}, []string{"logs", "-fn", "-5", "--json", "api"}},
		{[]string{"logs", "-n", "-json", "api"}, []string{"logs", "-n", "-json", "api"}},
		{[]string{"fmt", "-"}, []string{"fmt", "-"}},
		{[]string{"fmt", "-check", "--", "-diff"}, []string{"fmt", "--check", "--", "-diff"}},
		// A flag of another command is not this command's.
		{[]string{"graph", "-detailed-exitcode"}, []string{"graph", "--detailed-exitcode"}},
		{nil, []string{}},
	} {
		if got := NormaliseArgs(root, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("NormaliseArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
