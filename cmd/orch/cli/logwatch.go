package cli

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// logWatch tells orch up's log forwarder which logs changed, through
// inotify, so that it looks at those alone: polling every log in turn
// (at most every 0.8 s for an idle one) was 83% of an idle orch up's CPU
// at 10,000 daemons, 0.77 s of CPU every 10 s, whatever they wrote.
//
//   - Each followed log gets a one-shot watch for writes (IN_MODIFY,
//     IN_ONESHOT), armed when a look at it finds nothing new: a log that
//     writes a thousand lines a second is read at each tick without one
//     (logForwarder.look), and raises no event per write.
//   - The logs directory is watched for names that appear (a log created
//     after its follower began, the new log after a rotation, a rotated
//     one): an event for "name.log" or "name.log.N" marks "name.log".
//   - When the kernel's queue overflows, every log is marked.
//
// A log whose watch cannot be armed (the inotify watch limit,
// fs.inotify.max_user_watches) is polled as before (logForwarder.polled).
// fsnotify, which orch uses for the configuration, does not offer
// one-shot watches: this is inotify through golang.org/x/sys/unix.
type logWatch struct {
	fd    int
	file  *os.File // fd, for reads through Go's poller
	dirWd int32

	mu      sync.Mutex
	wdName  map[int32]string // one-shot watch -> log name ("x.log")
	armed   map[string]int32 // log name -> its watch, while it waits
	changed map[string]bool  // log names marked since the last take
	all     bool             // the queue overflowed: every log
	gone    bool             // the directory's watch ended (removed, replaced)
	done    chan struct{}    // closed when the reader ends
	// syncName is the file sync made in the logs directory, closing
	// synced when the reader sees it appear ("" when none is awaited).
	syncName string
	synced   chan struct{}
}

// newLogWatch watches the logs directory dir; an error means no inotify
// here (the forwarder polls).
func newLogWatch(dir string) (*logWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	dwd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ONLYDIR)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &logWatch{fd: fd, file: os.NewFile(uintptr(fd), "inotify"), dirWd: int32(dwd),
		wdName: map[int32]string{}, armed: map[string]int32{}, changed: map[string]bool{}, done: make(chan struct{})}
	go w.read()
	return w, nil
}

// close ends the watch and its reader. The last close of an inotify
// instance that watched something waits in the kernel for an SRCU grace
// period, its marks being freed only after one: 13-18 ms of orch up's
// exit after a stop of 100 daemons that took 12 ms, measured. With later
// (engine.Options.CloseLater: the log daemon takes a copy and closes it
// once this process is gone), this close is not the last and returns at
// once.
func (w *logWatch) close(later func(fd int) error) {
	if later != nil {
		later(w.fd) // failed: this close is the last, and waits
	}
	w.file.Close()
	<-w.done
}

// arm watches the log at path (named name) for its next write; false
// when it cannot be watched (it does not exist: the directory's watch
// sees it appear; or the watch limit). A log whose watch still waits is
// not armed again (a stop of 1,000 daemons looks at each ended log: one
// system call each fewer); a name that appeared in the directory since
// (a rotation) is.
func (w *logWatch) arm(path, name string) (ok bool, limit bool) {
	// Held across the system call: the reader, which takes mu, cannot
	// see the watch's event before its name is known.
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.armed[name]; ok {
		return true, false
	}
	wd, err := unix.InotifyAddWatch(w.fd, path, unix.IN_MODIFY|unix.IN_ONESHOT|unix.IN_DONT_FOLLOW)
	if err != nil {
		return false, errors.Is(err, unix.ENOSPC)
	}
	w.wdName[int32(wd)] = name
	w.armed[name] = int32(wd)
	return true, false
}

// take adds to into the logs marked since the last take; all: every log
// (the kernel's queue overflowed).
func (w *logWatch) take(into map[string]bool) (all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := range w.changed {
		into[n] = true
	}
	clear(w.changed)
	all, w.all = w.all, false
	return all
}

// ended reports whether the logs directory's watch ended (the directory
// was removed or moved away): the watch tells nothing more.
func (w *logWatch) ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// syncWait bounds the wait for the reader to see sync's file.
const syncWait = 250 * time.Millisecond

// sync returns once every event of what was done in the logs directory
// dir before it was called is marked, so that a take then misses no log
// written before: the events of one inotify instance are queued in the
// order things happened, so sync makes a file of its own there and waits
// for the reader to see its creation, then removes it. orch up's last
// look at the logs thus reads only those marked, instead of every log
// (a stat each: 1,000 in a stop of 1,000 daemons, after the last had
// exited). false: it could not be made sure (the file could not be made,
// the directory's watch ended, or the reader did not see it in time).
func (w *logWatch) sync(dir string) bool {
	name := ".orch-up-sync." + strconv.Itoa(os.Getpid())
	path := filepath.Join(dir, name)
	unix.Unlink(path) // one a killed orch up with this pid left
	w.mu.Lock()
	if w.gone {
		w.mu.Unlock()
		return false
	}
	w.syncName, w.synced = name, make(chan struct{})
	synced := w.synced
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.syncName, w.synced = "", nil
		w.mu.Unlock()
	}()
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return false
	}
	unix.Close(fd)
	defer unix.Unlink(path)
	t := time.NewTimer(syncWait)
	defer t.Stop()
	select {
	case <-synced:
		return true
	case <-w.done:
	case <-t.C:
	}
	return false
}

// read reads the inotify events until the watch is closed.
func (w *logWatch) read() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		w.mark(buf[:n])
	}
}

// mark records the events in b.
func (w *logWatch) mark(b []byte) {
	const hdr = unix.SizeofInotifyEvent
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(b) >= hdr {
		wd := int32(binary.NativeEndian.Uint32(b[0:4]))
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := binary.NativeEndian.Uint32(b[12:16])
		if uint32(len(b)-hdr) < nameLen {
			break
		}
		name := b[hdr : hdr+int(nameLen)]
		b = b[hdr+int(nameLen):]
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			w.all = true
			if w.syncName != "" {
				// Its event may be among those lost: every log is
				// marked (all) instead.
				close(w.synced)
				w.syncName = ""
			}
		case wd == w.dirWd && mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			w.gone = true
		case wd == w.dirWd && w.syncName != "" && cString(name) == w.syncName:
			close(w.synced)
			w.syncName = ""
		case wd == w.dirWd:
			if base, ok := logBase(cString(name)); ok {
				w.changed[base] = true
				// A new file by that name, or the old one renamed:
				// the watch to arm is the one on what the name is now.
				delete(w.armed, base)
			}
		default:
			if base, ok := w.wdName[wd]; ok {
				if mask&(unix.IN_MODIFY|unix.IN_IGNORED) != 0 && w.armed[base] == wd {
					// A one-shot watch is gone once it fired.
					delete(w.armed, base)
				}
				if mask&unix.IN_MODIFY != 0 {
					w.changed[base] = true
				}
				if mask&unix.IN_IGNORED != 0 {
					// The one-shot fired, or the log is gone.
					delete(w.wdName, wd)
				}
			}
		}
	}
}

// cString is name up to its first NUL (inotify pads names with them).
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	return string(b)
}

// logBase is the log a name in the logs directory belongs to: "x.log"
// for "x.log" and for a rotated "x.log.N".
func logBase(name string) (string, bool) {
	if strings.HasSuffix(name, ".log") {
		return name, true
	}
	i := strings.LastIndexByte(name, '.')
	if i < 0 || !strings.HasSuffix(name[:i], ".log") {
		return "", false
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return "", false
	}
	return name[:i], true
}
