package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Names of logd's own files in the logs directory. None ends in .fifo,
// .logconf or .log, so none can clash with a daemon's files (whose names
// start with the kind of the address, "daemon." or "job.").
const (
	logdLockName  = "logd.lock"       // held (flock) by the running logd
	startLockName = "logd.start.lock" // held by a provider starting a daemon, and by logd deciding to exit
	logdPidName   = "logd.pid"        // the running logd's pid
	logdOutName   = "logd.out"        // logd's own diagnostics
	fifoSuffix    = ".fifo"
	confSuffix    = ".logconf"
	logSuffix     = ".log"
)

// DefaultLogdIdle is how long logd lingers without any daemon writing to
// it before it exits.
const DefaultLogdIdle = 30 * time.Second

// Defaults for a resource whose Log settings are zero.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
)

// logConf is the sidecar <name>.logconf next to each FIFO. logd reads the
// rotation settings; Adopt reads the rest.
type logConf struct {
	Address    string          `json:"address"`
	Project    string          `json:"project,omitempty"`
	Runtime    string          `json:"runtime,omitempty"`
	ConfigHash string          `json:"config_hash,omitempty"`
	MaxSize    int64           `json:"max_size"`
	MaxFiles   int             `json:"max_files"`
	Handle     json.RawMessage `json:"handle,omitempty"`
}

func readLogConf(path string) (logConf, error) {
	var c logConf
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	err = json.Unmarshal(b, &c)
	return c, err
}

// LogdMain is the log daemon, run as `orch __logd [--idle DURATION] DIR`
// (args excludes LogdArg). It serves one logs directory: it reads every
// DIR/<name>.fifo (those present when it starts and those created later),
// appends what it reads to DIR/<name>.log and rotates that file by size
// as DIR/<name>.logconf says. One logd runs per directory (it holds an
// flock on DIR/logd.lock and writes its pid to DIR/logd.pid; a second one
// returns 0 at once). It exits by itself, returning 0, once no FIFO has had
// a live writer for the idle duration (default 30s), and on SIGTERM or
// SIGINT. It returns 2 on bad arguments and 1 on a fault.
func LogdMain(args []string) int {
	fs := flag.NewFlagSet(LogdArg, flag.ContinueOnError)
	idle := fs.Duration("idle", DefaultLogdIdle, "exit after this long without a live writer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "usage: %s [--idle DURATION] DIR\n", LogdArg)
		return 2
	}
	d := &logd{
		dir:     fs.Arg(0),
		idle:    *idle,
		open:    map[fileID]bool{},
		writers: map[string]*logWriter{},
		changed: make(chan struct{}, 1),
	}
	if err := d.run(); err != nil {
		fmt.Fprintf(os.Stderr, "orch %s %s: %v\n", LogdArg, d.dir, err)
		return 1
	}
	return 0
}

type fileID struct{ dev, ino uint64 }

type logd struct {
	dir  string
	idle time.Duration
	lock *os.File // DIR/logd.lock, flocked while this logd serves DIR
	// released is set once tryExit gave up the lock (and the pid file).
	released bool

	mu      sync.Mutex
	open    map[fileID]bool // FIFOs being read
	live    int             // len(open)
	writers map[string]*logWriter
	changed chan struct{} // live changed
}

func (d *logd) run() error {
	lock, err := os.OpenFile(filepath.Join(d.dir, logdLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	d.lock = lock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // another logd serves this directory
		}
		return fmt.Errorf("lock: %w", err)
	}
	pidPath := filepath.Join(d.dir, logdPidName)
	if err := writeFileAtomic(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer func() {
		if !d.released {
			os.Remove(pidPath) // before the deferred lock.Close: still ours
		}
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	// Watch first, then scan: a FIFO created in between is seen twice and
	// opened once.
	if err := w.Add(d.dir); err != nil {
		return err
	}
	d.scan()

	adding := make(chan struct{}, 32)
	idle := time.NewTimer(d.idle)
	d.mu.Lock()
	if d.live > 0 {
		idle.Stop()
	}
	d.mu.Unlock()
	for {
		select {
		case <-sigs:
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			if ev.Has(fsnotify.Create) && strings.HasSuffix(ev.Name, fifoSuffix) {
				// Concurrently: a start waits for its FIFO to be opened,
				// and opening one may wait for its log file's creation;
				// a hundred starts at once must not queue behind each
				// other's files.
				go func(name string) {
					adding <- struct{}{} // at most cap(adding) at once
					defer func() { <-adding }()
					d.add(name)
				}(ev.Name)
			}
			if (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)) && strings.HasSuffix(ev.Name, confSuffix) {
				d.reloadConf(strings.TrimSuffix(filepath.Base(ev.Name), confSuffix))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			// An overflow loses events: look again.
			fmt.Fprintf(os.Stderr, "orch %s: watch: %v; rescanning\n", LogdArg, err)
			d.scan()
		case <-d.changed:
			d.mu.Lock()
			live := d.live
			d.mu.Unlock()
			idle.Stop()
			if live == 0 {
				idle.Reset(d.idle)
			}
		case <-idle.C:
			if d.tryExit() {
				return nil
			}
			d.mu.Lock()
			if d.live == 0 {
				idle.Reset(d.idle)
			}
			d.mu.Unlock()
		}
	}
}

// tryExit exits if no FIFO has a live writer. It first takes the start
// lock, which a provider holds from the moment its FIFO is visible until it
// has checked that a logd runs: so either the provider checked before this
// point (and its FIFO is visible to the scan below), or it checks after
// the instance lock is released here (and starts a new logd).
func (d *logd) tryExit() bool {
	sl, err := os.OpenFile(filepath.Join(d.dir, startLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		// The logs directory was removed (the project deleted): nothing
		// can publish a FIFO here any more, so nothing is left to serve.
		if _, serr := os.Stat(d.dir); errors.Is(serr, fs.ErrNotExist) {
			d.mu.Lock()
			live := d.live
			d.mu.Unlock()
			return live == 0
		}
		return false
	}
	defer sl.Close() // releases the start lock, after the instance lock
	if err := flockRetry(int(sl.Fd()), unix.LOCK_EX); err != nil {
		return false
	}
	d.scan()
	d.mu.Lock()
	live := d.live
	d.mu.Unlock()
	if live > 0 {
		return false
	}
	os.Remove(filepath.Join(d.dir, logdPidName))
	unix.Flock(int(d.lock.Fd()), unix.LOCK_UN)
	d.released = true
	return true
}

// scan opens every FIFO of the directory not open yet.
func (d *logd) scan() {
	names, _ := filepath.Glob(filepath.Join(d.dir, "*"+fifoSuffix))
	for _, n := range names {
		d.add(n)
	}
}

// add opens the FIFO at path and starts copying it, unless it is already
// being read or has no writer.
func (d *logd) add(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return // gone already
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return
	}
	id := fileID{uint64(st.Dev), uint64(st.Ino)}
	// Reserve the FIFO (a scan and an event may both find it) and count it
	// live at once, so that tryExit cannot exit while it is being opened.
	d.mu.Lock()
	if d.open[id] {
		d.mu.Unlock()
		unix.Close(fd)
		return
	}
	d.open[id] = true
	d.live++
	d.mu.Unlock()
	unreserve := func() {
		d.mu.Lock()
		delete(d.open, id)
		d.live--
		d.mu.Unlock()
		d.notify()
	}

	name := strings.TrimSuffix(filepath.Base(path), fifoSuffix)
	lw, err := d.acquire(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %s: %v\n", LogdArg, name, err)
		unix.Close(fd)
		unreserve()
		return
	}
	// A first read tells a FIFO with a writer (data or EAGAIN) from one
	// without (EOF): the provider makes a FIFO visible only once it holds a
	// writer, so EOF here means its daemon is gone.
	buf := getBuf()
	n, rerr := unix.Read(fd, *buf)
	if n > 0 {
		lw.Write((*buf)[:n])
	}
	putBuf(buf)
	if n == 0 && rerr == nil {
		unix.Close(fd)
		d.release(name)
		unreserve()
		return
	}
	f := os.NewFile(uintptr(fd), path) // non-blocking: served by the poller
	d.notify()
	go d.copy(f, id, name, lw)
}

// copy moves what the FIFO carries to the log until no writer is left.
func (d *logd) copy(f *os.File, id fileID, name string, lw *logWriter) {
	defer func() {
		f.Close()
		d.release(name)
		d.mu.Lock()
		delete(d.open, id)
		d.live--
		d.mu.Unlock()
		d.notify()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// The buffer is taken only while data is there: thousands of idle
	// FIFOs cost no memory.
	rc.Read(func(fd uintptr) bool {
		buf := getBuf()
		defer putBuf(buf)
		for {
			n, err := unix.Read(int(fd), *buf)
			if n > 0 {
				lw.Write((*buf)[:n])
				continue
			}
			if err == unix.EINTR {
				continue
			}
			return err != unix.EAGAIN // EOF, or a real error: done
		}
	})
}

func (d *logd) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// acquire returns the writer of name's log, opening it on first use and
// taking the rotation settings from its .logconf.
func (d *logd) acquire(name string) (*logWriter, error) {
	conf, err := readLogConf(filepath.Join(d.dir, name+confSuffix))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	d.mu.Lock()
	lw := d.writers[name]
	if lw == nil {
		// Opened (created, the first time) outside the lock: other FIFOs
		// are being opened meanwhile.
		d.mu.Unlock()
		fresh := &logWriter{path: filepath.Join(d.dir, name+logSuffix)}
		if err := fresh.open(); err != nil {
			return nil, err
		}
		d.mu.Lock()
		if lw = d.writers[name]; lw == nil {
			lw = fresh
			d.writers[name] = lw
		} else {
			fresh.close()
		}
	}
	defer d.mu.Unlock()
	lw.refs++
	lw.setConf(conf.MaxSize, conf.MaxFiles)
	return lw, nil
}

// reloadConf applies a rewritten .logconf (Provider.Update) to the log
// being written, if any.
func (d *logd) reloadConf(name string) {
	conf, err := readLogConf(filepath.Join(d.dir, name+confSuffix))
	if err != nil {
		return // a half-written or removed file: the next event tells
	}
	d.mu.Lock()
	lw := d.writers[name]
	d.mu.Unlock()
	if lw != nil {
		lw.setConf(conf.MaxSize, conf.MaxFiles)
	}
}

func (d *logd) release(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lw := d.writers[name]
	if lw == nil {
		return
	}
	lw.refs--
	if lw.refs <= 0 {
		delete(d.writers, name)
		lw.close()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// logWriter appends to one log file and rotates it by size: <path> is
// renamed <path>.1, <path>.1 <path>.2, and so on up to maxFiles; older
// files are removed. A file never grows past maxSize: a write that would
// cross it is split after its last newline that fits (or at maxSize when a
// single line is longer).
type logWriter struct {
	refs int // guarded by logd.mu

	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64
	maxSize  int64
	maxFiles int
}

func (w *logWriter) setConf(maxSize int64, maxFiles int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles < 0 {
		maxFiles = DefaultLogMaxFiles
	}
	w.maxSize, w.maxFiles = maxSize, maxFiles
}

func (w *logWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, fi.Size()
	return nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// Write appends p, rotating as needed. Errors are reported on logd's
// stderr and the data dropped: a full disk must not stop the daemons.
func (w *logWriter) Write(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 {
		if w.f == nil {
			if err := w.open(); err != nil {
				fmt.Fprintf(os.Stderr, "orch %s: %v\n", LogdArg, err)
				return
			}
		}
		room := w.maxSize - w.size
		if w.maxSize <= 0 || int64(len(p)) <= room {
			w.write(p)
			return
		}
		cut := 0
		if room > 0 {
			cut = bytes.LastIndexByte(p[:room], '\n') + 1
		}
		if cut == 0 && w.size == 0 {
			cut = int(room) // one line longer than a whole file
		}
		if cut > 0 {
			w.write(p[:cut])
			p = p[cut:]
		}
		w.rotate()
	}
}

func (w *logWriter) write(p []byte) {
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %s: %v\n", LogdArg, w.path, err)
	}
}

func (w *logWriter) rotate() {
	w.f.Close()
	w.f = nil
	if w.maxFiles <= 0 {
		os.Remove(w.path)
	} else {
		os.Remove(w.path + "." + strconv.Itoa(w.maxFiles))
		for i := w.maxFiles - 1; i >= 1; i-- {
			os.Rename(w.path+"."+strconv.Itoa(i), w.path+"."+strconv.Itoa(i+1))
		}
		os.Rename(w.path, w.path+".1")
	}
	if err := w.open(); err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %v\n", LogdArg, err)
	}
}

// writeFileAtomic writes path through a temporary file and a rename, so
// that a reader sees the old content or the new, never half.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// flockRetry is flock that retries on EINTR.
func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}
