package main

import (
	"bufio"
	"encoding/json"
	"io/fs"
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

// exampleExpect says, per runnable example, what orch up must have started
// (or completed) once it reports ready.
var exampleExpect = map[string][]string{
	"quickstart":       {"job.prepare completed", "daemon.producer started", "daemon.consumer started"},
	"modules":          {"daemon.ticker started", "module.eventcount started", "module.transform started"},
	"plugins/module":   {"daemon.ticker started", "module.eventlog started"},
	"plugins/provider": {"daemon.greeting started", "daemon.motd started"},
}

// examplePlugins are the executables the plugin examples expect in
// examples/plugins/bin (make plugins).
var examplePlugins = map[string]string{
	"orch-provider-files":  "./examples/plugins/provider/orch-provider-files",
	"orch-module-eventlog": "./examples/plugins/module/orch-module-eventlog",
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
				for bin, pkg := range examplePlugins {
					cmd := exec.Command(goTool(), "build", "-o", filepath.Join(root, "bin", bin), pkg)
					cmd.Dir = filepath.Join("..", "..")
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("building %s: %v\n%s", pkg, err, out)
					}
				}
			}
			dir := filepath.Join(filepath.Dir(root), name)
			evs, dump := runUp(t, dir, func(evs []upEvent) bool {
				for _, e := range evs {
					if e.Type == "ready" {
						return true
					}
				}
				return false
			})
			for _, w := range want {
				addr, typ, _ := strings.Cut(w, " ")
				found := false
				for _, e := range evs {
					found = found || e.Address == addr && e.Type == typ
				}
				if !found {
					t.Errorf("no %q event\n%s", w, dump())
				}
			}
			for _, e := range evs {
				if e.Type == "failed" || e.Type == "config_invalid" || e.Type == "error" {
					t.Errorf("%s %s: %s\n%s", e.Address, e.Type, e.Detail, dump())
				}
			}
		})
	}
}

type upEvent struct {
	Type    string `json:"type"`
	Address string `json:"address"`
	Pid     int    `json:"pid"`
	Detail  string `json:"detail"`
}

// runUp runs orch up -json in dir until ready holds for its events, then
// sends SIGTERM, waits for exit 0, and returns every event. The cleanup
// kills what it reported a pid of, and the log daemon.
func runUp(t *testing.T, dir string, ready func([]upEvent) bool) ([]upEvent, func() string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(orchBin, "up", "-json")
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		evs  []upEvent
		done = make(chan error, 1)
	)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e upEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				e = upEvent{Type: "unparsed", Detail: sc.Text()}
			}
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		}
		done <- cmd.Wait()
	}()
	all := func() []upEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]upEvent(nil), evs...)
	}
	dump := func() string {
		var b strings.Builder
		for _, e := range all() {
			b.WriteString("  " + e.Address + " " + e.Type + " " + e.Detail + "\n")
		}
		return b.String() + "stderr:\n" + stderr.String()
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		for _, e := range all() {
			if e.Pid > 0 {
				syscall.Kill(-e.Pid, syscall.SIGKILL)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, ".orch", "logs", "logd.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !ready(all()) {
		select {
		case err := <-done:
			t.Fatalf("orch up exited (%v) before it was ready:\n%s", err, dump())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("orch up not ready after 60s:\n%s", dump())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("orch up exited with %v after SIGTERM:\n%s", err, dump())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("orch up still running 60s after SIGTERM:\n%s", dump())
	}
	return all(), dump
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
