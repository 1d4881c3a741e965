package systemd_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/systemd"
	"github.com/orch-dev/orch/providers/systemd/systemdtest"
	"github.com/orch-dev/orch/spec"
)

const pkg = "github.com/orch-dev/orch/providers/systemd"

// inMachine runs the test named name inside a systemd machine when this
// process is outside one (the whole test then happens there), and reports
// whether the caller is inside and should go on.
func inMachine(t *testing.T, name string) bool {
	if systemdtest.Inside() {
		return true
	}
	m := systemdtest.Boot(t)
	m.BuildOrch(t)
	m.RunSelf(t, pkg, "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=10m")
	return false
}

var seq int

func uniqueProject(t *testing.T) string {
	seq++
	return fmt.Sprintf("t%d-%d", os.Getpid()%10000, seq)
}

// load loads body as the configuration of project, with the runtime
// "systemd" "host" declared.
func load(t *testing.T, project, body string) *spec.Config { return loadB(t, project, body) }

func loadB(t testing.TB, project, body string) *spec.Config {
	t.Helper()
	dir := filepath.Join(os.TempDir(), project)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf("orch {\n  name = %q\n}\nruntime \"systemd\" \"host\" {}\n%s", project, body)
	cfg, diags := spec.LoadFS(fstest.MapFS{"main.hcl": {Data: []byte(src)}}, dir,
		spec.Options{Schemas: map[string]spec.RuntimeSchema{systemd.Kind: systemd.Schema()}})
	if diags.HasErrors() {
		t.Fatalf("config: %s\n%s", diags.Error(), src)
	}
	return cfg
}

func mustAddr(t *testing.T, s string) spec.Address {
	t.Helper()
	a, err := spec.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// daemon is a configuration of one daemon "d" with command.
func daemon(command string, extra string) string {
	return fmt.Sprintf("daemon \"d\" {\n  runtime = runtime.systemd.host\n  command = [\"/bin/sh\", \"-c\", %q]\n%s\n}\n", command, extra)
}

type fixture struct {
	t       *testing.T
	p       *systemd.Provider
	cfg     *spec.Config
	r       *spec.Resource
	rt      *spec.Runtime
	project string
}

func newFixture(t *testing.T, body string) *fixture {
	project := uniqueProject(t)
	cfg := load(t, project, body)
	r := cfg.Resource(mustAddr(t, "daemon.d"))
	p := systemd.New(systemd.Options{})
	t.Cleanup(func() {
		p.Close()
		// Whatever a failed test left of its project.
		out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "orch-"+project+"-*").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				exec.Command("systemctl", "stop", f[0]).Run()
				exec.Command("systemctl", "reset-failed", f[0]).Run()
			}
		}
	})
	return &fixture{t: t, p: p, cfg: cfg, r: r, rt: cfg.Runtime(r.Runtime), project: project}
}

func (f *fixture) start(r *spec.Resource, hash string) providers.StartResponse {
	f.t.Helper()
	resp, err := f.p.Start(context.Background(), providers.StartRequest{Runtime: f.rt, Resource: r, Project: f.project, ConfigHash: hash})
	if err != nil {
		f.t.Fatalf("start: %v", err)
	}
	return resp
}

func (f *fixture) observe(h providers.Handle) providers.Observed {
	f.t.Helper()
	o, err := f.p.Observe(context.Background(), providers.ObserveRequest{Runtime: f.rt, Handles: map[spec.Address]providers.Handle{f.r.Addr: h}})
	if err != nil {
		f.t.Fatalf("observe: %v", err)
	}
	return o.Objects[f.r.Addr]
}

func (f *fixture) stop(h providers.Handle, sig string, timeout time.Duration) providers.StopResponse {
	f.t.Helper()
	s, err := spec.ParseSignal(sig)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := f.p.Stop(context.Background(), providers.StopRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: h, Signal: s, Timeout: timeout})
	if err != nil {
		f.t.Fatalf("stop: %v", err)
	}
	return resp
}

func (f *fixture) delete(h providers.Handle) {
	f.t.Helper()
	if _, err := f.p.Delete(context.Background(), providers.DeleteRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: h}); err != nil {
		f.t.Fatalf("delete: %v", err)
	}
}

func unitOf(t *testing.T, h providers.Handle) string {
	t.Helper()
	hi, err := systemd.ParseHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	return hi.Unit
}

// show is `systemctl show -p prop --value unit`.
func show(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-p", prop, "--value", unit).Output()
	if err != nil {
		t.Fatalf("systemctl show %s: %v", unit, err)
	}
	return strings.TrimSpace(string(out))
}

func systemctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// units lists the loaded units whose names match pattern.
func units(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", pattern).Output()
	if err != nil {
		t.Fatalf("systemctl list-units: %v", err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// waitFor polls cond until it holds, failing t after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readLogs reads the daemon's log as it is now.
func (f *fixture) readLogs(h providers.Handle) string {
	f.t.Helper()
	lr, err := f.p.Logs(context.Background(), providers.LogsRequest{Runtime: f.rt, Addr: f.r.Addr, Handle: h})
	if err != nil {
		f.t.Fatalf("logs: %v", err)
	}
	defer lr.Log.Close()
	b, err := io.ReadAll(lr.Log)
	if err != nil {
		f.t.Fatalf("logs: %v", err)
	}
	return string(b)
}

type ctyValue = cty.Value

func ctyString(s string) cty.Value { return cty.StringVal(s) }

func fstestMap(main string) fstest.MapFS { return fstest.MapFS{"main.hcl": {Data: []byte(main)}} }

// processes lists the pids whose command line (arguments joined by
// spaces) is cmdline.
func processes(cmdline string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) == cmdline {
			pids = append(pids, pid)
		}
	}
	return pids
}
