package spec

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoOtherOrchPackage holds the layering rule: spec imports no
// other package of the module (it receives runtime schemas as data).
func TestImportsNoOtherOrchPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps: %v\n%s", err, msg)
	}
	const module = "github.com/orch-dev/orch"
	self := module + "/spec"
	found := false
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == self {
			found = true
			continue
		}
		if pkg == module || strings.HasPrefix(pkg, module+"/") {
			t.Errorf("spec depends on %s; spec must import no other orch package", pkg)
		}
	}
	if !found {
		t.Errorf("go list -deps did not list %s itself:\n%s", self, out)
	}
}
