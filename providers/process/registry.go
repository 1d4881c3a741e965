package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// The registry is one file per logs directory, <state>/logs/logd.registry:
// a journal of JSON lines, one per daemon start, rotation update or
// deletion, where the last line of a name wins. It replaces a sidecar
// file per daemon: creating a file is the dearest step of a start on some
// file systems (ext4 without a journal scans the recently deleted inodes of
// its group on every creation, about 0.7 ms each once a few thousand files
// were removed), while appending a line to a file that exists costs a few
// microseconds.
//
// Writers append whole lines with one write(2) on an O_APPEND descriptor
// under a shared flock, so concurrent writers (several orch processes on
// one directory) never interleave. Compaction rewrites the file with the
// live entries only, under an exclusive flock, through a temporary file
// and a rename; a writer that locked the replaced file sees that the path
// names another file now and appends to the new one.
const registryName = "logd.registry"

// regEntry is one line of the registry.
type regEntry struct {
	Name string `json:"name"` // FileName(address)
	logConf
	// Pipe is the inode (in pipefs) of the pipe the daemon writes its
	// stdout and stderr to: a log daemon started after the one that
	// served it finds it again as /proc/<pid>/fd/1.
	Pipe uint64 `json:"pipe,omitempty"`
	// Gone deletes the entry of the same name and handle (Provider.Delete):
	// a deletion never removes the entry of a newer instance.
	Gone bool `json:"gone,omitempty"`
}

// registryCompactMin is the size below which the registry is never
// compacted.
const registryCompactMin = 256 << 10

// compacted remembers, per registry path, its size after the last
// compaction this process did or decided against: the next one waits until
// the file has doubled, so compaction costs O(1) amortized per line.
var compacted sync.Map // path -> int64

// appendRegistry appends e to the registry of dir.
func appendRegistry(dir string, e regEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	path := filepath.Join(dir, registryName)
	v, _ := appenders.LoadOrStore(path, &appender{})
	a := v.(*appender)
	a.mu.Lock()
	size, err := a.append(path, line)
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("registry %s: %w", path, err)
	}
	if size >= registryCompactMin {
		last, _ := compacted.Load(path)
		if l, _ := last.(int64); size >= 2*l {
			compactRegistry(path)
		}
	}
	return nil
}

// appender keeps a registry open for appending between appends (an open
// and a close fewer per start).
type appender struct {
	mu sync.Mutex
	f  *os.File
}

var appenders sync.Map // registry path -> *appender

// append appends line under a shared flock and returns the file's size
// after it. A file that a compaction replaced (no link left) is let go and
// the one at path opened.
func (a *appender) append(path string, line []byte) (int64, error) {
	for range 100 {
		if a.f == nil {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return 0, err
			}
			a.f = f
		}
		fd := int(a.f.Fd())
		if err := flockRetry(fd, unix.LOCK_SH); err != nil {
			return 0, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Nlink > 0 {
			_, err := a.f.Write(line) // one write: appends do not interleave
			size := st.Size + int64(len(line))
			unix.Flock(fd, unix.LOCK_UN)
			return size, err
		}
		unix.Flock(fd, unix.LOCK_UN)
		a.f.Close()
		a.f = nil
	}
	return 0, fmt.Errorf("%s keeps being replaced", path)
}

// lockedRegistry opens the registry at path, flocks it (how) and makes sure
// the descriptor still names the file at path (a compaction may have
// replaced it between the open and the lock).
func lockedRegistry(path string, how, flag int) (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, err
		}
		if err := flockRetry(int(f.Fd()), how); err != nil {
			f.Close()
			return nil, err
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(path, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("%s keeps being replaced", path)
}

// compactRegistry rewrites the registry at path with its live entries
// only, if that saves at least half of it. Best effort: an error leaves
// the file as it was.
func compactRegistry(path string) {
	f, err := lockedRegistry(path, unix.LOCK_EX, os.O_RDONLY)
	if err != nil {
		return
	}
	defer f.Close() // after the rename: writers waiting on the old file retry
	var data bytes.Buffer
	if _, err := data.ReadFrom(f); err != nil {
		return
	}
	live := parseRegistry(data.Bytes())
	var out bytes.Buffer
	for _, e := range sortedEntries(live) {
		b, err := json.Marshal(e)
		if err != nil {
			return
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	if int64(out.Len())*2 > int64(data.Len()) {
		compacted.Store(path, int64(data.Len())) // mostly live: not worth it yet
		return
	}
	if err := writeFileAtomic(path, out.Bytes(), 0o644); err != nil {
		return
	}
	compacted.Store(path, int64(out.Len()))
}

// readRegistry returns the live entries of the registry of dir by name;
// none when it does not exist. The map is the caller's.
func readRegistry(dir string) (map[string]regEntry, error) {
	b, err := os.ReadFile(filepath.Join(dir, registryName))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]regEntry{}, nil
	}
	if err != nil {
		return nil, err
	}
	live := map[string]regEntry{}
	replayRegistry(live, b)
	return live, nil
}

// regCache keeps a registry's live entries as of an offset in its file, so
// that a lookup reads only what was appended since: a thousand deletions
// read the file once, not a thousand times.
type regCache struct {
	mu      sync.Mutex
	dev     uint64
	ino     uint64
	offset  int64
	entries map[string]regEntry
}

var regCaches sync.Map // registry path -> *regCache

// registryEntry returns the live entry of name in the registry of dir, if
// any.
func registryEntry(dir, name string) (e regEntry, ok bool, err error) {
	err = withRegistry(dir, func(live map[string]regEntry) {
		e, ok = live[name]
	})
	return e, ok, err
}

// withRegistry calls fn with the live entries of the registry of dir (none
// when it does not exist), read through the cache: only the lines appended
// since the last call are parsed. fn must not keep the map.
func withRegistry(dir string, fn func(live map[string]regEntry)) error {
	path := filepath.Join(dir, registryName)
	v, _ := regCaches.LoadOrStore(path, &regCache{})
	c := v.(*regCache)
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		fn(map[string]regEntry{})
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if c.entries == nil || st.Ino != c.ino || uint64(st.Dev) != c.dev || st.Size < c.offset {
		// First use, or compacted (another file) since: from the start.
		c.dev, c.ino, c.offset, c.entries = uint64(st.Dev), st.Ino, 0, map[string]regEntry{}
	}
	if st.Size > c.offset {
		b := make([]byte, st.Size-c.offset)
		n, err := f.ReadAt(b, c.offset)
		if err != nil && n == 0 {
			return err
		}
		// Whole lines only: a line being written is read next time.
		n = bytes.LastIndexByte(b[:n], '\n') + 1
		replayRegistry(c.entries, b[:n])
		c.offset += int64(n)
	}
	fn(c.entries)
	return nil
}

// parseRegistry replays the lines of a registry.
func parseRegistry(b []byte) map[string]regEntry {
	live := map[string]regEntry{}
	replayRegistry(live, b)
	return live
}

// replayRegistry applies the lines of b to live. A line that does not
// parse (a writer cut off mid-line by a crash) is skipped.
func replayRegistry(live map[string]regEntry, b []byte) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		var e regEntry
		if err := json.Unmarshal(line, &e); err != nil || e.Name == "" {
			continue
		}
		if e.Gone {
			if cur, ok := live[e.Name]; ok && bytes.Equal(cur.Handle, e.Handle) {
				delete(live, e.Name)
			}
		} else {
			live[e.Name] = e
		}
	}
}

func sortedEntries(m map[string]regEntry) []regEntry {
	out := make([]regEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
