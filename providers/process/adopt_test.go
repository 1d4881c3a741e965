package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// applyKilledAt plays an `orch apply` in another process (TestMain's
// apply mode) that starts daemon.writer running r and is SIGKILLed at
// step of that start (process.KillStartEnv).
func applyKilledAt(t *testing.T, state string, r spec.Resource, step int) {
	t.Helper()
	rj, _ := json.Marshal(r)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ORCH_TEST_APPLY="+string(rj), "ORCH_TEST_STATE="+state,
		fmt.Sprintf("%s=%d", process.KillStartEnv, step))
	out, err := cmd.CombinedOutput()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("apply killed at step %d: %v\n%s", step, err, out)
	}
}

// ticking is a daemon that writes a line every 20ms; tick holds the
// test's mark, by which it is found in /proc.
func ticking(mark string, wrapped bool) spec.Resource {
	r := spec.Resource{
		Command: []string{"sh", "-c", "while :; do echo tick-$MARK; sleep 0.02; done"},
		Env:     map[string]string{"MARK": mark},
		Umask:   spec.DefaultUmask,
		Log:     spec.Log{MaxSize: 1 << 20, MaxFiles: 1},
	}
	if wrapped {
		r.Rlimits = map[string]uint64{"nofile": 512} // through the exec wrapper
	}
	return r
}

// marked lists the live session leaders (the daemons, not their
// children) whose environment holds MARK=mark.
func marked(mark string) []int {
	names, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range names {
		pid, _ := strconv.Atoi(filepath.Base(d))
		b, err := os.ReadFile(d + "/environ")
		if _, _, sid, _, ok := stat(pid); err != nil || !ok || sid != pid || !alive(pid) {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "MARK="+mark {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// runs reports whether every process of pids runs the program named comm.
func runs(pids []int, comm string) bool {
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			return false
		}
	}
	return true
}

// TestAdoptFindsStartsCutShort: an orch killed at each step of a start.
// Before the fork (steps 1, 2, 3) nothing runs and Adopt finds nothing
// (the pending line is forgotten, and the cgroup it names is not left on
// the host, whether it was made (3) or not yet (2)); from the fork on
// (steps 4, 5, 6) Adopt finds the one daemon that runs, even with no
// committed line (step 4), and its output reaches its log although the
// orch that started it never handed its pipe to a log daemon (steps 4,
// 5); at step 4 through the exec wrapper too, which may not have executed
// the program yet.
func TestAdoptFindsStartsCutShort(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		for step := 1; step <= 6; step++ {
			if wrapped && step != 4 {
				// The wrapper differs only between the fork and the
				// program's exec (each run costs seconds under -race).
				continue
			}
			t.Run(fmt.Sprintf("wrapped=%v/step=%d", wrapped, step), func(t *testing.T) {
				state := t.TempDir()
				t.Cleanup(func() { stopLogd(t, state) })
				mark := fmt.Sprintf("cut%d-%d", step, time.Now().UnixNano())
				t.Cleanup(func() {
					for _, pid := range marked(mark) {
						killGroup(pid)
					}
				})
				applyKilledAt(t, state, ticking(mark, wrapped), step)
				running := marked(mark)
				// Killed after the fork, the daemon may not have executed
				// its program yet: until it has, /proc shows the
				// environment of what forked it, without MARK (on 2 busy
				// cores, 1 run in about 50). Nothing announces the exec:
				// looked at again, within a bound.
				for deadline := time.Now().Add(10 * time.Second); step >= 4 && len(running) == 0 && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
					running = marked(mark)
				}
				p := process.New(process.Options{})
				got, err := p.Adopt(context.Background(), providers.AdoptRequest{StateDir: state})
				if err != nil {
					t.Fatal(err)
				}
				if step <= 3 {
					if len(running) != 0 || len(got.Objects) != 0 {
						t.Fatalf("killed before the fork: running %v, adopted %+v", running, got.Objects)
					}
					// The pending line (steps 2, 3) is forgotten: a second
					// pass has nothing to resolve.
					b, _ := os.ReadFile(filepath.Join(state, "logs", "logd.registry"))
					if step >= 2 && !strings.Contains(string(b), `"gone":true`) {
						t.Fatalf("pending start not forgotten:\n%s", b)
					}
					named := 0
					for _, l := range strings.Split(string(b), "\n") {
						var line struct {
							Cgroup *struct{ Path string } `json:"cgroup"`
						}
						if json.Unmarshal([]byte(l), &line) != nil || line.Cgroup == nil {
							continue
						}
						named++
						if _, err := os.Stat(line.Cgroup.Path); !os.IsNotExist(err) {
							t.Fatalf("the cgroup of the start cut short is left: %s (%v)", line.Cgroup.Path, err)
						}
					}
					if step >= 2 && named == 0 && cgroup.Detect().Usable() {
						t.Fatalf("the pending line names no cgroup:\n%s", b)
					}
					return
				}
				if len(running) != 1 || len(got.Objects) != 1 || got.Objects[0].Observed.Pid != running[0] ||
					got.Objects[0].Addr != addr("writer") || got.Objects[0].Observed.State != providers.StateRunning {
					t.Fatalf("killed at step %d: running %v, adopted %+v", step, running, got.Objects)
				}
				waitLog(t, filepath.Join(state, "logs", "daemon.writer.log"), "tick-"+mark)
				// Adopted, it is ours: stopped from its handle, and the
				// next pass finds nothing.
				if _, err := p.Stop(context.Background(), providers.StopRequest{Addr: addr("writer"), Handle: got.Objects[0].Handle, Signal: spec.SIGTERM, Timeout: 5 * time.Second}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Delete(context.Background(), providers.DeleteRequest{Addr: addr("writer"), Handle: got.Objects[0].Handle}); err != nil {
					t.Fatal(err)
				}
				if again, err := p.Adopt(context.Background(), providers.AdoptRequest{StateDir: state}); err != nil || len(again.Objects) != 0 || len(marked(mark)) != 0 {
					t.Fatalf("after stop: adopted %+v, %v; running %v", again.Objects, err, marked(mark))
				}
			})
		}
	}
}

// TestAdoptStopsLeftoversOfKnownAddress: the state records one instance of
// daemon.writer; an orch that started another one (a replacement) was
// killed before it could record it. Adopt, told which handle the state
// records, stops the other one and leaves the state's; without that
// (KnownHandle nil) it touches neither.
func TestAdoptStopsLeftoversOfKnownAddress(t *testing.T) {
	e := newEnv(t, process.Options{})
	mark := fmt.Sprintf("known-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		for _, pid := range marked(mark) {
			killGroup(pid)
		}
	})
	r := ticking(mark, false)
	r.Addr = addr("writer")
	r.Stop = spec.Stop{Signal: spec.SIGTERM, Timeout: 5 * time.Second}
	h1, hi1 := e.start(&r)
	for _, step := range []int{4, 6} {
		applyKilledAt(t, e.state, ticking(mark, step == 4), step)
		// Killed right after the fork (step 4, through the exec wrapper),
		// the leftover may not have executed its program yet, and until
		// it has /proc shows it without MARK (TestAdoptFindsStartsCutShort
		// says more): looked at again, within a bound, until both run
		// their program (sh). Before that, the leftover's exec of it may
		// hide its environment from a later look for a moment: which
		// processes Adopt left alone is checked on the pids found here.
		var both []int
		if !poll(10*time.Second, func() bool { both = marked(mark); return len(both) == 2 && runs(both, "sh") }) {
			t.Fatalf("step %d: %v running, want the state's and the leftover, both in sh", step, marked(mark))
		}
		fresh := process.New(process.Options{})
		known := func(a spec.Address) bool { return a == addr("writer") }
		got, err := fresh.Adopt(context.Background(), providers.AdoptRequest{StateDir: e.state, Known: known})
		if err != nil || len(got.Objects) != 0 || !alive(both[0]) || !alive(both[1]) {
			t.Fatalf("step %d, without the known handle: adopted %+v, %v; running %v of %v", step, got.Objects, err, marked(mark), both)
		}
		got, err = fresh.Adopt(context.Background(), providers.AdoptRequest{StateDir: e.state, Known: known,
			KnownHandle: func(spec.Address) providers.Handle { return h1 }})
		if err != nil || len(got.Objects) != 0 {
			t.Fatalf("step %d: adopted %+v, %v", step, got.Objects, err)
		}
		if left := marked(mark); len(left) != 1 || left[0] != hi1.Pid {
			t.Fatalf("step %d: running %v, want only the state's %d", step, left, hi1.Pid)
		}
	}
}

// TestAdoptLeavesStartsOfALiveOrch: an instance whose orch still runs is
// that orch's (its start may be in flight): Adopt neither stops it nor
// lets a second instance of a known address go.
func TestAdoptLeavesStartsOfALiveOrch(t *testing.T) {
	e := newEnv(t, process.Options{})
	_, hi1 := e.start(res("w", "sleep", "60"))
	_, hi2 := e.start(res("w", "sleep", "61")) // the same Provider: its orch lives
	known := func(a spec.Address) bool { return a == addr("w") }
	got, err := e.p.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: e.state, Known: known,
		KnownHandle: func(spec.Address) providers.Handle {
			return process.HandleInfo{Pid: hi1.Pid, StartTicks: hi1.StartTicks}.Encode()
		}})
	if err != nil || len(got.Objects) != 0 || !alive(hi1.Pid) || !alive(hi2.Pid) {
		t.Fatalf("adopted %+v, %v; alive %v %v", got.Objects, err, alive(hi1.Pid), alive(hi2.Pid))
	}
}

// procStartTicks is field 22 of /proc/<pid>/stat.
func procStartTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	_, _, _, start, ok := stat(pid)
	if !ok {
		t.Fatalf("no process %d", pid)
	}
	return start
}

// TestOwnFilesModes: the logs directory is made 0700, the registry, the
// socket and logd's pid file 0600.
func TestOwnFilesModes(t *testing.T) {
	e := newEnv(t, process.Options{})
	e.start(res("m", "sleep", "60"))
	logs := filepath.Join(e.state, "logs")
	for name, want := range map[string]os.FileMode{"": 0o700, "logd.registry": 0o600, "logd.sock": 0o600, "logd.pid": 0o600, "logd.lock": 0o600} {
		fi, err := os.Stat(filepath.Join(logs, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Join(logs, name), fi.Mode().Perm(), want)
		}
	}
}

// TestUntrustedLogsRefused: a logs directory or registry that another
// user owns, or that others may write, is refused with an error naming
// it; and a registry line forged there (naming a process orch never
// started) makes orch neither adopt nor signal that process.
func TestUntrustedLogsRefused(t *testing.T) {
	victim := exec.Command("sleep", "60")
	victim.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })
	vpid := victim.Process.Pid
	forged := fmt.Sprintf(`{"name":"daemon.x","id":"f0","address":"daemon.x","project":"proj","max_size":1,"max_files":1,"handle":%s}`+"\n",
		process.HandleInfo{Pid: vpid, StartTicks: procStartTicks(t, vpid), Pgid: vpid}.Encode())
	other := process.HandleInfo{Pid: 1, StartTicks: 1}.Encode()
	cases := []struct {
		name   string
		root   bool // needs root (chown)
		spoil  func(logs string) error
		target string // the path the error names
		reason string
	}{
		{"dir 0777", false, func(logs string) error { return os.Chmod(logs, 0o777) }, "", "writable by others"},
		{"dir of uid 1234", true, func(logs string) error { return os.Chown(logs, 1234, 1234) }, "", "owned by uid 1234"},
		{"registry 0666", false, func(logs string) error { return os.Chmod(filepath.Join(logs, "logd.registry"), 0o666) }, "logd.registry", "writable by others"},
		{"registry of uid 1234", true, func(logs string) error { return os.Chown(filepath.Join(logs, "logd.registry"), 1234, 1234) }, "logd.registry", "owned by uid 1234"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			state := t.TempDir()
			t.Cleanup(func() { stopLogd(t, state) })
			logs := filepath.Join(state, "logs")
			if err := os.Mkdir(logs, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(logs, "logd.registry"), []byte(forged), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.spoil(logs); err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(logs, c.target)
			check := func(what string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), "refusing "+filepath.Clean(want)+":") || !strings.Contains(err.Error(), c.reason) {
					t.Errorf("%s: error %v; want a refusal of %s (%s)", what, err, want, c.reason)
				}
			}
			p := process.New(process.Options{})
			got, err := p.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: state})
			check("adopt", err)
			if len(got.Objects) != 0 {
				t.Errorf("adopted a forged line: %+v", got.Objects)
			}
			known := func(a spec.Address) bool { return a == addr("x") }
			_, err = p.Adopt(context.Background(), providers.AdoptRequest{Project: "proj", StateDir: state, Known: known,
				KnownHandle: func(spec.Address) providers.Handle { return other }})
			check("adopt of a known address", err)
			if !alive(vpid) {
				t.Fatal("the forged line's process was signalled")
			}
			_, err = p.Start(context.Background(), providers.StartRequest{Resource: res("y", "sleep", "60"), StateDir: state, Project: "proj"})
			check("start", err)
			if !alive(vpid) {
				t.Fatal("the forged line's process was signalled")
			}
		})
	}
}
