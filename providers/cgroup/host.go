// Package cgroup gives each native daemon a control group of its own:
// created before the daemon runs (the daemon is forked into it), limited
// (memory, CPU, number of processes), frozen for a pause, killed as a
// whole at stop, read for memory and CPU use and for OOM kills, and
// removed with the daemon.
//
// The design is cgroup v2 (the unified hierarchy): membership, kill
// (cgroup.kill), freeze (cgroup.freeze), limits (memory.max, cpu.max,
// pids.max) and usage (memory.current, cpu.stat) all in one directory per
// daemon, below the cgroup orch itself runs in. On a hybrid host (cgroup
// v1 controllers mounted at /sys/fs/cgroup/<controller>, the unified
// hierarchy at /sys/fs/cgroup/unified without those controllers) the
// unified tree still carries membership, kill and freeze, and the limits,
// the OOM count and memory use come from the v1 controller of the same
// name, in a directory of the same relative path; the daemon joins those
// before it executes (the exec wrapper, 0orch/execwrap, writes their
// cgroup.procs). Where no
// writable cgroup exists, Detect says why and orch falls back to process
// groups.
//
// No library does this: the well-kept ones (containerd/cgroups, runc's
// libcontainer/cgroups) pick v1 or v2 for the whole host, and what is
// needed here is a few files written with numbers.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Limits are the resource limits of one daemon. The zero value limits
// nothing.
type Limits struct {
	MemoryMax uint64  // bytes; 0: no limit
	CPUMax    float64 // cores (0.5: half of one CPU); 0: no limit
	PidsMax   int64   // processes and threads; 0: no limit
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return l.MemoryMax == 0 && l.CPUMax == 0 && l.PidsMax == 0 }

// controllers lists the controllers l needs, by their v2 names.
func (l Limits) controllers() []string {
	var c []string
	if l.MemoryMax > 0 {
		c = append(c, "memory")
	}
	if l.CPUMax > 0 {
		c = append(c, "cpu")
	}
	if l.PidsMax > 0 {
		c = append(c, "pids")
	}
	return c
}

// Host is where this orch process can make cgroups.
type Host struct {
	// Unified is orch's own cgroup directory in the cgroup2 hierarchy
	// ("/sys/fs/cgroup/user.slice/..."); "" when there is none usable.
	Unified string
	// V1 maps a v1 controller ("memory", "cpu", "pids") to orch's own
	// directory in that controller's hierarchy, on a hybrid host.
	V1 map[string]string
	// v2 controllers available below Unified (its cgroup.controllers).
	v2 map[string]bool
	// Why says why there is no usable cgroup, when Unified is "".
	Why string

	selfMoved sync.Once
}

// Mode says in a few words how daemons are held: "cgroup v2",
// "cgroup v2 with v1 controllers (hybrid)", or the fallback and why.
func (h *Host) Mode() string {
	switch {
	case h.Unified == "":
		return "process groups (no writable cgroup: " + h.Why + ")"
	case len(h.V1) > 0:
		return "cgroup v2 with v1 controllers (hybrid host)"
	}
	return "cgroup v2"
}

// Usable reports whether daemons get cgroups.
func (h *Host) Usable() bool { return h != nil && h.Unified != "" }

var (
	detectOnce sync.Once
	detected   *Host
)

// Detect looks at this host's cgroup mounts and at orch's own cgroup once
// per process and returns the result (never nil).
func Detect() *Host {
	detectOnce.Do(func() { detected = detect("/proc/self/mountinfo", "/proc/self/cgroup") })
	return detected
}

// mount is one cgroup mount from mountinfo.
type mount struct {
	root, point string
	v2          bool
	controllers []string // v1: the controllers it carries
}

func detect(mountinfo, selfCgroup string) *Host {
	h := &Host{V1: map[string]string{}, v2: map[string]bool{}}
	mounts, err := readMounts(mountinfo)
	if err != nil {
		h.Why = err.Error()
		return h
	}
	own, err := readSelf(selfCgroup)
	if err != nil {
		h.Why = err.Error()
		return h
	}
	var v2 *mount
	for i := range mounts {
		if mounts[i].v2 && v2 == nil {
			v2 = &mounts[i]
		}
	}
	if v2 == nil {
		h.Why = "no cgroup2 file system is mounted"
		return h
	}
	rel, ok := own[""]
	if !ok {
		h.Why = "orch's own cgroup v2 path is not in /proc/self/cgroup"
		return h
	}
	dir, ok := under(*v2, rel)
	if !ok {
		h.Why = fmt.Sprintf("orch's cgroup %s is not visible in the cgroup2 mount at %s", rel, v2.point)
		return h
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		h.Why = fmt.Sprintf("%s is not writable: %v", dir, err)
		return h
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			h.v2[c] = true
		}
	}
	h.Unified = dir
	// A hybrid host: the controllers the unified tree lacks may be
	// mounted as v1 hierarchies.
	for _, m := range mounts {
		if m.v2 {
			continue
		}
		for _, c := range m.controllers {
			if c != "memory" && c != "cpu" && c != "pids" || h.v2[c] {
				continue
			}
			rel, ok := own[strings.Join(m.controllers, ",")]
			if !ok {
				continue
			}
			d, ok := under(m, rel)
			if !ok || unix.Access(d, unix.W_OK) != nil {
				continue
			}
			h.V1[c] = d
		}
	}
	return h
}

// under is the directory of cgroup path rel in mount m.
func under(m mount, rel string) (string, bool) {
	if m.root != "/" {
		if rel != m.root && !strings.HasPrefix(rel, m.root+"/") {
			return "", false
		}
		rel = strings.TrimPrefix(rel, m.root)
	}
	return filepath.Join(m.point, rel), true
}

func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 3 {
			continue
		}
		switch rf[0] {
		case "cgroup2":
			out = append(out, mount{root: unescape(lf[3]), point: unescape(lf[4]), v2: true})
		case "cgroup":
			m := mount{root: unescape(lf[3]), point: unescape(lf[4])}
			for _, o := range strings.Split(rf[2], ",") {
				switch o {
				case "memory", "cpu", "cpuacct", "pids", "freezer", "cpuset", "devices", "blkio", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc":
					m.controllers = append(m.controllers, o)
				}
			}
			if len(m.controllers) > 0 {
				out = append(out, m)
			}
		}
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readSelf maps each hierarchy of /proc/self/cgroup to orch's path in it:
// "" for the unified one, "memory" or "cpu,cpuacct" for v1 ones.
func readSelf(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		out[parts[1]] = parts[2]
	}
	if len(out) == 0 {
		return nil, errors.New("/proc/self/cgroup is empty")
	}
	return out, nil
}

// Check says whether l can be enforced here; the error names what is
// missing. No limits can always be "enforced".
func (h *Host) Check(l Limits) error {
	if l.IsZero() {
		return nil
	}
	if !h.Usable() {
		return fmt.Errorf("resource limits need a writable cgroup, and orch has none: %s", h.Why)
	}
	for _, c := range l.controllers() {
		if !h.v2[c] && h.V1[c] == "" {
			return fmt.Errorf("resource limits need the cgroup %s controller, which orch's cgroup %s does not offer (nor a writable v1 hierarchy)", c, h.Unified)
		}
	}
	return nil
}
