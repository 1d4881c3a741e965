package process_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/cgroup"
)

// cgroupRel is pid's path in the unified cgroup hierarchy.
func cgroupRel(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return rel
		}
	}
	return ""
}

// daemonCgroup is the cgroup the provider made for the daemon pid, nil
// when it has none (a daemon's cgroup is in a project cgroup "orch-*"
// below the test's own).
func daemonCgroup(pid int) *cgroup.Group {
	h := cgroup.Detect()
	rel, own := cgroupRel(strconv.Itoa(pid)), cgroupRel("self")
	if !h.Usable() || rel == "" || own == "" || !strings.HasPrefix(filepath.Base(filepath.Dir(rel)), "orch-") {
		return nil
	}
	rest, ok := strings.CutPrefix(rel, strings.TrimSuffix(own, "/")+"/")
	if !ok {
		return nil
	}
	return &cgroup.Group{Path: filepath.Join(h.Unified, rest)}
}

// killGroup SIGKILLs the process group pgid and removes the cgroup of its
// leader, which the provider made: tests that end their daemons so leave
// no cgroup behind.
func killGroup(pgid int) {
	g := daemonCgroup(pgid)
	syscall.Kill(-pgid, syscall.SIGKILL)
	if g != nil {
		g.Remove()
	}
}

func removeCgroupAtCleanup(t testing.TB, pid int) {
	if g := daemonCgroup(pid); g != nil {
		t.Cleanup(func() { g.Remove() })
	}
}

var _ = time.Second
