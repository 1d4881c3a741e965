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

// scaledConfig is n instances of a daemon ready once the test makes its
// ready-INDEX file, and a front whose configuration lists them, reloaded
// (SIGHUP) when the list changes, as nginx is in front of a count.
func scaledConfig(dir string, n int) string {
	return fmt.Sprintf(`
locals {
  n = %[2]d
}
daemon "app" {
  count   = local.n
  command = ["/bin/sleep", "1000"]
  health {
    exec     = ["/bin/test", "-e", "%[1]s/ready-${count.index}"]
    interval = "50ms"
  }
  stop {
    timeout = "2s"
  }
}
daemon "front" {
  command    = ["/bin/sh", "-c", "trap 'echo hup >> %[1]s/hups' HUP; while :; do sleep 0.05; done"]
  depends_on = [daemon.app]
  reload {
    signal = "SIGHUP"
    on     = [join(",", [for i in range(local.n) : "app-${i}"])]
  }
  stop {
    timeout = "2s"
  }
}
`, dir, n)
}

// A reload waits for what starts with it: the front, told of a new
// instance by its reload, is signalled only once that instance is ready,
// not as soon as it started (nginx would send requests to an instance
// not yet listening).
func TestReloadWaitsForNewDependency(t *testing.T) {
	dir := t.TempDir()
	ready := func(i int) {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ready-%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ready(0)
	u := startUpIn(t, dir, scaledConfig(dir, 1))
	u.waitFor("front started", func(evs []ev) bool { return count(evs, "daemon.front", "started") == 1 })
	before := len(u.all())
	renameSave(t, dir, scaledConfig(dir, 2))
	evs := u.waitFor("the front's reload held or done", func(evs []ev) bool {
		evs = evs[before:]
		return count(evs, "daemon.front", "waiting") > 0 || count(evs, "daemon.front", "reloaded") > 0
	})[before:]
	if count(evs, "daemon.front", "reloaded") > 0 {
		t.Fatalf("the front was reloaded before daemon.app[1] was ready (its ready file is not made yet):\n%s", u.dump())
	}
	w := index(evs, "daemon.front", "waiting", 0)
	if !strings.Contains(evs[w].Detail, "daemon.app[1] to be healthy") {
		t.Errorf("the front waits %q, want for daemon.app[1] to be healthy", evs[w].Detail)
	}
	ready(1)
	evs = u.waitFor("the front reloaded", func(evs []ev) bool { return count(evs[before:], "daemon.front", "reloaded") == 1 })[before:]
	if h, r := index(evs, "daemon.app[1]", "healthy", 0), index(evs, "daemon.front", "reloaded", 0); h < 0 || h > r {
		t.Errorf("daemon.app[1] healthy at event %d, the front reloaded at %d: want it healthy first\n%s", h, r, u.dump())
	}
	if n := count(u.all(), "daemon.front", "started"); n != 1 {
		t.Errorf("the front started %d times, want once (reloaded, not replaced)\n%s", n, u.dump())
	}
}
