package cli

import (
	"fmt"

	"github.com/orch-dev/orch/spec"
	"github.com/spf13/pflag"
)

// partialFlags are -target and -replace, as Terraform has them: plan only
// some instances (and what they need), or replace some that are unchanged.
type partialFlags struct {
	targets []string
	replace []string
}

func (pf *partialFlags) register(fs *pflag.FlagSet, withReplace bool) {
	fs.StringArrayVar(&pf.targets, "target", nil,
		"plan only `ADDR` (an instance, or a block: all its instances) and what it needs; repeatable")
	if withReplace {
		fs.StringArrayVar(&pf.replace, "replace", nil,
			"replace `ADDR` (an instance, or a block: all its instances) even if unchanged; repeatable")
	}
}

func (pf partialFlags) set() bool { return len(pf.targets)+len(pf.replace) > 0 }

// addresses parses the flags' addresses ("api" is daemon.api).
func (pf partialFlags) addresses() (targets, replace []spec.Address, err error) {
	parse := func(flag string, names []string) ([]spec.Address, error) {
		var out []spec.Address
		for _, n := range names {
			a, err := parseName(n)
			if err != nil {
				return nil, usageError{fmt.Errorf("-%s %s: %w", flag, n, err)}
			}
			out = append(out, a)
		}
		return out, nil
	}
	if targets, err = parse("target", pf.targets); err != nil {
		return nil, nil, err
	}
	replace, err = parse("replace", pf.replace)
	return targets, replace, err
}

// refuseAgent refuses -target and -replace when an agent (or orch up) runs
// for dir: its engine keeps everything as declared, so a partial plan
// would be undone by its next round.
func (pf partialFlags) refuseAgent(dir string) error {
	if !pf.set() {
		return nil
	}
	return &exitError{code: ExitError, msg: "an agent (or orch up) runs for " + dir +
		": it keeps every instance as declared, so -target and -replace do not apply; to replace an instance while it runs, use orch restart NAME"}
}

// any reports whether -target or -replace was given.
func (pf *partialFlags) any() bool { return len(pf.targets) > 0 || len(pf.replace) > 0 }
