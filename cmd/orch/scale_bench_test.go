package main

// The scale benchmarks of issue 19: what a user runs, through the built
// binary, against real processes (sleep), side by side with Terraform.
//
//	go test -run '^$' -bench 'Scale/n=1000' -benchtime 1x ./cmd/orch
//	ORCH_BENCH_10K=1 go test -run '^$' -bench 'Scale' -benchtime 1x -timeout 30m ./cmd/orch
//
// For each size (1,000 always, 10,000 with ORCH_BENCH_10K=1, as it takes
// minutes; ORCH_BENCH_SCALE=1000,5000 names the sizes) one iteration runs, in a fresh directory written by
// testdata/scale/gen-orch.sh: orch plan of everything new (then twice
// more, the last one served from the configuration cache), orch apply
// (create; it waits 500 ms after the last start, as users see), a no-op
// orch plan, a one-line change (plan, then apply; apply again with
// -wait=false for a second line) and orch destroy. It reports each one's
// wall time and CPU time (user+sys of the child), orch's peak RSS over the
// plans, applies and destroy (getrusage of the child), orch up's apart,
// and the log daemon's (VmHWM of
// /proc/PID/status, read before destroy). With terraform on PATH it also
// plans 1,000 terraform_data resources (testdata/scale/gen-terraform.sh)
// new and then with nothing to change, once per run, and reports the
// ratios. It asserts nothing about times; it fails if a command fails or
// a plan does not say what it should.
//
// Every daemon the run started is stopped at the end by its process group
// (from the log daemon's registry), and the log daemon by its pid.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/process/processtest"
)

// scaleRun is one command's measurement.
type scaleRun struct {
	wall, cpu time.Duration
	maxrssKB  int64
	stdout    string
}

// runScale runs orch (or another program, when bin is not orchBin) in dir
// and measures it; it fails the benchmark if the command fails.
func runScale(b *testing.B, env []string, dir, bin string, args ...string) scaleRun {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("%s %v: %v\n%s\n%s", filepath.Base(bin), args, err, tail(stdout.String(), 2000), tail(stderr.String(), 2000))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return scaleRun{
		wall:     wall,
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxrssKB: ru.Maxrss,
		stdout:   stdout.String(),
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// scaleEnv is the environment of every command: a fresh HOME (no user
// settings), PATH, and nothing else of ours.
func scaleEnv(b *testing.B) []string {
	home := b.TempDir()
	return []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
}

func gen(b *testing.B, script string, n int, dir string) {
	b.Helper()
	out, err := exec.Command("sh", filepath.Join("testdata", "scale", script), strconv.Itoa(n), dir).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// vmHWM is the peak RSS (KiB) of a live process, from /proc/PID/status.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

func logdPid(stateDir string) int {
	b, err := os.ReadFile(filepath.Join(stateDir, "logs", "logd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stopScale stops every process the run in stateDir started: each daemon
// by its process group (SIGKILL: destroy already asked them nicely), then
// the log daemon by its pid.
func stopScale(stateDir string) (left int) {
	for _, pid := range registeredPids(stateDir) {
		if alive(pid) {
			left++
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	processtest.StopLogd(stateDir)
	return left
}

// upAdoptStop runs orch up in dir, where orch apply started n daemons:
// the time until it says all n run (each adopted), and from its SIGTERM
// to its exit, with every daemon gone; and its peak RSS (KiB).
func upAdoptStop(b *testing.B, env []string, dir, stateDir string, n int) (adopt, stop time.Duration, maxrssKB int64) {
	b.Helper()
	cmd := exec.Command(orchBin, "up")
	cmd.Dir, cmd.Env = dir, env
	var out syncBuffer
	cmd.Stderr = &out
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	defer startGroup(b, cmd)()
	// Its lines are read as they come: the adoptions counted until the
	// line that says all n run, which closes ready; read is closed at
	// the end of its output.
	ready, read := make(chan struct{}), make(chan struct{})
	adopted := 0
	go func() {
		defer close(read)
		want, said := fmt.Sprintf("ready: %d running", n), false
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if said {
				continue
			}
			if strings.Contains(line, " adopted pid=") {
				adopted++
			}
			if strings.Contains(line, want) {
				said = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-read:
		cmd.Wait()
		b.Fatalf("orch up ended before it said all %d run:\n%s", n, tail(out.String(), 2000))
	case <-time.After(10 * time.Minute):
		b.Fatalf("orch up did not say all %d run within 10 minutes:\n%s", n, tail(out.String(), 2000))
	}
	adopt = time.Since(start)
	if adopted != n {
		b.Fatalf("orch up adopted %d of the %d daemons orch apply started:\n%s", adopted, n, tail(out.String(), 2000))
	}
	start = time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	<-read
	if err := cmd.Wait(); err != nil {
		b.Fatalf("orch up after SIGTERM: %v\n%s", err, tail(out.String(), 2000))
	}
	stop = time.Since(start)
	for _, pid := range registeredPids(stateDir) {
		if alive(pid) {
			b.Fatalf("daemon pid %d outlived orch up's stop", pid)
		}
	}
	return adopt, stop, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
}

// tfResult is Terraform's side, measured once per run.
type tfResult struct {
	planNew, planNoop scaleRun
	err               string
}

var (
	tfOnce sync.Once
	tf     tfResult
)

const tfN = 1000

// terraform1000 measures terraform plan of 1,000 new terraform_data
// resources, applies them, then measures the no-op plan (which refreshes
// all 1,000, as orch's does).
func terraform1000(b *testing.B) tfResult {
	tfOnce.Do(func() {
		bin, err := exec.LookPath("terraform")
		if err != nil {
			tf.err = "terraform is not on PATH"
			return
		}
		dir, err := os.MkdirTemp("", "orch-scale-tf-")
		if err != nil {
			tf.err = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		gen(b, "gen-terraform.sh", tfN, dir)
		env := append(scaleEnv(b), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE=/dev/null")
		runScale(b, env, dir, bin, "init", "-input=false", "-no-color")
		tf.planNew = runScale(b, env, dir, bin, "plan", "-input=false", "-no-color", "-lock=false")
		if !strings.Contains(tf.planNew.stdout, fmt.Sprintf("Plan: %d to add", tfN)) {
			b.Fatalf("terraform plan of %d new:\n%s", tfN, tail(tf.planNew.stdout, 500))
		}
		runScale(b, env, dir, bin, "apply", "-input=false", "-no-color", "-auto-approve", "-lock=false")
		tf.planNoop = runScale(b, env, dir, bin, "plan", "-input=false", "-no-color", "-lock=false")
		if !strings.Contains(tf.planNoop.stdout, "No changes") {
			b.Fatalf("terraform no-op plan:\n%s", tail(tf.planNoop.stdout, 500))
		}
	})
	return tf
}

func BenchmarkScale(b *testing.B) {
	sizes := []int{1000}
	if os.Getenv("ORCH_BENCH_10K") != "" {
		sizes = append(sizes, 10000)
	}
	if list := os.Getenv("ORCH_BENCH_SCALE"); list != "" {
		sizes = nil
		for _, f := range strings.Split(list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 10 {
				b.Fatalf("ORCH_BENCH_SCALE=%q: want sizes like 1000,5000", list)
			}
			sizes = append(sizes, n)
		}
	}
	lim := raiseNoFile()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			skipWithoutNoFile(b, lim, n)
			for i := 0; i < b.N; i++ {
				benchScale(b, n)
			}
		})
	}
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to its hard one
// and returns the limits. Every daemon costs the log daemon one
// descriptor (its end of the pipe; it keeps at most
// process.DefaultLogdOpenLogs log files open) and orch one (the pidfd it
// reaps the daemon through). The log daemon inherits its limit from
// orch, which inherits it from here (syscall.Setrlimit, so that os/exec
// does not restore the old soft limit in the children).
func raiseNoFile() syscall.Rlimit {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim
}

// skipWithoutNoFile skips b when the hard limit lim cannot serve n daemons.
func skipWithoutNoFile(b *testing.B, lim syscall.Rlimit, n int) {
	if need := uint64(n + process.DefaultLogdOpenLogs + 256); lim.Max > 0 && lim.Max < need {
		b.Skipf("%d daemons need about %d descriptors in the log daemon and in orch; the hard RLIMIT_NOFILE here is %d", n, need, lim.Max)
	}
}

func sec(d time.Duration) float64 { return d.Seconds() }

func benchScale(b *testing.B, n int) {
	dir := b.TempDir()
	stateDir := filepath.Join(dir, ".orch")
	defer func() {
		if left := stopScale(stateDir); left > 0 {
			b.Errorf("%d daemons still ran after orch destroy (killed)", left)
		}
	}()
	gen(b, "gen-orch.sh", n, dir)
	env := scaleEnv(b)
	var peak int64
	orchRun := func(args ...string) scaleRun {
		r := runScale(b, env, dir, orchBin, args...)
		peak = max(peak, r.maxrssKB)
		return r
	}
	expect := func(r scaleRun, what, want string) {
		if !strings.Contains(r.stdout, want) {
			b.Fatalf("%s: want %q in:\n%s", what, want, tail(r.stdout, 1000))
		}
	}

	planNew := orchRun("plan")
	expect(planNew, "plan of new", fmt.Sprintf("Plan: %d to add, 0 to change", n))
	// The first plan made the state directory and wrote the
	// configuration cache there (spec/cache.go); the second is served
	// from it, as every plan after a first one is.
	planNewCached := orchRun("plan")
	expect(planNewCached, "plan of new (cached)", fmt.Sprintf("Plan: %d to add, 0 to change", n))
	create := orchRun("apply", "-auto-approve")
	expect(create, "create", fmt.Sprintf("Resources: %d added", n))
	noop := orchRun("plan")
	expect(noop, "no-op plan", "No changes")

	edit := func(i int, from, to string) {
		path := filepath.Join(dir, "main.hcl")
		src, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		old := fmt.Sprintf("daemon \"d%05d\" {\n  command = [\"sleep\", \"86400\"]\n  env     = { INDEX = \"%s\" }", i, from)
		if !bytes.Contains(src, []byte(old)) {
			b.Fatalf("daemon d%05d not found in main.hcl", i)
		}
		src = bytes.Replace(src, []byte(old), []byte(strings.Replace(old, `"`+from+`" }`, `"`+to+`" }`, 1)), 1)
		if err := os.WriteFile(path, src, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	edit(n/2, strconv.Itoa(n/2), "changed")
	changePlan := orchRun("plan")
	expect(changePlan, "plan of one change", "Plan: 0 to add, 0 to change, 1 to replace")
	changeApply := orchRun("apply", "-auto-approve")
	expect(changeApply, "apply of one change", "1 replaced")
	edit(n/3, strconv.Itoa(n/3), "changed")
	changeApplyNoWait := orchRun("apply", "-auto-approve", "-wait=false")
	expect(changeApplyNoWait, "apply -wait=false of one change", "1 replaced")

	// orch up after orch apply adopts every daemon (a watch each, as
	// they are not its children) and stops them all on SIGTERM; an
	// apply then starts them again, for the destroy.
	adopt, upStop, upRSS := upAdoptStop(b, env, dir, stateDir, n)
	restart := orchRun("apply", "-auto-approve")
	expect(restart, "apply after orch up's stop", fmt.Sprintf("%d changed", n))

	logd := logdPid(stateDir)
	logdPeak := vmHWM(logd)
	destroy := orchRun("destroy", "-auto-approve")
	expect(destroy, "destroy", fmt.Sprintf("%d destroyed", n))
	if logd > 0 && alive(logd) {
		logdPeak = max(logdPeak, vmHWM(logd))
	}

	b.ReportMetric(sec(planNew.wall), "plan-new-s")
	b.ReportMetric(sec(create.wall), "create-s")
	b.ReportMetric(sec(create.cpu), "create-cpu-s")
	b.ReportMetric(sec(noop.wall), "noop-plan-s")
	b.ReportMetric(sec(noop.cpu), "noop-plan-cpu-s")
	b.ReportMetric(sec(changePlan.wall+changeApply.wall), "change-plan+apply-s")
	b.ReportMetric(sec(changePlan.cpu+changeApply.cpu), "change-plan+apply-cpu-s")
	b.ReportMetric(sec(planNew.cpu), "plan-new-cpu-s")
	b.ReportMetric(sec(planNewCached.wall), "plan-new-cached-s")
	b.ReportMetric(sec(planNewCached.cpu), "plan-new-cached-cpu-s")
	b.ReportMetric(sec(changeApplyNoWait.wall), "change-apply-nowait-s")
	b.ReportMetric(sec(adopt), "up-adopt-s")
	b.ReportMetric(sec(upStop), "up-adopted-stop-s")
	b.ReportMetric(sec(destroy.wall), "destroy-s")
	b.ReportMetric(sec(destroy.cpu), "destroy-cpu-s")
	b.ReportMetric(float64(peak)/1024, "orch-peak-MB")
	b.ReportMetric(float64(logdPeak)/1024, "logd-peak-MB")
	b.ReportMetric(float64(upRSS)/1024, "up-peak-MB")
	b.Logf("n=%d: plan of new %.2fs (cpu %.2fs; from the configuration cache %.2fs, cpu %.2fs, %d MB), create %.2fs (cpu %.2fs), no-op plan %.2fs (cpu %.2fs, %d MB), change: plan %.2fs + apply %.2fs (cpu %.2fs; apply -wait=false %.2fs), orch up adopting them %.2fs and stopping them %.2fs (its peak RSS %d MB), destroy %.2fs (cpu %.2fs); orch peak RSS %d MB (plan, apply, destroy), log daemon %d MB",
		n, sec(planNew.wall), sec(planNew.cpu), sec(planNewCached.wall), sec(planNewCached.cpu), planNewCached.maxrssKB/1024, sec(create.wall), sec(create.cpu), sec(noop.wall), sec(noop.cpu), noop.maxrssKB/1024,
		sec(changePlan.wall), sec(changeApply.wall), sec(changePlan.cpu+changeApply.cpu), sec(changeApplyNoWait.wall), sec(adopt), sec(upStop), upRSS/1024, sec(destroy.wall), sec(destroy.cpu), peak/1024, logdPeak/1024)

	tf := terraform1000(b)
	if tf.err != "" {
		b.Logf("no Terraform comparison: %s", tf.err)
		return
	}
	b.ReportMetric(sec(tf.planNoop.wall), "tf1000-noop-plan-s")
	b.ReportMetric(sec(tf.planNew.wall), "tf1000-plan-new-s")
	b.ReportMetric(sec(tf.planNoop.wall)/sec(noop.wall), "tf1000-noop/noop")
	b.ReportMetric(sec(tf.planNew.wall)/sec(planNew.wall), "tf1000-new/plan-new")
	b.ReportMetric(sec(tf.planNoop.cpu)/sec(noop.cpu), "tf1000-noop/noop-cpu")
	b.ReportMetric(sec(tf.planNew.cpu)/sec(planNew.cpu), "tf1000-new/plan-new-cpu")
	b.ReportMetric(sec(tf.planNew.wall)/sec(planNewCached.wall), "tf1000-new/plan-new-cached")
	b.ReportMetric(sec(tf.planNew.cpu)/sec(planNewCached.cpu), "tf1000-new/plan-new-cached-cpu")
	b.Logf("terraform, %d terraform_data: plan of new %.2fs (cpu %.2fs), no-op plan %.2fs (cpu %.2fs); terraform no-op / orch no-op at n=%d: %.1fx (cpu %.1fx); terraform plan of %d new / orch plan of %d new: %.1fx (cpu %.1fx)",
		tfN, sec(tf.planNew.wall), sec(tf.planNew.cpu), sec(tf.planNoop.wall), sec(tf.planNoop.cpu),
		n, sec(tf.planNoop.wall)/sec(noop.wall), sec(tf.planNoop.cpu)/sec(noop.cpu),
		tfN, n, sec(tf.planNew.wall)/sec(planNew.wall), sec(tf.planNew.cpu)/sec(planNew.cpu))
}
