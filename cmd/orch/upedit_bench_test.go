package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkUpEdit is what a user waits for after saving a one-line
// change under orch up: orch up (the built binary) runs n /bin/sleep
// daemons; each iteration rewrites main.hcl with one daemon's command
// changed and times until that daemon's new process runs as a child of
// orch up. The reload reads the file again, re-plans all n, and replaces
// the one daemon (its old process stopped, the new one started). n=1000,
// and 10,000 with ORCH_BENCH_10K. Reported: edit-ms, the median.
func BenchmarkUpEdit(b *testing.B) {
	sizes := []int{1000}
	if os.Getenv("ORCH_BENCH_10K") != "" {
		sizes = append(sizes, 10000)
	}
	lim := raiseNoFile()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			skipWithoutNoFile(b, lim, n)
			benchUpEdit(b, n)
		})
	}
}

func benchUpEdit(b *testing.B, n int) {
	dir := b.TempDir()
	stateDir := filepath.Join(dir, ".orch")
	defer stopRegistered(stateDir)
	shape := peerShape{n: n}
	config := shape.orchConfig()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(s), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write(config)
	cmd := exec.Command(orchBin, "up", dir)
	cmd.Dir = dir
	cmd.Env = peerEnv(b)
	var stderr syncBuffer
	cmd.Stderr = &stderr // stdout: /dev/null, as a user's terminal costs nothing here
	defer startGroup(b, cmd)()
	pid := cmd.Process.Pid
	waitChildren(b, "orch up", pid, n, stderr.String)
	settle(b) // ORCH_BENCH_SETTLE: the machine quiet again after n starts

	// The daemon edited: d7's command is /bin/sleep 10007 at first, then
	// a new argument at each iteration.
	const target = 7
	was := fmt.Sprintf("[\"/bin/sleep\", \"%d\"]", 10000+target)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		arg := strconv.Itoa(20000 + i)
		now := fmt.Sprintf("[\"/bin/sleep\", \"%s\"]", arg)
		before := childSet(pid)
		edited := strings.Replace(config, "daemon \"d7\" {\n  command = "+was, "daemon \"d7\" {\n  command = "+now, 1)
		if edited == config {
			b.Fatalf("daemon d7's command %s is not in the configuration", was)
		}
		start := time.Now()
		write(edited)
		deadline := start.Add(2 * time.Minute)
		for !newChildRuns(pid, before, "/bin/sleep\x00"+arg+"\x00") {
			if time.Now().After(deadline) {
				b.Fatalf("edit %d: no new /bin/sleep %s under orch up within 2 minutes:\n%s", i, arg, tail(stderr.String(), 2000))
			}
			time.Sleep(500 * time.Microsecond)
		}
		times = append(times, time.Since(start))
		config, was = edited, now
	}
	b.StopTimer()
	b.ReportMetric(medianMs(times), "edit-ms")
	if err := cmd.Process.Signal(syscall.SIGTERM); err == nil {
		cmd.Wait()
	}
}

// childSet is the set of pids whose parent is pid, read from its
// threads' children lists (/proc/PID/task/TID/children): a few files, not
// a read of every process's stat (with 1,000 daemons, polling /proc whole
// took a core of the two).
func childSet(pid int) map[string]bool {
	set := map[string]bool{}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			set[f] = true
		}
	}
	return set
}

// newChildRuns reports whether a child of pid not in before runs with
// the command line cmdline (its arguments, each NUL-terminated).
func newChildRuns(pid int, before map[string]bool, cmdline string) bool {
	for c := range childSet(pid) {
		if before[c] {
			continue
		}
		if data, err := os.ReadFile("/proc/" + c + "/cmdline"); err == nil && string(data) == cmdline {
			return true
		}
	}
	return false
}
