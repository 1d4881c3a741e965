package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/providers/wasm/wasmtest"
	"github.com/orch-dev/orch/spec"
)

// orchBin and httpdBin are built once by TestMain: orch itself (driven as
// a user would, and the process provider's helper in benchmarks) and the
// HTTP server of testdata/httpd.
var orchBin, httpdBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orch-engine-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	orchBin, httpdBin = filepath.Join(dir, "orch"), filepath.Join(dir, "httpd")
	for _, b := range [][2]string{{orchBin, "github.com/orch-dev/orch/cmd/orch"}, {httpdBin, "./testdata/httpd"}} {
		cmd := exec.Command(goTool(), "build", "-o", b[0], b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", b[1], err)
			return 1
		}
	}
	defer wasmtest.Remove()
	var (
		mu      sync.Mutex
		illegal []string
	)
	illegalSeen = func(a spec.Address, err error) {
		mu.Lock()
		defer mu.Unlock()
		illegal = append(illegal, a.String()+": "+err.Error())
	}
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if len(illegal) > 0 {
		// The supervisor refused a transition: the engine acted on a
		// state an instance was not in, whichever test it was in.
		fmt.Fprintf(os.Stderr, "FAIL: %d illegal supervisor transitions:\n  %s\n", len(illegal), strings.Join(illegal, "\n  "))
		return 1
	}
	return code
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// ev is an event as `orch up -json` prints it.
type ev struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Address  string    `json:"address"`
	Pid      int       `json:"pid"`
	ExitCode *int      `json:"exit_code"`
	Signal   string    `json:"signal"`
	Detail   string    `json:"detail"`
}

// upProc is `orch up -json` running as a subprocess in a config directory.
type upProc struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []ev
	stderr lockedBuffer
	exited chan struct{}
	err    error
}

func cleanEnv(t *testing.T) []string {
	home := t.TempDir()
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
}

// startUp writes config as main.hcl of a new directory and runs orch up
// there. Its cleanup kills orch, every process group it reported a pid
// of, and the log daemon.
func startUp(t *testing.T, config string) *upProc {
	t.Helper()
	return startUpIn(t, t.TempDir(), config)
}

// startUpIn is startUp in dir.
func startUpIn(t *testing.T, dir, config string) *upProc {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return restartUp(t, dir)
}

// stop sends SIGTERM to orch up and waits for it to exit 0.
func (u *upProc) stop() {
	u.t.Helper()
	u.cmd.Process.Signal(syscall.SIGTERM)
	<-u.exited
	if u.err != nil {
		u.t.Fatalf("orch up exited with %v after SIGTERM:\n%s", u.err, u.dump())
	}
}

// restartUp runs orch up again in the directory of an earlier one.
func restartUp(t *testing.T, dir string) *upProc {
	t.Helper()
	u := &upProc{t: t, dir: dir, exited: make(chan struct{})}
	u.cmd = exec.Command(orchBin, "up", "-json", dir)
	u.cmd.Env = cleanEnv(t)
	u.cmd.Stderr = &u.stderr
	out, err := u.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e ev
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = ev{Type: "unparsed", Detail: sc.Text()}
			}
			u.mu.Lock()
			u.events = append(u.events, e)
			u.mu.Unlock()
		}
		u.err = u.cmd.Wait()
		close(u.exited)
	}()
	t.Cleanup(func() {
		u.cmd.Process.Kill()
		<-u.exited
		for _, e := range u.all() {
			if e.Pid > 0 {
				syscall.Kill(-e.Pid, syscall.SIGKILL)
			}
		}
		processtest.RemoveCgroups(filepath.Join(dir, ".orch"))
		processtest.StopLogd(filepath.Join(dir, ".orch"))
	})
	return u
}

// orchOutput runs the orch binary with args in a clean environment and
// returns what it wrote to its stdout.
func orchOutput(t *testing.T, args ...string) ([]byte, error) {
	cmd := exec.Command(orchBin, args...)
	cmd.Env = cleanEnv(t)
	return cmd.Output()
}

func (u *upProc) all() []ev {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]ev(nil), u.events...)
}

func (u *upProc) dump() string {
	var b strings.Builder
	for _, e := range u.all() {
		fmt.Fprintf(&b, "  %s %s %s pid=%d", e.Time.Format("15:04:05.000"), e.Address, e.Type, e.Pid)
		if e.ExitCode != nil {
			fmt.Fprintf(&b, " code=%d", *e.ExitCode)
		}
		if e.Signal != "" {
			fmt.Fprintf(&b, " signal=%s", e.Signal)
		}
		if e.Detail != "" {
			fmt.Fprintf(&b, " %q", e.Detail)
		}
		b.WriteByte('\n')
	}
	b.WriteString("stderr:\n" + u.stderr.String())
	return b.String()
}

// waitFor polls the events until cond holds for the list, or fails after
// 20s.
func (u *upProc) waitFor(what string, cond func([]ev) bool) []ev {
	u.t.Helper()
	// A bound on a hang, not a measure of speed: under make test-busy
	// with other work on the 2 cores (load 15-50), a cold wazero compile
	// of a test's wasm modules in a -race binary took 11-14 s before
	// anything could happen.
	deadline := time.Now().Add(waitDeadline)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		evs := u.all()
		if cond(evs) {
			return evs
		}
		select {
		case <-u.exited:
			if evs := u.all(); cond(evs) {
				return evs
			}
			u.t.Fatalf("orch up exited (%v) while waiting for %s; events:\n%s", u.err, what, u.dump())
		default:
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("timed out waiting for %s; events:\n%s", what, u.dump())
		}
		time.Sleep(wait)
	}
}

// count counts the events of type typ about addr.
func count(evs []ev, addr, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Address == addr && e.Type == typ {
			n++
		}
	}
	return n
}

// index returns the position of the n-th (0-based) event of type typ about
// addr, or -1.
func index(evs []ev, addr, typ string, n int) int {
	for i, e := range evs {
		if e.Address == addr && e.Type == typ {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

// pids returns the pid of the last "started" event of each address.
func pids(evs []ev) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		if e.Type == "started" {
			out[e.Address] = e.Pid
		}
	}
	return out
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// renameSave replaces main.hcl as editors do: a new file renamed over it.
func renameSave(t *testing.T, dir, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "main.hcl.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "main.hcl")); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is orch up's stderr: written by the process's copier,
// read by dump from the test's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitDeadline bounds each wait of a test on orch's events.
const waitDeadline = 60 * time.Second
