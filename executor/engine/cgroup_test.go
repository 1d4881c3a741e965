package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/notify"
)

// needCgroups skips (fails under CI) where daemons get no cgroup.
func needCgroups(t *testing.T) *cgroup.Host {
	t.Helper()
	h := cgroup.Detect()
	if !h.Usable() {
		if os.Getenv("CI") != "" {
			t.Fatalf("no writable cgroup on this CI machine: %s", h.Why)
		}
		t.Skipf("no writable cgroup: %s", h.Why)
	}
	return h
}

// cgroupDir is the unified cgroup directory pid is in, as seen from this
// test (whose own cgroup is orch's parent too).
func cgroupDir(pid int) string {
	rel, own := notify.CgroupOf(pid), notify.CgroupOf(os.Getpid())
	h := cgroup.Detect()
	if rel == "" || !h.Usable() {
		return ""
	}
	rest, ok := strings.CutPrefix(rel, strings.TrimSuffix(own, "/")+"/")
	if !ok {
		return ""
	}
	return filepath.Join(h.Unified, rest)
}

// frozen reports whether pid's cgroup is frozen (orch pause of a daemon
// with a cgroup).
func frozen(pid int) bool {
	d := cgroupDir(pid)
	if d == "" {
		return false
	}
	b, _ := os.ReadFile(filepath.Join(d, "cgroup.events"))
	return strings.Contains(string(b), "frozen 1")
}

// orch pause freezes a daemon's cgroup: its process is frozen, not
// stopped by a signal (state T), and counts no further; orch resume
// thaws it.
func TestPauseFreezesCgroup(t *testing.T) {
	needCgroups(t)
	out := filepath.Join(t.TempDir(), "n")
	u := startUp(t, fmt.Sprintf(`
daemon "counter" {
  command = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > %s; sleep 0.01; done"]
}
`, out))
	evs := u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.counter", "started") == 1 })
	pid := pids(evs)["daemon.counter"]
	if cgroupDir(pid) == "" || !strings.HasPrefix(filepath.Base(filepath.Dir(cgroupDir(pid))), "orch-") {
		t.Fatalf("daemon %d is not in a cgroup of its own: %q", pid, notify.CgroupOf(pid))
	}
	if code, body := agentCall(t, u.dir, "POST", "/pause/daemon.counter"); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	u.waitFor("paused", func(evs []ev) bool { return count(evs, "daemon.counter", "paused") == 1 })
	if !frozen(pid) {
		t.Fatal("cgroup not frozen after pause")
	}
	if st := procState(pid); st == "T" || st == "t" {
		t.Fatalf("state %s: stopped by a signal, not frozen", st)
	}
	a, _ := os.ReadFile(out)
	time.Sleep(200 * time.Millisecond)
	b, _ := os.ReadFile(out)
	if string(a) != string(b) {
		t.Fatalf("a frozen daemon counted on: %q -> %q", a, b)
	}
	if code, body := agentCall(t, u.dir, "POST", "/resume/daemon.counter"); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	u.waitFor("resumed", func(evs []ev) bool { return count(evs, "daemon.counter", "resumed") == 1 })
	if frozen(pid) {
		t.Fatal("still frozen after resume")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c, _ := os.ReadFile(out); string(c) == string(b); c, _ = os.ReadFile(out) {
		if time.Now().After(deadline) {
			t.Fatal("the resumed daemon does not count")
		}
		time.Sleep(10 * time.Millisecond)
	}
	u.stop()
	if d := cgroupDir(pid); d != "" {
		t.Fatalf("the stopped daemon is still in cgroup %s", d)
	}
}

// A daemon over its memory_max is OOM-killed by the kernel and restarted
// by its policy; the exit says "out of memory".
func TestMemoryMaxOOMRestarts(t *testing.T) {
	h := needCgroups(t)
	if err := h.Check(cgroup.Limits{MemoryMax: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, `
daemon "hog" {
  command = ["sh", "-c", "sleep 0.2; x=0123456789abcdef; while :; do x=$x$x; done"]
  resources {
    memory_max = "16MiB"
  }
  restart {
    backoff = "1ms"
  }
}
`)
	evs := u.waitFor("started again after an OOM kill", func(evs []ev) bool { return count(evs, "daemon.hog", "started") >= 2 })
	i := index(evs, "daemon.hog", "exited", 0)
	if i < 0 || evs[i].Signal != "SIGKILL" || !strings.Contains(evs[i].Detail, "out of memory") {
		t.Fatalf("want an exit by SIGKILL with out of memory:\n%s", u.dump())
	}
	if j := index(evs, "daemon.hog", "restarting", 0); j < i {
		t.Fatalf("restarting before the exit:\n%s", u.dump())
	}
}

// orch status (through the agent) shows a daemon's memory and CPU use.
func TestStatusShowsUsage(t *testing.T) {
	needCgroups(t)
	u := startUp(t, `
daemon "busy" {
  command = ["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 600"]
}
`)
	u.waitFor("started", func(evs []ev) bool { return count(evs, "daemon.busy", "started") == 1 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := agentCall(t, u.dir, "GET", "/status")
		var st struct {
			Instances []struct {
				Address     string
				MemoryBytes uint64  `json:"memory_bytes"`
				CPUSeconds  float64 `json:"cpu_seconds"`
			} `json:"instances"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("status: %v: %s", err, body)
		}
		if len(st.Instances) == 1 && st.Instances[0].MemoryBytes > 0 && st.Instances[0].CPUSeconds > 0.01 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no memory and CPU use in the status: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShutdownLeavesNoCgroup: orch up's shutdown leaves the removal of
// its daemons' empty cgroups to the log daemon, which makes them once orch
// has exited (providers.LaterTidier); a process that escaped its daemon's
// process group (setsid) is killed before orch exits. Within moments of
// the exit, nothing of the project is left in the cgroup tree.
func TestShutdownLeavesNoCgroup(t *testing.T) {
	needCgroups(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	u := startUp(t, fmt.Sprintf(`
daemon "plain" {
  command = ["/bin/sleep", "611"]
}
daemon "esc" {
  command = ["/bin/sh", "-c", "setsid sh -c 'echo $$ > %[1]s.tmp; mv %[1]s.tmp %[1]s; exec sleep 612' & exec sleep 613"]
}
`, pidFile))
	evs := u.waitFor("ready", func(evs []ev) bool { return count(evs, "", "ready") == 1 })
	running := pids(evs)
	var dirs []string
	for a, pid := range running {
		d := cgroupDir(pid)
		if d == "" || !strings.HasPrefix(filepath.Base(filepath.Dir(d)), "orch-") {
			t.Fatalf("%s (pid %d) is not in a cgroup of its own: %q", a, pid, notify.CgroupOf(pid))
		}
		dirs = append(dirs, d)
	}
	// The pid file is written (renamed into place) by the grandchild
	// itself, as it starts.
	var grandchild int
	for deadline := time.Now().Add(10 * time.Second); grandchild == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the grandchild never wrote its pid")
		}
		b, _ := os.ReadFile(pidFile)
		fmt.Sscan(string(b), &grandchild)
	}
	t.Cleanup(func() { syscall.Kill(grandchild, syscall.SIGKILL) })

	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
	if u.err != nil {
		t.Fatalf("orch up exited with %v after SIGTERM:\n%s", u.err, u.dump())
	}
	if alive(grandchild) {
		t.Errorf("the setsid grandchild (pid %d) of daemon.esc outlived orch up", grandchild)
	}
	for a, pid := range running {
		if alive(pid) {
			t.Errorf("%s (pid %d) outlived orch up", a, pid)
		}
	}
	// The log daemon removes them once orch's connection to it has ended.
	left := func() []string {
		var out []string
		for _, d := range append(dirs, filepath.Dir(dirs[0])) {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				out = append(out, d)
			}
		}
		return out
	}
	for deadline := time.Now().Add(10 * time.Second); len(left()) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("cgroups still there 10 s after orch up exited: %v", left())
		}
	}
}
