package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"golang.org/x/sys/unix"
)

// forwardPoll is how often orch up looks for new output of the daemons it
// forwards. One goroutine reads every log in turn and writes what it found
// in one write: at 100 daemons writing 1,000 lines/s each, that is 20
// writes a second, not 100,000.
const forwardPoll = 50 * time.Millisecond

// forwardChunk bounds what one look reads of one log, so that a daemon
// that floods its log cannot starve the others' lines.
const forwardChunk = 256 << 10

// lastLinesDelay is how long after a failed exit its last lines are read.
const lastLinesDelay = 100 * time.Millisecond

// endedQuiet is the rest (as a count of quiet looks: 1<<endedQuiet-1
// ticks, 350 ms) of a log whose instance ended once its last words are
// read: what the log daemon had still to copy shows within it, and at
// orch up's exit at the latest.
const endedQuiet = 3

// lastLines is how many of its last lines a daemon that exits with an
// error shows with its exit under --quiet.
const lastLines = 5

// logForwarder is orch up's Compose-like output: each daemon's and job's
// output, a line at a time, prefixed by its name (aligned, a stable colour
// per name on a terminal), interleaved with orch's own lifecycle lines.
// It follows the log files orch's log daemon writes (and the engine, for
// modules), so it sees exactly what `orch logs` shows; a follower starts
// when an instance starts or is adopted and ends when it is destroyed.
//
// The engine only queues its events (event never waits for a read or a
// write); one goroutine takes the queue in order, reads the logs and
// writes, so that output can never slow supervision down.
type logForwarder struct {
	qmu   sync.Mutex // guards queue
	queue []queued
	// spareQ is the queue the loop took last, emptied and handed back at
	// its next take: the queue is not grown anew from nothing after each
	// round (a stop of 1,000 daemons spent 3.6% of orch up's CPU growing it).
	spareQ []queued
	wake   chan struct{}
	// dirFd is the logs directory, opened at the first look that needs
	// it, so that checking a log for a rotation does not walk the whole
	// path again (-1: not open).
	dirFd int

	mu       sync.Mutex // guards what follows; the loop and the streams' readers take it
	out      io.Writer
	logsDir  string
	colour   bool
	errOut   io.Writer
	prefix   bool // false: --no-log-prefix
	quiet    bool // --quiet: lifecycle lines only, and the last lines of a failed exit
	width    int  // of the widest name so far: names are padded to it
	files    map[spec.Address]*followed
	startLen map[string]int64 // sizes of the logs that existed when orch up began
	// chunk is what read reads a log into, made once: an array on
	// read's stack was zeroed at every look (32 KB: a quarter of the
	// forwarder's CPU in a stop of 1,000, which looks at each ended
	// log twice).
	chunk []byte
	buf   bytes.Buffer // what the next write writes
	spare bytes.Buffer // the other buffer, being written or free
	done  chan struct{}
	wg    sync.WaitGroup
	// streamed tells an instance whose runtime keeps its log (a
	// container's, through its Engine) from one whose log is a file under
	// the state directory; openStream opens such a log, from its start or
	// from now. nil: files only.
	streamed   func(a spec.Address) bool
	openStream func(ctx context.Context, a spec.Address, fromStart bool) (io.ReadCloser, error)
	ctx        context.Context
	cancel     context.CancelFunc

	// watch tells which logs changed (logwatch.go); nil until the logs
	// directory exists, and for good where inotify cannot be had: every
	// log is then polled. With it, a tick looks at the logs marked (by
	// the watch, or by follow) and at those in polled alone.
	watch      *logWatch
	watchTried bool
	// closeLater takes a copy of the watch's descriptor to close after
	// orch exits (logWatch.close), at stop; nil: none.
	closeLater func(fd int) error
	byName     map[string]*followed // file logs, by file name
	marked     map[string]bool      // to look at, by file name
	polled     map[*followed]bool   // logs the watch could not take
	hot        map[*followed]bool   // logs that had something at the last look
	looks      int                  // reads of file logs (for tests)
	ticks      int                  // rounds of the ticker (for tests)
}

// queued is an event to print, or (last set) the last lines of an
// instance to show under --quiet.
type queued struct {
	ev   engine.Event
	last spec.Address
}

// followed is one log being forwarded.
type followed struct {
	addr   spec.Address
	name   string
	path   string // its log (for a file log)
	file   string // path's last element, "daemon.x.log"
	colour int
	// The log is not held open between looks (see read): pos is how far
	// the log with inode ino has been read (ino 0: not found yet).
	pos     int64
	ino     uint64
	partial []byte // the start of a line not yet ended
	prefix  []byte // "name   | ", coloured, for the width it was made at
	pwidth  int
	// stream is a container's log, read by a goroutine of its own
	// (isStream; nil until it is open).
	stream   io.ReadCloser
	isStream bool
	// quiet counts the looks in a row that found nothing new, and rest
	// the ticks to let pass before the next look (see round).
	quiet, rest int
}

func newLogForwarder(out io.Writer, cfg *spec.Config, stateDir string, colour, prefix, quiet bool) *logForwarder {
	lf := &logForwarder{out: out, logsDir: filepath.Join(stateDir, "logs"), colour: colour, prefix: prefix, quiet: quiet,
		files: map[spec.Address]*followed{}, startLen: map[string]int64{}, done: make(chan struct{}), wake: make(chan struct{}, 1),
		errOut: io.Discard, dirFd: -1, byName: map[string]*followed{}, marked: map[string]bool{}, polled: map[*followed]bool{}, hot: map[*followed]bool{}}
	lf.ctx, lf.cancel = context.WithCancel(context.Background())
	// Names are aligned on the widest declared (a later, wider one widens
	// the column from then on).
	for _, r := range cfg.Resources {
		lf.width = max(lf.width, len(forwardName(r.Addr)))
	}
	// What the logs held before orch up began is not shown again: orch
	// logs has it. What is written from now on is, including the first
	// lines of a daemon adopted or started before its follower begins.
	if ents, err := os.ReadDir(lf.logsDir); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				lf.startLen[e.Name()] = fi.Size()
			}
		}
	}
	return lf
}

// start runs the loop until stop.
func (lf *logForwarder) start() {
	lf.wg.Add(1)
	go func() {
		defer lf.wg.Done()
		t := time.NewTicker(forwardPoll)
		defer t.Stop()
		for {
			select {
			case <-lf.done:
				lf.round(true, true)
				return
			case <-lf.wake:
				// Events only: the logs they end are read (last words
				// before the line that says so), the others at the tick.
				lf.round(false, false)
			case <-t.C:
				lf.round(false, true)
			}
		}
	}()
}

// stop prints what is queued and read, then closes every log.
func (lf *logForwarder) stop() {
	lf.cancel() // ends the containers' streams
	close(lf.done)
	lf.wg.Wait()
	lf.mu.Lock()
	defer lf.mu.Unlock()
	for _, f := range lf.files {
		f.close()
	}
	if lf.watch != nil {
		lf.watch.close(lf.closeLater)
		lf.watch = nil
	}
	if lf.dirFd >= 0 {
		unix.Close(lf.dirFd)
		lf.dirFd = -1
	}
}

func (f *followed) close() {
	if f.stream != nil {
		f.stream.Close()
		f.stream = nil
	}
}

// event queues ev; the loop prints it. It never waits for I/O.
func (lf *logForwarder) event(ev engine.Event) {
	lf.enqueue(queued{ev: ev})
	if lf.quiet && forwardable(ev.Addr) && failedExit(ev) {
		// A moment later: the log daemon may still be writing its last
		// words when the exit is seen.
		a := ev.Addr
		time.AfterFunc(lastLinesDelay, func() { lf.enqueue(queued{last: a}) })
	}
}

func (lf *logForwarder) enqueue(q queued) {
	lf.qmu.Lock()
	lf.queue = append(lf.queue, q)
	lf.qmu.Unlock()
	select {
	case lf.wake <- struct{}{}:
	default:
	}
}

func forwardable(a spec.Address) bool {
	return a.Kind == spec.KindDaemon || a.Kind == spec.KindJob || a.Kind == spec.KindModule
}

// round takes the queue in order (starting and ending followers, reading
// an instance's last words before the line that says it ended), then,
// with all, reads what every log gained, and writes it all in one write.
// A round for events alone reads no other log: a stop of 100 daemons in
// a chain woke 200 rounds that each read all 100 logs, two fifths of the
// stop's time.
func (lf *logForwarder) round(final, all bool) {
	lf.qmu.Lock()
	queue := lf.queue
	lf.queue, lf.spareQ = lf.spareQ[:0], nil
	lf.qmu.Unlock()
	lf.mu.Lock()
	for _, q := range queue {
		if !q.last.IsZero() {
			lf.writeLast(q.last)
			continue
		}
		ev, a := q.ev, q.ev.Addr
		if forwardable(a) && !lf.quiet {
			ended := ev.Type == engine.EventExited || ev.Type == engine.EventFailed || ev.Type == engine.EventCompleted ||
				ev.Type == engine.EventStopped || ev.Type == engine.EventDestroyed
			fresh := ev.Type == engine.EventStarted || ev.Type == engine.EventAdopted
			if f := lf.files[a]; f != nil && f.isStream && fresh {
				// A container's log is the container's: a new one, a new log.
				f.close()
				delete(lf.files, a)
			}
			// A job's first event ("started" once its process runs, or
			// how it ended) starts its follower as well as a start does.
			if lf.files[a] == nil && (ended && ev.Type != engine.EventDestroyed || fresh) {
				lf.follow(a, ev.Type == engine.EventStarted)
			}
			if f := lf.files[a]; f != nil {
				f.quiet, f.rest = 0, 0 // it may have something to say soon
				if fresh && !f.isStream {
					lf.marked[f.file] = true
				}
				if ended {
					// Its last words come before the line that says it ended.
					lf.look(f)
					// Then it has nothing more to say but what the log
					// daemon was still copying: its watch says so, or,
					// polled, it is looked at again after endedRest
					// ticks, not at each (a stop of 1,000
					// daemons read each ended log at every tick until
					// it rested: a fifth of orch up's CPU in the stop).
					f.quiet, f.rest = endedQuiet, 1<<endedQuiet-1
				}
			}
			if ev.Type == engine.EventDestroyed {
				if f := lf.files[a]; f != nil {
					f.close()
					delete(lf.files, a)
					lf.forget(f)
				}
			}
		}
		lf.buf.WriteString(ev.String())
		lf.buf.WriteByte('\n')
	}
	if all && !final {
		lf.ticks++
		lf.refreshWatch()
	}
	switch {
	case !all:
	case final && lf.watch != nil && lf.watch.sync(lf.logsDir):
		// The last look: the logs written since their last look are
		// all marked now (sync), and the others have nothing new.
		lf.eachMarked(func(f *followed) { lf.read(f, true) })
		for f := range lf.polled {
			lf.read(f, true)
		}
		for _, f := range lf.files {
			if len(f.partial) > 0 {
				lf.line(f, f.partial)
				f.partial = nil
			}
		}
	case final || lf.watch == nil:
		for _, f := range lf.files {
			lf.poll(f, final)
		}
	default:
		lf.eachMarked(lf.look)
		for f := range lf.polled {
			lf.poll(f, false)
		}
	}
	// Written outside the lock (the streams' readers go on meanwhile),
	// from the buffer the next round does not fill: the two take turns.
	out := lf.buf
	lf.buf, lf.spare = lf.spare, bytes.Buffer{}
	lf.buf.Reset()
	lf.mu.Unlock()
	if out.Len() > 0 {
		lf.out.Write(out.Bytes())
	}
	out.Reset()
	lf.mu.Lock()
	lf.spare = out
	lf.mu.Unlock()
	clear(queue) // what the events held is let go
	lf.qmu.Lock()
	if lf.spareQ == nil {
		lf.spareQ = queue[:0]
	}
	lf.qmu.Unlock()
}

// eachMarked calls fn for each log the watch marked since the last
// round (every log after an overflow of its queue) and each log that had
// something at its last look (hot); marked is empty again after. mu held.
func (lf *logForwarder) eachMarked(fn func(f *followed)) {
	if lf.watch.take(lf.marked) {
		for name := range lf.byName {
			lf.marked[name] = true
		}
	}
	for f := range lf.hot {
		lf.marked[f.file] = true
	}
	for name := range lf.marked {
		if f := lf.byName[name]; f != nil {
			fn(f)
		}
	}
	clear(lf.marked)
}

// poll looks at f's log, unless it rests: a log that had nothing new is
// looked at less and less often (every 2, 4, 8, then 16 ticks: 0.8 s),
// and at once again when it has: each look at an idle log is three system
// calls (read, stat, seek), and 1,000 idle daemons made it a third of
// orch up's CPU. An instance that ends is read whatever its rest (its
// last words, in round). With final, every log is read to its end. mu
// held.
func (lf *logForwarder) poll(f *followed, final bool) {
	if !final && f.rest > 0 {
		f.rest--
		return
	}
	if lf.read(f, final) > 0 {
		f.quiet, f.rest = 0, 0
	} else {
		f.quiet = min(f.quiet+1, 4)
		f.rest = 1<<f.quiet - 1
	}
}

// look reads what f's log gained. A log that had something is looked at
// again at the next tick without its watch (hot): a log written without
// pause costs a read per tick, as when it was polled, and no watch armed
// and fired per look. One that had nothing has its watch armed, then is
// read once more (what was written between the two is not lost: read
// now, or raising the watch's event). A log the watch cannot take joins
// those polled. mu held.
func (lf *logForwarder) look(f *followed) {
	watchable := lf.watch != nil && !f.isStream && !lf.polled[f]
	if lf.read(f, false) > 0 || !watchable {
		if watchable {
			lf.hot[f] = true
		}
		return
	}
	delete(lf.hot, f)
	if ok, limit := lf.watch.arm(f.path, f.file); limit {
		lf.polled[f] = true
	} else if ok && lf.read(f, false) > 0 {
		lf.hot[f] = true
	}
}

// refreshWatch drops a watch whose logs directory is gone (removed, or
// moved away and made anew under orch up), and starts a watch of the
// logs directory once there are logs to follow and it exists; until
// then, and for good where inotify cannot be had, the logs are polled.
// mu held.
func (lf *logForwarder) refreshWatch() {
	if lf.watch != nil && lf.watch.ended() {
		// Closed here, waiting for the kernel: a copy handed to the log
		// daemon would stay there until orch exits, one for each time
		// the logs directory is replaced.
		lf.watch.close(nil)
		lf.watch = nil
		clear(lf.hot)
		if lf.dirFd >= 0 {
			// It may still name the old directory, moved away.
			unix.Close(lf.dirFd)
			lf.dirFd = -1
		}
	}
	if lf.watch != nil || lf.watchTried || len(lf.byName) == 0 {
		return
	}
	w, err := newLogWatch(lf.logsDir)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			lf.watchTried = true // no inotify here: poll for good
		}
		return
	}
	lf.watch = w
	// The logs followed before the watch began were polled: from now
	// on, watched, each looked at once now.
	for name := range lf.byName {
		lf.marked[name] = true
	}
}

// forget ends following f. mu held.
func (lf *logForwarder) forget(f *followed) {
	if lf.byName[f.file] == f {
		delete(lf.byName, f.file)
	}
	delete(lf.polled, f)
	delete(lf.hot, f)
}

// failedExit reports whether ev ends a daemon or job with an error.
func failedExit(ev engine.Event) bool {
	switch ev.Type {
	case engine.EventExited:
		return ev.Signal != "" || ev.ExitCode != nil && *ev.ExitCode != 0
	case engine.EventFailed:
		return true
	}
	return false
}

// follow begins forwarding addr's log (a container's from its start when
// it was just started); mu held.
func (lf *logForwarder) follow(a spec.Address, fromStart bool) {
	name := forwardName(a)
	h := fnv.New32a()
	h.Write([]byte(name))
	file := process.FileName(a) + ".log"
	f := &followed{addr: a, name: name, path: filepath.Join(lf.logsDir, file), file: file, colour: int(h.Sum32() % uint32(len(nameColours)))}
	if len(name) > lf.width {
		lf.width = len(name)
	}
	lf.files[a] = f
	if lf.streamed != nil && lf.streamed(a) {
		// Opened by a goroutine: the engine that reports this event
		// must not wait for an Engine's answer.
		f.isStream = true
		lf.wg.Add(1)
		go func() {
			defer lf.wg.Done()
			rc, err := lf.openStream(lf.ctx, a, fromStart)
			lf.mu.Lock()
			if err != nil || lf.files[a] != f {
				lf.mu.Unlock()
				if err == nil {
					rc.Close() // replaced or destroyed meanwhile
				} else if lf.ctx.Err() == nil {
					fmt.Fprintf(lf.errOut, "orch up: cannot follow the log of %s: %v\n", a, err)
				}
				return
			}
			f.stream = rc
			lf.mu.Unlock()
			lf.readStream(f, rc)
		}()
		return
	}
	lf.locate(f)
	// Looked at by the next tick: through the watch when there is one
	// (what the daemon wrote before its watch is armed is read then).
	lf.byName[f.file] = f
	lf.marked[f.file] = true
}

// readStream forwards a container's log until it ends or is closed; the
// reading loop writes what it gathered.
func (lf *logForwarder) readStream(f *followed, rc io.ReadCloser) {
	var chunk [32 << 10]byte
	for {
		k, err := rc.Read(chunk[:])
		if k > 0 {
			lf.mu.Lock()
			lf.lines(f, chunk[:k])
			lf.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// forwardName is how an instance's lines are prefixed: a daemon by its
// name ("api[1]"), a job or module by its address ("job.migrate"), since a
// job may share a daemon's name.
func forwardName(a spec.Address) string {
	if a.Kind == spec.KindDaemon {
		return a.Name + keySuffix(a)
	}
	return a.String()
}

// keySuffix is the "[1]" of an instance address, "" for a block without
// count or for_each.
func keySuffix(a spec.Address) string {
	s, b := a.String(), a.Block().String()
	return s[len(b):]
}

// locate finds where f's log is to be read from: the length it had when
// orch up began, when it existed then, else its start. A log that does
// not exist yet is tried again at the next look. mu held.
func (lf *logForwarder) locate(f *followed) bool {
	ino, size, err := lf.stat(f.path)
	if err != nil {
		return false
	}
	f.ino, f.pos = ino, 0
	if n, ok := lf.startLen[f.file]; ok && n <= size {
		f.pos = n
	}
	return true
}

// maxRotatedLook bounds how many rotated logs (name.1, name.2, ...) a look
// searches for the one it was reading.
const maxRotatedLook = 64

// read appends to the buffer the whole lines f's log gained (at most
// forwardChunk of them, so that a flood cannot starve the others), across
// rotations and truncations; with final, everything, and an unended last
// line too; it returns how many bytes it read. mu held.
//
// No log is held open between looks: orch up follows every daemon's log,
// and a descriptor per daemon in orch's table made each start dearer in
// proportion to the daemons already running (fork copies the table, exec
// closes it): orch up took 22 s to start 5,000 daemons, against 3.3 s for
// 1,000. A look at a log is one stat by name, relative to the logs
// directory's descriptor; only a log that grew is opened, read with
// pread from where the last look ended, and closed.
func (lf *logForwarder) read(f *followed, final bool) (read int) {
	if f.isStream {
		return 0
	}
	lf.looks++
	if f.ino == 0 && !lf.locate(f) {
		return 0
	}
	base := f.file
	// Each turn reads something or follows a rotation; a log rotated
	// again and again under the look ends it after a few.
	for turn := 0; turn < 8 && (final || read < forwardChunk); turn++ {
		ino, size, err := lf.stat(f.path)
		if err != nil {
			break
		}
		if ino != f.ino {
			// Rotated since the last look: the log being read is now
			// name.j (1 unless it rotated more than once). The rest of it,
			// then the logs rotated after it whole, then the new log from
			// its start.
			read += lf.readRotated(f, base)
			f.ino, f.pos = ino, 0
			continue
		}
		if size < f.pos {
			f.pos = 0 // truncated: from its start again
		}
		if size == f.pos {
			break
		}
		limit := forwardChunk - read
		if final {
			limit = math.MaxInt
		}
		k, same := lf.readFile(f, base, f.ino, limit)
		read += k
		if !same {
			continue // replaced between the stat and the open
		}
		if k == 0 {
			break
		}
	}
	if final && len(f.partial) > 0 {
		lf.line(f, f.partial)
		f.partial = nil
	}
	return read
}

// readRotated reads the rest of the rotated log that f was reading
// (inode f.ino, under name.j), then name.j-1 ... name.1 whole; it returns
// how many bytes it read. A log rotated away for good (max_files = 0, or
// more rotations than kept) has nothing more to give. mu held.
func (lf *logForwarder) readRotated(f *followed, base string) (read int) {
	j := 0
	for i := 1; i <= maxRotatedLook; i++ {
		ino, _, err := lf.stat(filepath.Join(lf.logsDir, base+"."+strconv.Itoa(i)))
		if err != nil {
			break
		}
		if ino == f.ino {
			j = i
			break
		}
	}
	if j == 0 {
		return 0
	}
	k, _ := lf.readFile(f, base+"."+strconv.Itoa(j), f.ino, math.MaxInt)
	read += k
	for i := j - 1; i >= 1; i-- {
		name := base + "." + strconv.Itoa(i)
		ino, _, err := lf.stat(filepath.Join(lf.logsDir, name))
		if err != nil {
			break
		}
		f.ino, f.pos = ino, 0
		k, _ := lf.readFile(f, name, ino, math.MaxInt)
		read += k
	}
	return read
}

// readFile opens name in the logs directory, checks that it is the log
// with inode ino, and forwards what it holds from f.pos, until its end or
// once limit bytes are read (whole reads). same is false when name is
// another file now (nothing read). mu held.
func (lf *logForwarder) readFile(f *followed, name string, ino uint64, limit int) (read int, same bool) {
	fd, err := lf.openLog(name)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Ino != ino {
		return 0, false
	}
	if lf.chunk == nil {
		lf.chunk = make([]byte, 32<<10)
	}
	for read < limit {
		k, err := unix.Pread(fd, lf.chunk, f.pos)
		if k <= 0 || err != nil {
			break
		}
		read += k
		f.pos += int64(k)
		lf.lines(f, lf.chunk[:k])
	}
	return read, true
}

// openLog opens name in the logs directory for reading, relative to its
// descriptor when it has one. mu held.
func (lf *logForwarder) openLog(name string) (int, error) {
	if lf.dirFd >= 0 {
		if fd, err := unix.Openat(lf.dirFd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err == nil {
			return fd, nil
		}
	}
	return unix.Open(filepath.Join(lf.logsDir, name), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
}

// stat is the inode and size of a log under the logs directory, read
// relative to the directory's descriptor (a look at an ended log, 1,000
// of them in a stop, walked the whole path each time: 4% of orch up's
// CPU); mu held. A directory replaced meanwhile is opened again.
func (lf *logForwarder) stat(path string) (ino uint64, size int64, err error) {
	var st unix.Stat_t
	if filepath.Dir(path) == lf.logsDir {
		if lf.dirFd < 0 {
			if fd, err := unix.Open(lf.logsDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
				lf.dirFd = fd
			}
		}
		if lf.dirFd >= 0 {
			if err := unix.Fstatat(lf.dirFd, filepath.Base(path), &st, 0); err == nil {
				return st.Ino, st.Size, nil
			}
			// The directory may have been replaced: the path decides.
			unix.Close(lf.dirFd)
			lf.dirFd = -1
		}
	}
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, st.Size, nil
}

// lines appends the whole lines of p, prefixed, to the buffer; mu held.
func (lf *logForwarder) lines(f *followed, p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.partial = append(f.partial, p...)
			if len(f.partial) > 64<<10 { // a line that never ends: cut it
				lf.line(f, f.partial)
				f.partial = f.partial[:0]
			}
			return
		}
		if len(f.partial) > 0 {
			f.partial = append(f.partial, p[:i]...)
			lf.line(f, f.partial)
			f.partial = f.partial[:0]
		} else {
			lf.line(f, p[:i])
		}
		p = p[i+1:]
	}
}

// nameColours are the ANSI colours of names, as Compose picks them.
var nameColours = [...]string{"36", "33", "32", "35", "34", "96", "93", "92", "95", "94"}

func (lf *logForwarder) line(f *followed, l []byte) {
	l = bytes.TrimSuffix(l, []byte{'\r'})
	if lf.prefix {
		if f.prefix == nil || f.pwidth != lf.width {
			var b bytes.Buffer
			if lf.colour {
				fmt.Fprintf(&b, "\x1b[%sm%-*s |\x1b[0m ", nameColours[f.colour], lf.width, f.name)
			} else {
				fmt.Fprintf(&b, "%-*s | ", lf.width, f.name)
			}
			f.prefix, f.pwidth = b.Bytes(), lf.width
		}
		lf.buf.Write(f.prefix)
	}
	lf.buf.Write(l)
	lf.buf.WriteByte('\n')
}

// writeLast adds the last lines of a's log to the buffer (for --quiet,
// where its output was not forwarded); mu held.
func (lf *logForwarder) writeLast(a spec.Address) {
	path := filepath.Join(lf.logsDir, process.FileName(a)+".log")
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return
	}
	const window = 8 << 10
	off := max(fi.Size()-window, 0)
	if n, ok := lf.startLen[filepath.Base(path)]; ok && n > off && n <= fi.Size() {
		off = n // only what it wrote under this orch up
	}
	b := make([]byte, fi.Size()-off)
	k, _ := fh.ReadAt(b, off)
	b = bytes.TrimRight(b[:k], "\n")
	if len(b) == 0 {
		return
	}
	ls := bytes.Split(b, []byte{'\n'})
	if off > 0 && len(ls) > 1 && lf.startLen[filepath.Base(path)] != off {
		ls = ls[1:] // the first may be cut
	}
	if len(ls) > lastLines {
		ls = ls[len(ls)-lastLines:]
	}
	for _, l := range ls {
		fmt.Fprintf(&lf.buf, "    %s | %s\n", a, bytes.TrimSuffix(l, []byte{'\r'}))
	}
}

// containerLogs gives orch up's output the logs that a runtime keeps
// (providers.LogReader: a container's), found through the instance's
// record: streamed says which instances those are, from the declared
// runtime (no I/O), and open opens one.
func (a *App) containerLogs(s *session) (streamed func(spec.Address) bool, open func(context.Context, spec.Address, bool) (io.ReadCloser, error)) {
	streamed = func(addr spec.Address) bool {
		if addr.Kind == spec.KindModule {
			return false
		}
		r := s.cfg.Resource(addr)
		if r == nil || r.Runtime.IsZero() || r.Runtime.Type == process.Kind {
			return false
		}
		_, ok := s.provs[r.Runtime.Type].(providers.LogReader)
		return ok
	}
	open = func(ctx context.Context, addr spec.Address, fromStart bool) (io.ReadCloser, error) {
		rec, err := s.store.Get(addr)
		if err != nil {
			return nil, err
		}
		lr, ok := s.provs[rec.Runtime.Type].(providers.LogReader)
		if !ok {
			return nil, fmt.Errorf("runtime %s keeps no log", rec.Runtime)
		}
		tail := -1 // from now: an adopted container's past is in orch logs
		if fromStart {
			tail = 0
		}
		resp, err := lr.Logs(ctx, providers.LogsRequest{Runtime: runtimeOf(s.cfg, rec.Runtime), Addr: addr, Handle: rec.Handle,
			StateDir: s.stateDir, Tail: tail, Follow: true})
		if err != nil {
			return nil, err
		}
		return resp.Log, nil
	}
	return streamed, open
}
