package module

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/orch-dev/orch/providers/logfile"
	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
)

// FileLog writes what modules log to one file per module, a line per
// record: "2006-01-02T15:04:05.000Z07:00 level message". orch logs reads
// these files as it reads the daemons' ones. A file is rotated as the
// daemons' logs are: past MaxSize bytes it becomes <path>.1 (<path>.1
// becomes <path>.2, and so on), and MaxFiles rotated files are kept.
type FileLog struct {
	path func(spec.Address) string
	// MaxSize and MaxFiles bound each module's log; NewFileLog sets them
	// to DefaultLogMaxSize and DefaultLogMaxFiles.
	MaxSize  int64
	MaxFiles int

	mu    sync.Mutex
	files map[spec.Address]*logFile
	now   func() time.Time
}

// Defaults of a FileLog, those of a daemon's log.
const (
	DefaultLogMaxSize  = logfile.DefaultMaxSize
	DefaultLogMaxFiles = logfile.DefaultMaxFiles
)

type logFile struct {
	f    *os.File
	size int64
}

// NewFileLog returns a sink writing the log of addr to path(addr).
func NewFileLog(path func(spec.Address) string) *FileLog {
	return &FileLog{path: path, files: map[spec.Address]*logFile{}, now: time.Now,
		MaxSize: DefaultLogMaxSize, MaxFiles: DefaultLogMaxFiles}
}

// Write appends r to its module's file. A file that cannot be written is
// reported on stderr once per record, and the record is lost.
func (l *FileLog) Write(r Record) {
	msg := strings.TrimRight(r.Message, "\n")
	line := l.now().Format("2006-01-02T15:04:05.000Z07:00") + " " + r.Level.String() + " " + msg + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	lf := l.files[r.Addr]
	p := l.path(r.Addr)
	if lf != nil && l.MaxSize > 0 && lf.size > 0 && lf.size+int64(len(line)) > l.MaxSize {
		lf.f.Close()
		delete(l.files, r.Addr)
		lf = nil
		logfile.Rotate(p, l.MaxFiles)
	}
	if lf == nil {
		// The directory and the file must be orch's own (providers/owned):
		// another user who may write them could forge what orch logs
		// shows.
		if err := owned.Dir(filepath.Dir(p)); err != nil {
			fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
			return
		}
		f, err := owned.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND)
		if err != nil {
			fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
			return
		}
		lf = &logFile{f: f}
		if fi, err := f.Stat(); err == nil {
			lf.size = fi.Size()
		}
		l.files[r.Addr] = lf
	}
	n, err := lf.f.WriteString(line)
	lf.size += int64(n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch: %s: log: %v\n", r.Addr, err)
	}
}

// Close closes every file.
func (l *FileLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, lf := range l.files {
		lf.f.Close()
		delete(l.files, a)
	}
}
