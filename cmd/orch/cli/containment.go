package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/orch-dev/orch/providers/cgroup"
)

// containmentNote says, once, that native daemons are held by their
// process groups only on this host (no writable cgroup: a setsid
// grandchild can escape a stop, and resource limits are refused); "" when
// they get cgroups, or when no line is about a native daemon.
func containmentNote(runtimes []string) string {
	native := false
	for _, r := range runtimes {
		if r == "" || strings.HasPrefix(r, "runtime.process.") {
			native = true
		}
	}
	if h := cgroup.Detect(); !native || h.Usable() {
		return ""
	}
	return "Note: native daemons are held by their process groups only: " + cgroup.Detect().Mode()
}

func printContainment(w io.Writer, runtimes []string) {
	if n := containmentNote(runtimes); n != "" {
		fmt.Fprintln(w, "\n"+n)
	}
}
