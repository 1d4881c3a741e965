package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// livenessPair is orch up running db and app, app depending on db, both
// test servers whose health checks fail while their sick file exists.
func livenessPair(t *testing.T) (u *upProc, dbSick, appSick string) {
	dir := t.TempDir()
	dbSick, appSick = filepath.Join(dir, "db.sick"), filepath.Join(dir, "app.sick")
	u = startUp(t, fmt.Sprintf(`
daemon "db" {
%s}

daemon "app" {
  depends_on = [daemon.db]
%s}
`, sickServer(freePort(t), dbSick), sickServer(freePort(t), appSick)))
	u.waitFor("both healthy", func(evs []ev) bool {
		return count(evs, "daemon.db", "healthy") == 1 && count(evs, "daemon.app", "healthy") == 1
	})
	// db fails first, and orch sees it (its liveness stops it; started
	// again, it does not pass): only then does app fail, as an app whose
	// check goes through its database would.
	if err := os.WriteFile(dbSick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("db unhealthy, restarted", func(evs []ev) bool {
		return count(evs, "daemon.db", "unhealthy") >= 1 && count(evs, "daemon.db", "started") >= 2
	})
	if err := os.WriteFile(appSick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("app held", func(evs []ev) bool { return heldBy(evs, "daemon.app", "daemon.db") })
	return u, dbSick, appSick
}

// heldBy reports whether evs hold addr's liveness on dep.
func heldBy(evs []ev, addr, dep string) bool {
	for _, e := range evs {
		if e.Address == addr && e.Type == "unhealthy" && strings.HasPrefix(e.Detail, "not restarted while "+dep+",") {
			return true
		}
	}
	return false
}

// TestLivenessHeldByDependency: a daemon that turns unhealthy while what
// it depends on is not ready is not stopped (stopping it cannot bring its
// dependency back); it recovers in place once its check passes again.
func TestLivenessHeldByDependency(t *testing.T) {
	u, dbSick, appSick := livenessPair(t)
	first := pids(u.all())["daemon.app"]
	// orch status names what holds it, in its JSON and its table.
	out, err := orchOutput(t, "status", "-json", u.dir)
	if err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	var lines []struct {
		Address, Health string
		HeldBy          string `json:"held_by"`
	}
	if err := json.Unmarshal(out, &lines); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	held := map[string]string{}
	for _, l := range lines {
		held[l.Address] = l.Health + " " + l.HeldBy
	}
	// db, restarted by liveness, is not held by anything.
	if held["daemon.app"] != "unhealthy daemon.db" || !strings.HasSuffix(held["daemon.db"], " ") {
		t.Errorf("status: health and held_by %q, want app unhealthy held by daemon.db, db held by nothing:\n%s", held, out)
	}
	if out, err := orchOutput(t, "status", u.dir); err != nil || !strings.Contains(string(out), "unhealthy (held: daemon.db not ready)") {
		t.Errorf("status: %v, want app's health unhealthy (held: daemon.db not ready):\n%s", err, out)
	}
	os.Remove(appSick)
	evs := u.waitFor("app healthy again", func(evs []ev) bool { return count(evs, "daemon.app", "healthy") == 2 })
	if n := count(evs, "daemon.app", "exited"); n != 0 {
		t.Errorf("app exited %d times while db was not ready; want it held", n)
	}
	if p := pids(evs)["daemon.app"]; p != first || !alive(first) {
		t.Errorf("app pid %d, want %d still running", p, first)
	}
	os.Remove(dbSick)
	u.waitFor("db healthy again", func(evs []ev) bool { return count(evs, "daemon.db", "healthy") >= 2 })
}

// TestLivenessReleasedWhenDependencyReady: once the dependency is ready
// again, a held daemon that still fails its check is stopped and
// restarted by liveness, as any other.
func TestLivenessReleasedWhenDependencyReady(t *testing.T) {
	u, dbSick, appSick := livenessPair(t)
	first := pids(u.all())["daemon.app"]
	if n := count(u.all(), "daemon.app", "exited"); n != 0 {
		t.Fatalf("app exited %d times while held", n)
	}
	os.Remove(dbSick)
	evs := u.waitFor("app stopped by liveness, started again", func(evs []ev) bool {
		return count(evs, "daemon.db", "healthy") >= 2 && count(evs, "daemon.app", "started") >= 2
	})
	var exit *ev
	for i := range evs {
		if evs[i].Address == "daemon.app" && evs[i].Type == "exited" && evs[i].Pid == first {
			exit = &evs[i]
		}
	}
	if exit == nil || exit.Detail != "orch was stopping it: unhealthy" {
		t.Errorf("app's exit: %+v, want one with detail %q", exit, "orch was stopping it: unhealthy")
	}
	if db := index(evs, "daemon.db", "healthy", 1); db < 0 || db > index(evs, "daemon.app", "exited", 0) {
		t.Errorf("app was stopped before db was healthy again (events %d, %d)", db, index(evs, "daemon.app", "exited", 0))
	}
	os.Remove(appSick)
}
