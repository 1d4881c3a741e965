package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers/wasm/wasmtest"
)

// wasmGuest returns the .wasm file of a guest (wasmtest.Packages): the
// example eventcount or the sandbox's hostile guest.
func wasmGuest(t *testing.T, name string) string { return wasmtest.Guest(t, name) }

// copyGuest copies a guest into dir (so that the test may change it).
func copyGuest(t *testing.T, name, dir string) string {
	t.Helper()
	b, err := os.ReadFile(wasmGuest(t, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".wasm")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// kvCount reads a count the eventcount module keeps.
func kvCount(t *testing.T, dir, module, key string) int {
	t.Helper()
	st, err := state.OpenReadOnly(filepath.Join(dir, ".orch", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := st.KV(module).Get(key)
	if errors.Is(err, state.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		t.Fatalf("%s %s = %q", module, key, v)
	}
	return n
}

// TestModulesHosted runs WebAssembly modules under orch up beside a daemon:
// one counts the daemon's lifecycle events in its KV namespace (which
// survives orch up), and hostile ones (an infinite loop, a memory bomb, a
// trap in init) fail within their limits, are restarted by their policy
// until it gives up, while the daemon and the counter keep running.
func TestModulesHosted(t *testing.T) {
	counter := wasmGuest(t, "eventcount")
	hostile := wasmGuest(t, "hostile")
	u := startUp(t, fmt.Sprintf(`
daemon "ticker" {
  command = ["/bin/sh", "-c", "sleep 0.1"]
  restart {
    policy       = "always"
    backoff      = "10ms"
    max_backoff  = "20ms"
    max_restarts = 0
  }
}
module "counter" {
  source = %q
  config = { events = ["started", "exited"] }
}
module "loop" {
  source = %q
  config = { mode = "loop" }
  limits {
    call_timeout = "200ms"
  }
  restart {
    backoff      = "10ms"
    max_restarts = 2
    window       = "1h"
  }
}
module "bomb" {
  source = %q
  config = { mode = "bomb" }
  limits {
    memory = "16MiB"
  }
  restart {
    policy = "never"
  }
}
module "trap" {
  source = %q
  config = { mode = "trap" }
  restart {
    policy = "never"
  }
}
`, counter, hostile, hostile, hostile))
	evs := u.waitFor("the loop module's crash loop, and the others' failures", func(evs []ev) bool {
		return count(evs, "module.loop", "failed") > 0 && count(evs, "module.bomb", "exited") > 0 &&
			count(evs, "module.trap", "exited") > 0 && count(evs, "module.counter", "started") > 0
	})
	for _, e := range evs {
		if e.Address == "module.loop" && e.Type == "exited" && !strings.Contains(e.Detail, "call budget of 200ms") {
			t.Errorf("the loop module exited with %q, want its call budget named\n%s", e.Detail, u.dump())
		}
	}
	if n := count(evs, "module.loop", "started"); n != 3 {
		t.Errorf("the loop module started %d times, want 3 (the first start and 2 restarts)\n%s", n, u.dump())
	}
	for _, m := range []string{"module.bomb", "module.trap"} {
		if n := count(evs, m, "restarting"); n != 0 {
			t.Errorf("%s restarted %d times under policy never\n%s", m, n, u.dump())
		}
	}
	if i := index(evs, "module.trap", "exited", 0); !strings.Contains(evs[i].Detail, "orch_init") {
		t.Errorf("the trap module exited with %q, want the failing hook named", evs[i].Detail)
	}
	if i := index(evs, "module.bomb", "exited", 0); evs[i].Detail == "" {
		t.Errorf("the bomb module exited without a reason\n%s", u.dump())
	}
	// The daemon went on through all of it, and the counter saw it.
	before := count(evs, "daemon.ticker", "started")
	u.waitFor("the ticker restarting after the failures", func(evs []ev) bool {
		return count(evs, "daemon.ticker", "started") >= before+3
	})
	if n := count(u.all(), "module.counter", "exited"); n != 0 {
		t.Fatalf("the counter module exited\n%s", u.dump())
	}
	u.stop()
	if n := count(u.all(), "module.counter", "stopped"); n != 1 {
		t.Errorf("the counter module stopped %d times on shutdown, want 1\n%s", n, u.dump())
	}
	started := count(u.all(), "daemon.ticker", "started")
	got := kvCount(t, u.dir, "module.counter", "daemon.ticker/started")
	// The counter starts a little after the daemon's first start.
	if got < started-2 || got > started {
		t.Errorf("the counter counted %d starts of the ticker, orch up reported %d", got, started)
	}

	// orch up again: the count goes on from where it was.
	u2 := restartUp(t, u.dir)
	u2.waitFor("more ticker starts", func(evs []ev) bool { return count(evs, "daemon.ticker", "started") >= 3 })
	u2.stop()
	if again := kvCount(t, u.dir, "module.counter", "daemon.ticker/started"); again <= got {
		t.Errorf("the count went from %d to %d across orch up runs, want it to go on", got, again)
	}
}

// TestModuleReplacedOnRebuild: a changed .wasm file (another content hash)
// replaces the module on hot reload; an untouched file does not.
func TestModuleReplacedOnRebuild(t *testing.T) {
	dir := t.TempDir()
	src := copyGuest(t, "eventcount", dir)
	config := fmt.Sprintf(`
module "counter" {
  source = %q
}
`, src)
	u := startUpIn(t, dir, config)
	u.waitFor("the counter running", func(evs []ev) bool { return count(evs, "module.counter", "started") == 1 })
	// A custom section appended is a valid module with another hash: what
	// a rebuild looks like to orch.
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 0, 6, 4, 'o', 'r', 'c', 'h', 1)
	tmp := src + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, src); err != nil {
		t.Fatal(err)
	}
	// The module file is outside the watched files' names: touching the
	// configuration is what makes orch look again.
	renameSave(t, dir, config+"\n# rebuilt\n")
	evs := u.waitFor("the counter replaced", func(evs []ev) bool { return count(evs, "module.counter", "started") == 2 })
	if i := index(evs, "module.counter", "stopped", 0); i < 0 || evs[i].Detail != "replaced" {
		t.Errorf("the old counter was not stopped as replaced\n%s", u.dump())
	}
	var plan string
	for _, e := range evs {
		if e.Type == "plan" {
			plan = e.Detail
		}
	}
	if !strings.Contains(plan, "source_sha256") || !strings.Contains(plan, "forces replacement") {
		t.Errorf("the plan does not say the binary changed:\n%s", plan)
	}
}
