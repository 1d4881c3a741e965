// Package processtest helps the tests of what runs the process runtime
// (orch up, orch apply through the CLI) clean up after themselves.
package processtest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/process"
)

// RemoveCgroups removes the cgroups of the daemons that the process
// runtime's registry in stateDir names: what a test killed by pid (its
// cgroup stays when no orch stops it) or left running. What is still in
// each is killed first (cgroup.kill), and a project's cgroup goes with the
// last of its daemons' cgroups. Best effort: a test's cleanup calls it after its own kills.
// It first waits for the registry compactions under way in the test's
// process: one still writing its copy into the test's directory would fail
// the directory's removal.
func RemoveCgroups(stateDir string) {
	process.WaitRegistryCompactions()
	f, err := os.Open(filepath.Join(stateDir, "logs", "logd.registry"))
	if err != nil {
		return
	}
	defer f.Close()
	seen := map[string]bool{}
	parents := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// A start's pending line names its cgroup; the line of the
		// started daemon, its handle.
		var line struct {
			Handle json.RawMessage `json:"handle"`
			Cgroup *cgroup.Group   `json:"cgroup"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		g := line.Cgroup
		if len(line.Handle) > 0 {
			if hi, err := process.ParseHandle(providers.Handle(line.Handle)); err == nil && hi.Cgroup != nil {
				g = hi.Cgroup
			}
		}
		if g == nil || seen[g.Path] {
			continue
		}
		seen[g.Path] = true
		parents[filepath.Dir(g.Path)] = true
		g.Remove()
	}
	// A start names its cgroup in its pending line before it makes it,
	// so every cgroup of the project is named above; anything else left
	// in the project's cgroup goes all the same, so that no test leaves
	// a cgroup on the host.
	for dir := range parents {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				cgroup.Group{Path: filepath.Join(dir, e.Name())}.Remove()
			}
		}
		os.Remove(dir)
	}
}

// StopLogd stops the log daemon of stateDir (the pid in its pid file, when
// that process is a log daemon of that directory still): SIGTERM first,
// on which it removes the cgroups that orch up's shutdowns handed it
// (Provider.TidyLater) before it exits, then, when it has not exited
// within 10 s, SIGKILL. A SIGKILL alone left those cgroups empty on the
// host, thousands after a benchmark of 10,000 daemons. It returns once
// the log daemon has exited (or could not be found).
func StopLogd(stateDir string) {
	logs := filepath.Join(stateDir, "logs")
	b, err := os.ReadFile(filepath.Join(logs, "logd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	// The pidfd holds the process: the pid checked below is the one
	// signalled, even if it exits and its pid is reused meanwhile.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already
	}
	defer unix.Close(fd)
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return
	}
	// orch __logd [flags] DIR
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !slices.Contains(args, process.LogdArg) || !sameDir(args[len(args)-1], logs) {
		return // not this directory's log daemon (a stale pid file)
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		if unix.PidfdSendSignal(fd, sig, nil, 0) != nil {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := time.Now().Add(10 * time.Second)
		for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
			n, err := unix.Poll(fds, int(left.Milliseconds())+1)
			if n > 0 {
				return // exited
			}
			if err != nil && err != unix.EINTR {
				return
			}
		}
	}
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(fa, fb)
}
