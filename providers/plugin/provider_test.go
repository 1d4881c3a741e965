package plugin_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/spec"
)

func filesRuntime(root string) *spec.Runtime {
	return &spec.Runtime{Addr: spec.Address{Kind: spec.KindRuntime, Type: "files", Name: "local"}, Kind: "files", Name: "local",
		Attrs: map[string]cty.Value{"root": cty.StringVal(root)}}
}

func memRuntime() *spec.Runtime {
	return &spec.Runtime{Addr: spec.Address{Kind: spec.KindRuntime, Type: "mem", Name: "x"}, Kind: "mem", Name: "x"}
}

func daemon(name string, attrs map[string]cty.Value) *spec.Resource {
	return &spec.Resource{Addr: spec.Address{Kind: spec.KindDaemon, Name: name}, Attrs: attrs}
}

func newProvider(t *testing.T, kind, bin string, opts plugin.Options, sha string) (*plugin.Provider, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	opts.Log = logs.add
	p := plugin.NewProvider(kind, plugin.Binary{Path: bin, SHA256: sha, Block: "runtime." + kind + ".x"}, opts)
	t.Cleanup(func() {
		pid := p.Running()
		p.Close()
		if pid != 0 {
			waitGone(t, pid)
		}
	})
	return p, logs
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// The example provider plugin through the real transport: schema and
// capabilities, start, observe, update in place, watch, adopt, stop.
func TestProviderExampleFiles(t *testing.T) {
	bin := pluginBin(t, "files")
	p, _ := newProvider(t, "files", bin, plugin.Options{}, "")
	ctx := context.Background()
	s, caps, err := p.LoadSchema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "files" || len(s.Runtime) != 1 || len(s.Daemon) != 3 || s.CommandRequired {
		t.Fatalf("schema %+v", s)
	}
	if want := []providers.Capability{providers.CapAdopt, providers.CapUpdate, providers.CapWatch}; !slices.Equal(caps, want) {
		t.Fatalf("capabilities %v, want %v", caps, want)
	}
	for _, a := range s.Daemon {
		if a.Name == "filename" && !a.ForcesReplacement || a.Name == "content" && a.ForcesReplacement {
			t.Fatalf("attribute %s: ForcesReplacement %v", a.Name, a.ForcesReplacement)
		}
	}

	root := t.TempDir()
	rt := filesRuntime(root)
	r := daemon("greeting", map[string]cty.Value{"content": cty.StringVal("hello\n"), "mode": cty.StringVal("0600")})
	r.Runtime = rt.Addr
	start, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: "demo", ConfigHash: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "daemon.greeting")
	if data, err := os.ReadFile(path); err != nil || string(data) != "hello\n" {
		t.Fatalf("file: %q, %v", data, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if start.Observed.State != providers.StateRunning || start.Observed.ID != path {
		t.Fatalf("start observed %+v", start.Observed)
	}
	obs, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{r.Addr: start.Handle}})
	if err != nil || obs.Objects[r.Addr].State != providers.StateRunning {
		t.Fatalf("observe: %+v, %v", obs, err)
	}

	ino := inodeOf(t, path)
	r.Attrs["content"] = cty.StringVal("updated\n")
	up, err := p.Update(ctx, providers.UpdateRequest{Runtime: rt, Resource: r, Handle: start.Handle})
	if err != nil || len(up.Warnings) != 0 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if data, _ := os.ReadFile(path); string(data) != "updated\n" || inodeOf(t, path) != ino {
		t.Fatalf("after update: %q, inode %d (was %d)", data, inodeOf(t, path), ino)
	}

	ad, err := p.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: "demo"})
	if err != nil || len(ad.Objects) != 1 || ad.Objects[0].Addr != r.Addr || ad.Objects[0].ConfigHash != "h1" ||
		ad.Objects[0].Observed.State != providers.StateRunning {
		t.Fatalf("adopt: %+v, %v", ad, err)
	}
	if ad, _ := p.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: "other"}); len(ad.Objects) != 0 {
		t.Fatalf("adopted another project's: %+v", ad)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := p.Watch(wctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-w.Exited:
		t.Fatalf("watch fired while the file exists: %+v", o)
	case <-time.After(50 * time.Millisecond):
	}
	os.Remove(path)
	if o, ok := <-w.Exited; !ok || o.State != providers.StateMissing {
		t.Fatalf("watch: %+v, %v", o, ok)
	}

	// Start again, then stop: the file is gone.
	start, err = p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle, Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("stop left the file: %v", err)
	}
}

// A plugin's own error reaches orch as a providers.Error naming the
// attribute it concerns.
func TestProviderErrorCarriesAttr(t *testing.T) {
	p, _ := newProvider(t, "files", pluginBin(t, "files"), plugin.Options{}, "")
	rt := filesRuntime(t.TempDir())
	r := daemon("bad", map[string]cty.Value{"content": cty.StringVal("x"), "mode": cty.StringVal("rwx")})
	_, err := p.Start(context.Background(), providers.StartRequest{Runtime: rt, Resource: r})
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Attr != "mode" || pe.Op != "start" || pe.Retryable {
		t.Fatalf("error %#v", err)
	}
	wantErr(t, err, "daemon.bad", `mode "rwx"`)
}

// After orch restarts, the plugin is launched again and the objects made
// through the old one are observed and adopted, not created again.
func TestProviderRestartObservesAgain(t *testing.T) {
	bin := pluginBin(t, "files")
	root := t.TempDir()
	rt := filesRuntime(root)
	r := daemon("db", map[string]cty.Value{"content": cty.StringVal("x"), "mode": cty.StringVal("0644")})
	ctx := context.Background()

	first := plugin.NewProvider("files", plugin.Binary{Path: bin, Block: "runtime.files.local"}, plugin.Options{})
	start, err := first.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: "p", ConfigHash: "c"})
	if err != nil {
		t.Fatal(err)
	}
	pid := first.Running()
	first.Close()
	waitGone(t, pid)
	ino := inodeOf(t, filepath.Join(root, "daemon.db"))

	second, _ := newProvider(t, "files", bin, plugin.Options{}, "")
	obs, err := second.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{r.Addr: start.Handle}})
	if err != nil || obs.Objects[r.Addr].State != providers.StateRunning {
		t.Fatalf("observe after restart: %+v, %v", obs, err)
	}
	if second.Running() == pid || second.Running() == 0 {
		t.Fatalf("not a new plugin process: %d (old %d)", second.Running(), pid)
	}
	ad, err := second.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: "p"})
	if err != nil || len(ad.Objects) != 1 || string(ad.Objects[0].Handle) != string(start.Handle) {
		t.Fatalf("adopt after restart: %+v, %v", ad, err)
	}
	if got := inodeOf(t, filepath.Join(root, "daemon.db")); got != ino {
		t.Fatalf("the file was created again (inode %d, was %d)", got, ino)
	}
}

// sha256 pins the executable: another hash is refused with both hashes and
// the block named; the right one launches.
func TestProviderChecksum(t *testing.T) {
	bin := pluginBin(t, "files")
	sum, err := spec.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("ab", 32)
	p, _ := newProvider(t, "files", bin, plugin.Options{}, wrong)
	_, _, err = p.LoadSchema(context.Background())
	wantErr(t, err, "runtime.files.x", wrong, sum, bin)
	var ce *plugin.ChecksumError
	if !errors.As(err, &ce) || ce.Got != sum || ce.Want != wrong {
		t.Fatalf("error %#v", err)
	}
	if p.Running() != 0 {
		t.Fatal("a plugin with the wrong checksum runs")
	}
	ok, _ := newProvider(t, "files", bin, plugin.Options{}, strings.ToUpper(sum))
	if _, _, err := ok.LoadSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Garbage on stdout, before and after the handshake, breaks nothing and
// ends up in orch's log of the plugin.
func TestProviderGarbageOnStdout(t *testing.T) {
	p, logs := newProvider(t, "mem", pluginBin(t, misbehave("provider", "garbage")), plugin.Options{}, "")
	ctx := context.Background()
	rt := memRuntime()
	r := daemon("a", nil)
	start, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{r.Addr: start.Handle}})
	if err != nil || obs.Objects[r.Addr].State != providers.StateRunning {
		t.Fatalf("observe: %+v, %v", obs, err)
	}
	for _, want := range []string{"garbage from init", "garbage on os.Stdout from main", "garbage on fd 1 from main",
		"garbage on os.Stdout from start", "garbage on fd 1 from start"} {
		eventually(t, "log line "+want, func() bool { return logs.contains(want) })
	}
}

// A plugin that crashes in Start: the call fails naming the instance and
// how the plugin ended, a "disconnected" event says so, and the plugin is
// relaunched (a "reconnected" event) while orch goes on.
func TestProviderCrash(t *testing.T) {
	p, logs := newProvider(t, "mem", pluginBin(t, misbehave("provider", "crash")), plugin.Options{Backoff: 20 * time.Millisecond}, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := memRuntime()
	events, err := p.Events(ctx, providers.EventsRequest{Runtime: rt, Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Running()
	_, err = p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: daemon("a", nil)})
	wantErr(t, err, "daemon.a", "crashed during start", "exit status 2", "panic: misbehave: crashing in start")
	if !providers.IsRetryable(err) {
		t.Fatalf("a crash is retryable: %#v", err)
	}
	waitGone(t, pid)
	for _, want := range []string{"disconnected", "reconnected"} {
		select {
		case ev := <-events:
			if ev.Kind != want {
				t.Fatalf("event %+v, want %s", ev, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	if np := p.Running(); np == 0 || np == pid {
		t.Fatalf("not relaunched: %d (old %d)", np, pid)
	}
	if !logs.contains("relaunching") {
		t.Fatalf("log:\n%s", logs)
	}
	// The relaunched plugin answers.
	if _, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt}); err != nil {
		t.Fatal(err)
	}
}

// A plugin that never answers: the call times out, the process is killed,
// and the next call reaches a new one.
func TestProviderHang(t *testing.T) {
	p, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "hang")),
		plugin.Options{CallTimeout: 300 * time.Millisecond, Backoff: 10 * time.Millisecond}, "")
	ctx := context.Background()
	rt := memRuntime()
	if _, _, err := p.LoadSchema(ctx); err != nil {
		t.Fatal(err)
	}
	pid := p.Running()
	_, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: daemon("a", nil)})
	wantErr(t, err, "daemon.a", "did not answer within 300ms", "killed")
	waitGone(t, pid)
	if _, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt}); err != nil {
		t.Fatal(err)
	}
	if np := p.Running(); np == 0 || np == pid {
		t.Fatalf("not relaunched: %d (old %d)", np, pid)
	}
}

// Calls are concurrent: one that hangs holds up no other, and one whose
// caller gives up returns at once, with the plugin left running (only a
// call past its budget gets it killed).
func TestProviderConcurrentCalls(t *testing.T) {
	p, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "hang")), plugin.Options{CallTimeout: time.Minute}, "")
	rt := memRuntime()
	if _, _, err := p.LoadSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := p.Running()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() {
		_, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: daemon("a", nil)})
		started <- err
	}()
	for i := 0; i < 20; i++ {
		if _, err := p.Observe(context.Background(), providers.ObserveRequest{Runtime: rt}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-started:
		t.Fatalf("the hung start returned: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-started:
		wantErr(t, err, "daemon.a", "canceled")
	case <-time.After(20 * time.Second):
		t.Fatal("the start whose caller gave up did not return")
	}
	if _, err := p.Observe(context.Background(), providers.ObserveRequest{Runtime: rt}); err != nil {
		t.Fatal(err)
	}
	if np := p.Running(); np != pid {
		t.Fatalf("the plugin changed: pid %d, was %d", np, pid)
	}
}

// A plugin that exits before the handshake is a clear error with its last
// words; so is a plugin of another kind.
func TestProviderBadLaunch(t *testing.T) {
	p, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "early-exit")), plugin.Options{}, "")
	_, _, err := p.LoadSchema(context.Background())
	wantErr(t, err, "runtime.mem.x", "exited before completing the handshake", "misbehave: exiting before the handshake")

	q, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "wrong-kind")), plugin.Options{}, "")
	_, _, err = q.LoadSchema(context.Background())
	wantErr(t, err, "runtime.mem.x", `serves runtime kind "other", not "mem"`)

	r, _ := newProvider(t, "mem", filepath.Join(t.TempDir(), "nope"), plugin.Options{}, "")
	_, _, err = r.LoadSchema(context.Background())
	wantErr(t, err, "runtime.mem.x", "no such file")
}

// Capabilities the plugin does not declare are emulated (watch by polling,
// update recorded with a warning, nothing to adopt or delete) or refused
// with an error naming the instance (signal, logs).
func TestProviderUndeclaredCapabilities(t *testing.T) {
	p, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "ok")), plugin.Options{WatchPoll: 10 * time.Millisecond}, "")
	ctx := context.Background()
	rt := memRuntime()
	r := daemon("a", nil)
	start, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	if caps := p.Capabilities(); len(caps) != 0 {
		t.Fatalf("capabilities %v", caps)
	}
	_, err = p.Signal(ctx, providers.SignalRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle, Signal: spec.SIGTERM})
	wantErr(t, err, "daemon.a", "does not support signals")
	_, err = p.Logs(ctx, providers.LogsRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle})
	wantErr(t, err, "daemon.a", "does not support logs")
	if ad, err := p.Adopt(ctx, providers.AdoptRequest{Runtime: rt, Project: "p"}); err != nil || len(ad.Objects) != 0 {
		t.Fatalf("adopt: %+v, %v", ad, err)
	}
	if up, err := p.Update(ctx, providers.UpdateRequest{Runtime: rt, Resource: r, Handle: start.Handle}); err != nil || len(up.Warnings) != 1 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if _, err := p.Delete(ctx, providers.DeleteRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle}); err != nil {
		t.Fatal(err)
	}
	if s := p.Schema(); s.OwnsListeners {
		t.Fatal("a plugin without the listens capability has a schema that says OwnsListeners")
	}
	if l, err := p.Listens(ctx, providers.ListensRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle, Port: 80}); err != nil || l {
		t.Fatalf("listens without the capability: %v, %v; want false (cannot tell), no error", l, err)
	}
	if h, err := p.Health(ctx, providers.HealthRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle}); err != nil || !h.Healthy {
		t.Fatalf("health: %+v, %v", h, err)
	}
	w, err := p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle}); err != nil {
		t.Fatal(err)
	}
	if o, ok := <-w.Exited; !ok || o.State != providers.StateMissing {
		t.Fatalf("watch: %+v %v", o, ok)
	}
}

// A watch survives a crash of the plugin: the instance is watched again
// once the plugin runs again (here the new plugin does not know it, so it
// is reported missing, which is the truth).
func TestProviderWatchSurvivesCrash(t *testing.T) {
	p, _ := newProvider(t, "mem", pluginBin(t, misbehave("provider", "ok")), plugin.Options{WatchPoll: 10 * time.Millisecond, Backoff: 10 * time.Millisecond}, "")
	ctx := context.Background()
	rt := memRuntime()
	r := daemon("a", nil)
	start, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, providers.WatchRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Running()
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid)
	if o, ok := <-w.Exited; !ok || o.State != providers.StateMissing {
		t.Fatalf("watch: %+v %v", o, ok)
	}
	if np := p.Running(); np == pid {
		t.Fatal("the dead plugin is still current")
	}
}
