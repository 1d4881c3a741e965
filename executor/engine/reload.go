package engine

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fsnotify/fsnotify"
	"github.com/orch-dev/orch/spec"
)

// watchConfig watches the configuration directory (not its files: editors
// save by renaming a new file over the old one) until ctx is done. Only
// what the configuration reads counts (relevant): its *.hcl and
// *.hcl.json files, the -var-files, the files its functions read and the
// binaries it names; a log written next to it, or the state directory,
// never does. After DefaultDebounce of quiet following a change it reads
// the whole directory again and hands the result to the controller.
func (e *Engine) watchConfig(ctx context.Context) error {
	dir := e.opts.Dir
	if dir == "" {
		dir = e.cfg.Dir
	}
	before := inotifyFDs()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	wfd := newFD(before, inotifyFDs())
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	stateDir := filepath.Clean(e.opts.StateDir)
	dir = filepath.Clean(dir)
	e.sources.w = w
	e.watchSources(e.cfg, false)
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer e.closeWatcher(w, wfd)
		t := time.NewTimer(time.Hour)
		t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !e.relevant(ev.Name, dir, stateDir) {
					continue
				}
				t.Reset(e.opts.Debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				e.emit(Event{Type: EventError, Detail: "watching " + dir + ": " + err.Error()})
			case <-t.C:
				lr := e.load()
				e.post(func() { e.reloaded(lr) })
			}
		}
	}()
	return nil
}

// ignoredPath reports whether a change to name cannot change the
// configuration: the state directory, hidden files (.orch, .main.hcl.swp)
// and editor backups and probes (main.hcl~, #main.hcl#, vim's 4913).
func ignoredPath(name, stateDir string) bool {
	if c := filepath.Clean(name); c == stateDir || strings.HasPrefix(c, stateDir+string(filepath.Separator)) {
		return true
	}
	base := filepath.Base(name)
	switch {
	case strings.HasPrefix(base, "."), strings.HasPrefix(base, "#"), strings.HasSuffix(base, "~"),
		strings.HasSuffix(base, ".swp"), strings.HasSuffix(base, ".swx"), strings.HasSuffix(base, ".swo"),
		base == "4913":
		return true
	}
	return false
}

// relevant reports whether a change to name may change the configuration
// in dir: a configuration file of dir, or a file the configuration reads
// (watchSources).
func (e *Engine) relevant(name, dir, stateDir string) bool {
	c := filepath.Clean(name)
	if c == stateDir || strings.HasPrefix(c, stateDir+string(filepath.Separator)) {
		return false
	}
	if e.isSource(c) {
		return true
	}
	return filepath.Dir(c) == dir && !ignoredPath(c, stateDir) && spec.IsConfigFile(c)
}

// sources are the files the configuration reads besides its own *.hcl
// files: module sources and plugin executables (a rebuilt one is a change
// to apply), the -var-files, and the files its functions read
// (Config.Reads). Their directories are watched too.
type sources struct {
	mu    sync.Mutex
	w     *fsnotify.Watcher
	dirs  map[string]bool
	files map[string]bool
}

// watchSources watches what cfg reads outside its *.hcl files (from the
// controller, after each load). keep adds to what is watched already
// (after an invalid load, which may have read less than the valid one).
func (e *Engine) watchSources(cfg *spec.Config, keep bool) {
	if cfg == nil {
		return
	}
	files := map[string]bool{}
	for _, r := range cfg.Resources {
		if r.Source != "" {
			files[filepath.Clean(r.Source)] = true
		}
	}
	for _, rt := range cfg.Runtimes {
		if rt.Plugin != "" {
			files[filepath.Clean(rt.Plugin)] = true
		}
	}
	for _, name := range cfg.Reads {
		files[filepath.Join(cfg.Dir, filepath.FromSlash(name))] = true
	}
	for _, vf := range e.opts.VarFiles {
		if abs, err := filepath.Abs(vf.Name); err == nil {
			files[abs] = true
		}
	}
	for _, name := range e.opts.WatchFiles {
		if abs, err := filepath.Abs(name); err == nil {
			files[abs] = true
		}
	}
	s := &e.sources
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return
	}
	if keep {
		for f := range s.files {
			files[f] = true
		}
	}
	s.files = files
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	for f := range files {
		d := filepath.Dir(f)
		if s.dirs[d] {
			continue
		}
		// A directory that cannot be watched only loses hot reload of
		// what it holds; the next load tries again.
		if err := s.w.Add(d); err == nil {
			s.dirs[d] = true
		}
	}
}

func (e *Engine) isSource(name string) bool {
	e.sources.mu.Lock()
	defer e.sources.mu.Unlock()
	return e.sources.files[filepath.Clean(name)]
}

// closeWatcher closes the configuration's watcher, whose inotify instance
// is descriptor fd (-1: unknown). The last close of an inotify instance
// that ever watched something waits in the kernel for an SRCU grace
// period (its marks are freed only after one): 0 to 24 ms here, measured
// on a bare inotify descriptor, and it held orch up's exit just as long
// after a stop that took 12 ms (the process's own exit waits for it
// too). So a copy goes to Options.CloseLater first: this close is then
// not the last one, and returns at once, and the wait falls on whoever
// holds the copy (the log daemon, which nobody waits for).
func (e *Engine) closeWatcher(w *fsnotify.Watcher, fd int) {
	if fd >= 0 && e.opts.CloseLater != nil {
		if dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			e.opts.CloseLater(dup) // failed: w's close below is the last
			unix.Close(dup)
		}
	}
	w.Close()
}

// inotifyFDs lists this process's inotify descriptors (from
// /proc/self/fd), to tell which one a new fsnotify watcher holds: fsnotify
// does not say.
func inotifyFDs() map[int]bool {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := map[int]bool{}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + ent.Name()); err == nil && l == "anon_inode:inotify" {
			out[fd] = true
		}
	}
	return out
}

// newFD is the one descriptor of after that before lacks; -1 when there
// is not exactly one (another goroutine opened one meanwhile: not told
// apart, and not handed on).
func newFD(before, after map[int]bool) int {
	fd := -1
	for d := range after {
		if !before[d] {
			if fd >= 0 {
				return -1
			}
			fd = d
		}
	}
	return fd
}
