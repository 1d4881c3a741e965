package process

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/orch-dev/orch/spec/jsonscan"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/owned"
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
//
// A start writes two lines: a pending one before the fork (ID, name,
// configuration, pipe, starter; no handle yet) and, once the daemon runs,
// the committed one (ID, name and handle only, merged into the pending
// one when replayed). So a daemon never runs
// without a line naming it: an orch killed between the fork and the
// committed line leaves the pending one, and the next Adopt finds the
// daemon from it (by its pipe, see resolvePending). Lines are keyed by
// ID, so one address can have several instances (create before destroy,
// or a start cut short): Adopt adopts one and stops the others.
type regEntry struct {
	Name string `json:"name"` // FileName(address)
	// ID names one start: the committed line of a start replaces its
	// pending one, and a deletion names it. Lines of older orch versions
	// have none and are keyed by name (the last line of a name wins).
	ID string `json:"id,omitempty"`
	logConf
	// Pipe is the inode (in pipefs) of the pipe the daemon writes its
	// stdout and stderr to: a log daemon started after the one that
	// served it finds it again as /proc/<pid>/fd/1, and Adopt finds the
	// daemon of a pending start by it.
	Pipe uint64 `json:"pipe,omitempty"`
	// Pending marks the line written before the fork; the committed line
	// (with the handle) replaces it.
	Pending bool `json:"pending,omitempty"`
	// Cgroup is the daemon's cgroup, on the pending line: it is made
	// before the fork, and a pending start that Adopt resolves gets it
	// back in its handle (or removed, with what is in it).
	Cgroup *cgroup.Group `json:"cgroup,omitempty"`
	// By is the orch process that wrote the start: while it lives, its
	// start may be in flight and nobody else touches the instance.
	By *starter `json:"by,omitempty"`
	// Stop is how the instance is stopped should Adopt find it left over.
	StopSignal    string `json:"stop_signal,omitempty"`
	StopTimeoutMS int64  `json:"stop_timeout_ms,omitempty"`
	// Gone deletes the entry of the same ID (or, without an ID, of the
	// same name and handle): a deletion never removes another instance.
	Gone bool `json:"gone,omitempty"`

	seq int // order of first appearance, set by replay
}

// regOp is what a registry line does when the registry is replayed, in
// order (regEntry.op): the one reading of a line that every replay shares
// (the live entries, the summary, the compaction's count).
type regOp int

const (
	regSkip   regOp = iota // no name: nothing
	regGone                // deletes the entry of its key (by ID; without one, of its name and handle)
	regCommit              // the committed line of a pending start: its handle
	regPut                 // a start: the entry of its key, new or again
)

func (e *regEntry) op() regOp {
	switch {
	case e.Name == "":
		return regSkip
	case e.Gone:
		return regGone
	case e.ID != "" && e.Address == "":
		return regCommit
	}
	return regPut
}

// starter identifies an orch process: pid and start time (the boot is
// the handle's: after a reboot no instance runs anyway).
type starter struct {
	Pid        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
}

// key is the entry's key among the live ones.
func (e *regEntry) key() string {
	if e.ID != "" {
		return e.ID
	}
	return "~" + e.Name
}

// regLive is the live entries of a registry: every instance that was
// started (or is being started) and not deleted, by key, with an index by
// name in order of their starts.
type regLive struct {
	inst  map[string]regEntry
	names map[string][]string // name -> keys, oldest first
	seq   int
}

func newRegLive() *regLive {
	return &regLive{inst: map[string]regEntry{}, names: map[string][]string{}}
}

func (l *regLive) put(e regEntry) {
	k := e.key()
	if cur, ok := l.inst[k]; ok {
		e.seq = cur.seq
		if e.Name != cur.Name {
			l.dropName(cur.Name, k)
			l.names[e.Name] = append(l.names[e.Name], k)
		}
	} else {
		l.seq++
		e.seq = l.seq
		l.names[e.Name] = append(l.names[e.Name], k)
	}
	l.inst[k] = e
}

func (l *regLive) remove(k string) {
	cur, ok := l.inst[k]
	if !ok {
		return
	}
	delete(l.inst, k)
	l.dropName(cur.Name, k)
}

func (l *regLive) dropName(name, k string) {
	ks := l.names[name]
	for i, x := range ks {
		if x == k {
			ks = append(ks[:i:i], ks[i+1:]...)
			break
		}
	}
	if len(ks) == 0 {
		delete(l.names, name)
	} else {
		l.names[name] = ks
	}
}

// of returns the instances of name, oldest first (pending ones included).
func (l *regLive) of(name string) []regEntry {
	ks := l.names[name]
	out := make([]regEntry, 0, len(ks))
	for _, k := range ks {
		out = append(out, l.inst[k])
	}
	return out
}

// latest returns the newest committed instance of name.
func (l *regLive) latest(name string) (regEntry, bool) {
	ks := l.names[name]
	for i := len(ks) - 1; i >= 0; i-- {
		if e := l.inst[ks[i]]; !e.Pending {
			return e, true
		}
	}
	return regEntry{}, false
}

// withHandle returns the instance of name whose handle names the same
// process as hi.
func (l *regLive) withHandle(name string, hi HandleInfo) (regEntry, bool) {
	for _, k := range l.names[name] {
		e := l.inst[k]
		if e.Pending {
			continue
		}
		if o, err := ParseHandle(providers.Handle(e.Handle)); err == nil && o.Pid == hi.Pid && o.StartTicks == hi.StartTicks {
			return e, true
		}
	}
	return regEntry{}, false
}

// registryCompactMin is the size below which the registry is never
// compacted.
const registryCompactMin = 256 << 10

// compacted remembers, per registry path, its size after the last
// compaction this process or another did or decided against: the next one
// waits until the file has doubled, so compaction costs O(1) amortized per
// line. The size is also kept beside the registry (registryMarkSuffix), so
// that a new orch process does not compact a registry of 10,000 live
// daemons at its first append (a third of the CPU of an orch apply of one
// change at 10,000, issue 19).
var compacted sync.Map // path -> int64

// registryMarkSuffix names the file, beside the registry, that holds its
// size after its last compaction, in decimal.
const registryMarkSuffix = ".compacted"

// lastCompacted is the registry's size after its last compaction: as this
// process knows it, else as its mark file says, else 0.
func lastCompacted(path string) int64 {
	if v, ok := compacted.Load(path); ok {
		return v.(int64)
	}
	var n int64
	if b, err := os.ReadFile(path + registryMarkSuffix); err == nil {
		n, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	v, _ := compacted.LoadOrStore(path, max(n, 0))
	return v.(int64)
}

// markCompacted records the registry's size after a compaction.
func markCompacted(path string, size int64) {
	compacted.Store(path, size)
	writeFileAtomic(path+registryMarkSuffix, []byte(strconv.FormatInt(size, 10)+"\n"))
}

// appendRegistry appends e to the registry of dir. Lines appended at
// once by several goroutines are written together (appender.add): one
// lock, one write.
func appendRegistry(dir string, e regEntry) error {
	line, err := e.line()
	if err != nil {
		return err
	}
	return appendRegistryLines(dir, line)
}

// line is e as a registry line, newline included.
func (e regEntry) line() ([]byte, error) {
	b, err := json.Marshal(&e)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// appendRegistryLines appends lines (whole, newline-terminated) to the
// registry in dir, in one write.
func appendRegistryLines(dir string, line []byte) error {
	path := filepath.Join(dir, registryName)
	v, _ := appenders.LoadOrStore(path, &appender{})
	if err := v.(*appender).add(path, line); err != nil {
		var ue *owned.UntrustedError
		if errors.As(err, &ue) {
			return err
		}
		return fmt.Errorf("registry %s: %w", path, err)
	}
	return nil
}

// appender keeps a registry open for appending between appends (an open
// and a close fewer per start), and gathers the lines appended while a
// write is under way into the next write: a stop of 1,000 daemons
// appended their 1,000 gone lines one flock, fstat, write and unlock each
// (7.5% of orch up's CPU in that stop).
type appender struct {
	mu     sync.Mutex // guards f and writes; held by the goroutine writing a batch
	f      *os.File
	writes int // batches written (for tests)

	qmu     sync.Mutex // guards next and writing
	next    *regBatch  // the lines waiting for the next write
	writing bool       // a goroutine is writing batches

	// compacting is held while a compaction of this registry runs, from
	// the moment compactLater decides it until it has ended:
	// waitCompaction takes it to wait for one.
	compacting sync.Mutex
}

// regBatch is lines written together, and how their write went.
type regBatch struct {
	lines []byte
	done  chan struct{}
	err   error
}

var appenders sync.Map // registry path -> *appender

// compactions counts the compactions under way in this process
// (WaitRegistryCompactions).
var compactions sync.WaitGroup

// WaitRegistryCompactions returns once the registries' compactions that
// this process began have ended. orch calls it before it exits: a
// compaction cut short by the exit would leave its unfinished copy behind.
func WaitRegistryCompactions() { compactions.Wait() }

// add appends line to the registry at path and returns once it is
// written. The first caller to find no write under way writes, batch
// after batch, until none is waiting; the others wait for theirs. After
// each batch it has the registry compacted, when it has doubled since the
// last compaction, by a goroutine of its own (compactLater): the appends
// go on meanwhile, and no step waits for a compaction.
func (a *appender) add(path string, line []byte) error {
	a.qmu.Lock()
	b := a.next
	if b == nil {
		b = &regBatch{done: make(chan struct{})}
		a.next = b
	}
	b.lines = append(b.lines, line...)
	lead := !a.writing
	a.writing = true
	a.qmu.Unlock()
	if lead {
		for {
			a.qmu.Lock()
			cur := a.next
			a.next = nil
			if cur == nil {
				a.writing = false
				a.qmu.Unlock()
				break
			}
			a.qmu.Unlock()
			a.mu.Lock()
			size, err := a.append(path, cur.lines)
			a.writes++
			a.mu.Unlock()
			cur.err = err
			close(cur.done)
			if err == nil && compactionDue(path, size) {
				a.compactLater(path)
			}
		}
	}
	<-b.done
	return b.err
}

// compactLater compacts the registry at path on a goroutine of its own,
// unless one does already. A compaction on the path of the append that
// set it off held every other append of the process behind it, and so
// every step that writes a line: 5 ms at the end of a stop of 100 daemons,
// 11 ms of a stop of 1,000 (perf), and one at each doubling of the
// registry during an apply of 10,000.
func (a *appender) compactLater(path string) {
	if !a.compacting.TryLock() {
		return // one runs already
	}
	compactions.Add(1)
	go func() {
		defer compactions.Done()
		defer a.compacting.Unlock()
		// Again while what was appended during the last one makes it
		// due: the lines judged the last time came to less than half.
		for compactRegistry(path) {
			var st unix.Stat_t
			if unix.Stat(path, &st) != nil || !compactionDue(path, st.Size) {
				return
			}
		}
	}()
}

// waitCompaction returns once no compaction of the registry at path that
// this process began is under way.
func waitCompaction(path string) {
	if v, ok := appenders.Load(path); ok {
		a := v.(*appender)
		compactionAwaited()
		a.compacting.Lock()
		a.compacting.Unlock()
	}
}

// compactionAwaited is called as waitCompaction begins to wait (a test
// waits for it).
var compactionAwaited = func() {}

// compactionDue reports whether the registry at path, of size bytes, has
// doubled since its last compaction (and is worth one at all).
func compactionDue(path string, size int64) bool {
	return size >= registryCompactMin && size >= 2*lastCompacted(path)
}

// append appends line under a shared flock and returns the file's size
// after it. A file that a compaction replaced (no link left) is let go and
// the one at path opened. A registry orch may not trust (another user's,
// or writable by others) is refused.
func (a *appender) append(path string, line []byte) (int64, error) {
	for range 100 {
		if a.f == nil {
			f, err := owned.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
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
		f, err := owned.OpenFile(path, flag)
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
// only (pending starts, and instances whose process runs), if that saves
// at least half of it. Best effort: an error leaves
// the file as it was.
//
// Whether it saves half is known before anything is written
// (compactionSaves): a registry growing with starts (an apply of 10,000)
// is mostly live at every doubling; reading, decoding and encoding all of
// it only to throw it away was 108 of the 940 MB that apply allocated,
// and its peak of live heap (issue 19). When it does save half, the lines
// of the live entries are copied as they are, a line at a time, from the
// file to its replacement: reading the whole file, decoding every entry
// and encoding the live ones held 31 MB at the compaction of an apply of
// 10,000 after a destroy, the peak of that apply's live heap (issue 19).
// The copy replays as the file did: an entry's last put line, then the
// commit lines that followed it.
//
// The file is read and judged under a shared lock, beside the appends
// (which take it shared too), up to its last whole line then; only the
// copy takes it exclusively. The lines appended between the two follow
// the copied ones as they are: a line about an entry the copy dropped
// (ended or gone) finds nothing when replayed, as it would have found it
// ended. They are not judged: the size a compaction leaves for the next
// one to double (markCompacted) is that of the lines it kept. It reports
// whether it rewrote the file.
func compactRegistry(path string) (rewrote bool) {
	f, err := lockedRegistry(path, unix.LOCK_SH, os.O_RDONLY)
	if err != nil {
		return false
	}
	defer f.Close() // after the rename: writers waiting on the old file retry
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	judged := wholeLines(f, st.Size)
	keep, saves := compactionSaves(io.NewSectionReader(f, 0, judged), judged)
	if !saves {
		markCompacted(path, st.Size) // mostly live: not worth it yet
		return false
	}
	compactionJudged()
	// Shared to exclusive is not atomic (flock(2)): an append, or another
	// process's compaction, may come between. A file replaced meanwhile
	// is left to whoever replaced it.
	if flockRetry(int(f.Fd()), unix.LOCK_EX) != nil || unix.Fstat(int(f.Fd()), &st) != nil || st.Nlink == 0 {
		return false
	}
	// No appends from here on: they take a shared lock.
	var kept int64
	err = writeAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 64<<10)
		next := 0
		err := eachRegistryLine(io.NewSectionReader(f, 0, judged), func(i int, line []byte) error {
			if next >= len(keep) || keep[next] != i {
				return nil
			}
			next++
			kept += int64(len(line)) + 1
			bw.Write(line)
			return bw.WriteByte('\n')
		})
		if err != nil {
			return err
		}
		if next != len(keep) {
			return fmt.Errorf("%s: %d of %d kept lines found", path, next, len(keep))
		}
		if _, err := io.Copy(bw, io.NewSectionReader(f, judged, st.Size-judged)); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return false
	}
	markCompacted(path, kept)
	return true
}

// compactionJudged is called between a compaction's judgement and its
// copy (a test holds it there).
var compactionJudged = func() {}

// wholeLines is the length of the whole lines among the first size bytes
// of f: up to and with its last newline (0 when it has none). An append
// may be under way past it.
func wholeLines(f *os.File, size int64) int64 {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, _ := f.ReadAt(buf[:end-start], start)
		if n < int(end-start) {
			return 0
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1
		}
		end = start
	}
	return 0
}

// eachRegistryLine calls fn with each line of r (without its newline)
// and its index, a line at a time, however long. It stops at fn's first
// error, or r's.
func eachRegistryLine(r io.Reader, fn func(i int, line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than br's buffer, gathered
	for i := 0; ; {
		part, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, part...)
			continue
		}
		line := part
		if long != nil {
			line = append(long, part...)
			long = nil
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(part) > 0 || len(line) > 0 {
			if ferr := fn(i, line); ferr != nil {
				return ferr
			}
			i++
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// compactionSaves reads the registry f (of size bytes) a line at a time
// and reports whether its live entries (pending starts, instances whose
// process runs) come to less than half of it, and if so the indexes of
// their lines, in order: each live entry's last put line and the commit
// lines after it. It keeps a few bytes an entry, instead of the whole
// file and every entry decoded: at 10,000 live daemons the check that
// found the registry not worth compacting, at each of its doublings, held
// 18 MB, the peak of an apply's live heap (issue 19). A file it cannot
// read makes it say no.
func compactionSaves(f io.Reader, size int64) (keep []int, saves bool) {
	type entry struct {
		bytes   int64
		lines   []int // its last put line, then the commit lines after it
		pending bool
		pid     int    // 0: no handle, or one of another boot
		ticks   uint64 // the pid's start time
		handle  []byte // without an ID only (an older orch): its deletion names it
	}
	live := map[string]*entry{}
	setHandle := func(cur *entry, e *regEntry) {
		cur.pid, cur.ticks = 0, 0
		if hi, err := ParseHandle(providers.Handle(e.Handle)); err == nil && (hi.BootID == "" || hi.BootID == bootID()) {
			cur.pid, cur.ticks = hi.Pid, hi.StartTicks
		}
		if e.ID == "" {
			cur.handle = e.Handle
		}
	}
	in := interner{}
	err := eachRegistryLine(f, func(i int, line []byte) error {
		e, ok := parseRegLine(line, in)
		if !ok {
			e = regEntry{}
			if json.Unmarshal(line, &e) != nil {
				return nil // as replayRegistry skips it
			}
		}
		n := int64(len(line) + 1)
		switch e.op() {
		case regGone:
			if cur := live[e.key()]; cur != nil && (e.ID != "" || bytes.Equal(cur.handle, e.Handle)) {
				delete(live, e.key())
			}
		case regCommit:
			if cur := live[e.ID]; cur != nil {
				cur.bytes += n
				cur.lines = append(cur.lines, i)
				cur.pending = false
				setHandle(cur, &e)
			}
		case regPut:
			cur := live[e.key()]
			if cur == nil {
				cur = &entry{}
				live[e.key()] = cur
			}
			cur.bytes, cur.pending = n, e.Pending
			cur.lines = append(cur.lines[:0], i)
			setHandle(cur, &e)
		}
		return nil
	})
	if err != nil {
		return nil, false
	}
	var kept int64
	for _, e := range live {
		if e.pending || e.pid > 0 && pidRuns(e.pid, e.ticks) {
			if kept += e.bytes; kept*2 > size {
				return nil, false
			}
			keep = append(keep, e.lines...)
		}
	}
	slices.Sort(keep)
	return keep, true
}

// instanceRuns reports whether the process of a committed entry runs (a
// zombie does not).
func instanceRuns(e regEntry) bool {
	hi, err := ParseHandle(providers.Handle(e.Handle))
	if err != nil {
		return false
	}
	if hi.BootID != "" && hi.BootID != bootID() {
		return false
	}
	return pidRuns(hi.Pid, hi.StartTicks)
}

// pidRuns reports whether pid is the process that started at startTicks,
// and not a zombie.
func pidRuns(pid int, startTicks uint64) bool {
	st, ok := readStat(pid)
	return ok && st.StartTicks == startTicks && st.State != 'Z' && st.State != 'X'
}

func bootID() string { return hostBoot().bootID }

// readRegistry returns the live entries of the registry of dir; none when
// it does not exist. They are the caller's.
func readRegistry(dir string) (*regLive, error) {
	path := filepath.Join(dir, registryName)
	f, err := owned.OpenFile(path, os.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		return newRegLive(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return parseRegistry(b.Bytes()), nil
}

// registryEntry returns the newest committed entry of name in the registry
// of dir, if any.
func registryEntry(dir, name string) (e regEntry, ok bool, err error) {
	err = withRegistry(dir, func(live *regLive) {
		e, ok = live.latest(name)
	})
	return e, ok, err
}

// regCache keeps a registry's live entries as of an offset in its file, so
// that a lookup reads only what was appended since: a thousand deletions
// read the file once, not a thousand times.
type regCache struct {
	mu     sync.Mutex
	dev    uint64
	ino    uint64
	offset int64
	live   *regLive
}

var regCaches sync.Map // registry path -> *regCache

// ReleaseRegistryCaches lets go of the registries' live entries this
// process keeps (about 600 bytes a daemon): the next lookup reads the
// registry again. A one-shot command calls it once its refresh is done,
// so that they are not held while it plans (issue 19).
func ReleaseRegistryCaches() {
	regCaches.Range(func(k, v any) bool {
		c := v.(*regCache)
		c.mu.Lock()
		c.live, c.offset = nil, 0
		c.mu.Unlock()
		return true
	})
}

// WarmRegistry reads the registry of the daemons of stateDir into this
// process's cache, as Adopt would, so that a plan can replay it beside
// its other work (reading the state) instead of in its refresh: at
// 10,000 daemons the registry is 8 MB, 55-130 ms to replay. Adopt then
// reads only what was appended since. Nothing happens when the
// directory is not orch's own (Adopt says so).
func WarmRegistry(stateDir string) {
	logsDir := filepath.Join(stateDir, "logs")
	if owned.Check(logsDir) != nil || summaryCurrent(logsDir) {
		return // not ours; or Adopt reads the summary (regsummary.go)
	}
	withRegistry(logsDir, func(*regLive) {})
}

// withRegistry calls fn with the live entries of the registry of dir (none
// when it does not exist), read through the cache: only the lines appended
// since the last call are parsed. fn must not keep live, nor change it.
func withRegistry(dir string, fn func(live *regLive)) error {
	return withRegistryAt(dir, func(live *regLive, _, _ uint64, _ int64) { fn(live) })
}

// withRegistryAt is withRegistry that also tells fn which file (device,
// inode) live was read from, and up to which offset.
func withRegistryAt(dir string, fn func(live *regLive, dev, ino uint64, offset int64)) error {
	path := filepath.Join(dir, registryName)
	v, _ := regCaches.LoadOrStore(path, &regCache{})
	c := v.(*regCache)
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := owned.OpenFile(path, os.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		fn(newRegLive(), 0, 0, -1)
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
	if c.live == nil || st.Ino != c.ino || uint64(st.Dev) != c.dev || st.Size < c.offset {
		// First use, or compacted (another file) since: from the start.
		c.dev, c.ino, c.offset, c.live = uint64(st.Dev), st.Ino, 0, newRegLive()
	}
	if st.Size > c.offset {
		b := make([]byte, st.Size-c.offset)
		n, err := f.ReadAt(b, c.offset)
		if err != nil && n == 0 {
			return err
		}
		// Whole lines only: a line being written is read next time.
		n = bytes.LastIndexByte(b[:n], '\n') + 1
		replayRegistry(c.live, b[:n])
		c.offset += int64(n)
	}
	fn(c.live, c.dev, c.ino, c.offset)
	return nil
}

// parseRegistry replays the lines of a registry.
func parseRegistry(b []byte) *regLive {
	live := newRegLive()
	replayRegistry(live, b)
	return live
}

// replayRegistry applies the lines of b to live. A line that does not
// parse (a writer cut off mid-line by a crash) is skipped.
func replayRegistry(live *regLive, b []byte) {
	eachRegLine(b, func(e regEntry) {
		switch e.op() {
		case regGone:
			k := e.key()
			if cur, ok := live.inst[k]; ok && (e.ID != "" || bytes.Equal(cur.Handle, e.Handle)) {
				live.remove(k)
			}
		case regCommit:
			if cur, ok := live.inst[e.ID]; ok {
				cur.Handle, cur.Pending = e.Handle, false
				live.inst[e.ID] = cur
			}
		case regPut:
			live.put(e)
		}
	})
}

// eachRegLine calls fn with each entry of the registry lines b, in order.
// A line that does not parse (a writer cut off mid-line by a crash) is
// skipped.
func eachRegLine(b []byte, fn func(regEntry)) {
	in := interner{}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		e, ok := parseRegLine(line, in)
		if !ok {
			e = regEntry{}
			if err := json.Unmarshal(line, &e); err != nil {
				continue
			}
		}
		fn(e)
	}
}

// parseRegLine decodes the registry lines orch writes (json.Marshal of a
// regEntry: its keys, unsigned integers, strings of printable ASCII
// without escapes, a handle parseHandleFast reads, a cgroup with a path
// only) as json.Unmarshal would, without its reflection: replaying the
// registry of 10,000 daemons through encoding/json was a sixth of a
// no-op plan's CPU (issue 19). The strings most lines share (project,
// runtime, stop signal, an address that is the name) are shared through
// in. Anything else reports false, and the caller takes encoding/json's
// way.
func parseRegLine(b []byte, in interner) (regEntry, bool) {
	var e regEntry
	r := hreader{jsonscan.Reader{B: b}}
	if !r.Byte('{') {
		return e, false
	}
	if r.Byte('}') {
		return e, r.End()
	}
	for {
		key, ok := r.PlainStr()
		if !ok || !r.Byte(':') {
			return e, false
		}
		var n uint64
		switch key {
		case "name":
			e.Name, ok = r.PlainStr()
		case "id":
			e.ID, ok = r.PlainStr()
		case "address":
			e.Address, ok = r.PlainStr()
			if ok && e.Address == e.Name {
				e.Address = e.Name
			}
		case "project":
			e.Project, ok = in.str(&r)
		case "runtime":
			e.Runtime, ok = in.str(&r)
		case "config_hash":
			e.ConfigHash, ok = r.PlainStr()
		case "stop_signal":
			e.StopSignal, ok = in.str(&r)
		case "max_size":
			n, ok = r.Uint()
			e.MaxSize = int64(n)
		case "max_files":
			n, ok = r.Uint()
			e.MaxFiles = int(n)
		case "pipe":
			e.Pipe, ok = r.Uint()
		case "stop_timeout_ms":
			n, ok = r.Uint()
			e.StopTimeoutMS = int64(n)
		case "pending":
			e.Pending, ok = r.Bool()
		case "gone":
			e.Gone, ok = r.Bool()
		case "handle":
			r.WS()
			start := r.I
			if _, ok = r.handle(); ok {
				e.Handle = json.RawMessage(bytes.Clone(b[start:r.I]))
			}
		case "cgroup":
			e.Cgroup, ok = r.cgroup()
		case "by":
			if e.By != nil {
				return e, false // encoding/json would merge the two
			}
			e.By, ok = r.starter()
		default:
			return e, false
		}
		if !ok {
			return e, false
		}
		if r.Byte(',') {
			continue
		}
		if r.Byte('}') {
			return e, r.End()
		}
		return e, false
	}
}

// starter reads {"pid":N,"start_ticks":N}, in either order.
func (r *hreader) starter() (*starter, bool) {
	var s starter
	if !r.Byte('{') {
		return nil, false
	}
	if r.Byte('}') {
		return &s, true
	}
	for {
		key, ok := r.PlainStr()
		if !ok || !r.Byte(':') {
			return nil, false
		}
		n, ok := r.Uint()
		if !ok {
			return nil, false
		}
		switch key {
		case "pid":
			s.Pid = int(n)
		case "start_ticks":
			s.StartTicks = n
		default:
			return nil, false
		}
		if r.Byte(',') {
			continue
		}
		return &s, r.Byte('}')
	}
}

// interner hands out one string for equal ones.
type interner map[string]string

// str reads a string through the interner.
func (in interner) str(r *hreader) (string, bool) {
	r.WS()
	save := r.I
	if !r.Byte('"') {
		return "", false
	}
	start := r.I
	for r.I < len(r.B) && r.B[r.I] != '"' {
		r.I++
	}
	if s, ok := in[string(r.B[start:r.I])]; ok && r.I < len(r.B) {
		r.I++
		return s, true
	}
	r.I = save
	s, ok := r.PlainStr()
	if ok && len(in) < 64 {
		in[s] = s
	}
	return s, ok
}
