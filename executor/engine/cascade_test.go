package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

// TestRestartCascade: orch restart -cascade job.migrate runs the job
// again, then restarts what depends on it, each once what it depends on
// among them is ready again: the app's instances once the job has
// completed, one at a time (the second once the first is healthy), the
// proxy once both are; an independent daemon is left alone. A job that fails when run again holds back what depends on it.
func TestRestartCascade(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	fail := filepath.Join(dir, "fail")
	ip := newInProc(t, fmt.Sprintf(`
job "migrate" {
  command = ["sh", "-c", "echo run >> %s; test ! -e %s"]
}
daemon "app" {
  count      = 2
  command    = ["/bin/sleep", "600"]
  depends_on = [job.migrate]
  health {
    exec     = ["true"]
    interval = "100ms"
  }
}
daemon "proxy" {
  command    = ["/bin/sleep", "601"]
  depends_on = [daemon.app]
}
daemon "other" {
  command = ["/bin/sleep", "602"]
}
`, runs, fail))
	eng, stop := ip.run(t, Options{})
	defer stop()
	deadline := time.After(waitDeadline)
	var seen []Event
	next := func(what string) Event {
		t.Helper()
		ev := ip.next(t, deadline, fmt.Sprintf("%s (events so far: %v)", what, seen))
		seen = append(seen, ev)
		return ev
	}
	for next("ready").Type != EventReady {
	}
	seen = nil
	members, err := eng.RestartCascade(context.Background(), spec.Address{Kind: spec.KindJob, Name: "migrate"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(members) != "[daemon.app[0] daemon.app[1] daemon.proxy]" {
		t.Fatalf("cascade of job.migrate: %v, want [daemon.app[0] daemon.app[1] daemon.proxy]", members)
	}
	// untilProxyStarted reads events until the proxy has started again
	// and checks that each pair came in its order; it returns where each
	// "address type" came first.
	untilProxyStarted := func(order ...[2]string) map[string]int {
		t.Helper()
		at := map[string]int{}
		for {
			ev := next("the proxy started again")
			key := ev.Addr.String() + " " + ev.Type.String()
			if _, ok := at[key]; !ok {
				at[key] = len(seen)
			}
			if key == "daemon.proxy started" {
				break
			}
		}
		for _, o := range order {
			a, ok1 := at[o[0]]
			b, ok2 := at[o[1]]
			if !ok1 || !ok2 || a > b {
				t.Fatalf("%q should come before %q; events: %v", o[0], o[1], seen)
			}
		}
		return at
	}
	untilProxyStarted(
		[2]string{"job.migrate completed", "daemon.app[0] restarting"},
		[2]string{"daemon.app[0] started", "daemon.app[0] healthy"},
		[2]string{"daemon.app[0] healthy", "daemon.app[1] restarting"},
		[2]string{"daemon.app[1] healthy", "daemon.proxy restarting"},
	)
	if b, _ := os.ReadFile(runs); strings.Count(string(b), "run") != 2 {
		t.Fatalf("job.migrate ran %d times, want 2", strings.Count(string(b), "run"))
	}

	// A job that fails when run again holds back what depends on it.
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	seen = nil
	if _, err := eng.RestartCascade(context.Background(), spec.Address{Kind: spec.KindJob, Name: "migrate"}); err != nil {
		t.Fatal(err)
	}
	for ev := next("job.migrate failed"); ev.Addr.String() != "job.migrate" || ev.Type != EventFailed; ev = next("job.migrate failed") {
	}
	skipped := map[string]bool{}
	for len(skipped) < 3 {
		ev := next("the cascade's members skipped")
		switch {
		case ev.Type == EventSkipped && strings.Contains(ev.Detail, "-cascade): job.migrate failed"):
			skipped[ev.Addr.String()] = true
		case strings.HasPrefix(ev.Addr.String(), "daemon.app[") || ev.Addr.String() == "daemon.proxy":
			t.Fatalf("%s %s after job.migrate failed: %v", ev.Addr, ev.Type, seen)
		}
	}
	if !skipped["daemon.app[0]"] || !skipped["daemon.app[1]"] || !skipped["daemon.proxy"] {
		t.Fatalf("skipped: %v", skipped)
	}
	var left int
	eng.call(context.Background(), func() { left = len(eng.cascades) })
	if left != 0 {
		t.Fatalf("%d cascades left after their root failed", left)
	}

	// A block of two instances is one cascade: its instances one at a
	// time, then the proxy that depends on both, once.
	seen = nil
	members, err = eng.RestartCascade(context.Background(), spec.Address{Kind: spec.KindDaemon, Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(members) != "[daemon.app[1] daemon.proxy]" {
		t.Fatalf("cascade of daemon.app: %v, want [daemon.app[1] daemon.proxy]", members)
	}
	at := untilProxyStarted(
		[2]string{"daemon.app[0] healthy", "daemon.app[1] restarting"},
		[2]string{"daemon.app[1] healthy", "daemon.proxy restarting"},
	)
	eng.call(context.Background(), func() { left = len(eng.cascades) })
	if left != 0 {
		t.Fatalf("%d cascades left after the proxy restarted: it would restart again", left)
	}
	if _, ok := at["job.migrate restarting"]; ok {
		t.Fatalf("the cascade of daemon.app ran job.migrate, which it depends on: %v", seen)
	}
}
