package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// ladder ranks orch's packages: a package imports only packages of a
// lower rank, or of its own rank when that rank allows it. From the
// bottom: the language; the providers' contracts and what backends share;
// the module host; the backends (which never import one another); the
// planner; the state; the executor; the engine; its agent API; the CLI.
var ladder = []struct {
	rank     int
	prefix   string // a package path under the module, or a prefix ending in "/"
	sameRank bool   // may import packages of its own rank
}{
	{0, "spec", false},
	{0, "spec/jsonscan", false}, // the fast JSON decoders' cursor: imports nothing
	{0, "spec/workers", false},  // a loop split across goroutines: imports nothing
	{1, "providers", false},
	{1, "providers/bus", false},
	{1, "providers/owned", false},
	{1, "providers/logfile", false},
	{1, "providers/hostuser", false}, // a declared user and group as a host credential
	{1, "providers/plugin/proto", false},
	{1, "providers/plugin/wire", true},
	{1, "providers/plugin/sdk", true},
	{2, "providers/module", false},
	{3, "providers/process", false},
	{4, "providers/process/processtest", false}, // tests' cleanup of what the process runtime started
	{3, "providers/docker", false},
	{3, "providers/docker/dockertest", false},
	{3, "providers/wasm", false},
	{3, "providers/wasm/", false},
	{3, "providers/plugin", false},
	{1, "providers/cgroup", false},
	{2, "providers/notify", false},
	{3, "providers/systemd", false},
	{3, "providers/systemd/", false},
	{4, "planner", false},
	{5, "executor/state", false},
	{1, "executor/state/etcdstate/etcdtest", false},
	{6, "executor/state/etcdstate", false},
	{7, "executor/cluster", false},
	{1, "executor/procstat", false},
	{1, "executor/service", false},
	{2, "executor/service/", false},
	{6, "executor", false},
	{7, "executor/engine", false},
	{6, "executor/engine/gate", false}, // pure: the plan and readiness in, what may start out
	{8, "executor/metrics", false},
	{9, "executor/agent", false},
	{10, "executor/agent/web", false},
	{10, "executor/agent/agenttest", false},
	{11, "cmd/", true},
}

func rankOf(pkg string) (int, bool, bool) {
	best, bestLen := -1, -1
	same := false
	for _, l := range ladder {
		match := pkg == l.prefix || (strings.HasSuffix(l.prefix, "/") && strings.HasPrefix(pkg, l.prefix))
		if match && len(l.prefix) > bestLen {
			best, bestLen, same = l.rank, len(l.prefix), l.sameRank
		}
	}
	return best, same, best >= 0
}

// TestImportLadder holds the ladder over every package of the module
// (examples aside, which are users of the SDKs): no import goes up, and
// no backend imports another backend.
func TestImportLadder(t *testing.T) {
	const mod = "github.com/orch-dev/orch/"
	cmd := exec.Command(goTool(), "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		if strings.HasPrefix(pkg, "examples/") {
			continue
		}
		r, same, ok := rankOf(pkg)
		if !ok {
			t.Errorf("package %s has no place on the ladder (cmd/orch/ladder_test.go): give it one", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			ip := strings.TrimPrefix(imp, mod)
			ir, _, ok := rankOf(ip)
			switch {
			case !ok:
				t.Errorf("%s imports %s, which has no place on the ladder", pkg, ip)
			case ir > r:
				t.Errorf("%s (rank %d) imports %s (rank %d): imports go down the ladder only", pkg, r, ip, ir)
			case ir == r && !same && !strings.HasPrefix(ip, pkg+"/"):
				t.Errorf("%s imports %s of the same rank %d (one backend, or one layer, importing another)", pkg, ip, r)
			}
		}
	}
}
