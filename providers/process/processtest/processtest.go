// Package processtest helps the tests of what runs the process runtime
// (orch up, orch apply through the CLI) clean up after themselves.
package processtest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/process"
)

// RemoveCgroups removes the cgroups of the daemons that the process
// runtime's registry in stateDir names: what a test killed by pid (its
// cgroup stays when no orch stops it) or left running. What is still in
// each is killed first (cgroup.kill), and a project's cgroup goes with the
// last of its daemons' cgroups. Best effort: a test's cleanup calls it after its own kills.
// It first waits for the registry compactions under way in the test's
// process: one still writing its copy into the test's directory would fail
// the directory's removal.
func RemoveCgroups(stateDir string) {
	process.WaitRegistryCompactions()
	f, err := os.Open(filepath.Join(stateDir, "logs", "logd.registry"))
	if err != nil {
		return
	}
	defer f.Close()
	seen := map[string]bool{}
	parents := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// A start's pending line names its cgroup; the line of the
		// started daemon, its handle.
		var line struct {
			Handle json.RawMessage `json:"handle"`
			Cgroup *cgroup.Group   `json:"cgroup"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		g := line.Cgroup
		if len(line.Handle) > 0 {
			if hi, err := process.ParseHandle(providers.Handle(line.Handle)); err == nil && hi.Cgroup != nil {
				g = hi.Cgroup
			}
		}
		if g == nil || seen[g.Path] {
			continue
		}
		seen[g.Path] = true
		parents[filepath.Dir(g.Path)] = true
		g.Remove()
	}
	// A start names its cgroup in its pending line before it makes it,
	// so every cgroup of the project is named above; anything else left
	// in the project's cgroup goes all the same, so that no test leaves
	// a cgroup on the host.
	for dir := range parents {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				cgroup.Group{Path: filepath.Join(dir, e.Name())}.Remove()
			}
		}
		os.Remove(dir)
	}
}
