package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"sort"
	"sync"
)

// readsFS is the file system the configuration's functions (file,
// templatefile, fileexists, ...) read the configuration directory
// through: it notes each name they open, so that the content of those
// files is part of Config.Hash. An edit of a file read with file() is then
// a changed configuration (orch up plans it), not a touch.
type readsFS struct {
	fs.FS
	mu    sync.Mutex
	names map[string]bool
}

func newReadsFS(fsys fs.FS) *readsFS { return &readsFS{FS: fsys, names: map[string]bool{}} }

func (r *readsFS) Open(name string) (fs.File, error) {
	r.mu.Lock()
	r.names[name] = true
	r.mu.Unlock()
	return r.FS.Open(name)
}

// Names returns the names opened, sorted.
func (r *readsFS) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// hashReads folds the names and contents of the files the functions read
// into Config.Hash, and lists them in Config.Reads (the engine watches
// them). A file that could not be read counts by its name alone.
func (l *loader) hashReads() {
	if l.reads == nil {
		return
	}
	names := l.reads.Names()
	if len(names) == 0 {
		return
	}
	h := sha256.New()
	h.Write([]byte(l.cfg.Hash))
	for _, n := range names {
		h.Write([]byte{0})
		h.Write([]byte(n))
		h.Write([]byte{0})
		if b, err := fs.ReadFile(l.reads.FS, n); err == nil {
			s := sha256.Sum256(b)
			h.Write(s[:])
		}
	}
	l.cfg.Hash = hex.EncodeToString(h.Sum(nil))
	l.cfg.Reads = names
}
