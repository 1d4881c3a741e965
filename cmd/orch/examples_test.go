package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exampleExpect says, per runnable example, what orch up must have started
// (or completed) once it reports ready.
var exampleExpect = map[string][]string{
	"quickstart":       {"job.prepare completed", "daemon.producer started", "daemon.consumer started"},
	"modules":          {"daemon.ticker started", "module.eventcount started", "module.transform started"},
	"plugins/module":   {"daemon.ticker started", "module.eventlog started"},
	"plugins/provider": {"daemon.greeting started", "daemon.motd started"},
}

// examplePluginSources are the executables the plugin examples expect in
// examples/plugins/bin (make plugins).
var examplePluginSources = map[string]string{
	"orch-provider-files":  "./examples/plugins/provider/orch-provider-files",
	"orch-module-eventlog": "./examples/plugins/module/orch-module-eventlog",
}

var pluginBins struct {
	once sync.Once
	dir  string
	err  error
}

// examplePlugins builds the example plugins once per test binary, into a
// directory of testMain's, and returns that directory.
func examplePlugins(t *testing.T) string {
	t.Helper()
	pluginBins.once.Do(func() {
		pluginBins.dir = filepath.Join(testBinDir, "plugins")
		for bin, pkg := range examplePluginSources {
			cmd := exec.Command(goTool(), "build", "-o", filepath.Join(pluginBins.dir, bin), pkg)
			cmd.Dir = filepath.Join("..", "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				pluginBins.err = fmt.Errorf("building %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if pluginBins.err != nil {
		t.Fatal(pluginBins.err)
	}
	return pluginBins.dir
}

// examplePluginsIn links the example plugins into dir.
func examplePluginsIn(t *testing.T, dir string) {
	t.Helper()
	built := examplePlugins(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for bin := range examplePluginSources {
		if err := os.Link(filepath.Join(built, bin), filepath.Join(dir, bin)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExamplesRun runs `orch up` on a copy of each example of exampleExpect
// until it is ready, checks that everything came up and nothing failed,
// then stops it with SIGTERM (exit 0, everything stopped).
func TestExamplesRun(t *testing.T) {
	for name, want := range exampleExpect {
		t.Run(name, func(t *testing.T) {
			top, _, _ := strings.Cut(name, "/")
			root := filepath.Join(t.TempDir(), top)
			copyExample(t, filepath.Join("..", "..", "examples", top), root)
			if top == "plugins" {
				examplePluginsIn(t, filepath.Join(root, "bin"))
			}
			e := engineTestIn(t, filepath.Join(filepath.Dir(root), name))
			p := e.start("up")
			var evs []upEvent
			e.waitFor(p, "orch up to be ready", func() bool {
				evs = upEvents(p.output())
				for _, ev := range evs {
					e.pids.add(ev.Pid)
					if ev.Type == "ready" {
						return true
					}
				}
				return false
			})
			sigtermExits0(t, p)
			for _, w := range want {
				addr, typ, _ := strings.Cut(w, " ")
				found := false
				for _, ev := range evs {
					found = found || ev.Address == addr && ev.Type == typ
				}
				if !found {
					t.Errorf("no %q event\n%s", w, p.output())
				}
			}
			for _, ev := range upEvents(p.output()) {
				if ev.Type == "failed" || ev.Type == "config_invalid" || ev.Type == "error" {
					t.Errorf("%s %s: %s\n%s", ev.Address, ev.Type, ev.Detail, p.output())
				}
			}
		})
	}
}

// sigtermExits0 sends orch up p a SIGTERM and fails the test unless it
// exits 0 within a minute (a bound on a hang, not a measure).
func sigtermExits0(t *testing.T, p *engineProc) {
	t.Helper()
	p.signalAndWait(t, syscall.SIGTERM, 60*time.Second)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("orch up exited %d after SIGTERM:\n%s", code, p.output())
	}
}

// upEvent is an event of orch up -json.
type upEvent struct {
	Type    string `json:"type"`
	Address string `json:"address"`
	Pid     int    `json:"pid"`
	Detail  string `json:"detail"`
}

// upEvents reads the events in orch up -json's output (other lines, such
// as what it prints on stderr, are skipped).
func upEvents(out string) []upEvent {
	var evs []upEvent
	for _, line := range strings.Split(out, "\n") {
		var ev upEvent
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// copyExample copies the regular files of an example into dst, leaving out
// what running it leaves behind (a state directory, FIFOs, sockets), so
// that `make run` before the tests changes nothing.
func copyExample(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == ".orch":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
