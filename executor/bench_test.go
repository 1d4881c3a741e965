package executor

// Benchmarks of plan and apply against real processes, real /proc and a
// real state file. Run them with, for instance:
//
//	go test -run '^$' -bench 'NoopPlan10k|Apply1000|PlanRSS1000' -benchtime 3x ./executor
//
// They report times (and peak RSS); they never assert them.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/providers/process/processtest"
	"github.com/orch-dev/orch/spec"
)

// TestMain makes the test binary serve as orch's own command: the process
// provider runs it as `<test binary> __exec ...` and `<test binary> __logd
// ...` (process.Options.SelfCommand defaults to the running executable).
func TestMain(m *testing.M) {
	if out := os.Getenv(maxrssEnv); out != "" {
		os.Exit(runForMaxrss(out, os.Args[1:]))
	}
	if os.Getenv(process.HelperEnv) != "" {
		if code, ok := process.HelperMain(os.Args[1:]); ok {
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

const benchProject = "bench"

// maxrssEnv makes the test binary run its arguments as a command and write
// the command's peak RSS (KiB) to the file the variable names.
//
// A process started from a large one through vfork (Go's os/exec) starts
// with the large one's peak RSS as its own maxrss: exec records the peak of
// the memory it leaves, and a vfork child leaves its parent's. A benchmark
// process that held 10,000 instances (BenchmarkNoopPlan10k) made orch plan
// "peak" at 280 MB. Started from this small helper instead, the command's
// maxrss is its own (or the helper's few MB, if larger).
const maxrssEnv = "ORCH_BENCH_MAXRSS"

func runForMaxrss(out string, argv []string) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, maxrssEnv+"=") })
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if werr := os.WriteFile(out, []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, werr)
		return 1
	}
	return cmd.ProcessState.ExitCode()
}

// loadBench loads src as the only file of a configuration in dir.
func loadBench(tb testing.TB, dir, src string) *spec.Config {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, diags := spec.LoadFS(os.DirFS(dir), dir, spec.Options{Schemas: benchProviders().Schemas()})
	if diags.HasErrors() {
		tb.Fatal(diags.Error())
	}
	return cfg
}

func benchProviders() Providers {
	return Providers{process.Kind: process.New(process.Options{})}
}

// noop10k declares 10,000 instances of daemon.d plus a few blocks that
// depend on each other and on them.
const noop10k = `
orch {
  name = "bench"
}

daemon "db" {
  command = ["/bin/sleep", "600"]
}

daemon "cache" {
  command    = ["/bin/sleep", "601"]
  depends_on = [daemon.db]
}

daemon "d" {
  count      = 10000
  command    = ["/bin/sleep", "600"]
  env        = { INDEX = "${count.index}", MODE = "bench" }
  depends_on = [daemon.db, daemon.cache]
  stop {
    timeout = "2s"
  }
}

daemon "api" {
  command    = ["/bin/sleep", "602"]
  depends_on = [daemon.cache]
}
`

// waitPidGone polls until pid no longer exists or is a zombie.
func waitPidGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X') {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// killGroups SIGKILLs the process group of every handle: the safety net
// behind the plan/destroy path.
func killGroups(handles []providers.Handle) {
	for _, h := range handles {
		if hi, err := process.ParseHandle(h); err == nil && hi.Pgid > 0 {
			syscall.Kill(-hi.Pgid, syscall.SIGKILL)
		}
	}
}

// BenchmarkNoopPlan10k times one no-op `orch plan` over 10,003 declared
// instances that all run as recorded: List from a real bbolt file, Refresh
// (Observe reads /proc for every handle; Adopt reads the sidecars) and
// planner.Make. The handles point at 20 real sleepers with their real
// start times. The config load is timed on its own (sub-benchmark load).
func BenchmarkNoopPlan10k(b *testing.B) {
	dir := b.TempDir()
	stateDir := filepath.Join(dir, ".orch")
	cfg := loadBench(b, dir, noop10k)
	ps := benchProviders()
	prov := ps[process.Kind]

	// 20 real sleepers, started as daemon.d[0..19] (so their sidecars are
	// what Adopt finds), stopped by pgid and logd by pid at the end.
	const sleepers = 20
	var real []process.HandleInfo
	var started []providers.Handle
	b.Cleanup(func() {
		killGroups(started)
		for _, h := range started {
			hi, _ := process.ParseHandle(h)
			waitPidGone(hi.Pid, 5*time.Second)
		}
		processtest.StopLogd(stateDir)
	})
	for i := 0; i < sleepers; i++ {
		r := cfg.Resource(spec.Address{Kind: spec.KindDaemon, Name: "d", Key: spec.IntKey(i)})
		if r == nil {
			b.Fatal("daemon.d[0] is not declared")
		}
		resp, err := prov.Start(context.Background(), providers.StartRequest{Runtime: runtimeFor(cfg, r.Runtime), Resource: r,
			Project: benchProject, StateDir: stateDir})
		if err != nil {
			b.Fatal(err)
		}
		started = append(started, resp.Handle)
		hi, err := process.ParseHandle(resp.Handle)
		if err != nil {
			b.Fatal(err)
		}
		real = append(real, hi)
	}

	// State: one record per declared instance, as the executor writes it.
	store, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	schemas := ps.Schemas()
	var insts []state.Instance
	for i, r := range cfg.Resources {
		var schema *spec.RuntimeSchema
		if rt := cfg.Runtime(r.Runtime); rt != nil {
			if s, ok := schemas[rt.Kind]; ok {
				schema = &s
			}
		}
		snap := planner.SnapshotOf(r, cfg.Graph.DependenciesOf(r.Addr), schema)
		hi := real[i%sleepers]
		if r.Addr.Name == "d" && r.Addr.Key.Type == spec.IntKeyType && r.Addr.Key.Int < sleepers {
			hi = real[r.Addr.Key.Int]
		} else {
			hi.Log = filepath.Join(stateDir, "logs", process.FileName(r.Addr)+".log")
		}
		insts = append(insts, state.Instance{Addr: r.Addr, Runtime: r.Runtime, Config: snap.Encode(),
			ConfigHash: snap.Hash(), Handle: hi.Encode(), Status: StatusRunning.String()})
	}
	if len(insts) < 10000 {
		b.Fatalf("%d instances declared, want 10,000 or more", len(insts))
	}
	for lo := 0; lo < len(insts); lo += 1000 {
		batch := insts[lo:min(lo+1000, len(insts))]
		if err := store.Update(func(tx *state.Tx) error {
			for _, inst := range batch {
				if err := tx.Put(inst); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}

	plan := func(b *testing.B) *planner.Plan {
		stored, err := store.List()
		if err != nil {
			b.Fatal(err)
		}
		in, err := Refresh(context.Background(), cfg, stored, ps, cfg.Project.Name, stateDir)
		if err != nil {
			b.Fatal(err)
		}
		p, diags := planner.Make(in)
		if diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		return p
	}
	if p := plan(b); p.HasChanges() {
		for _, c := range p.Changes {
			if c.Action != planner.NoOp {
				b.Fatalf("plan has changes, first: %s %s (%s) %v", c.Addr, c.Action, c.Reason, c.Diffs)
			}
		}
	}

	b.Run("load", func(b *testing.B) {
		src, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			c, diags := spec.LoadFS(os.DirFS(dir), dir, spec.Options{Schemas: schemas})
			if diags.HasErrors() || len(c.Resources) != len(insts) {
				b.Fatal(diags.Error(), len(src))
			}
		}
	})
	b.Run("plan", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if p := plan(b); p.HasChanges() {
				b.Fatal("the no-op plan has changes")
			}
		}
		// CPU time (all threads, GC included) tells the work apart from
		// waiting for a CPU on a busy machine.
		b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	})
	// The parts of plan, to see where the time goes.
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.List(); err != nil {
				b.Fatal(err)
			}
		}
	})
	stored, _ := store.List()
	b.Run("refresh", func(b *testing.B) {
		for b.Loop() {
			if _, err := Refresh(context.Background(), cfg, stored, ps, cfg.Project.Name, stateDir); err != nil {
				b.Fatal(err)
			}
		}
	})
	in, _ := Refresh(context.Background(), cfg, stored, ps, cfg.Project.Name, stateDir)
	b.Run("make", func(b *testing.B) {
		for b.Loop() {
			if p, _ := planner.Make(in); p.HasChanges() {
				b.Fatal("the no-op plan has changes")
			}
		}
	})
}

const apply1000 = `
orch {
  name = "bench"
}

daemon "d" {
  count   = 1000
  command = ["/bin/sleep", "600"]
  stop {
    timeout = "5s"
  }
}
`

// BenchmarkApply1000 times Executor.Apply of a plan that creates 1,000
// real daemons (/bin/sleep 600) through the process provider and a real
// state file, at the default parallelism and at 50. Each round then
// destroys them through a destroy plan, timed on its own (destroy-ms/op);
// the process groups of every recorded handle are SIGKILLed after as a
// safety net, and the log daemon is stopped by its pid.
//
// Creating a file costs about 0.7 ms of kernel time on some file systems
// (ext4 without a journal, in the VM these were written on, once many files
// were deleted nearby) against 10 us on tmpfs; a daemon's start creates one,
// its log (three before the pipe design): the shm variants run the same
// apply with the state directory on /dev/shm, to tell orch's own cost from
// the file system's.
func BenchmarkApply1000(b *testing.B) {
	for _, par := range []int{0, 50} {
		name := "par=default"
		if par > 0 {
			name = fmt.Sprintf("par=%d", par)
		}
		b.Run(name, func(b *testing.B) { benchApply(b, par, 1000, "") })
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		b.Run("par=default/shm", func(b *testing.B) { benchApply(b, 0, 1000, "/dev/shm") })
	}
}

// benchApply applies n daemons per round; base is where the config and
// state directory go ("" for b.TempDir).
func benchApply(b *testing.B, par, n int, base string) {
	var destroy, cpu time.Duration
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		if base != "" {
			d, err := os.MkdirTemp(base, "orch-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(d) })
			dir = d
		}
		stateDir := filepath.Join(dir, ".orch")
		cfg := loadBench(b, dir, apply1000)
		ps := benchProviders()
		store, err := state.Open(filepath.Join(stateDir, "state.db"), state.Options{Operation: "apply"})
		if err != nil {
			b.Fatal(err)
		}
		in, err := Refresh(context.Background(), cfg, nil, ps, cfg.Project.Name, stateDir)
		if err != nil {
			b.Fatal(err)
		}
		p, diags := planner.Make(in)
		if diags.HasErrors() || p.Summary().Add != n {
			b.Fatalf("plan: %v, %+v", diags, p.Summary())
		}
		ex := &Executor{Providers: ps, Store: store, Parallelism: par, Project: cfg.Project.Name, StateDir: stateDir}

		b.StartTimer()
		cpu0 := cpuTime()
		res, err := ex.Apply(context.Background(), cfg, p)
		cpu += cpuTime() - cpu0
		b.StopTimer()

		// Whatever happens next, every recorded process is stopped.
		stored, lerr := store.List()
		var handles []providers.Handle
		for _, s := range stored {
			handles = append(handles, s.Handle)
		}
		cleanup := func() {
			killGroups(handles)
			for _, h := range handles {
				if hi, err := process.ParseHandle(h); err == nil {
					waitPidGone(hi.Pid, 5*time.Second)
				}
			}
			processtest.StopLogd(stateDir)
			store.Close()
		}
		if err != nil || len(res.Diagnostics) > 0 || lerr != nil || len(stored) != n {
			cleanup()
			b.Fatalf("apply: %v %v %v; %d recorded", err, res.Diagnostics, lerr, len(stored))
		}

		t0 := time.Now()
		in, err = Refresh(context.Background(), cfg, stored, ps, cfg.Project.Name, stateDir)
		if err != nil {
			cleanup()
			b.Fatal(err)
		}
		in.Destroy = true
		dp, _ := planner.Make(in)
		dres, err := ex.Apply(context.Background(), cfg, dp)
		destroy += time.Since(t0)
		rounds++
		left, lerr := store.List()
		alive := 0
		for _, h := range handles {
			if hi, err := process.ParseHandle(h); err == nil && !waitPidGone(hi.Pid, 0) {
				alive++
			}
		}
		cleanup()
		if err != nil || len(dres.Diagnostics) > 0 || lerr != nil || len(left) != 0 || alive != 0 {
			b.Fatalf("destroy: %v %v %v; %d records left, %d processes alive", err, dres.Diagnostics, lerr, len(left), alive)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(destroy.Milliseconds())/float64(rounds), "destroy-ms/op")
	// orch's own CPU time for the creates (not the daemons' exec, nor
	// logd's): the work, apart from waiting for a CPU on a busy machine.
	b.ReportMetric(float64(cpu.Milliseconds())/float64(rounds), "cpu-ms/op")
}

// orchWith1000 builds the orch binary and writes a configuration of 1,000
// /bin/sleep daemons; it returns the binary and the config directory.
func orchWith1000(b *testing.B) (bin, dir string) {
	dir = b.TempDir()
	bin = filepath.Join(b.TempDir(), "orch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/orch")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(apply1000), 0o644); err != nil {
		b.Fatal(err)
	}
	return bin, dir
}

// BenchmarkPlanRSS1000 measures orch's own memory holding the state of
// 1,000 instances: it builds the orch binary, applies a config of 1,000
// /bin/sleep daemons with it once, then runs `orch plan` (a no-op refresh
// of the 1,000) and reports its peak RSS (rusage maxrss, through the
// maxrss helper: see maxrssEnv) as
// peak-RSS-MB. It ends with `orch destroy -auto-approve` and checks that
// no process is left; process groups of the recorded handles are SIGKILLed
// and the log daemon stopped by its pid as a safety net.
func BenchmarkPlanRSS1000(b *testing.B) {
	bin, dir := orchWith1000(b)
	stateDir := filepath.Join(dir, ".orch")
	var handles []providers.Handle
	b.Cleanup(func() {
		killGroups(handles)
		processtest.StopLogd(stateDir)
	})
	rssFile := filepath.Join(b.TempDir(), "maxrss")
	// run runs orch through the maxrss helper and returns orch's peak RSS
	// in KiB and its output.
	run := func(args ...string) (int64, string) {
		cmd := exec.Command(os.Args[0], append([]string{bin}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NO_COLOR=1", maxrssEnv+"="+rssFile)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.Fatalf("orch %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		raw, err := os.ReadFile(rssFile)
		if err != nil {
			b.Fatal(err)
		}
		kib, _ := strconv.ParseInt(string(raw), 10, 64)
		return kib, out.String()
	}
	t0 := time.Now()
	run("apply", "-auto-approve")
	b.Logf("orch apply of 1,000 daemons: %s", time.Since(t0).Round(time.Millisecond))
	ro, err := state.OpenReadOnly(filepath.Join(stateDir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	stored, err := ro.List()
	ro.Close()
	if err != nil || len(stored) != 1000 {
		b.Fatalf("state after apply: %d records, %v", len(stored), err)
	}
	for _, s := range stored {
		handles = append(handles, s.Handle)
	}

	var peak int64
	for b.Loop() {
		kib, out := run("plan", "-detailed-exitcode")
		if !strings.Contains(out, "No changes") {
			b.Fatalf("orch plan has changes:\n%s", out)
		}
		peak = max(peak, kib)
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")

	b.StopTimer()
	run("destroy", "-auto-approve")
	alive := 0
	for _, h := range handles {
		if hi, err := process.ParseHandle(h); err == nil && !waitPidGone(hi.Pid, 5*time.Second) {
			alive++
		}
	}
	if alive > 0 {
		b.Fatalf("%d processes still run after orch destroy", alive)
	}
}

// BenchmarkUpRSS1000 measures `orch up` supervising 1,000 daemons: it
// builds the binary, starts `orch up -json` on 1,000 /bin/sleep daemons,
// waits for "ready", then reports the process's resident memory then
// (up-RSS-ready-MB, from /proc) and a second later (up-RSS-MB), its OS
// threads, and the CPU it uses while nothing happens (idle-cpu-ms over
// the 2 s window after that). It ends with SIGINT,
// which stops every daemon in reverse order, and checks none is left.
func BenchmarkUpRSS1000(b *testing.B) {
	bin, dir := orchWith1000(b)
	stateDir := filepath.Join(dir, ".orch")
	for i := 0; i < b.N; i++ { // the metrics matter, not ns/op
		cmd := exec.Command(bin, "up", "-json")
		cmd.Dir = dir
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var pids []int
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var ev struct {
					Type string `json:"type"`
					Pid  int    `json:"pid"`
				}
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					if ev.Type == "started" {
						pids = append(pids, ev.Pid)
					}
					if ev.Type == "ready" {
						close(ready)
					}
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			b.Fatal("orch up never became ready")
		}
		atReady := readProcStatus(cmd.Process.Pid)
		// Settled: orch up gives back what its first round used once it
		// is done (cli.releaseAfterReady), a collection's work.
		time.Sleep(time.Second)
		status := readProcStatus(cmd.Process.Pid)
		t1 := procCPU(cmd.Process.Pid)
		time.Sleep(2 * time.Second) // the measure: CPU used in an idle window
		t2 := procCPU(cmd.Process.Pid)
		b.ReportMetric(float64(atReady["VmRSS"])/1024, "up-RSS-ready-MB")
		b.ReportMetric(float64(status["VmRSS"])/1024, "up-RSS-MB")
		b.ReportMetric(float64(status["Threads"]), "threads")
		b.ReportMetric(float64((t2-t1)*1000/clockTicks), "idle-cpu-ms")
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		alive := 0
		for _, pid := range pids {
			if !waitPidGone(pid, 5*time.Second) {
				alive++
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		processtest.StopLogd(stateDir)
		if len(pids) != 1000 || alive != 0 {
			b.Fatalf("%d daemons started, %d left after SIGINT", len(pids), alive)
		}
	}
}

const clockTicks = 100 // USER_HZ on Linux

// readProcStatus reads the numeric fields of /proc/<pid>/status (kB for
// the memory ones).
func readProcStatus(pid int) map[string]int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// procCPU is the user+system CPU of pid, in clock ticks.
func procCPU(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}
