package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reloadConfig is a daemon whose env and app.conf changes are applied by
// SIGHUP to its main process (which counts them in a file), while a child
// in its process group would die of a SIGHUP sent to the whole group.
func reloadConfig(dir, mode string) string {
	return fmt.Sprintf(`
daemon "srv" {
  command = ["/bin/sh", "-c", "sleep 1000 & echo $! > %[1]s/child; trap 'echo hup >> %[1]s/hups' HUP; while :; do sleep 0.05; done"]
  env = {
    MODE = "%[2]s"
  }
  reload {
    signal = "SIGHUP"
    on     = [env, file("app.conf")]
  }
  stop {
    timeout = "2s"
  }
}
`, dir, mode)
}

// A change confined to a daemon's reload.on is a reload: the planner plans
// it, the engine signals the main process only, the daemon keeps its pid;
// an edit of a file named there is a change too.
func TestReloadInsteadOfReplace(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.conf"), []byte("workers 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := startUpIn(t, dir, reloadConfig(dir, "one"))
	evs := u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.srv", "started") == 1 })
	pid := pids(evs)["daemon.srv"]
	hups := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "hups"))
		return strings.Count(string(b), "hup")
	}
	// An env change: reloaded, not replaced.
	renameSave(t, dir, reloadConfig(dir, "two"))
	evs = u.waitFor("reloaded", func(evs []ev) bool { return count(evs, "daemon.srv", "reloaded") == 1 })
	i := index(evs, "", "plan", 0)
	if i < 0 || !strings.Contains(evs[i].Detail, "reload: SIGHUP") {
		t.Errorf("the plan does not say reload: %q", evs[i].Detail)
	}
	u.waitFor("the signal handled", func([]ev) bool { return hups() == 1 })
	// An edit of a file named in reload.on, and nothing else: reloaded.
	if err := os.WriteFile(filepath.Join(dir, "app.conf"), []byte("workers 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("reloaded again", func(evs []ev) bool { return count(evs, "daemon.srv", "reloaded") == 2 })
	u.waitFor("the second signal handled", func([]ev) bool { return hups() == 2 })
	evs = u.all()
	if n := count(evs, "daemon.srv", "started"); n != 1 || !alive(pid) {
		t.Fatalf("the daemon was replaced (started %d times, pid %d alive %v):\n%s", n, pid, alive(pid), u.dump())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "child"))
	var child int
	fmt.Sscan(string(b), &child)
	if child == 0 || !alive(child) {
		t.Errorf("the child in the daemon's group (pid %d) got the signal: it went to the group, not the main process", child)
	}
}
