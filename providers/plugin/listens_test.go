package plugin_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin"
	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/spec"
)

// TestProviderListens: a plugin runtime whose instances share the host's
// network (here orch's own process runtime, served as a plugin) declares
// "listens"; its schema then says OwnsListeners, so the planner does not
// warn that a replace's health check reaches the old instance, and orch
// asks it, across the protocol, whether a real process listens on a port.
func TestProviderListens(t *testing.T) {
	p, _ := newProvider(t, "hostproc", pluginBin(t, "hostproc"), plugin.Options{}, "")
	ctx := context.Background()
	s, caps, err := p.LoadSchema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(caps, providers.CapListens) || !s.OwnsListeners {
		t.Fatalf("capabilities %v, OwnsListeners %v: want listens, true", caps, s.OwnsListeners)
	}

	// A server that binds a port of its own choosing and says which.
	dir := t.TempDir()
	portFile := filepath.Join(dir, "port")
	rt := &spec.Runtime{Addr: spec.Address{Kind: spec.KindRuntime, Type: "hostproc", Name: "x"}, Kind: "hostproc", Name: "x"}
	r := &spec.Resource{Addr: spec.Address{Kind: spec.KindDaemon, Name: "server"}, Runtime: rt.Addr, Dir: dir,
		Command: []string{"python3", "-c", `import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
open("port.tmp", "w").write(str(s.getsockname()[1]))
__import__("os").rename("port.tmp", "port")
time.sleep(600)`},
		Umask: spec.DefaultUmask, Stop: spec.Stop{Signal: spec.SIGTERM, Timeout: 5 * time.Second}}
	start, err := p.Start(ctx, providers.StartRequest{Runtime: rt, Resource: r, Project: "p", StateDir: filepath.Join(dir, ".orch")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx, providers.StopRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle, Signal: spec.SIGTERM, Timeout: 5 * time.Second})
	t.Cleanup(func() {
		// The plugin's log daemon outlives it (it would exit once idle):
		// stopped here, by its pid, before the directory goes.
		processtest.StopLogd(filepath.Join(dir, ".orch"))
	})
	var port int
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(portFile); err == nil {
			if port, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not say its port within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	req := providers.ListensRequest{Runtime: rt, Addr: r.Addr, Handle: start.Handle, Port: port}
	if l, err := p.Listens(ctx, req); err != nil || !l {
		t.Fatalf("listens on its own port %d: %v, %v; want true", port, l, err)
	}
	// A port someone else listens on is not the instance's.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	req.Port = other.Addr().(*net.TCPAddr).Port
	if l, err := p.Listens(ctx, req); err != nil || l {
		t.Fatalf("listens on port %d, the test's: %v, %v; want false", req.Port, l, err)
	}
}
