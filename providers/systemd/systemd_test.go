package systemd_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/spec"
)

// TestSystemd runs against a real systemd as PID 1: outside a systemd
// machine it boots one (systemdtest) and runs itself there.
func TestSystemd(t *testing.T) {
	if !inMachine(t, "TestSystemd") {
		return
	}
	t.Run("Lifecycle", testLifecycle)
	t.Run("StopTimeoutKills", testStopTimeoutKills)
	t.Run("ExitStatus", testExitStatus)
	t.Run("StartErrors", testStartErrors)
	t.Run("NotOrchs", testNotOrchs)
	t.Run("AdoptAndReplace", testAdoptAndReplace)
	t.Run("Unreachable", testUnreachable)
	t.Run("Reexec", testReexec)
	t.Run("Notify", testNotify)
	t.Run("Resources", testResources)
	t.Run("Engine", testEngine)
	t.Run("EngineNotify", testEngineNotify)
	t.Run("NoBus", testNoBus)
	t.Run("UserScope", testUserScope)
}

// testLifecycle: a daemon's unit and its properties, its log, a signal to
// its cgroup seen in the followed log, a clean stop, delete.
func testLifecycle(t *testing.T) {
	f := newFixture(t, daemon(`trap 'echo got usr1' USR1; echo "hello $GREETING from $(pwd) as $(id -un)"; while :; do sleep 0.1; done`,
		`  env = { GREETING = "world" }
  dir = "/var/tmp"
  user = "nobody"
  group = "nogroup"
  stop { signal = "SIGINT" }`))
	resp := f.start(f.r, "hash1")
	unit := unitOf(t, resp.Handle)
	if want := "orch-" + f.project + "-daemon-d.service"; unit != want {
		t.Errorf("unit %s, want %s", unit, want)
	}
	if resp.Observed.State != providers.StateRunning || resp.Observed.Pid == 0 {
		t.Fatalf("started: %+v", resp.Observed)
	}
	if pid := show(t, unit, "MainPID"); pid != strconv.Itoa(resp.Observed.Pid) {
		t.Errorf("MainPID %s, observed pid %d", pid, resp.Observed.Pid)
	}
	for prop, want := range map[string]string{
		"Description":      "orch " + f.project + " daemon.d",
		"Environment":      "GREETING=world",
		"WorkingDirectory": "/var/tmp",
		"User":             "nobody",
		"Group":            "nogroup",
		"Type":             "exec",
		"KillSignal":       "2",
		"Restart":          "no",
		"LogExtraFields":   "ORCH_MANAGED_BY=orch ORCH_PROJECT=" + f.project + " ORCH_ADDRESS=daemon.d ORCH_RUNTIME=runtime.systemd.host ORCH_CONFIG_HASH=hash1",
	} {
		if got := show(t, unit, prop); got != want {
			t.Errorf("%s = %q, want %q", prop, got, want)
		}
	}
	if o := f.observe(resp.Handle); o.State != providers.StateRunning || o.Pid != resp.Observed.Pid || o.ID != unit {
		t.Errorf("observed %+v", o)
	}
	waitFor(t, "the daemon's first line in the journal", func() bool {
		return strings.Contains(f.readLogs(resp.Handle), "hello world from /var/tmp as nobody\n")
	})
	// Follow the log from its end; a signal to the cgroup shows in it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lr, err := f.p.Logs(ctx, providers.LogsRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp.Handle, Follow: true, Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(lr.Log)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond) // journalctl -f is at the end
	usr1, _ := spec.ParseSignal("SIGUSR1")
	if _, err := f.p.Signal(context.Background(), providers.SignalRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp.Handle, Signal: usr1, MainOnly: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-lines:
		if l != "got usr1" {
			t.Errorf("followed log: %q, want the trap's line only (-n 0)", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no line in the followed log after SIGUSR1")
	}
	lr.Log.Close()
	// Stop: SIGINT (its declared signal) ends the shell; not killed.
	st := f.stop(resp.Handle, "SIGINT", 5*time.Second)
	if st.Killed {
		t.Errorf("stop killed it: %+v", st)
	}
	if o := f.observe(resp.Handle); o.State == providers.StateRunning {
		t.Errorf("observed after stop: %+v", o)
	}
	f.delete(resp.Handle)
	if ls := show(t, unit, "LoadState"); ls != "not-found" {
		t.Errorf("after delete the unit is %s", ls)
	}
	if o := f.observe(resp.Handle); o.State != providers.StateMissing {
		t.Errorf("observed after delete: %+v", o)
	}
	// Stop and delete of what is gone succeed.
	f.stop(resp.Handle, "SIGTERM", time.Second)
	f.delete(resp.Handle)
}

// testStopTimeoutKills: a daemon that ignores its stop signal is killed
// (SIGKILL to its cgroup) after the timeout, by systemd's own stop when
// the timeout is the one the unit was made with, by hand when another is
// asked; the unit stays failed with that status until delete.
func testStopTimeoutKills(t *testing.T) {
	for _, c := range []struct {
		declared string
		result   string
	}{{`stop { timeout = "1s" }`, "timeout"}, {``, "signal"}} {
		f := newFixture(t, daemon(`trap '' TERM; (trap '' TERM; exec sleep 1000) & while :; do sleep 0.1; done`, c.declared))
		resp := f.start(f.r, "h")
		unit := unitOf(t, resp.Handle)
		waitFor(t, "the child", func() bool { n, _ := strconv.Atoi(show(t, unit, "TasksCurrent")); return n >= 2 })
		t0 := time.Now()
		st := f.stop(resp.Handle, "SIGTERM", time.Second)
		if !st.Killed || st.Observed.Signal != "SIGKILL" {
			t.Errorf("%s: stop: %+v, want killed by SIGKILL", c.declared, st)
		}
		if d := time.Since(t0); d < time.Second {
			t.Errorf("%s: killed after %s, before the timeout", c.declared, d)
		}
		if ps := processes("sleep 1000"); len(ps) > 0 {
			t.Errorf("%s: a process of the unit survived: %v", c.declared, ps)
		}
		if s := show(t, unit, "Result"); s != c.result {
			t.Errorf("%s: Result %s, want %s", c.declared, s, c.result)
		}
		f.delete(resp.Handle)
		if ls := show(t, unit, "LoadState"); ls != "not-found" {
			t.Errorf("%s: after delete the unit is %s", c.declared, ls)
		}
	}
}

// testExitStatus: a daemon's exit code and a killing signal are observed
// and watched; a start after a crash reuses the unit's name.
func testExitStatus(t *testing.T) {
	// It exits with 3 once the test says so, after its start has
	// returned and its watch began: exiting at once raced the start job
	// under load (systemd then fails the job itself, result exit-code).
	gate := filepath.Join(t.TempDir(), "exit")
	f := newFixture(t, daemon(`while [ ! -e `+gate+` ]; do sleep 0.05; done; exit 3`, ""))
	resp := f.start(f.r, "h")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := f.p.Watch(ctx, providers.WatchRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o, ok := <-w.Exited
	if !ok || o.State != providers.StateExited || o.ExitCode != 3 || o.Signal != "" {
		t.Fatalf("watched: %+v %v", o, ok)
	}
	if o := f.observe(resp.Handle); o.State != providers.StateExited || o.ExitCode != 3 {
		t.Errorf("observed: %+v", o)
	}
	// Started again (orch's restart): same name, new invocation.
	f2 := load(t, f.project, daemon(`exec sleep 1000`, ""))
	resp2 := f.start(f2.Resource(f.r.Addr), "h2")
	if unitOf(t, resp2.Handle) != unitOf(t, resp.Handle) {
		t.Errorf("restarted as %s", unitOf(t, resp2.Handle))
	}
	if o := f.observe(resp.Handle); o.State != providers.StateMissing {
		t.Errorf("the crashed instance observed as %+v after the restart", o)
	}
	w, err = f.p.Watch(ctx, providers.WatchRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp2.Handle})
	if err != nil {
		t.Fatal(err)
	}
	systemctl(t, "kill", "--kill-whom=main", "-s", "KILL", unitOf(t, resp2.Handle))
	if o, ok := <-w.Exited; !ok || o.State != providers.StateExited || o.Signal != "SIGKILL" {
		t.Fatalf("watched: %+v %v", o, ok)
	}
	f.delete(resp2.Handle)
}

// testStartErrors: what systemd cannot start is an error naming the
// attribute, and leaves no unit.
func testStartErrors(t *testing.T) {
	for _, c := range []struct{ extra, cmd, attr, msg string }{
		{`user = "no-such-user"`, "/bin/true", "user", "cannot set the user"},
		{`dir = "/no/such/dir"`, "/bin/true", "dir", "working directory"},
		{``, "/no/such/binary", "command", "cannot execute"},
		{``, "no-such-binary-in-path", "command", "not found in PATH"},
	} {
		f := newFixture(t, "daemon \"d\" {\n  runtime = runtime.systemd.host\n  command = [\""+c.cmd+"\"]\n  "+c.extra+"\n}\n")
		_, err := f.p.Start(context.Background(), providers.StartRequest{Runtime: f.rt, Resource: f.r, Project: f.project, ConfigHash: "h"})
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Attr != c.attr || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "daemon.d") {
			t.Errorf("%s %s: %v (attr %q), want an error about %s", c.extra, c.cmd, err, attrOf(pe), c.attr)
		}
		if u := units(t, "orch-"+f.project+"-*"); len(u) != 0 {
			t.Errorf("left %v", u)
		}
	}
}

func attrOf(pe *providers.Error) string {
	if pe == nil {
		return ""
	}
	return pe.Attr
}

// testNotOrchs: a unit orch did not make, with the very name orch would
// use, is neither replaced, adopted, stopped nor removed.
func testNotOrchs(t *testing.T) {
	f := newFixture(t, daemon(`exec sleep 1000`, ""))
	unit := systemd.UnitName(f.project, f.r.Addr)
	if out, err := exec.Command("systemd-run", "--unit", unit, "--quiet", "/bin/sleep", "1000").CombinedOutput(); err != nil {
		t.Fatalf("systemd-run: %v: %s", err, out)
	}
	defer exec.Command("systemctl", "stop", unit).Run()
	_, err := f.p.Start(context.Background(), providers.StartRequest{Runtime: f.rt, Resource: f.r, Project: f.project, ConfigHash: "h"})
	if err == nil || !strings.Contains(err.Error(), "was not made by orch") {
		t.Errorf("start over a foreign unit: %v", err)
	}
	ad, err := f.p.Adopt(context.Background(), providers.AdoptRequest{Runtime: f.rt, Project: f.project})
	if err != nil || len(ad.Objects) != 0 {
		t.Errorf("adopted %+v, %v", ad.Objects, err)
	}
	forged := systemd.HandleInfo{Unit: unit}.Encode()
	if o := f.observe(forged); o.State != providers.StateMissing {
		t.Errorf("observed a foreign unit as %+v", o)
	}
	f.stop(forged, "SIGKILL", time.Second)
	f.delete(forged)
	sig, _ := spec.ParseSignal("SIGKILL")
	if _, err := f.p.Signal(context.Background(), providers.SignalRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: forged, Signal: sig}); err == nil {
		t.Error("signalled a foreign unit")
	}
	if s := show(t, unit, "ActiveState"); s != "active" {
		t.Errorf("the foreign unit is %s after orch's calls", s)
	}
}

// testAdoptAndReplace: a fresh provider adopts the running unit from its
// marks; a start with another configuration while the old one runs
// (create_before_destroy) takes a second name; an adoption told the
// state's handle stops the unit it does not know.
func testAdoptAndReplace(t *testing.T) {
	f := newFixture(t, daemon(`exec sleep 1000`, ""))
	resp := f.start(f.r, "hash-a")
	p2 := systemd.New(systemd.Options{})
	defer p2.Close()
	ad, err := p2.Adopt(context.Background(), providers.AdoptRequest{Runtime: f.rt, Project: f.project})
	if err != nil || len(ad.Objects) != 1 {
		t.Fatalf("adopt: %+v %v", ad.Objects, err)
	}
	a := ad.Objects[0]
	if a.Addr != f.r.Addr || a.ConfigHash != "hash-a" || string(a.Handle) != string(resp.Handle) || a.Observed.State != providers.StateRunning {
		t.Errorf("adopted %+v (handle %s), want %s", a, a.Handle, resp.Handle)
	}
	if o, _ := p2.Adopt(context.Background(), providers.AdoptRequest{Runtime: f.rt, Project: f.project + "x"}); len(o.Objects) != 0 {
		t.Errorf("another project adopted %+v", o.Objects)
	}
	// The same configuration again: taken over, not started twice.
	again := f.start(f.r, "hash-a")
	if string(again.Handle) != string(resp.Handle) {
		t.Errorf("a second start of the same configuration: %s, want %s", again.Handle, resp.Handle)
	}
	// Another configuration while it runs: a second unit.
	newer := f.start(f.r, "hash-b0123456789")
	if u := unitOf(t, newer.Handle); u == unitOf(t, resp.Handle) || !strings.Contains(u, "hash-b012345") {
		t.Errorf("the replacement's unit is %s", u)
	}
	if n := len(units(t, "orch-"+f.project+"-*")); n != 2 {
		t.Errorf("%d units, want 2", n)
	}
	// State lost with both running: the newer is adopted, the older stopped.
	ad, err = p2.Adopt(context.Background(), providers.AdoptRequest{Runtime: f.rt, Project: f.project})
	if err != nil || len(ad.Objects) != 1 || string(ad.Objects[0].Handle) != string(newer.Handle) {
		t.Errorf("adopt of two units of one address: %+v %v, want %s", ad.Objects, err, newer.Handle)
	}
	if u := units(t, "orch-"+f.project+"-*"); len(u) != 1 || u[0] != unitOf(t, newer.Handle) {
		t.Errorf("units after adoption: %v", u)
	}
	resp, newer = newer, f.start(f.r, "hash-c0123456789")
	// orch was killed before it recorded the new one: the state names
	// the old handle; adoption stops the unknown unit.
	ad, err = p2.Adopt(context.Background(), providers.AdoptRequest{Runtime: f.rt, Project: f.project,
		Known: func(spec.Address) bool { return true }, KnownHandle: func(spec.Address) providers.Handle { return resp.Handle }})
	if err != nil || len(ad.Objects) != 0 {
		t.Errorf("adopt with state: %+v %v", ad.Objects, err)
	}
	if u := units(t, "orch-"+f.project+"-*"); len(u) != 1 || u[0] != unitOf(t, resp.Handle) {
		t.Errorf("units after adoption: %v", u)
	}
	f.stop(resp.Handle, "SIGTERM", 5*time.Second)
	f.delete(resp.Handle)
	if u := units(t, "orch-"+f.project+"-*"); len(u) != 0 {
		t.Errorf("left %v", u)
	}
}

// testUnreachable: without a bus, each call is an Unreachable error that
// names the runtime; a user scope without a user bus says what is missing.
func testUnreachable(t *testing.T) {
	f := newFixture(t, daemon(`exec sleep 1000`, ""))
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/no-such-bus")
	p := systemd.New(systemd.Options{})
	defer p.Close()
	_, err := p.Start(context.Background(), providers.StartRequest{Runtime: f.rt, Resource: f.r, Project: f.project, ConfigHash: "h"})
	if !providers.IsUnreachable(err) || !strings.Contains(err.Error(), "runtime.systemd.host") || !strings.Contains(err.Error(), "/run/no-such-bus") {
		t.Errorf("start without a bus: %v", err)
	}
	_, err = p.Observe(context.Background(), providers.ObserveRequest{Runtime: f.rt, Handles: map[spec.Address]providers.Handle{f.r.Addr: systemd.HandleInfo{Unit: "x.service"}.Encode()}})
	if !providers.IsUnreachable(err) {
		t.Errorf("observe without a bus: %v", err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	user := *f.rt
	user.Attrs = map[string]ctyValue{systemd.AttrScope: ctyString(systemd.ScopeUser)}
	_, err = p.Start(context.Background(), providers.StartRequest{Runtime: &user, Resource: f.r, Project: f.project, ConfigHash: "h"})
	if err == nil || !strings.Contains(err.Error(), `scope = "user"`) || !strings.Contains(err.Error(), "runtime.systemd.host") || !strings.Contains(err.Error(), "XDG_RUNTIME_DIR") {
		t.Errorf("user scope without a user bus: %v", err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	_, err = p.Start(context.Background(), providers.StartRequest{Runtime: &user, Resource: f.r, Project: f.project, ConfigHash: "h"})
	if !providers.IsUnreachable(err) || !strings.Contains(err.Error(), "user bus unix:path=/run/user/4242/bus") {
		t.Errorf("user scope with no bus at XDG_RUNTIME_DIR: %v", err)
	}
	// An invalid scope is a configuration error at its place.
	_, diags := spec.LoadFS(fstestMap("orch {\n  name = \"x\"\n}\nruntime \"systemd\" \"h\" {\n  scope = \"session\"\n}\n"), os.TempDir(),
		spec.Options{Schemas: map[string]spec.RuntimeSchema{systemd.Kind: systemd.Schema()}})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "main.hcl:5") || !strings.Contains(diags.Error(), `"system" or "user"`) {
		t.Errorf("scope = \"session\": %v", diags)
	}
}

// testReexec: systemd re-executing itself (daemon-reexec) is a
// disconnection and a reconnection of the event stream; a watch goes on
// through it without reporting the unit, which still runs.
func testReexec(t *testing.T) {
	f := newFixture(t, daemon(`exec sleep 1000`, ""))
	resp := f.start(f.r, "h")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := f.p.Events(ctx, providers.EventsRequest{Runtime: f.rt, Project: f.project})
	if err != nil {
		t.Fatal(err)
	}
	w, err := f.p.Watch(ctx, providers.WatchRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: resp.Handle})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // subscribed
	systemctl(t, "daemon-reexec")
	var kinds []string
	deadline := time.After(time.Minute)
	for len(kinds) == 0 || kinds[len(kinds)-1] != "reconnected" {
		select {
		case ev := <-evs:
			kinds = append(kinds, ev.Kind)
		case <-deadline:
			t.Fatalf("events after daemon-reexec: %v, want disconnected then reconnected", kinds)
		}
	}
	if kinds[0] != "disconnected" {
		t.Errorf("events: %v", kinds)
	}
	select {
	case o := <-w.Exited:
		t.Errorf("the watch reported %+v across daemon-reexec", o)
	case <-time.After(500 * time.Millisecond):
	}
	if o := f.observe(resp.Handle); o.State != providers.StateRunning {
		t.Errorf("after daemon-reexec: %+v", o)
	}
	// Events and watches still work: a kill is seen.
	systemctl(t, "kill", "-s", "KILL", unitOf(t, resp.Handle))
	select {
	case o := <-w.Exited:
		if o.Signal != "SIGKILL" {
			t.Errorf("watched %+v", o)
		}
	case <-time.After(time.Minute):
		t.Fatal("the watch missed the kill after daemon-reexec")
	}
	for {
		select {
		case ev := <-evs:
			if ev.Kind == "exited" && ev.Addr == f.r.Addr {
				f.delete(resp.Handle)
				return
			}
		case <-time.After(time.Minute):
			t.Fatal("no exited event after daemon-reexec")
		}
	}
}

// testUserScope: scope = "user" runs the unit under the user's own
// manager (root's, user@0.service, started through PAM as a login would),
// not under PID 1: reached on the user bus ($XDG_RUNTIME_DIR/bus, from
// dbus-user-session), and on a machine without one on the manager's own
// socket ($XDG_RUNTIME_DIR/systemd/private): started, observed, logged,
// stopped and deleted there.
func testUserScope(t *testing.T) {
	systemctl(t, "start", "user@0.service")
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	waitFor(t, "root's user manager and bus", func() bool {
		_, err1 := os.Stat("/run/user/0/systemd/private")
		_, err2 := os.Stat("/run/user/0/bus")
		return err1 == nil && err2 == nil
	})
	// Without a user bus: a runtime directory with the manager's socket
	// only.
	nobus := t.TempDir()
	if err := os.Symlink("/run/user/0/systemd", nobus+"/systemd"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, dir string }{{"bus", "/run/user/0"}, {"private socket", nobus}} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", c.dir)
			userScopeLifecycle(t)
		})
	}
}

func userScopeLifecycle(t *testing.T) {
	f := newFixture(t, "runtime \"systemd\" \"mine\" {\n  scope = \"user\"\n}\n"+
		"daemon \"d\" {\n  runtime = runtime.systemd.mine\n  command = [\"/bin/sh\", \"-c\", \"echo hello from the user manager; exec sleep 600\"]\n}\n")
	resp := f.start(f.r, "h")
	hi, err := systemd.ParseHandle(resp.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if hi.Scope != systemd.ScopeUser {
		t.Errorf("handle scope %q, want user", hi.Scope)
	}
	user := func(args ...string) string {
		cmd := exec.Command("systemctl", append([]string{"--user"}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR=/run/user/0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemctl --user %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if pid := user("show", "-p", "MainPID", "--value", hi.Unit); pid != strconv.Itoa(resp.Observed.Pid) || resp.Observed.Pid == 0 {
		t.Errorf("the user manager's MainPID %s, observed pid %d", pid, resp.Observed.Pid)
	}
	if got := show(t, hi.Unit, "LoadState"); got != "not-found" {
		t.Errorf("the system manager has the unit too (LoadState %s)", got)
	}
	if o := f.observe(resp.Handle); o.State != providers.StateRunning || o.Pid != resp.Observed.Pid {
		t.Errorf("observed %+v", o)
	}
	waitFor(t, "its line in the journal", func() bool {
		return strings.Contains(f.readLogs(resp.Handle), "hello from the user manager\n")
	})
	if st := f.stop(resp.Handle, "SIGTERM", 5*time.Second); st.Observed.State == providers.StateRunning {
		t.Errorf("still running after stop: %+v", st.Observed)
	}
	f.delete(resp.Handle)
	if got := user("show", "-p", "LoadState", "--value", hi.Unit); got != "not-found" {
		t.Errorf("after delete, the user manager still has the unit (LoadState %s)", got)
	}
}
