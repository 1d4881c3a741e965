package plugin_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/module"
)

// binDir holds the plugins built once per test binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orch-plugin-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The plugins the tests build: name -> package and -ldflags.
var plugins = map[string][2]string{
	"files":    {"./examples/plugins/provider/orch-provider-files", ""},
	"eventlog": {"./examples/plugins/module/orch-module-eventlog", ""},
	"hostproc": {"./providers/plugin/testdata/hostproc", ""},
}

func misbehave(kind, mode string) string {
	name := "misbehave-" + kind + "-" + mode
	buildMu.Lock()
	plugins[name] = [2]string{"./providers/plugin/testdata/misbehave", "-X main.kind=" + kind + " -X main.mode=" + mode}
	buildMu.Unlock()
	return name
}

var (
	buildMu sync.Mutex
	built   = map[string]error{}
)

// pluginBin builds the named plugin with go build (once per test binary)
// and returns its path.
func pluginBin(tb testing.TB, name string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(binDir, name)
	err, ok := built[name]
	if !ok {
		spec, known := plugins[name]
		if !known {
			tb.Fatalf("no plugin %q", name)
		}
		goTool, lerr := exec.LookPath("go")
		if lerr != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goTool, "build", "-ldflags", spec[1], "-o", out, spec[0])
		cmd.Dir = "../.."
		if o, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("building %s: %v\n%s", spec[0], berr, o)
		}
		built[name] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// waitGone waits until no process has pid any more.
func waitGone(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			tb.Fatalf("process %d still exists", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds, failing after a deadline.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuf collects log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuf) record(r module.Record) { l.add(r.Level.String() + " " + r.Message) }

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logBuf) contains(s string) bool { return strings.Contains(l.String(), s) }

// memKV is a module's key-value namespace in memory.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newKV() *memKV { return &memKV{m: map[string][]byte{}} }

func (k *memKV) Get(key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return bytes.Clone(v), ok, nil
}

func (k *memKV) Put(key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = bytes.Clone(v)
	return nil
}

func (k *memKV) Delete(key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

// wantErr fails unless err is an error whose text holds every part.
func wantErr(tb testing.TB, err error, parts ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error, want one with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			tb.Fatalf("error %q does not say %q", err, p)
		}
	}
}
