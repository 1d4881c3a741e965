package engine

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
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
				if ignoredPath(ev.Name, stateDir) {
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
