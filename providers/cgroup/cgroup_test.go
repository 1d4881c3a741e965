package cgroup

import (
	"context"
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

// host returns the real host's cgroups, or skips (fails under CI) when
// orch could not make any here.
func host(t testing.TB) *Host {
	t.Helper()
	h := Detect()
	if !h.Usable() {
		if os.Getenv("CI") != "" {
			t.Fatalf("no writable cgroup on this CI machine: %s", h.Why)
		}
		t.Skipf("no writable cgroup: %s", h.Why)
	}
	return h
}

func project(t testing.TB) string {
	return fmt.Sprintf("orch-test-%d-%s", os.Getpid(), strings.ReplaceAll(filepath.Base(t.TempDir()), "/", ""))
}

// startIn forks sh -c script into g, as the process provider does.
func startIn(t *testing.T, g Group, script string) *exec.Cmd {
	t.Helper()
	fd, err := g.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if len(g.V1) > 0 {
		// The exec wrapper's job in the provider; here the shell does it.
		var join string
		for _, d := range g.V1 {
			join += "echo $$ > " + filepath.Join(d, "cgroup.procs") + "; "
		}
		cmd.Args[2] = join + script
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { g.Remove() })
	return cmd
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func procState(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestDetectThisHost(t *testing.T) {
	h := host(t)
	t.Logf("mode: %s; unified %s; v1 %v", h.Mode(), h.Unified, h.V1)
	if _, err := os.Stat(filepath.Join(h.Unified, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
}

func TestDetectHybridMounts(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte(`30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:6 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup cgroup rw,cpu,cpuacct
`), 0o644)
	self := filepath.Join(dir, "cgroup")
	os.WriteFile(self, []byte("4:memory:/a\n3:cpu,cpuacct:/b\n0::/c\n"), 0o644)
	mounts, err := readMounts(mi)
	if err != nil || len(mounts) != 3 {
		t.Fatalf("mounts %v %v", mounts, err)
	}
	own, _ := readSelf(self)
	if own[""] != "/c" || own["memory"] != "/a" || own["cpu,cpuacct"] != "/b" {
		t.Fatalf("own %v", own)
	}
	if d, _ := under(mounts[2], own["cpu,cpuacct"]); d != "/sys/fs/cgroup/cpu,cpuacct/b" {
		t.Fatalf("under = %s", d)
	}
	h := detect(filepath.Join(dir, "none"), self)
	if h.Usable() || h.Why == "" || !strings.Contains(h.Mode(), "process groups") {
		t.Fatalf("a host without mountinfo: %+v", h)
	}
	if err := h.Check(Limits{MemoryMax: 1 << 20}); err == nil || !strings.Contains(err.Error(), "writable cgroup") {
		t.Fatalf("Check = %v", err)
	}
}

// A daemon whose child double-forks into a session of its own: killing
// the cgroup leaves nothing, where a process-group kill misses the
// grandchild.
func TestKillReachesSetsidGrandchild(t *testing.T) {
	h := host(t)
	g, err := h.Create(project(t), "daemon.api", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild")
	startIn(t, g, "setsid sh -c 'echo $$ > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; exec sleep 600' & exec sleep 600")
	var gc int
	if !poll(context.Background(), time.Now().Add(10*time.Second), func() bool {
		b, _ := os.ReadFile(pidFile)
		gc, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return gc > 0
	}) {
		t.Fatal("the grandchild never wrote its pid")
	}
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	// The shells' helpers (mv) come and go: wait for the two sleeps.
	if !poll(context.Background(), time.Now().Add(10*time.Second), func() bool { return len(g.Procs()) == 2 }) {
		t.Fatalf("cgroup holds %v, want the daemon and its grandchild", g.Procs())
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if !g.WaitEmpty(context.Background(), time.Now().Add(10*time.Second)) {
		t.Fatalf("still in the cgroup after Kill: %v", g.Procs())
	}
	if alive(gc) {
		t.Fatalf("grandchild %d survived", gc)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if g.Exists() {
		t.Fatal("cgroup left behind")
	}
	if _, err := os.Stat(filepath.Dir(g.Path)); err == nil {
		t.Fatal("the empty project cgroup was left behind")
	}
}

func TestFreezeThaw(t *testing.T) {
	h := host(t)
	g, err := h.Create(project(t), "daemon.counter", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "n")
	cmd := startIn(t, g, "i=0; while :; do i=$((i+1)); echo $i > "+out+"; done")
	if !poll(context.Background(), time.Now().Add(10*time.Second), func() bool { _, err := os.Stat(out); return err == nil }) {
		t.Fatal("the counter never counted")
	}
	if err := g.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.Frozen() {
		t.Fatal("not frozen")
	}
	if st := procState(cmd.Process.Pid); st == "T" || st == "t" {
		t.Fatalf("process state %s: stopped by a signal, not frozen", st)
	}
	a, _ := os.ReadFile(out)
	time.Sleep(100 * time.Millisecond)
	b, _ := os.ReadFile(out)
	if string(a) != string(b) {
		t.Fatalf("a frozen counter counted on: %q -> %q", a, b)
	}
	if err := g.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !poll(context.Background(), time.Now().Add(10*time.Second), func() bool { c, _ := os.ReadFile(out); return string(c) != string(b) && len(c) > 0 }) {
		t.Fatal("the thawed counter does not count")
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	h := host(t)
	l := Limits{MemoryMax: 16 << 20}
	if err := h.Check(l); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	g, err := h.Create(project(t), "daemon.hog", l)
	if err != nil {
		t.Fatal(err)
	}
	// A shell that grows a string without end.
	c := startIn(t, g, "x=0123456789abcdef; while :; do x=$x$x; done")
	if !poll(context.Background(), time.Now().Add(30*time.Second), func() bool { return g.OOMKills() > 0 }) {
		t.Fatalf("no OOM kill; usage %v", must(g.Usage()))
	}
	if !poll(context.Background(), time.Now().Add(10*time.Second), func() bool { return !alive(c.Process.Pid) }) {
		t.Fatal("the hog is still alive after an OOM kill")
	}
}

func must(u Usage, ok bool) Usage { return u }

func TestUsage(t *testing.T) {
	h := host(t)
	g, err := h.Create(project(t), "daemon.busy", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, g, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 600")
	if !poll(context.Background(), time.Now().Add(20*time.Second), func() bool { u, _ := g.Usage(); return u.CPU > 10*time.Millisecond && u.Memory > 0 }) {
		u, ok := g.Usage()
		t.Fatalf("usage %+v %v", u, ok)
	}
}

func BenchmarkCreateRemove(b *testing.B) {
	h := host(b)
	proj := project(b)
	for i := 0; i < b.N; i++ {
		g, err := h.Create(proj, "daemon.x."+strconv.Itoa(i), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		f, err := g.Open()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.StopTimer()
		if err := g.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestCreateWhileSiblingsEnd: the project directory goes with its last
// daemon, so daemons of one project starting while others end race for
// it. Every Create must succeed however the two interleave (1,000
// concurrent job starts once failed with "mkdir: no such file or
// directory" for the child of a parent just removed).
func TestCreateWhileSiblingsEnd(t *testing.T) {
	h := host(t)
	parent := project(t)
	l := Limits{MemoryMax: 64 << 20, PidsMax: 64}
	const workers, rounds = 8, 60
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := 0; i < rounds; i++ {
				g, err := h.Create(parent, fmt.Sprintf("job.j%d.%016x", w, i), l)
				if err != nil {
					errs <- err
					return
				}
				if err := g.Remove(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(h.Unified, parent)); !os.IsNotExist(err) {
		t.Errorf("project cgroup left after its last daemon: %v", err)
	}
}

// TestPlanIsWhatCreateMakes: Plan names, before anything exists, the
// directories Create then makes (the process runtime writes them in its
// pending line before making them), and refuses what Create refuses
// without making anything.
func TestPlanIsWhatCreateMakes(t *testing.T) {
	h := host(t)
	proj := project(t)
	for _, l := range []Limits{{}, {MemoryMax: 64 << 20}, {PidsMax: 100}, {CPUMax: 0.5}} {
		if h.Check(l) != nil {
			continue // not enforceable here: the refusal is checked below
		}
		name := fmt.Sprintf("daemon.plan.%d-%d-%v", l.MemoryMax, l.PidsMax, l.CPUMax)
		planned, err := h.Plan(proj, name, l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(planned.Path); !os.IsNotExist(err) {
			t.Fatalf("%+v: Plan made %s (or it was there): %v", l, planned.Path, err)
		}
		made, err := h.Create(proj, name, l)
		if err != nil {
			t.Fatal(err)
		}
		if made.Path != planned.Path || fmt.Sprint(made.V1) != fmt.Sprint(planned.V1) {
			t.Errorf("%+v: planned %+v, made %+v", l, planned, made)
		}
		if err := made.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Plan(proj, "bad/name", Limits{}); err == nil {
		t.Error("Plan took a name with a slash")
	}
	if _, err := os.Stat(filepath.Join(h.Unified, proj)); !os.IsNotExist(err) {
		t.Errorf("the project's cgroup was left: %v", err)
	}
}

// RemoveEmpty removes the empty cgroups it is named and, asked to, their
// directory; it removes nothing off a cgroup file system, and no cgroup
// that holds a process (nor the directory above it).
func TestRemoveEmpty(t *testing.T) {
	plain := t.TempDir()
	os.Mkdir(filepath.Join(plain, "a"), 0o755)
	RemoveEmpty(plain, []string{"a"}, true)
	if _, err := os.Stat(filepath.Join(plain, "a")); err != nil {
		t.Fatalf("an empty directory off a cgroup file system was removed: %v", err)
	}

	h := host(t)
	parent := project(t)
	empty, err := h.Create(parent, "empty", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	busy, err := h.Create(parent, "busy", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Remove(); empty.Remove(); busy.RemoveParents() })
	startIn(t, busy, "exec sleep 60")
	dir := filepath.Dir(empty.Path)
	RemoveEmpty(dir, []string{"empty", "busy"}, true)
	if _, err := os.Stat(empty.Path); !os.IsNotExist(err) {
		t.Fatalf("the empty cgroup %s is still there: %v", empty.Path, err)
	}
	if _, err := os.Stat(busy.Path); err != nil {
		t.Fatalf("the cgroup holding a process was removed: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the directory of a cgroup still in use was removed: %v", err)
	}
}
