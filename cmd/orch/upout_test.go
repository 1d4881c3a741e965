package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/docker/dockertest"
	"github.com/orch-dev/orch/providers/process/processtest"
)

// startWith runs orch <verb> args... DIR as start does, without -json.
func (e *engineTest) startWith(verb string, args ...string) *engineProc {
	t := e.t
	t.Helper()
	p := &engineProc{exited: make(chan struct{})}
	p.cmd = newOrchCmd(t, e.dir, append(append([]string{verb}, args...), e.dir)...)
	p.cmd.Env = append(p.cmd.Env, e.env...)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// interrupt sends SIGINT and waits for orch to exit.
func (p *engineProc) interrupt(t *testing.T) {
	t.Helper()
	p.signalAndWait(t, syscall.SIGINT, 30*time.Second)
}

// signalAndWait sends orch sig and fails the test unless it exits within
// bound (a bound on a hang, not a measure).
func (p *engineProc) signalAndWait(t *testing.T, sig syscall.Signal, bound time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(bound):
		t.Fatalf("orch still running %s after %s:\n%s", bound, sig, p.output())
	}
}

const forwardConfig = `
variable "tok" {
  type      = string
  sensitive = true
  default   = "s3cr3t-tok"
}

job "migrate" {
  command = ["sh", "-c", "echo migrated"]
}

daemon "api" {
  count      = 2
  command    = ["sh", "-c", "echo hello ${count.index}; echo token ${var.tok}; exec sleep 600"]
  depends_on = [job.migrate]
}

daemon "crash" {
  command = ["sh", "-c", "echo before crash; echo Address already in use >&2; exit 3"]
  restart {
    policy = "never"
  }
}
`

// TestUpForwardsDaemonOutput: orch up prints each daemon's and job's
// lines prefixed with its name, aligned, without colour when piped, with
// sensitive values redacted; -quiet prints only orch's lines and the last
// lines of a failed exit; what was written before orch up began is not
// printed again; orch logs without a name prints every log.
func TestUpForwardsDaemonOutput(t *testing.T) {
	e := newEngineTest(t, forwardConfig)
	p := e.startWith("up")
	e.waitFor(p, "every forwarded line", func() bool {
		out := p.output()
		for _, want := range []string{"api[0]      | hello 0", "api[1]      | hello 1", "job.migrate | migrated",
			"crash       | Address already in use", "daemon.crash exited"} {
			if !strings.Contains(out, want) {
				return false
			}
		}
		return true
	})
	e.status() // remember the pids for the cleanup
	p.interrupt(t)
	out := p.output()
	if strings.Contains(out, "s3cr3t-tok") || !strings.Contains(out, "api[0]      | token (sensitive value)") {
		t.Errorf("a sensitive value was forwarded, or its line was not:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour written to a pipe:\n%q", out)
	}
	prefixed := regexp.MustCompile(`^(\S+ *) \| `)
	width := -1
	for _, l := range strings.Split(out, "\n") {
		if m := prefixed.FindStringSubmatch(l); m != nil {
			if width >= 0 && len(m[1]) != width {
				t.Errorf("names not aligned: %q is %d wide, others %d", l, len(m[1]), width)
			}
			width = len(m[1])
		}
	}
	// The crash's last words come before its exit line.
	if i, j := strings.Index(out, "crash       | Address already in use"), strings.Index(out, "daemon.crash exited"); i > j {
		t.Errorf("the crash's output comes after its exit:\n%s", out)
	}

	q := e.startWith("up", "-quiet")
	e.waitFor(q, "the crash's last lines under its exit", func() bool {
		return strings.Contains(q.output(), "    daemon.crash | Address already in use")
	})
	e.status()
	q.interrupt(t)
	if out := q.output(); strings.Contains(out, "api[0]") && strings.Contains(out, "| hello") {
		t.Errorf("-quiet forwarded daemon output:\n%s", out)
	}

	r := e.startWith("up", "-no-log-prefix")
	e.waitFor(r, "hello again", func() bool {
		return strings.Contains(r.output(), "\nhello 1\n") && strings.Contains(r.output(), "\nhello 0\n")
	})
	e.status()
	r.interrupt(t)
	if n := strings.Count(r.output(), "hello 0"); n != 1 {
		t.Errorf("hello 0 printed %d times: what the log held before orch up began was repeated:\n%s", n, r.output())
	}

	logs := orch(t, e.dir, nil, "logs", "-n", "1", e.dir).want(t, 0)
	for _, want := range []string{"daemon.api[0] | ", "daemon.api[1] | ", "daemon.crash | ", "job.migrate | migrated"} {
		if !strings.Contains(logs.stdout, want) {
			t.Errorf("orch logs without a name lacks %q:\n%s", want, logs.stdout)
		}
	}
}

// BenchmarkUpLogForward: orch up (the built binary) with 100 daemons each
// writing 1,000 lines a second, its output to a file. It reports the CPU
// orch up used per second of wall time while forwarding (cpu-%), that of
// the same run with -quiet (quiet-cpu-%: the engine and supervision
// alone), their difference (forward-cpu-%: the forwarding; the target is
// under 10% of one core), and checks that every line written in the
// measured window reached the output.
func BenchmarkUpLogForward(b *testing.B) {
	const daemons, rate = 100, 1000
	bin := filepath.Join(b.TempDir(), "chatter")
	if out, err := exec.Command(goTool(), "build", "-o", bin, "./testdata/chatter").CombinedOutput(); err != nil {
		b.Fatalf("building chatter: %v\n%s", err, out)
	}
	measure := func(b *testing.B, quiet bool) (cpuPct float64, lines int) {
		dir := b.TempDir()
		cfg := fmt.Sprintf(`daemon "c" {
  count   = %d
  command = [%q, "-rate", "%d", "-id", "c${count.index}"]
}
`, daemons, bin, rate)
		os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644)
		args := []string{"up"}
		if quiet {
			args = append(args, "-quiet")
		}
		cmd := exec.Command(orchBin, append(args, dir)...)
		cmd.Dir = dir
		home := b.TempDir()
		cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// What orch up prints is counted, not kept: a pipe read as fast
		// as a terminal would be.
		var (
			mu      sync.Mutex
			written int64
			nl      int64
		)
		readerDone := make(chan struct{})
		ready := make(chan struct{})
		go func() {
			var buf [64 << 10]byte
			var tail []byte
			seen := false
			for {
				k, err := out.Read(buf[:])
				mu.Lock()
				written += int64(k)
				nl += int64(bytes.Count(buf[:k], []byte{'\n'}))
				mu.Unlock()
				if !seen {
					tail = append(tail[max(0, len(tail)-16):], buf[:k]...)
					if strings.Contains(string(tail), "ready:") {
						seen = true
						close(ready)
					}
				}
				if err != nil {
					close(readerDone)
					return
				}
			}
		}()
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cmd.Process.Signal(syscall.SIGINT)
				<-readerDone
				cmd.Wait()
				stopRegistered(filepath.Join(dir, ".orch"))
			}
		}
		defer stop()
		select {
		case <-ready:
		case <-time.After(3 * time.Minute):
			b.Fatalf("orch up never got ready")
		}
		// The writers start before orch up is ready: let it catch up on
		// that backlog, so that the window measures the steady state.
		time.Sleep(15 * time.Second)
		before := cpuTicks(b, cmd.Process.Pid)
		mu.Lock()
		sizeBefore := written
		mu.Unlock()
		start := time.Now()
		time.Sleep(5 * time.Second)
		after := cpuTicks(b, cmd.Process.Pid)
		wall := time.Since(start)
		mu.Lock()
		n := written - sizeBefore
		mu.Unlock()
		cpuPct = float64(after-before) / 100 / wall.Seconds() * 100 // USER_HZ = 100
		// Every line the daemons wrote while orch up ran reaches its
		// output by the time it exits: its lines against the logs'.
		stop()
		logged := int64(0)
		files, _ := filepath.Glob(filepath.Join(dir, ".orch", "logs", "*.log*"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			logged += int64(bytes.Count(data, []byte{'\n'}))
		}
		if !quiet {
			b.ReportMetric(float64(logged), "lines-logged")
			b.ReportMetric(float64(nl), "lines-printed")
		}
		lines = int(n / int64(len("c00 line 12345 the quick brown fox jumps over the lazy dog\n")+len("c00   | ")))
		return cpuPct, lines
	}
	for i := 0; i < b.N; i++ {
		fwd, lines := measure(b, false)
		quiet, _ := measure(b, true)
		b.ReportMetric(fwd, "cpu-%")
		b.ReportMetric(quiet, "quiet-cpu-%")
		b.ReportMetric(fwd-quiet, "forward-cpu-%")
		b.ReportMetric(float64(lines)/5, "lines/s")
		b.ReportMetric(daemons*rate, "lines/s-written")
	}
}

// cpuTicks is the user+system CPU time of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// stopRegistered kills the process groups of the daemons the log daemon's
// registry names, and the log daemon.
func stopRegistered(stateDir string) {
	for _, pid := range registeredPids(stateDir) {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	processtest.RemoveCgroups(stateDir)
	processtest.StopLogd(stateDir)
}

// TestUpForwardsContainerOutput: a container's output (read through the
// Engine's log API) is forwarded as a process's is.
func TestUpForwardsContainerOutput(t *testing.T) {
	cli := dockertest.Engine(t)
	proj := dockertest.Project("orch-up-forward")
	dockertest.RemoveProject(t, cli, proj)
	t.Cleanup(func() { dockertest.RemoveProject(t, cli, proj) })
	image := "orch-test/server:" + proj
	dockertest.BuildImage(t, cli, dockertest.ServerContext(t, ""), image, proj)
	e := newEngineTest(t, fmt.Sprintf(`
orch {
  name = %q
}
runtime "docker" "local" {}
daemon "web" {
  runtime = runtime.docker.local
  image   = %q
  command = ["forwarded-arg"]
  stop {
    timeout = "1s"
  }
}
`, proj, image))
	p := e.startWith("up")
	e.waitFor(p, "the container's first line", func() bool {
		return strings.Contains(p.output(), "web | listening on") && strings.Contains(p.output(), "forwarded-arg")
	})
	p.interrupt(t)
	orch(t, e.dir, nil, "destroy", "-auto-approve", e.dir).want(t, 0)
}

// orch up | head: once the reader is gone, orch up stops everything in
// order, as on Ctrl-C, and exits, instead of dying of SIGPIPE with its
// daemons left running.
func TestUpStopsWhenItsOutputCloses(t *testing.T) {
	e := newEngineTest(t, `
daemon "chatty" {
  command = ["/bin/sh", "-c", "while :; do echo tick; sleep 0.05; done"]
}
`)
	cmd := newOrchCmd(t, e.dir, "up", e.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe: the log daemon orch starts outlives it, and
	// Wait would wait for it to close a pipe it inherited.
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	stderr := func() string { b, _ := os.ReadFile(errFile.Name()); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Read until the daemon's own output comes (it runs), then go, as
	// head does.
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "tick") {
			break
		}
	}
	pid := e.status()["daemon.chatty"].Pid
	if pid == 0 {
		t.Fatalf("daemon.chatty does not run")
	}
	out.Close()
	select {
	case <-exited:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("orch up died of %v (%v):\n%s", ws.Signal(), waitErr, stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("orch up still runs 30 s after its output closed:\n%s", stderr())
	}
	if !strings.Contains(stderr(), "was closed (a broken pipe): stopping everything") {
		t.Errorf("orch up did not say why it stopped:\n%s", stderr())
	}
	if alive(pid) {
		t.Errorf("daemon.chatty (pid %d) still runs after orch up exited", pid)
	}
}

// TestUpForwardsAfterSilence: a daemon silent long enough for orch up to
// look at its log least often (upout.go: every 16 ticks) still has what it
// writes then forwarded, and so does a daemon that writes when a file
// appears, while 50 others stay silent.
func TestUpForwardsAfterSilence(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "speak")
	cfg := fmt.Sprintf(`
daemon "late" {
  command = %s
}
daemon "idle" {
  count   = 50
  command = ["sleep", "600"]
}
`, speakAfter(flag, "early", "late line"))
	e := newEngineTest(t, cfg)
	p := e.startWith("up")
	e.waitFor(p, "the early line", func() bool { return strings.Contains(p.output(), "late     | early") })
	e.status() // remember the pids for the cleanup
	// Silent until the log has gone unread for more than the longest
	// rest: the output shows nothing new meanwhile, so wait on the
	// log's own age, not a clock in the test.
	logPath := filepath.Join(e.dir, ".orch", "logs", "daemon.late.log")
	e.waitFor(p, "the log idle for over a second", func() bool {
		st, err := os.Stat(logPath)
		return err == nil && time.Since(st.ModTime()) > 1500*time.Millisecond
	})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(p, "the late line", func() bool { return strings.Contains(p.output(), "late     | late line") })
	p.interrupt(t)
}

// TestUpForwardsAfterTruncation: a log truncated under orch up (by hand,
// `: > log`) is read from its start again, so that what the daemon
// writes next is forwarded; the forwarder keeps the offset it read to,
// and a size below it means a truncation.
func TestUpForwardsAfterTruncation(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "again")
	cfg := fmt.Sprintf(`
daemon "talk" {
  command = %s
}
`, speakAfter(flag, "first words and more", "two"))
	e := newEngineTest(t, cfg)
	p := e.startWith("up")
	e.waitFor(p, "the first line", func() bool { return strings.Contains(p.output(), "talk | first words and more") })
	e.status() // remember the pids for the cleanup
	logPath := filepath.Join(e.dir, ".orch", "logs", "daemon.talk.log")
	if err := os.Truncate(logPath, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(p, "the line after the truncation", func() bool { return strings.Contains(p.output(), "talk | two") })
	p.interrupt(t)
}

// speakAfter is the command of a daemon that prints first, then, once the
// file flag exists (the test creates it), then, and sleeps on.
func speakAfter(flag, first, then string) string {
	return fmt.Sprintf(`["sh", "-c", "echo %s; while [ ! -e '%s' ]; do sleep 0.05; done; echo %s; exec sleep 600"]`, first, flag, then)
}

// TestUpForwardsAcrossRotation: when the log daemon rotates a log under
// orch up (max_size), the forwarder finishes the old file, then the files
// rotated after it, then follows the new one from its start: every line
// is forwarded once, in order, even when the log rotated several times
// between two looks (orch up is stopped with SIGSTOP while the daemon
// writes five logs' worth). orch up holds no descriptor of a log between
// looks: a descriptor per daemon in its table made every start dearer
// as daemons were added (fork copies the table).
func TestUpForwardsAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "again")
	cfg := fmt.Sprintf(`
daemon "talk" {
  command = ["sh", "-c", "echo first; while [ ! -e '%s' ]; do sleep 0.05; done; i=0; while [ $i -lt 300 ]; do echo filler-line-$i-..................................................; i=$((i+1)); done; echo after the rotation; exec sleep 600"]
  log {
    max_size  = "4KiB"
    max_files = 20
  }
}
`, flag)
	e := newEngineTest(t, cfg)
	p := e.startWith("up")
	e.waitFor(p, "the first line", func() bool { return strings.Contains(p.output(), "talk | first") })
	e.status() // remember the pids for the cleanup
	logs := filepath.Join(e.dir, ".orch", "logs")
	if open := openUnder(t, p.cmd.Process.Pid, logs, ".log"); len(open) > 0 {
		t.Errorf("orch up holds logs open between looks: %v", open)
	}

	// Stopped, orch up cannot look while the log rotates several times.
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			p.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logs, "daemon.talk.log")
	e.waitFor(p, "the daemon's last line in its log after three rotations", func() bool {
		b, _ := os.ReadFile(logPath)
		_, err := os.Stat(logPath + ".3")
		return err == nil && bytes.Contains(b, []byte("after the rotation"))
	})
	resume()
	e.waitFor(p, "the line after the rotation", func() bool { return strings.Contains(p.output(), "talk | after the rotation") })
	p.interrupt(t)
	out := p.output()
	next := 0
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(l, "talk | filler-line-")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, '-')])
		if n != next {
			t.Fatalf("filler line %d forwarded where %d was due (lost or repeated across the rotations):\n%s", n, next, out)
		}
		next++
	}
	if next != 300 {
		t.Fatalf("%d of 300 filler lines forwarded:\n%s", next, out)
	}
}

// openUnder lists the files under dir whose names end in suffix that
// process pid holds open.
func openUnder(t *testing.T, pid int, dir, suffix string) []string {
	t.Helper()
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, ent := range ents {
		if target, err := os.Readlink(filepath.Join(fds, ent.Name())); err == nil && strings.HasPrefix(target, dir+"/") && strings.HasSuffix(target, suffix) {
			open = append(open, target)
		}
	}
	return open
}
