package planner

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// TestDecideAllParallelAsSequential: a plan of more instances than
// decideAllMin, decided on every CPU, is the plan decided in one loop:
// the same changes in the same order, with the same actions, reasons,
// diffs, encodings and diagnostics. The instances mix no-ops (stored
// byte for byte), edits (replace), updates, unreadable records, new
// ones, references (dependencies) and a prevent_destroy that refuses its
// replacement. go test -race checks that they share nothing they write.
func TestDecideAllParallelAsSequential(t *testing.T) {
	const n = 1500
	var src strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&src, "daemon \"d%04d\" {\n  command = [\"/bin/sleep\", \"%d\"]\n  env = { I = \"%d\" }\n", i, i%7, i)
		if i%50 == 1 {
			fmt.Fprintf(&src, "  depends_on = [daemon.d%04d]\n", i-1)
		}
		if i%97 == 3 {
			src.WriteString("  lifecycle {\n    prevent_destroy = true\n  }\n")
		}
		src.WriteString("}\n")
	}
	cfg := tryLoad(src.String())
	if cfg == nil {
		t.Fatal("configuration does not load")
	}
	stored := map[spec.Address]*Stored{}
	observed := map[spec.Address]providers.Observed{}
	for i, r := range cfg.Resources {
		if i%11 == 5 {
			continue // new
		}
		snap := SnapshotOf(r, cfg.Graph.DependenciesOf(r.Addr), nil)
		enc := snap.Encode()
		switch i % 5 {
		case 1: // applied with another env: replaced (or refused)
			enc = bytes.Replace(enc, []byte(fmt.Sprintf(`"%d"`, i)), []byte(`"old"`), 1)
		case 2:
			enc = enc[:len(enc)/2] // unreadable
		}
		stored[r.Addr] = &Stored{Addr: r.Addr, Runtime: r.Runtime, Config: enc, Handle: providers.Handle("h"), Status: StatusRunning}
		observed[r.Addr] = providers.Observed{State: providers.StateRunning, Pid: 1}
	}
	in := Input{Config: cfg, Schemas: testSchemas, Stored: stored, Observed: observed}
	plan := func(min int) (string, []string) {
		defer func(old int) { decideAllMin = old }(decideAllMin)
		decideAllMin = min
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // several workers, on any machine
		p, diags := Make(in)
		var ds []string
		for _, d := range diags {
			ds = append(ds, d.Error())
		}
		var b strings.Builder
		for _, c := range p.Changes {
			fmt.Fprintf(&b, "%s %s %v %v %q %s\n", c.Addr, c.Action, c.Reason, c.ForcedBy, c.Encoded(), c.Hash())
			for _, d := range c.Diffs {
				fmt.Fprintf(&b, "  %s %v\n", d.Name, d.ForcesReplacement)
			}
		}
		return b.String(), ds
	}
	seq, seqDiags := plan(n + 1)
	par, parDiags := plan(2)
	if seq != par {
		t.Fatal("the plan decided on every CPU differs from the one decided in one loop")
	}
	if fmt.Sprint(seqDiags) != fmt.Sprint(parDiags) {
		t.Fatalf("diagnostics differ:\n%v\n%v", seqDiags, parDiags)
	}
	if len(seqDiags) == 0 || !strings.Contains(seq, "replace") || !strings.Contains(seq, "no-op") || !strings.Contains(seq, "create") {
		t.Fatalf("the plan does not mix what it should (diagnostics %d):\n%.2000s", len(seqDiags), seq)
	}
}
