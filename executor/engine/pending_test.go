package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// orch status lists every declared instance of the round under way: a
// job whose process runs (recorded only once it ends) as running, with
// its pid, and what waits behind it in the same round as pending; so
// does the snapshot of orch top. Before, both were missing from them (a
// round of 2,000 daemons listed 1,050).
func TestStatusListsTheRoundUnderWay(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	u := startUp(t, fmt.Sprintf(`
job "hold" {
  command = ["sh", "-c", "while [ ! -f %[1]s ]; do sleep 0.02; done"]
}

daemon "after" {
  command    = ["sleep", "600"]
  depends_on = [job.hold]
}

daemon "free" {
  command = ["sleep", "600"]
}
`, gate))
	// The gate opens however the test ends: the round, and so orch up's
	// stop, waits for the job.
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	evs := u.waitFor("job.hold and daemon.free started", func(evs []ev) bool {
		return count(evs, "job.hold", "started") == 1 && count(evs, "daemon.free", "started") == 1
	})
	jobPid := pids(evs)["job.hold"]
	_, body := agentCall(t, u.dir, "GET", "/status")
	var st struct {
		Instances []struct {
			Address, State, Status string
			Pid                    int
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status: %v: %s", err, body)
	}
	got := map[string]string{}
	for _, in := range st.Instances {
		got[in.Address] = fmt.Sprintf("%s/%s/%d", in.State, in.Status, in.Pid)
	}
	want := map[string]string{
		"job.hold":     fmt.Sprintf("running/running/%d", jobPid),
		"daemon.after": "-/pending/0",
	}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("%s in status during the round: %q, want %q (state/status/pid)\n%s", a, got[a], w, body)
		}
	}
	if s := got["daemon.free"]; s == "" || s[:len("running/running")] != "running/running" {
		t.Errorf("daemon.free in status during the round: %q, want running", s)
	}
	// orch top's snapshot says the same.
	_, body = agentCall(t, u.dir, "GET", "/snapshot")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("snapshot: %v: %s", err, body)
	}
	got = map[string]string{}
	for _, in := range st.Instances {
		got[in.Address] = fmt.Sprintf("%s/%s/%d", in.State, in.Status, in.Pid)
	}
	want["daemon.after"] = "pending/pending/0"
	for a, w := range want {
		if got[a] != w {
			t.Errorf("%s in the snapshot during the round: %q, want %q (state/status/pid)\n%s", a, got[a], w, body)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.waitFor("daemon.after started", func(evs []ev) bool { return count(evs, "daemon.after", "started") == 1 })
	u.stop()
}
