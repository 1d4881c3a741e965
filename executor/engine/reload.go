package engine

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/orch-dev/orch/spec"
)

// watchConfig watches the configuration directory (not its files: editors
// save by renaming a new file over the old one) until ctx is done. After
// DefaultDebounce of quiet following a change it reads the whole
// directory again and hands the result to the controller.
func (e *Engine) watchConfig(ctx context.Context) error {
	dir := e.opts.Dir
	if dir == "" {
		dir = e.cfg.Dir
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	stateDir := filepath.Clean(e.opts.StateDir)
	dir = filepath.Clean(dir)
	e.sources.w = w
	e.watchSources(e.cfg)
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer w.Close()
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
				if ignoredPath(ev.Name, stateDir) || filepath.Dir(filepath.Clean(ev.Name)) != dir && !e.isSource(ev.Name) {
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

// sources are the binaries the configuration names outside its own
// directory's files (module sources, plugin executables): a rebuilt one is
// a change to apply, so their directories are watched too.
type sources struct {
	mu    sync.Mutex
	w     *fsnotify.Watcher
	dirs  map[string]bool
	files map[string]bool
}

// watchSources watches the directories of cfg's module sources and plugin
// executables (from the controller, after each load).
func (e *Engine) watchSources(cfg *spec.Config) {
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
	s := &e.sources
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return
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
