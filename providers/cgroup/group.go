package cgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one daemon's cgroup. It is plain data (it goes into the
// daemon's handle), so that an orch started later finds it again.
type Group struct {
	// Path is the directory in the unified (v2) hierarchy.
	Path string `json:"path"`
	// V1 are directories in v1 controller hierarchies (a hybrid host),
	// which the daemon joins before it executes (Join).
	// Keyed by controller: "memory", "cpu", "pids".
	V1 map[string]string `json:"v1,omitempty"`
}

// selfLeaf is where orch moves itself when its own cgroup must hand
// controllers down: cgroup v2 lets a non-root cgroup with processes of its
// own enable none ("no internal processes").
const selfLeaf = "orch.self"

// Plan is the Group that Create(parent, name, l) makes, without making
// anything: its directories, so that a record naming them can be written
// before they exist (the process runtime's pending line), and an error
// where Create would refuse l or the names before making anything.
func (h *Host) Plan(parent, name string, l Limits) (Group, error) {
	var g Group
	if !h.Usable() {
		return g, errors.New("no writable cgroup: " + h.Why)
	}
	if err := h.Check(l); err != nil {
		return g, err
	}
	if !validName(parent) || !validName(name) {
		return g, fmt.Errorf("bad cgroup name %q/%q", parent, name)
	}
	g.Path = filepath.Join(h.Unified, parent, name)
	for _, c := range l.controllers() {
		if !h.v2[c] {
			g.setV1(c, filepath.Join(h.V1[c], parent, name))
		}
	}
	return g, nil
}

// Create makes the cgroup parent/name below orch's own (parent is one
// level, for a project: "orch-app-1a2b3c"; name is the daemon's, unique per
// start) and applies l. Nothing runs in it yet: the daemon is forked into
// it (FD with SysProcAttr.CgroupFD) and joins the v1 directories itself.
func (h *Host) Create(parent, name string, l Limits) (Group, error) {
	var g Group
	if _, err := h.Plan(parent, name, l); err != nil {
		return g, err
	}
	var v2ctl []string
	for _, c := range l.controllers() {
		if h.v2[c] {
			v2ctl = append(v2ctl, c)
		}
	}
	if len(v2ctl) > 0 {
		if err := h.delegate(h.Unified, v2ctl); err != nil {
			return g, err
		}
	}
	p, err := mkdirUnder(h.Unified, parent, name, func(top string) error {
		if len(v2ctl) > 0 {
			return enable(top, v2ctl)
		}
		return nil
	})
	if err != nil {
		return g, err
	}
	g.Path = p
	fail := func(err error) (Group, error) {
		g.Remove()
		return Group{}, err
	}
	if l.MemoryMax > 0 {
		if h.v2["memory"] {
			if err := write(g.Path, "memory.max", strconv.FormatUint(l.MemoryMax, 10)); err != nil {
				return fail(err)
			}
			// No swap: over the limit is an OOM kill, not a slow daemon.
			writeIfExists(g.Path, "memory.swap.max", "0")
		} else {
			d, err := v1Dir(h.V1["memory"], parent, name)
			if err != nil {
				return fail(err)
			}
			g.setV1("memory", d)
			if err := write(d, "memory.limit_in_bytes", strconv.FormatUint(l.MemoryMax, 10)); err != nil {
				return fail(err)
			}
			writeIfExists(d, "memory.memsw.limit_in_bytes", strconv.FormatUint(l.MemoryMax, 10))
		}
	}
	if l.CPUMax > 0 {
		const period = 100000
		quota := max(int64(l.CPUMax*period+0.5), 1000)
		if h.v2["cpu"] {
			if err := write(g.Path, "cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
				return fail(err)
			}
		} else {
			d, err := v1Dir(h.V1["cpu"], parent, name)
			if err != nil {
				return fail(err)
			}
			g.setV1("cpu", d)
			write(d, "cpu.cfs_period_us", strconv.Itoa(period))
			if err := write(d, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
				return fail(err)
			}
		}
	}
	if l.PidsMax > 0 {
		if h.v2["pids"] {
			if err := write(g.Path, "pids.max", strconv.FormatInt(l.PidsMax, 10)); err != nil {
				return fail(err)
			}
		} else {
			d, err := v1Dir(h.V1["pids"], parent, name)
			if err != nil {
				return fail(err)
			}
			g.setV1("pids", d)
			if err := write(d, "pids.max", strconv.FormatInt(l.PidsMax, 10)); err != nil {
				return fail(err)
			}
		}
	}
	return g, nil
}

// delegate enables ctl in dir's subtree_control. When dir holds
// processes (orch itself, when orch's cgroup is a service's), v2 refuses
// (EBUSY): orch then moves itself into a leaf of its own, once, and tries
// again.
func (h *Host) delegate(dir string, ctl []string) error {
	err := enable(dir, ctl)
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	h.selfMoved.Do(func() {
		leaf := filepath.Join(dir, selfLeaf)
		if mkdir(leaf) == nil {
			write(leaf, "cgroup.procs", "0")
		}
	})
	if err := enable(dir, ctl); err != nil {
		return fmt.Errorf("%w (orch's cgroup %s holds other processes than orch: run orch in a cgroup of its own, for example as a systemd service with Delegate=yes)", err, dir)
	}
	return nil
}

func enable(dir string, ctl []string) error {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	on := map[string]bool{}
	for _, c := range strings.Fields(string(b)) {
		on[c] = true
	}
	var add []string
	for _, c := range ctl {
		if !on[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return write(dir, "cgroup.subtree_control", strings.Join(add, " "))
}

func v1Dir(base, parent, name string) (string, error) {
	return mkdirUnder(base, parent, name, nil)
}

// mkdirUnder makes base/parent/name, and base/parent first with prepare
// run on it. The project directory goes with its last daemon (Remove), so
// another daemon of the project ending between the two mkdirs removes the
// parent under this one: the child's mkdir then fails with ENOENT, and
// the parent is made (and prepared) again. Each round sees the parent
// gone only when a daemon ended in that moment; 100 rounds in a row is a
// parent that cannot stay, reported as the mkdir's error.
func mkdirUnder(base, parent, name string, prepare func(top string) error) (string, error) {
	top := filepath.Join(base, parent)
	d := filepath.Join(top, name)
	var err error
	for i := 0; i < 100; i++ {
		if err = mkdir(top); err != nil {
			return "", err
		}
		if prepare != nil {
			if err = prepare(top); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return "", err
			}
		}
		if err = mkdir(d); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", err
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\n\x00") && len(s) <= 255
}

// RemoveEmpty removes the empty cgroups names under dir, then dir itself
// when parent is set and it is empty by then. It removes nothing unless
// dir is an absolute, clean path on a cgroup file system (v2, or a v1
// hierarchy), and no name that is not one cgroup's: whatever a caller
// names, only empty cgroups go. What is not empty, or gone already, is
// left as it is.
func RemoveEmpty(dir string, names []string, parent bool) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return
	}
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC && fs.Type != unix.CGROUP_SUPER_MAGIC {
		return
	}
	for _, n := range names {
		if validName(n) {
			unix.Rmdir(filepath.Join(dir, n))
		}
	}
	if parent {
		unix.Rmdir(dir)
	}
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cannot create cgroup %s: %w", dir, err)
	}
	return nil
}

// write writes v to dir/file as cgroup files want it: one write(2).
func write(dir, file, v string) error {
	if err := writeFile(filepath.Join(dir, file), v); err != nil {
		return fmt.Errorf("cgroup: write %q: %w", v, err)
	}
	return nil
}

func writeIfExists(dir, file, v string) {
	if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
		write(dir, file, v)
	}
}

// Open opens g's v2 directory for SysProcAttr.CgroupFD (clone3 with
// CLONE_INTO_CGROUP: the daemon is in its cgroup from its first
// instruction). The caller closes it.
func (g Group) Open() (*os.File, error) {
	fd, err := unix.Open(g.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open cgroup %s: %w", g.Path, err)
	}
	return os.NewFile(uintptr(fd), g.Path), nil
}

// RemoveParents removes the directories above g's (its project's), when
// they are empty: another cgroup in one keeps it.
func (g Group) RemoveParents() {
	if g.Path == "" {
		return
	}
	unix.Rmdir(filepath.Dir(g.Path))
	for _, d := range g.V1 {
		unix.Rmdir(filepath.Dir(d))
	}
}

// TryRemove removes g's directory when that takes one rmdir (g is empty,
// or gone), and reports whether g is gone. It does not wait, kill or retry,
// and it leaves a g with cgroup v1 directories to Remove.
func (g Group) TryRemove() bool {
	if g.Path == "" || len(g.V1) > 0 {
		return false
	}
	err := unix.Rmdir(g.Path)
	return err == nil || errors.Is(err, unix.ENOENT)
}

// Exists reports whether g's directory is still there.
func (g Group) Exists() bool {
	_, err := os.Stat(filepath.Join(g.Path, "cgroup.procs"))
	return err == nil
}

// Procs lists the processes in g (its whole subtree).
func (g Group) Procs() []int {
	var out []int
	filepath.WalkDir(g.Path, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return nil
	})
	return out
}

// events reads a key of g's cgroup.events ("populated", "frozen").
func (g Group) events(key string) (int, bool) {
	b, err := readFile(filepath.Join(g.Path, "cgroup.events"))
	if err != nil {
		return 0, false
	}
	v, ok := keyOf(b, key)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// keyOf is the value of key in a flat-keyed control file's text ("key
// value" lines).
func keyOf(b []byte, key string) (string, bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, _ := bytes.Cut(line, []byte(" "))
		if string(k) == key {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}

// Populated reports whether any process is left in g. A g that is gone
// holds nothing.
func (g Group) Populated() bool {
	if n, ok := g.events("populated"); ok {
		return n != 0
	}
	if !g.Exists() {
		return false
	}
	return len(g.Procs()) > 0
}

// Kill kills every process in g at once (cgroup.kill, Linux 5.14): a
// grandchild that left the daemon's session and process group goes too.
// On older kernels it freezes g, SIGKILLs each member and thaws it, until
// none is left. It returns without waiting for the processes to be gone
// (WaitEmpty).
func (g Group) Kill() error {
	if !g.Exists() {
		return nil
	}
	err := write(g.Path, "cgroup.kill", "1")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for range 100 {
		procs := g.Procs()
		if len(procs) == 0 {
			return nil
		}
		write(g.Path, "cgroup.freeze", "1")
		for _, pid := range procs {
			unix.Kill(pid, syscall.SIGKILL)
		}
		write(g.Path, "cgroup.freeze", "0")
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("cgroup %s: processes keep appearing", g.Path)
}

// WaitEmpty waits until no process is left in g, until deadline or ctx is
// done; it reports whether g is empty.
func (g Group) WaitEmpty(ctx context.Context, deadline time.Time) bool {
	return poll(ctx, deadline, func() bool { return !g.Populated() })
}

func poll(ctx context.Context, deadline time.Time, cond func() bool) bool {
	d := 500 * time.Microsecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return cond()
		}
		t := time.NewTimer(min(d, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		d = min(d*2, 20*time.Millisecond)
	}
}

// Freeze stops every process of g where it is (cgroup.freeze) and waits
// until the kernel says g is frozen (cgroup.events), up to ctx's
// deadline or 10s. Unlike SIGSTOP, a frozen process cannot tell, and its
// children are frozen too.
func (g Group) Freeze(ctx context.Context) error { return g.setFrozen(ctx, true) }

// Thaw undoes Freeze.
func (g Group) Thaw(ctx context.Context) error { return g.setFrozen(ctx, false) }

func (g Group) setFrozen(ctx context.Context, on bool) error {
	v, want := "0", 0
	if on {
		v, want = "1", 1
	}
	if err := write(g.Path, "cgroup.freeze", v); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if !poll(ctx, deadline, func() bool { n, ok := g.events("frozen"); return ok && n == want }) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("cgroup %s: not %s within 10s", g.Path, map[bool]string{true: "frozen", false: "thawed"}[on])
	}
	return nil
}

// Frozen reports whether g is frozen.
func (g Group) Frozen() bool {
	n, ok := g.events("frozen")
	return ok && n == 1
}

// Remove kills what is left in g, waits for it to be empty (up to 10s)
// and removes its directories, and its project's (RemoveParents) when
// they are empty then. Removing a g that is gone succeeds.
func (g Group) Remove() error { return g.RemoveContext(context.Background()) }

// RemoveContext is Remove that gives up waiting for g to be empty once
// ctx is done.
func (g Group) RemoveContext(ctx context.Context) error {
	err := g.RemoveLeavingParent(ctx)
	g.RemoveParents()
	return err
}

// RemoveLeavingParent is RemoveContext that does not try to remove the
// project directory: for a caller that knows another daemon's cgroup is
// still in it (each try is an rmdir that fails with EBUSY, under the
// kernel's cgroup mutex, at every stop of a thousand), or that counts
// them (the process runtime: RemoveParents with the last).
func (g Group) RemoveLeavingParent(ctx context.Context) error {
	if g.Path == "" {
		return nil
	}
	// Most often g is empty by now: one rmdir, and cgroup.events only
	// when that finds it busy.
	first := unix.Rmdir(g.Path)
	gone := first == nil || errors.Is(first, unix.ENOENT)
	if !gone && g.Populated() {
		g.Kill()
		if !g.WaitEmpty(ctx, time.Now().Add(10*time.Second)) {
			return fmt.Errorf("cgroup %s: processes survived cgroup.kill", g.Path)
		}
	}
	var errs []error
	if !gone {
		if err := rmdir(g.Path); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range g.V1 {
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdir removes a cgroup directory, retrying a moment while the kernel
// still counts exited members (EBUSY).
func rmdir(d string) error {
	var err error
	for i := 0; i < 200; i++ {
		err = unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("cannot remove cgroup %s: %w", d, err)
}

// Usage is what g uses now.
type Usage struct {
	// Memory is the memory charged to g, in bytes (memory.current or the
	// v1 memory.usage_in_bytes); without a memory controller, the sum of
	// its processes' resident sets. 0 when unknown.
	Memory uint64
	// CPU is the CPU time g's processes have used since it was created.
	CPU time.Duration
}

// Usage reads g's memory and CPU use; ok is false when g is gone.
func (g Group) Usage() (u Usage, ok bool) {
	if !g.Exists() {
		return u, false
	}
	if n, err := readUint(filepath.Join(g.Path, "memory.current")); err == nil {
		u.Memory = n
	} else if d := g.V1["memory"]; d != "" {
		u.Memory, _ = readUint(filepath.Join(d, "memory.usage_in_bytes"))
	} else {
		u.Memory = rss(g.Procs())
	}
	if v, ok := readKey(filepath.Join(g.Path, "cpu.stat"), "usage_usec"); ok {
		u.CPU = time.Duration(v) * time.Microsecond
	}
	return u, true
}

// OOMKills is how many processes the kernel killed in g for being over
// its memory limit (memory.events oom_kill, or the v1 memory.oom_control).
func (g Group) OOMKills() uint64 {
	if v, ok := readKey(filepath.Join(g.Path, "memory.events"), "oom_kill"); ok {
		return v
	}
	if d := g.V1["memory"]; d != "" {
		v, _ := readKey(filepath.Join(d, "memory.oom_control"), "oom_kill")
		return v
	}
	return 0
}

func (g *Group) setV1(c, d string) {
	if g.V1 == nil {
		g.V1 = map[string]string{}
	}
	g.V1[c] = d
}

func readUint(p string) (uint64, error) {
	b, err := readFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

func readKey(p, key string) (uint64, bool) {
	b, err := readFile(p)
	if err != nil {
		return 0, false
	}
	v, ok := keyOf(b, key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

var pageSize = uint64(os.Getpagesize())

// rss sums the resident set sizes of pids (/proc/<pid>/statm).
func rss(pids []int) uint64 {
	var sum uint64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 1 {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			sum += n * pageSize
		}
	}
	return sum
}

// Sweep removes the empty cgroups below parent named prefix and 16 hex
// digits (a start's ID), except keep: those of earlier starts of a daemon that ended
// without a stop (it exited, and was started again), which nothing else
// would remove. A cgroup with processes in it stays.
func (h *Host) Sweep(parent, prefix string, keep Group) {
	if !h.Usable() {
		return
	}
	top := filepath.Join(h.Unified, parent)
	ents, err := os.ReadDir(top)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() || len(rest) != 16 || strings.Trim(rest, "0123456789abcdef") != "" || filepath.Join(top, e.Name()) == keep.Path {
			continue
		}
		g := Group{Path: filepath.Join(top, e.Name())}
		if g.Populated() {
			continue
		}
		if unix.Rmdir(g.Path) != nil {
			continue
		}
		for c, base := range h.V1 {
			if unix.Rmdir(filepath.Join(base, parent, e.Name())) == nil {
				g.setV1(c, "")
			}
		}
	}
}
