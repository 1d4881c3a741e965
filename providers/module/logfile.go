package module

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/orch-dev/orch/spec"
)

// FileLog writes what modules log to one file per module, a line per
// record: "2006-01-02T15:04:05.000Z07:00 level message". orch logs reads
// these files as it reads the daemons' ones.
type FileLog struct {
	path func(spec.Address) string

	mu    sync.Mutex
	files map[spec.Address]*os.File
	now   func() time.Time
}

// NewFileLog returns a sink writing the log of addr to path(addr).
func NewFileLog(path func(spec.Address) string) *FileLog {
	return &FileLog{path: path, files: map[spec.Address]*os.File{}, now: time.Now}
}

// Write appends r to its module's file. A file that cannot be written is
// reported on stderr once per record, and the record is lost.
func (l *FileLog) Write(r Record) {
	msg := strings.TrimRight(r.Message, "\n")
	line := l.now().Format("2006-01-02T15:04:05.000Z07:00") + " " + r.Level.String() + " " + msg + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.files[r.Addr]
	if f == nil {
		p := l.path(r.Addr)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
			return
		}
		var err error
		if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
			return
		}
		l.files[r.Addr] = f
	}
	if _, err := f.WriteString(line); err != nil {
		fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
	}
}

// Close closes every file.
func (l *FileLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, f := range l.files {
		f.Close()
		delete(l.files, a)
	}
}
