package main

// BenchmarkUpStopVsProcessCompose: orch up against process-compose, side
// by side in one run, as users run both (the built binaries, real
// processes): bring a set of /bin/sleep daemons up, then stop them with
// one SIGTERM to the supervisor, three shapes:
//
//	n=100      100 independent daemons
//	chain=100  100 daemons, each depending on the one before
//	n=1000     1,000 independent daemons
//
//	go test -run '^$' -bench UpStopVsProcessCompose -benchtime 5x ./cmd/orch
//
// process-compose is looked up on PATH (or ORCH_BENCH_PROCESS_COMPOSE
// names it); without it only orch's side is measured and the benchmark
// says so. "up" is from the command's start until every daemon runs,
// seen among its children in /proc (polled each millisecond, so each
// figure carries up to a millisecond of polling; both outputs go to
// /dev/null). "stop" is from the SIGTERM until the
// supervisor has exited, with every daemon gone (checked afterwards).
// With ORCH_BENCH_STOP_PARTS=1 it is also told in two parts: until the
// last daemon has exited ("gone": the signals and the daemons' own exits,
// seen through a pidfd of each) and from there to the supervisor's exit
// ("after": what it does once its daemons are gone, its own exit
// included). Watching the exits takes some of the 2 cores the stop
// needs, slowing both supervisors (orch more), so the stop figures of
// such a run are not the ones to compare with a run without it.
// With ORCH_BENCH_SETTLE=DURATION each supervisor is left that long after
// its last daemon runs before the SIGTERM, so that the stop measures a
// shutdown from idle rather than one that meets the end of the start
// (by default the SIGTERM follows the last fork at once).
// For the chain, process-compose is measured twice: as it stops by
// default (everything at once) and with --ordered-shutdown, the order orch
// always keeps (dependents first). Each figure is a median of b.N runs;
// the ratios are process-compose's over orch's (above 1: orch is faster).
// With ORCH_BENCH_NO_CGROUP=1 orch is also measured as it runs on a host
// where it can write no cgroup (its daemons held by their process groups
// only, as process-compose's are): orch up runs in a mount namespace of
// its own where its cgroup directory is read-only (needs root and
// unshare(1)). The gap between the two orch figures is what the cgroup of
// each daemon costs the stop (its removal, one rmdir at a time in the
// kernel).
// Nothing about times is asserted.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/cgroup"
)

// peerShape is one shape of the comparison.
type peerShape struct {
	name  string
	n     int
	chain bool
}

func (s peerShape) orchConfig() string {
	var b strings.Builder
	for i := 0; i < s.n; i++ {
		fmt.Fprintf(&b, "daemon \"d%d\" {\n  command = [\"/bin/sleep\", \"%d\"]\n", i, 10000+i)
		if s.chain && i > 0 {
			fmt.Fprintf(&b, "  depends_on = [daemon.d%d]\n", i-1)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func (s peerShape) composeConfig() string {
	var b strings.Builder
	b.WriteString("version: \"0.5\"\nprocesses:\n")
	for i := 0; i < s.n; i++ {
		fmt.Fprintf(&b, "  d%d:\n    command: \"/bin/sleep %d\"\n", i, 10000+i)
		if s.chain && i > 0 {
			fmt.Fprintf(&b, "    depends_on:\n      d%d:\n        condition: process_started\n", i-1)
		}
	}
	return b.String()
}

func medianMs(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

func peerEnv(b *testing.B) []string {
	home := b.TempDir()
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
}

// orchUpStop runs orch up on s once: the time until every daemon runs
// and the time from SIGTERM to orch's exit, with every daemon it started
// gone. Both supervisors are treated alike: their output goes to
// /dev/null, and what runs is read from /proc (a reader decoding orch up
// -json on the same 2 cores slowed orch's stop by a fifth).
func orchUpStop(b *testing.B, s peerShape, noCgroup bool) (up, stop, gone time.Duration) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(s.orchConfig()), 0o644); err != nil {
		b.Fatal(err)
	}
	stateDir := filepath.Join(dir, ".orch")
	defer stopRegistered(stateDir)
	cmd := exec.Command(orchBin, "up", dir)
	if noCgroup {
		// exec keeps the pid: the process signalled and waited for is orch.
		// orch's cgroup is this benchmark's (a child starts in its
		// parent's): read-only there, orch finds no cgroup it can write.
		own := cgroup.Detect()
		if !own.Usable() {
			b.Fatalf("ORCH_BENCH_NO_CGROUP: orch has no cgroup to take away here: %s", own.Mode())
		}
		cmd = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" up "$3"`, "sh", own.Unified, orchBin, dir)
	}
	cmd.Dir = dir
	cmd.Env = peerEnv(b)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	defer startGroup(b, cmd)()
	pids := waitChildren(b, "orch up", cmd.Process.Pid, s.n, func() string { return stderr.String() })
	up = time.Since(t0)
	settle(b)
	stop, gone = timedStop(b, "orch up", cmd, pids, func() {
		if err := cmd.Wait(); err != nil {
			b.Fatalf("orch up after SIGTERM: %v\n%s", err, stderr.String())
		}
	})
	return up, stop, gone
}

// timedStop sends SIGTERM to the supervisor cmd, waits for it (wait), and
// returns how long that took and, with ORCH_BENCH_STOP_PARTS, when the
// last of its daemons pids exited; every one of them must be gone.
func timedStop(b *testing.B, who string, cmd *exec.Cmd, pids []int, wait func()) (stop, gone time.Duration) {
	deaths := watchDeaths(b, pids)
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	wait()
	stop = time.Since(t1)
	if last := deaths.last(b, who); !last.IsZero() {
		gone = last.Sub(t1)
	}
	for _, pid := range pids {
		if alive(pid) {
			b.Fatalf("%s: daemon pid %d outlived its stop", who, pid)
		}
	}
	return stop, gone
}

// deathWatch tells when the last of a set of processes exited: a pidfd
// of each (they are not the benchmark's children) in one epoll, which
// one goroutine waits on while the supervisor stops them.
type deathWatch struct {
	ep   int
	fds  []int
	done chan time.Time
}

// watchDeaths is nil without ORCH_BENCH_STOP_PARTS.
func watchDeaths(b *testing.B, pids []int) *deathWatch {
	if os.Getenv("ORCH_BENCH_STOP_PARTS") == "" {
		return nil
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	w := &deathWatch{ep: ep, done: make(chan time.Time, 1)}
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			w.close()
			b.Fatalf("pidfd of daemon pid %d: %v", pid, err)
		}
		w.fds = append(w.fds, fd)
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			w.close()
			b.Fatal(err)
		}
	}
	go func() {
		var last time.Time
		events := make([]unix.EpollEvent, 256)
		for left := len(pids); left > 0; {
			n, err := unix.EpollWait(ep, events, int((2 * time.Minute).Milliseconds()))
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				last = time.Time{} // not all of them exited
				break
			}
			last = time.Now()
			for _, ev := range events[:n] {
				unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
				left--
			}
		}
		w.done <- last
	}()
	return w
}

// last waits for the last exit (at most the two minutes the watch gives
// them) and lets the descriptors go; the zero time for a nil watch.
func (w *deathWatch) last(b *testing.B, who string) time.Time {
	if w == nil {
		return time.Time{}
	}
	t := <-w.done
	w.close()
	if t.IsZero() {
		b.Fatalf("%s: not every daemon exited within 2 minutes of the stop", who)
	}
	return t
}

func (w *deathWatch) close() {
	for _, fd := range w.fds {
		unix.Close(fd)
	}
	unix.Close(w.ep)
}

// startGroup starts cmd leading a process group of its own. The
// function it returns, deferred, kills that group and reaps cmd unless
// cmd was waited for already.
func startGroup(tb testing.TB, cmd *exec.Cmd) (cleanup func()) {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	}
}

// settle waits ORCH_BENCH_SETTLE (a duration; none when unset).
func settle(b *testing.B) {
	v := os.Getenv("ORCH_BENCH_SETTLE")
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("ORCH_BENCH_SETTLE: %v", err)
	}
	time.Sleep(d)
}

// waitChildren waits until n sleep processes run as children of pid and
// returns them.
func waitChildren(b *testing.B, who string, pid, n int, output func() string) []int {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pids := childrenOf(pid, "sleep")
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d daemons after 5 minutes\n%s", who, len(pids), n, tail(output(), 2000))
		}
		time.Sleep(time.Millisecond)
	}
}

// childrenOf lists the pids whose parent is ppid and whose command is
// comm, from /proc.
func childrenOf(ppid int, comm string) []int {
	var out []int
	for f := range childSet(ppid) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + f + "/stat")
		if err != nil {
			continue
		}
		st := string(data)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < 0 || st[open+1:end] != comm || end+2 >= len(st) || st[end+2] == 'Z' {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// composeUpStop runs process-compose on s once, as orchUpStop does orch.
func composeUpStop(b *testing.B, bin string, s peerShape, ordered bool) (up, stop, gone time.Duration) {
	dir := b.TempDir()
	cfg := filepath.Join(dir, "process-compose.yaml")
	if err := os.WriteFile(cfg, []byte(s.composeConfig()), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"up", "-t=false", "--no-server", "-f", cfg, "-L", filepath.Join(dir, "pc.log")}
	if ordered {
		args = append(args, "--ordered-shutdown")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = peerEnv(b)
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	t0 := time.Now()
	stopGroup := startGroup(b, cmd)
	var pids []int
	defer func() {
		for _, pid := range pids {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		stopGroup()
	}()
	pids = waitChildren(b, "process-compose", cmd.Process.Pid, s.n, output.String)
	up = time.Since(t0)
	settle(b)
	stop, gone = timedStop(b, "process-compose", cmd, pids, func() {
		cmd.Wait() // its exit status after a SIGTERM is not a failure
	})
	return up, stop, gone
}

func BenchmarkUpStopVsProcessCompose(b *testing.B) {
	pcBin := os.Getenv("ORCH_BENCH_PROCESS_COMPOSE")
	if pcBin == "" {
		pcBin, _ = exec.LookPath("process-compose")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	for _, s := range []peerShape{{name: "n=100", n: 100}, {name: "chain=100", n: 100, chain: true}, {name: "n=1000", n: 1000}} {
		b.Run(s.name, func(b *testing.B) {
			noCg := os.Getenv("ORCH_BENCH_NO_CGROUP") != ""
			var nUp, nStop []time.Duration
			var oUp, oStop, oAfter, oGone, pUp, pStop, pAfter, pGone, pOrdStop, pOrdAfter, pOrdGone []time.Duration
			for i := 0; i < b.N; i++ {
				// Alternating, so that a change of the machine's pace
				// over the run falls on both.
				u, st, g := orchUpStop(b, s, false)
				oUp, oStop, oGone, oAfter = append(oUp, u), append(oStop, st), append(oGone, g), append(oAfter, st-g)
				if noCg {
					u, st, _ = orchUpStop(b, s, true)
					nUp, nStop = append(nUp, u), append(nStop, st)
				}
				if pcBin == "" {
					continue
				}
				u, st, g = composeUpStop(b, pcBin, s, false)
				pUp, pStop, pGone, pAfter = append(pUp, u), append(pStop, st), append(pGone, g), append(pAfter, st-g)
				if s.chain {
					_, st, g = composeUpStop(b, pcBin, s, true)
					pOrdStop, pOrdGone, pOrdAfter = append(pOrdStop, st), append(pOrdGone, g), append(pOrdAfter, st-g)
				}
			}
			b.ReportMetric(medianMs(oUp), "orch-up-ms")
			b.ReportMetric(medianMs(oStop), "orch-stop-ms")
			split := os.Getenv("ORCH_BENCH_STOP_PARTS") != ""
			if split {
				b.ReportMetric(medianMs(oGone), "orch-gone-ms")
				b.ReportMetric(medianMs(oAfter), "orch-after-ms")
			}
			parts := func(stop, gone, after []time.Duration) string {
				if !split {
					return fmt.Sprintf("%.1f ms", medianMs(stop))
				}
				return fmt.Sprintf("%.1f ms (daemons gone at %.1f, exit %.1f later)", medianMs(stop), medianMs(gone), medianMs(after))
			}
			if pcBin == "" {
				b.Logf("%s: orch up %.1f ms, stop %s; no process-compose on PATH (or ORCH_BENCH_PROCESS_COMPOSE) to compare with", s.name, medianMs(oUp), parts(oStop, oGone, oAfter))
				return
			}
			b.ReportMetric(medianMs(pUp), "pc-up-ms")
			b.ReportMetric(medianMs(pStop), "pc-stop-ms")
			if split {
				b.ReportMetric(medianMs(pGone), "pc-gone-ms")
				b.ReportMetric(medianMs(pAfter), "pc-after-ms")
			}
			b.ReportMetric(medianMs(pUp)/medianMs(oUp), "pc/orch-up")
			b.ReportMetric(medianMs(pStop)/medianMs(oStop), "pc/orch-stop")
			msg := fmt.Sprintf("%s: up: orch %.1f ms, process-compose %.1f ms (%.2fx); stop: orch %s, process-compose %s (%.2fx)",
				s.name, medianMs(oUp), medianMs(pUp), medianMs(pUp)/medianMs(oUp), parts(oStop, oGone, oAfter), parts(pStop, pGone, pAfter), medianMs(pStop)/medianMs(oStop))
			if s.chain {
				b.ReportMetric(medianMs(pOrdStop), "pc-ordered-stop-ms")
				b.ReportMetric(medianMs(pOrdStop)/medianMs(oStop), "pc-ordered/orch-stop")
				msg += fmt.Sprintf("; process-compose --ordered-shutdown %s (%.2fx)", parts(pOrdStop, pOrdGone, pOrdAfter), medianMs(pOrdStop)/medianMs(oStop))
			}
			if noCg {
				b.ReportMetric(medianMs(nStop), "orch-nocgroup-stop-ms")
				b.ReportMetric(medianMs(pStop)/medianMs(nStop), "pc/orch-nocgroup-stop")
				msg += fmt.Sprintf("; orch without cgroups: up %.1f ms, stop %.1f ms (%.2fx)", medianMs(nUp), medianMs(nStop), medianMs(pStop)/medianMs(nStop))
			}
			b.Log(msg)
		})
	}
}
