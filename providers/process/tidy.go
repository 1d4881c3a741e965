package process

import (
	"context"
	"errors"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/cgroup"
)

// laterTidy is what TidyLater collects: the cgroups of the daemons its
// stops ended, by project directory, for flush to hand to the log daemon
// (or to remove itself). Guarded by Provider.mu.
type laterTidy struct {
	stateDir string
	dirs     map[string][]string // project cgroup directory -> daemon cgroup names
	last     map[string]bool     // project directories whose last cgroup is among them
	gone     map[string][]byte   // logs directory -> its registry's "gone" lines (Delete)
}

// tidyBatch bounds the bytes of names in one "tidy" request to the log
// daemon, which reads a request of at most 4 KB (a daemon's cgroup name
// is about 30 bytes, at most 255).
const tidyBatch = 3 << 10

// TidyLater (providers.LaterTidier) leaves the removal of the empty
// cgroups of the daemons the following Stops end to the log daemon of
// stateDir, which removes them once this process has exited (its
// connection to it ends). The kernel removes cgroups one at a time,
// 30-100 us each: in orch up's stop of 1,000 daemons they were 17% of
// orch's CPU after its last daemon was gone (perf). When something still
// runs in the project's cgroup (a grandchild that left its daemon's
// process group), flush kills and removes each cgroup itself, as Stop
// does without TidyLater: once flush has returned, nothing the stops
// ended runs.
//
// A Delete under TidyLater queues its registry line ("gone") instead of
// writing it: flush writes them, one append per registry (each Delete
// waited for its own append, batched with those that came meanwhile:
// 15% of orch's CPU after the last daemon of 1,000 was gone, perf).
// Until flush, Adopt may still find the deleted daemons in the registry,
// and finds them not running.
//
// flush sends what was collected and turns TidyLater off. With no log
// daemon to take them (it was killed, or is an older orch's that knows no
// "tidy"), it removes them itself, before it returns. An orch killed
// before flush leaves the collected cgroups empty where they are; the
// next start of each daemon sweeps its own (staleCgroups).
func (p *Provider) TidyLater(stateDir string) (flush func() error) {
	p.mu.Lock()
	if p.tidy == nil {
		p.tidy = &laterTidy{stateDir: stateDir, dirs: map[string][]string{}, last: map[string]bool{}, gone: map[string][]byte{}}
		p.tidying.Store(true)
	}
	p.mu.Unlock()
	return p.flushTidy
}

// tidyLater takes g, the cgroup of a daemon whose process group is gone,
// to remove later, when TidyLater is on; false: the caller removes it
// (endCgroup). Whether g still holds a process is not read here (a read
// of its cgroup.events cost as much as its removal): flush reads it once
// for the whole project.
func (p *Provider) tidyLater(g *cgroup.Group) bool {
	if g == nil || g.Path == "" || len(g.V1) > 0 || !p.tidying.Load() {
		return false
	}
	dir, name := filepath.Dir(g.Path), filepath.Base(g.Path)
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tidy
	if t == nil {
		return false
	}
	t.dirs[dir] = append(t.dirs[dir], name)
	if p.countOutLocked(dir) <= 0 {
		t.last[dir] = true
	}
	return true
}

// tidyGone queues the registry line e of the registry in dir while
// TidyLater is on; false: the caller writes it.
func (p *Provider) tidyGone(dir string, e regEntry) bool {
	if !p.tidying.Load() {
		return false
	}
	line, err := e.line()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tidy
	if t == nil {
		return false
	}
	t.gone[dir] = append(t.gone[dir], line...)
	return true
}

func (p *Provider) flushTidy() error {
	p.mu.Lock()
	t := p.tidy
	p.tidy = nil
	p.tidying.Store(false)
	p.mu.Unlock()
	if t == nil {
		return nil
	}
	var errs []error
	for dir, lines := range t.gone {
		if err := appendRegistryLines(dir, lines); err != nil {
			errs = append(errs, err)
		}
	}
	p.flushCgroups(t)
	return errors.Join(errs...)
}

// flushCgroups hands the collected cgroups to the log daemon, or removes
// them (flushTidy).
func (p *Provider) flushCgroups(t *laterTidy) {
	if len(t.dirs) == 0 {
		return
	}
	dirs := make([]string, 0, len(t.dirs))
	for d := range t.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	conn := p.logdConn(filepath.Join(t.stateDir, "logs"))
	for _, dir := range dirs {
		names := t.dirs[dir]
		if (cgroup.Group{Path: dir}).Populated() {
			// Something still runs in the project's cgroup: a process a
			// daemon left outside its process group (or a daemon this
			// stop did not end). Each cgroup is removed here, killing
			// what is left in it first, as Stop does without TidyLater.
			for _, n := range names {
				g := cgroup.Group{Path: filepath.Join(dir, n)}
				g.RemoveLeavingParent(context.Background())
			}
			if t.last[dir] {
				unix.Rmdir(dir)
			}
			continue
		}
		for len(names) > 0 {
			var batch []string
			batch, names = tidyBatchOf(names)
			m := logdMsg{Op: "tidy", Name: dir, Dirs: batch, Parent: len(names) == 0 && t.last[dir]}
			if err := conn.request(m, -1, p.opts.LogdStartTimeout); err != nil {
				// Not handed over: removed here, now.
				cgroup.RemoveEmpty(dir, batch, m.Parent)
			}
		}
	}
}

// tidyBatchOf splits off the first names that fit in one request
// (tidyBatch bytes, at least one name).
func tidyBatchOf(names []string) (batch, rest []string) {
	k, size := 0, 0
	for k < len(names) && (k == 0 || size+len(names[k])+3 <= tidyBatch) {
		size += len(names[k]) + 3 // quoted, and a comma
		k++
	}
	return names[:k], names[k:]
}
