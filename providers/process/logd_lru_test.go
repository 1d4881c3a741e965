package process_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// openLogFiles counts the log files (*.log, not its own) the process pid
// holds open.
func openLogFiles(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.Contains(target, ".log") {
			n++
		}
	}
	return n
}

// readRotated returns a log and its rotated files, oldest first.
func readRotated(path string, keep int) string {
	var all strings.Builder
	for i := keep; i >= 1; i-- {
		b, _ := os.ReadFile(fmt.Sprintf("%s.%d", path, i))
		all.Write(b)
	}
	b, _ := os.ReadFile(path)
	all.Write(b)
	return all.String()
}

// TestLogdBoundsOpenLogs is issue 19: the log daemon keeps at most
// --open-logs log files open (one descriptor per daemon, its pipe, plus
// that bound), so 10,000 daemons fit under a 20,000 descriptor limit.
// Sixteen daemons write lines at once through a log daemon that may keep
// four logs open, with logs small enough to rotate several times: every
// line reaches its log, in order, across reopens and rotations, and once
// they are done at most four log files are open.
func TestLogdBoundsOpenLogs(t *testing.T) {
	const daemons, lines, maxOpen, keep = 16, 300, 4, 30
	e := newEnv(t, process.Options{LogdOpenLogs: maxOpen})
	for i := range daemons {
		name := fmt.Sprintf("w%02d", i)
		r := res(name, "sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "%s line $i"; i=$((i+1)); done; exec sleep 60`, lines, name))
		r.Log = spec.Log{MaxSize: 1000, MaxFiles: keep}
		e.start(r)
	}
	logs := filepath.Join(e.state, "logs")
	pid := logdPid(t, logs)
	peak := 0
	want := func(name string) string {
		var b strings.Builder
		for i := range lines {
			fmt.Fprintf(&b, "%s line %d\n", name, i)
		}
		return b.String()
	}
	done := poll(60*time.Second, func() bool {
		peak = max(peak, openLogFiles(pid))
		for i := range daemons {
			name := fmt.Sprintf("w%02d", i)
			if readRotated(filepath.Join(logs, "daemon."+name+".log"), keep) != want(name) {
				return false
			}
		}
		return true
	})
	if !done {
		for i := range daemons {
			name := fmt.Sprintf("w%02d", i)
			got := readRotated(filepath.Join(logs, "daemon."+name+".log"), keep)
			if got != want(name) {
				t.Errorf("%s's log (%d bytes, want %d):\n%s", name, len(got), len(want(name)), got)
				break
			}
		}
		t.Fatal("not every line reached its log within 60s")
	}
	if n := openLogFiles(pid); n > maxOpen {
		t.Errorf("the log daemon holds %d log files open, want at most %d", n, maxOpen)
	}
	if _, err := os.Stat(filepath.Join(logs, "daemon.w00.log.2")); err != nil {
		t.Errorf("the logs did not rotate: %v", err)
	}
	t.Logf("peak of log files open while %d daemons wrote: %d (bound %d)", daemons, peak, maxOpen)
}
