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
// For the chain, process-compose is measured twice: as it stops by
// default (everything at once) and with --ordered-shutdown, the order orch
// always keeps (dependents first). Each figure is a median of b.N runs;
// the ratios are process-compose's over orch's (above 1: orch is faster).
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
func orchUpStop(b *testing.B, s peerShape) (up, stop time.Duration) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(s.orchConfig()), 0o644); err != nil {
		b.Fatal(err)
	}
	stateDir := filepath.Join(dir, ".orch")
	defer stopRegistered(stateDir)
	cmd := exec.Command(orchBin, "up", dir)
	cmd.Dir = dir
	cmd.Env = peerEnv(b)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	}()
	pids := waitChildren(b, "orch up", cmd.Process.Pid, s.n, func() string { return stderr.String() })
	up = time.Since(t0)
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("orch up after SIGTERM: %v\n%s", err, stderr.String())
	}
	stop = time.Since(t1)
	for _, pid := range pids {
		if alive(pid) {
			b.Fatalf("daemon pid %d outlived orch up's stop", pid)
		}
	}
	return up, stop
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
	// The children of each of its threads (/proc/PID/task/TID/children):
	// a few files, not a read of every process's stat (with 1,000
	// daemons, polling /proc whole took a core of the two).
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", ppid))
	var out []int
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
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
	}
	return out
}

// composeUpStop runs process-compose on s once, as orchUpStop does orch.
func composeUpStop(b *testing.B, bin string, s peerShape, ordered bool) (up, stop time.Duration) {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pc := cmd.Process.Pid
	var pids []int
	defer func() {
		for _, pid := range pids {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if cmd.ProcessState == nil {
			syscall.Kill(-pc, syscall.SIGKILL)
			cmd.Wait()
		}
	}()
	pids = waitChildren(b, "process-compose", pc, s.n, output.String)
	up = time.Since(t0)
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait() // its exit status after a SIGTERM is not a failure
	stop = time.Since(t1)
	for _, pid := range pids {
		if alive(pid) {
			b.Fatalf("process-compose: daemon pid %d outlived its stop", pid)
		}
	}
	return up, stop
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
			var oUp, oStop, pUp, pStop, pOrdStop []time.Duration
			for i := 0; i < b.N; i++ {
				// Alternating, so that a change of the machine's pace
				// over the run falls on both.
				u, st := orchUpStop(b, s)
				oUp, oStop = append(oUp, u), append(oStop, st)
				if pcBin == "" {
					continue
				}
				u, st = composeUpStop(b, pcBin, s, false)
				pUp, pStop = append(pUp, u), append(pStop, st)
				if s.chain {
					_, st = composeUpStop(b, pcBin, s, true)
					pOrdStop = append(pOrdStop, st)
				}
			}
			b.ReportMetric(medianMs(oUp), "orch-up-ms")
			b.ReportMetric(medianMs(oStop), "orch-stop-ms")
			if pcBin == "" {
				b.Logf("%s: orch up %.1f ms, stop %.1f ms; no process-compose on PATH (or ORCH_BENCH_PROCESS_COMPOSE) to compare with", s.name, medianMs(oUp), medianMs(oStop))
				return
			}
			b.ReportMetric(medianMs(pUp), "pc-up-ms")
			b.ReportMetric(medianMs(pStop), "pc-stop-ms")
			b.ReportMetric(medianMs(pUp)/medianMs(oUp), "pc/orch-up")
			b.ReportMetric(medianMs(pStop)/medianMs(oStop), "pc/orch-stop")
			msg := fmt.Sprintf("%s: up: orch %.1f ms, process-compose %.1f ms (%.2fx); stop: orch %.1f ms, process-compose %.1f ms (%.2fx)",
				s.name, medianMs(oUp), medianMs(pUp), medianMs(pUp)/medianMs(oUp), medianMs(oStop), medianMs(pStop), medianMs(pStop)/medianMs(oStop))
			if s.chain {
				b.ReportMetric(medianMs(pOrdStop), "pc-ordered-stop-ms")
				b.ReportMetric(medianMs(pOrdStop)/medianMs(oStop), "pc-ordered/orch-stop")
				msg += fmt.Sprintf("; process-compose --ordered-shutdown %.1f ms (%.2fx)", medianMs(pOrdStop), medianMs(pOrdStop)/medianMs(oStop))
			}
			b.Log(msg)
		})
	}
}
