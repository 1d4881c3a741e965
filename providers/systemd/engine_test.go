package systemd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// orchBin is orch's binary in the machine (systemdtest.Machine.BuildOrch).
const orchBin = "/orch/orch"

// upProc is `orch up -json DIR` running.
type upProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

func (u *upProc) Write(b []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.Write(b)
}

func (u *upProc) output() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

// events counts the JSON event lines of type typ (for address addr, when
// set) that orch up printed.
func (u *upProc) events(typ, addr string) int {
	n := 0
	for _, l := range strings.Split(u.output(), "\n") {
		if strings.Contains(l, `"type":"`+typ+`"`) && (addr == "" || strings.Contains(l, `"address":"`+addr+`"`)) {
			n++
		}
	}
	return n
}

func startUp(t *testing.T, dir string) *upProc {
	t.Helper()
	u := &upProc{done: make(chan struct{})}
	u.cmd = exec.Command(orchBin, "up", "-json", dir)
	u.cmd.Stdout, u.cmd.Stderr = u, u
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { u.cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		u.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-u.done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
			<-u.done
		}
		if t.Failed() {
			t.Logf("orch up's output:\n%s", u.output())
		}
	})
	return u
}

func orchCmd(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, orchBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

func writeConfig(t *testing.T, dir, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mainPID is the unit's main pid, 0 when it does not run.
func mainPID(t *testing.T, unit string) int {
	n, _ := strconv.Atoi(show(t, unit, "MainPID"))
	return n
}

// testEngine drives orch up against systemd: a crash and a systemctl stop
// behind orch's back are started again by orch's policy; daemon-reexec is
// unreachable, then reconnected, and the unit runs on untouched; an edit
// replaces the unit; orch up killed with SIGKILL and started again adopts
// the unit (no duplicate); orch logs reads the journal; destroy leaves no
// unit of orch's, and a unit orch did not make survives it.
func testEngine(t *testing.T) {
	if _, err := os.Stat(orchBin); err != nil {
		t.Fatalf("no orch binary in the machine: %v", err)
	}
	project := uniqueProject(t)
	dir := filepath.Join(os.TempDir(), project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := func(version string) string {
		return fmt.Sprintf(`orch {
  name = %q
}
runtime "systemd" "host" {}
daemon "w" {
  runtime = runtime.systemd.host
  command = ["/bin/sh", "-c", "echo %s up; exec sleep 1000"]
  restart {
    backoff = "50ms"
  }
}
`, project, version)
	}
	writeConfig(t, dir, config("v1"))
	unit := "orch-" + project + "-daemon-w.service"
	foreign := "orch-" + project + "-foreign.service"
	t.Cleanup(func() {
		for _, u := range units(t, "orch-"+project+"-*") {
			exec.Command("systemctl", "stop", u).Run()
			exec.Command("systemctl", "reset-failed", u).Run()
		}
	})
	up := startUp(t, dir)
	running := func(not int) func() bool {
		return func() bool {
			p := mainPID(t, unit)
			return p != 0 && p != not && show(t, unit, "SubState") == "running"
		}
	}
	waitFor(t, "the unit to run", running(0))
	pid := mainPID(t, unit)

	// A crash: restarted by orch (on-failure), as a new process.
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "the unit to run again after a crash", running(pid))
	waitFor(t, "orch up's exited and started events", func() bool {
		return up.events("exited", "daemon.w") >= 1 && up.events("started", "daemon.w") >= 2
	})
	pid = mainPID(t, unit)

	// systemctl stop behind orch's back: started again.
	systemctl(t, "stop", unit)
	waitFor(t, "the unit to run again after systemctl stop", running(pid))
	pid = mainPID(t, unit)

	// systemd re-executes: unreachable, reconnected; the unit runs on.
	systemctl(t, "daemon-reexec")
	waitFor(t, "unreachable and reconnected", func() bool {
		return up.events("unreachable", "runtime.systemd.host") >= 1 && up.events("reconnected", "runtime.systemd.host") >= 1
	})
	time.Sleep(300 * time.Millisecond)
	if p := mainPID(t, unit); p != pid {
		t.Errorf("after daemon-reexec the main pid is %d, want %d (untouched)", p, pid)
	}

	// An edit: orch up replaces the unit.
	writeConfig(t, dir, config("v2"))
	waitFor(t, "the replacement", func() bool {
		u := units(t, "orch-"+project+"-*")
		if len(u) != 1 {
			return false
		}
		p, _ := strconv.Atoi(show(t, u[0], "MainPID"))
		return p != 0 && p != pid
	})
	cur := units(t, "orch-"+project+"-*")[0]
	waitFor(t, "orch logs to show both versions", func() bool {
		out, code := orchCmd(t, nil, "logs", "daemon.w", dir)
		return code == 0 && strings.Contains(out, "v2 up") && strings.Contains(out, "v1 up")
	})

	// orch up killed: the unit runs on; the next orch up adopts it.
	pid, _ = strconv.Atoi(show(t, cur, "MainPID"))
	syscall.Kill(-up.cmd.Process.Pid, syscall.SIGKILL)
	<-up.done
	if p, _ := strconv.Atoi(show(t, cur, "MainPID")); p != pid {
		t.Fatalf("the unit died with orch up: pid %d, was %d", p, pid)
	}
	up2 := startUp(t, dir)
	waitFor(t, "orch up to adopt or take over", func() bool { return up2.events("ready", "") >= 1 })
	time.Sleep(500 * time.Millisecond)
	if u := units(t, "orch-"+project+"-*"); len(u) != 1 || u[0] != cur {
		t.Errorf("units after orch up started again: %v, want [%s]", u, cur)
	}
	if p, _ := strconv.Atoi(show(t, cur, "MainPID")); p != pid {
		t.Errorf("main pid %d after orch up started again, want %d (not restarted)", p, pid)
	}

	// A unit orch did not make, with orch's prefix, survives destroy.
	if out, err := exec.Command("systemd-run", "--unit", foreign, "--quiet", "/bin/sleep", "1000").CombinedOutput(); err != nil {
		t.Fatalf("systemd-run: %v: %s", err, out)
	}
	if out, code := orchCmd(t, nil, "destroy", "-auto-approve", dir); code != 0 {
		t.Fatalf("destroy: %d\n%s", code, out)
	}
	waitFor(t, "no unit of orch's", func() bool {
		u := units(t, "orch-"+project+"-*")
		return len(u) == 1 && u[0] == foreign
	})
	if s := show(t, foreign, "ActiveState"); s != "active" {
		t.Errorf("the foreign unit is %s after destroy", s)
	}
	systemctl(t, "stop", foreign)
}

// testNoBus: with a systemd runtime whose bus cannot be reached, orch
// apply fails with an error naming the runtime and the bus (it cannot
// list what runs there), and orch up runs the process daemon of the same
// configuration while the systemd one waits for its runtime.
func testNoBus(t *testing.T) {
	project := uniqueProject(t)
	dir := filepath.Join(os.TempDir(), project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, fmt.Sprintf(`orch {
  name = %q
}
runtime "systemd" "host" {}
daemon "s" {
  runtime = runtime.systemd.host
  command = ["/bin/sleep", "1000"]
}
daemon "p" {
  command = ["/bin/sleep", "1001"]
}
`, project))
	const noBus = "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/no-such-bus"
	// orch apply: the process daemon is applied, the systemd one left
	// out and named, exit 1.
	out, code := orchCmd(t, []string{noBus}, "apply", "-auto-approve", dir)
	if code != 1 || !strings.Contains(out, "runtime.systemd.host: cannot reach systemd on the system bus unix:path=/run/no-such-bus") ||
		!strings.Contains(out, "not applied: daemon.s") {
		t.Errorf("apply without a bus: exit %d\n%s", code, out)
	}
	if len(processes("/bin/sleep 1001")) != 1 {
		t.Errorf("orch apply did not start daemon.p, on the process runtime, beside the unreachable one")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/no-such-bus")
	up := startUp(t, dir)
	waitFor(t, "daemon.p to run and daemon.s to wait for its runtime", func() bool {
		return up.events("started", "daemon.p")+up.events("adopted", "daemon.p") == 1 && up.events("waiting", "daemon.s") >= 1
	})
	if !strings.Contains(up.output(), "runtime.systemd.host: cannot reach systemd on the system bus unix:path=/run/no-such-bus") {
		t.Errorf("orch up does not say why runtime.systemd.host is unreachable:\n%s", up.output())
	}
	if len(processes("/bin/sleep 1001")) != 1 {
		t.Errorf("daemon.p does not run")
	}
}

// testEngineNotify: a daemon declared with health { notify = true } on
// systemd is a Type=notify unit, whose READY=1 goes to systemd, not to
// orch: orch up follows systemd's view (healthy once READY=1, 2 s after
// the start here; its dependent starts only then) and does not call it
// unhealthy when start_timeout passes; orch apply waits for it too.
func testEngineNotify(t *testing.T) {
	config := func(project string) string {
		return fmt.Sprintf(`orch {
  name = %q
}
runtime "systemd" "host" {}
daemon "n" {
  runtime = runtime.systemd.host
  command = ["/orch/test.bin"]
  env     = { ORCH_TEST_NOTIFY_AFTER = "2s" }
  health {
    notify        = true
    start_timeout = "5s"
  }
}
daemon "dep" {
  runtime    = runtime.systemd.host
  command    = ["/bin/sleep", "1000"]
  depends_on = [daemon.n]
}
`, project)
	}
	dirOf := func() (string, string) {
		project := uniqueProject(t)
		dir := filepath.Join(os.TempDir(), project)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeConfig(t, dir, config(project))
		t.Cleanup(func() {
			orchCmd(t, nil, "destroy", "-auto-approve", dir)
			for _, u := range units(t, "orch-"+project+"-*") {
				exec.Command("systemctl", "stop", u).Run()
				exec.Command("systemctl", "reset-failed", u).Run()
			}
		})
		return project, dir
	}

	_, dir := dirOf()
	began := time.Now()
	up := startUp(t, dir)
	waitFor(t, "daemon.dep started", func() bool { return up.events("started", "daemon.dep") == 1 })
	out := up.output()
	healthy, dep := strings.Index(out, `"type":"healthy","address":"daemon.n"`), strings.Index(out, `"type":"started","address":"daemon.dep"`)
	if healthy < 0 || healthy > dep {
		t.Fatalf("daemon.dep started before daemon.n was healthy:\n%s", out)
	}
	// Past start_timeout (5 s from the start): still healthy, never
	// restarted.
	time.Sleep(time.Until(began.Add(7 * time.Second)))
	if n := up.events("unhealthy", "daemon.n") + up.events("restarting", "daemon.n"); n != 0 {
		t.Fatalf("daemon.n was called unhealthy or restarted:\n%s", up.output())
	}

	project, dir2 := dirOf()
	out2, code := orchCmd(t, nil, "apply", "-auto-approve", dir2)
	if code != 0 || !strings.Contains(out2, "Apply complete!") {
		t.Fatalf("orch apply: exit %d\n%s", code, out2)
	}
	if got := show(t, "orch-"+project+"-daemon-n.service", "ActiveState"); got != "active" {
		t.Errorf("after orch apply daemon.n's unit is %s, want active (READY=1 said)", got)
	}
}
