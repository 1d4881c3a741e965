package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/notify"
	"github.com/orch-dev/orch/spec"
)

// Containment says how this Provider holds its daemons: in cgroups of
// their own ("cgroup v2", or "cgroup v2 with v1 controllers (hybrid
// host)"), or in process groups only, and why ("process groups (no
// writable cgroup: ...)"). orch status shows it when it is the fallback.
func (p *Provider) Containment() string {
	if p.cg == nil {
		return "process groups (cgroups turned off)"
	}
	return p.cg.Mode()
}

// Contained reports whether new daemons get cgroups of their own.
func (p *Provider) Contained() bool { return p.cg.Usable() }

// projectGroup names a project's cgroup below orch's: the project's name,
// made safe, and a hash of its state directory, so that two projects of
// one name in two directories keep apart.
func projectGroup(project, stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	name := "orch"
	if project != "" {
		name += "-" + strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
				return r
			}
			return '_'
		}, project)
	}
	if len(name) > 100 {
		name = name[:100]
	}
	return name + "-" + hex.EncodeToString(sum[:4])
}

// noCgroup is what a start does without cgroups: none is set when
// this Provider makes none, and err then says why limits l cannot be
// enforced (nil without limits).
func (p *Provider) noCgroup(addr spec.Address, l cgroup.Limits) (err error, none bool) {
	if p.cg.Usable() {
		return nil, false
	}
	if !l.IsZero() {
		why := "cgroups are turned off"
		if p.cg != nil {
			why = p.cg.Check(l).Error()
		}
		return attrErr(addr, "resources", fmt.Errorf("%s", why)), true
	}
	return nil, true
}

// planCgroup is the cgroup makeCgroup will make for this start, named
// before anything is made (Host.Plan): nil when the host gives none and
// limits are zero. Limits without a cgroup to enforce them are an error
// naming the daemon and the attribute.
func (p *Provider) planCgroup(addr spec.Address, project, stateDir, name, id string, l cgroup.Limits) (*cgroup.Group, error) {
	if err, none := p.noCgroup(addr, l); none {
		return nil, err
	}
	if err := p.cg.Check(l); err != nil {
		return nil, attrErr(addr, "resources", err)
	}
	g, err := p.cg.Plan(projectGroup(project, stateDir), name+"."+id, l)
	if err != nil {
		return nil, startErr(addr, false, "%w", err)
	}
	return &g, nil
}

// makeCgroup makes the cgroup that planCgroup planned for a daemon about
// to start (name is its file name, id its start's); called only when it
// planned one, whose checks it does not repeat (Host.Create's own do).
func (p *Provider) makeCgroup(addr spec.Address, project, stateDir, name, id string, l cgroup.Limits) (*cgroup.Group, error) {
	parent := projectGroup(project, stateDir)
	stale := p.staleCgroups(parent, name)
	g, err := p.cg.Create(parent, name+"."+id, l)
	if err != nil {
		if !l.IsZero() {
			return nil, attrErr(addr, "resources", err)
		}
		return nil, startErr(addr, true, "%w", err)
	}
	if stale {
		p.cg.Sweep(parent, name+".", g)
	}
	p.mu.Lock()
	if p.cgLive == nil {
		p.cgLive = map[string]int{}
	}
	p.cgLive[filepath.Dir(g.Path)]++
	p.mu.Unlock()
	return &g, nil
}

// removeCgroup removes g (killing what is left in it first), and its
// project directory unless a cgroup this Provider made there and has not
// removed yet is still in it. The count is only a hint: a cgroup removed
// twice counts down twice, and then the project directory is tried more
// often than needed, which is harmless (EBUSY).
func (p *Provider) removeCgroup(ctx context.Context, g *cgroup.Group) error {
	// Removed, then counted out: counted out first, the last of two
	// concurrent removals could find the project's cgroup still holding
	// the other's, and leave it behind empty for good.
	err := g.RemoveLeavingParent(ctx)
	p.removedCgroup(g)
	return err
}

// releaseCgroup counts g out of its project's cgroups and returns how
// many are left there.
func (p *Provider) releaseCgroup(g *cgroup.Group) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.countOutLocked(filepath.Dir(g.Path))
}

// countOutLocked counts one cgroup out of the project directory dir and
// returns how many are left there; mu held.
func (p *Provider) countOutLocked(dir string) int {
	n := p.cgLive[dir] - 1
	if n > 0 {
		p.cgLive[dir] = n
	} else {
		delete(p.cgLive, dir)
	}
	return n
}

// removedCgroup counts out g, removed already (by removeCgroup, or as its
// daemon was reaped: child.cgGone): the project's directories go with the
// last of them.
func (p *Provider) removedCgroup(g *cgroup.Group) {
	if p.releaseCgroup(g) <= 0 {
		g.RemoveParents()
	}
}

// cgList is the names that had cgroups in a project's cgroup when this
// Provider first started something there.
type cgList struct {
	once  sync.Once
	names map[string]bool // guarded by Provider.mu after once
}

// staleCgroups reports whether name may have cgroups of earlier starts
// to sweep in parent: it had one when this Provider first looked, and no
// start of it here has swept since. The project's cgroup is listed once
// per Provider, not at every start (10,000 starts read a directory of up
// to 10,000 entries each: half of the CPU of orch apply at 3,000 daemons,
// issue 19). The cgroups of this Provider's own starts are its children's,
// removed when they end or are stopped.
func (p *Provider) staleCgroups(parent, name string) bool {
	p.mu.Lock()
	l := p.cgLists[parent]
	if l == nil {
		l = &cgList{}
		p.cgLists[parent] = l
	}
	p.mu.Unlock()
	l.once.Do(func() {
		names := map[string]bool{}
		ents, _ := os.ReadDir(filepath.Join(p.cg.Unified, parent))
		for _, e := range ents {
			// name.<16 hex digits>: a start's cgroup
			n := e.Name()
			if len(n) > 17 && n[len(n)-17] == '.' && strings.Trim(n[len(n)-16:], "0123456789abcdef") == "" {
				names[n[:len(n)-17]] = true
			}
		}
		p.mu.Lock()
		l.names = names
		p.mu.Unlock()
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	had := l.names[name]
	delete(l.names, name)
	return had
}

// endCgroup kills what is left in a stopped daemon's cgroup (a grandchild
// that left its session and process group), waits for it to be empty and
// removes it.
func (p *Provider) endCgroup(ctx context.Context, addr spec.Address, g *cgroup.Group) error {
	if g == nil {
		return nil
	}
	// Remove kills what is left (cgroup.kill) and waits for it first.
	if err := p.removeCgroup(ctx, g); err != nil {
		return &providers.Error{Op: "stop", Retryable: true, Err: fmt.Errorf("%s: %w", addr, err)}
	}
	return nil
}

// oomReason says how a daemon that ended was killed for memory, from its
// cgroup's OOM count; "" when it was not.
func oomReason(oomKills uint64, obs providers.Observed) string {
	if oomKills == 0 || obs.Signal != "SIGKILL" {
		return ""
	}
	return "out of memory: the kernel killed it over its memory_max"
}

// usage fills obs with the memory and CPU use of a running daemon's
// cgroup.
func usage(hi HandleInfo, obs *providers.Observed) {
	if hi.Cgroup == nil || obs.State != providers.StateRunning {
		return
	}
	if u, ok := hi.Cgroup.Usage(); ok {
		obs.Memory, obs.CPU = u.Memory, u.CPU
	}
}

// notifySocket binds (or takes again) the notify socket of addr and
// forgets what an earlier instance said on it: the instance about to
// start announces itself. The Provider holds it as long as it lives (one
// per address), so that an orch apply's daemons are heard until it exits.
func (p *Provider) notifySocket(stateDir string, addr spec.Address) (*notify.Socket, error) {
	path, err := notify.Path(stateDir, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sock := p.notify[path]
	if sock == nil {
		if sock, err = notify.Listen(path); err != nil {
			return nil, err
		}
		p.notify[path] = sock
	}
	sock.Reset()
	return sock, nil
}

// says is the last STATUS= of daemon addr on its notify socket, when this
// orch process listens there (it started the daemon, or its engine
// follows it).
func (p *Provider) says(addr spec.Address, h providers.Handle) string {
	if !notify.Bound() {
		return "" // no socket here to say anything (orch plan)
	}
	hi, err := ParseHandle(h)
	if err != nil || hi.Log == "" {
		return ""
	}
	path, err := notify.Path(filepath.Dir(filepath.Dir(hi.Log)), addr)
	if err != nil {
		return ""
	}
	if s := notify.Lookup(path); s != nil {
		st, _ := s.State()
		return st.Status
	}
	return ""
}
