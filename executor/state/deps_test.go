package state

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoEtcdOnTheFilePath holds the rule that the state file's code does
// not carry etcd's: the state package (what the executor, the engine and
// every command link) imports no package of the etcd client, grpc or
// protobuf; backends are registered by the program that links them.
func TestNoEtcdOnTheFilePath(t *testing.T) {
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
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.etcd.io/etcd/") || strings.HasPrefix(pkg, "google.golang.org/grpc") ||
			strings.HasPrefix(pkg, "github.com/orch-dev/orch/executor/state/etcdstate") {
			t.Errorf("executor/state depends on %s", pkg)
		}
	}
}
