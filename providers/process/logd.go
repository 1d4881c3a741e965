package process

import (
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/logfile"
	"github.com/orch-dev/orch/providers/owned"
)

// Names of logd's own files in the logs directory. None ends in .log, so
// none can clash with a daemon's log (whose name starts with the kind of
// the address, "daemon." or "job.").
const (
	logdLockName  = "logd.lock"       // held (flock) by the running logd
	startLockName = "logd.start.lock" // held by a provider starting a logd
	logdPidName   = "logd.pid"        // the running logd's pid, written once it listens
	logdOutName   = "logd.out"        // logd's own diagnostics
	logdSockName  = "logd.sock"       // logd's socket (SOCK_SEQPACKET)
	logSuffix     = ".log"
)

// DefaultLogdOpenLogs is how many log files the log daemon keeps open at
// most: it holds one descriptor per daemon (its pipe) and this many more,
// not two per daemon (issue 19). A write to a log that was closed opens
// it again (O_APPEND), which costs an open(2) and an fstat(2) only when
// more than this many daemons write in turn.
const DefaultLogdOpenLogs = 512

// DefaultLogdIdle is how long logd lingers without any daemon writing to
// it before it exits.
const DefaultLogdIdle = 30 * time.Second

// Defaults for a resource whose Log settings are zero.
const (
	DefaultLogMaxSize  = logfile.DefaultMaxSize
	DefaultLogMaxFiles = logfile.DefaultMaxFiles
)

// logConf is what the registry keeps of a daemon: logd reads the rotation
// settings; Adopt reads the rest.
type logConf struct {
	Address    string          `json:"address"`
	Project    string          `json:"project,omitempty"`
	Runtime    string          `json:"runtime,omitempty"`
	ConfigHash string          `json:"config_hash,omitempty"`
	MaxSize    int64           `json:"max_size"`
	MaxFiles   int             `json:"max_files"`
	Handle     json.RawMessage `json:"handle,omitempty"`
}

// logdMsg is a request to logd over its socket, one datagram each. "add"
// carries the read end of a daemon's pipe (SCM_RIGHTS): logd copies it to
// <name>.log until no writer is left. "conf" changes the rotation
// settings of a log being written.
type logdMsg struct {
	Op       string `json:"op"`
	Name     string `json:"name"`
	MaxSize  int64  `json:"max_size"`
	MaxFiles int    `json:"max_files"`
	// Dirs and Parent are a "tidy" request's: the empty cgroups Dirs
	// under the directory Name to remove once the connection ends, then
	// Name itself when Parent is set (Provider.TidyLater).
	Dirs   []string `json:"dirs,omitempty"`
	Parent bool     `json:"parent,omitempty"`
}

// logdReply answers a logdMsg.
type logdReply struct {
	Error string `json:"error,omitempty"`
}

// logdProfileEnv (undocumented, for profiling like ORCH_CPUPROFILE) names
// a file for the log daemon's CPU profile, written when it exits; the log
// daemon an orch with it set starts inherits it.
const logdProfileEnv = "ORCH_LOGD_CPUPROFILE"

// LogdMain is the log daemon, run as `orch __logd [--idle DURATION] DIR`
// (args excludes LogdArg). It serves one logs directory: it listens on
// DIR/logd.sock, takes the read ends of the daemons' pipes that providers
// send it, appends what each carries to DIR/<name>.log and rotates that
// file by size. When it starts it also takes back the pipes of the daemons
// of DIR/logd.registry that still run (a log daemon that was killed loses
// no running daemon's log: their pipes hold up to 1 MiB meanwhile). One
// logd runs per directory (it holds an flock on DIR/logd.lock and writes
// its pid to DIR/logd.pid once it listens; a second one returns 0 at
// once). It exits by itself, returning 0, once no pipe has had a live
// writer and no request has come for the idle duration
// (default 30s), and on SIGTERM or SIGINT. It returns 2 on bad arguments
// and 1 on a fault.
func LogdMain(args []string) int {
	fs := flag.NewFlagSet(LogdArg, flag.ContinueOnError)
	idle := fs.Duration("idle", DefaultLogdIdle, "exit after this long without a live writer")
	readyFD := fs.Int("ready-fd", -1, "write one byte to this descriptor, and close it, once listening")
	maxOpen := fs.Int("open-logs", DefaultLogdOpenLogs, "keep at most this many log files open (least recently written closed first)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "usage: %s [--idle DURATION] [--open-logs N] DIR\n", LogdArg)
		return 2
	}
	if *maxOpen < 1 {
		fmt.Fprintf(os.Stderr, "%s: --open-logs must be at least 1\n", LogdArg)
		return 2
	}
	var ready *os.File
	if *readyFD >= 0 {
		ready = os.NewFile(uintptr(*readyFD), "ready")
		defer ready.Close() // an exit before listening closes it empty
	}
	if path := os.Getenv(logdProfileEnv); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	d := &logd{
		ready:   ready,
		dir:     fs.Arg(0),
		idle:    *idle,
		open:    map[fileID]bool{},
		writers: map[string]*logWriter{},
		files:   &openLogs{max: *maxOpen},
		changed: make(chan struct{}, 1),
		opening: make(chan struct{}, 32),
	}
	if err := d.run(); err != nil {
		fmt.Fprintf(os.Stderr, "orch %s %s: %v\n", LogdArg, d.dir, err)
		return 1
	}
	return 0
}

type fileID struct{ dev, ino uint64 }

type logd struct {
	ready *os.File // told once listening; nil if nobody asked
	dir   string
	idle  time.Duration
	lock  *os.File // DIR/logd.lock, flocked while this logd serves DIR
	ln    *net.UnixListener
	own   []ownFile // the socket and pid file this logd made

	mu      sync.Mutex
	open    map[fileID]bool // pipes being read
	live    int             // len(open)
	busy    int             // requests being handled
	closing bool            // tryExit decided: take no more requests
	writers map[string]*logWriter
	files   *openLogs     // bounds the log files open at once
	loops   []*pipeLoop   // copy the pipes to the logs
	changed chan struct{} // live or busy changed
	opening chan struct{} // bounds the log files being opened at once
	// tidies are the cgroups handed over (op "tidy") and not yet taken
	// for removal, by connection: taken when it ends, or all at once when
	// logd is told to stop first. removing counts the removals under way.
	tidies   map[*tidyJob]bool
	removing sync.WaitGroup
}

// tidyJob is what one connection handed over to remove once it ends, in
// the order given: a project's directory after its daemons'. d.mu guards
// it.
type tidyJob struct {
	msgs []logdMsg
}

// addTidy takes a "tidy" request of the connection whose job is j.
func (d *logd) addTidy(j *tidyJob, m logdMsg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tidies == nil {
		d.tidies = map[*tidyJob]bool{}
	}
	d.tidies[j] = true
	j.msgs = append(j.msgs, m)
}

// takeTidiesLocked takes what jobs hold for removal (all of them when jobs
// is nil), and counts the removal under way; d.mu held.
func (d *logd) takeTidiesLocked(jobs ...*tidyJob) []logdMsg {
	if jobs == nil {
		for j := range d.tidies {
			jobs = append(jobs, j)
		}
	}
	var msgs []logdMsg
	for _, j := range jobs {
		if d.tidies[j] {
			msgs = append(msgs, j.msgs...)
			j.msgs = nil
			delete(d.tidies, j)
		}
	}
	if len(msgs) > 0 {
		d.removing.Add(1)
	}
	return msgs
}

// removeTidied removes the cgroups msgs name and ends the count
// takeTidiesLocked began.
func (d *logd) removeTidied(msgs []logdMsg) {
	defer d.removing.Done()
	for _, m := range msgs {
		cgroup.RemoveEmpty(m.Name, m.Dirs, m.Parent)
	}
}

// endTidy removes j's cgroups (the connection ended), counting logd busy
// meanwhile so that it does not take its idle exit in the middle.
func (d *logd) endTidy(j *tidyJob) {
	d.mu.Lock()
	msgs := d.takeTidiesLocked(j)
	if len(msgs) == 0 {
		d.mu.Unlock()
		return
	}
	d.busy++
	d.mu.Unlock()
	go func() {
		d.removeTidied(msgs)
		d.mu.Lock()
		d.busy--
		d.mu.Unlock()
		d.notify()
	}()
}

// tidyAll removes every cgroup handed over and not yet removed, and waits
// for the removals under way, before logd exits: a connection that has not
// ended yet (orch still running its last steps) loses its wait, not its
// cgroups.
func (d *logd) tidyAll() {
	d.mu.Lock()
	msgs := d.takeTidiesLocked()
	d.mu.Unlock()
	if len(msgs) > 0 {
		d.removeTidied(msgs)
	}
	d.removing.Wait()
}

func (d *logd) run() error {
	// Everything logd reads (the registry) or serves (the socket) lives
	// in DIR: one another user may write to is refused.
	if err := owned.Dir(d.dir); err != nil {
		return err
	}
	lock, err := owned.OpenFile(filepath.Join(d.dir, logdLockName), os.O_CREATE|os.O_RDWR)
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
	raiseNofile()
	if err := d.startLoops(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	// Only the holder of the lock binds: a socket left by a logd that was
	// killed is stale.
	sock := filepath.Join(d.dir, logdSockName)
	os.Remove(sock)
	err = viaDir(d.dir, logdSockName, func(path string) error {
		ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		d.ln = ln
		return err
	})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	d.ln.SetUnlinkOnClose(false) // removed by us, while we hold the lock
	os.Chmod(sock, owned.FileMode)
	d.remember(logdSockName)
	exited := false
	defer func() {
		d.ln.Close()
		if !exited {
			d.removeOwn() // before the deferred lock.Close
		}
	}()
	d.recover()
	pidPath := filepath.Join(d.dir, logdPidName)
	if err := writeFileAtomic(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	d.remember(logdPidName)
	if d.ready != nil {
		d.ready.Write([]byte{'\n'})
		d.ready.Close()
		d.ready = nil
	}
	go d.accept()

	idle := time.NewTimer(d.idle)
	if !d.idleNow() {
		idle.Stop()
	}
	for {
		select {
		case <-sigs:
			d.tidyAll()
			return nil
		case <-d.changed:
			idle.Stop()
			if d.idleNow() {
				idle.Reset(d.idle)
			}
		case <-idle.C:
			if d.tryExit() {
				exited = true
				d.tidyAll() // of a connection still open
				return nil
			}
			if d.idleNow() {
				idle.Reset(d.idle)
			}
		}
	}
}

func (d *logd) idleNow() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live == 0 && d.busy == 0
}

// tryExit exits if no pipe has a live writer and no request is being
// handled: from then on it takes no request (a provider whose request
// comes now sees its connection closed unanswered, or refused, and starts
// another logd), and it removes the socket and the pid file and releases
// the instance lock, in that order. Providers keep their connections
// between requests: an idle connection does not keep logd alive.
func (d *logd) tryExit() bool {
	d.mu.Lock()
	if d.live > 0 || d.busy > 0 {
		d.mu.Unlock()
		return false
	}
	d.closing = true
	d.mu.Unlock()
	d.ln.Close()
	d.removeOwn()
	unix.Flock(int(d.lock.Fd()), unix.LOCK_UN)
	return true
}

// remember notes the identity (device and inode) of a file this logd just
// made in its directory, so that it removes it only while it is still that
// file.
func (d *logd) remember(name string) {
	var st unix.Stat_t
	if unix.Lstat(filepath.Join(d.dir, name), &st) == nil {
		d.own = append(d.own, ownFile{name, fileID{uint64(st.Dev), st.Ino}})
	}
}

// removeOwn removes the socket and pid file this logd made, and only
// those it can prove are its own: the logs directory may have been
// removed and made again (orch destroy, rm -r .orch, a new apply) while
// this logd lingered, and the files at those paths now belong to the log
// daemon of the new directory. Nothing is removed when the lock file at
// the path is not the one this logd holds.
func (d *logd) removeOwn() {
	var held, cur unix.Stat_t
	if unix.Fstat(int(d.lock.Fd()), &held) != nil || unix.Lstat(filepath.Join(d.dir, logdLockName), &cur) != nil ||
		held.Dev != cur.Dev || held.Ino != cur.Ino {
		return
	}
	for _, f := range d.own {
		path := filepath.Join(d.dir, f.name)
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && uint64(st.Dev) == f.id.dev && st.Ino == f.id.ino {
			os.Remove(path)
		}
	}
}

type ownFile struct {
	name string
	id   fileID
}

func (d *logd) accept() {
	for {
		c, err := d.ln.AcceptUnix()
		if err != nil {
			d.mu.Lock()
			closing := d.closing
			d.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say
			continue
		}
		go d.serve(c)
	}
}

// serve answers the requests of one provider connection.
func (d *logd) serve(c *net.UnixConn) {
	defer c.Close()
	// Descriptors given to close later (linger), held until the
	// connection ends: the provider's own copies are closed by then (it
	// closes them on the answer, or dies), so the close here is the last,
	// the one that may wait in the kernel.
	var lingering []int
	// Cgroups to remove once the connection ends (tidy).
	tidy := &tidyJob{}
	defer func() {
		if len(lingering) > 0 {
			go func() {
				for _, fd := range lingering {
					unix.Close(fd)
				}
			}()
		}
		d.endTidy(tidy)
	}()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		// With no descriptor free the kernel drops the ones sent, and
		// says so with MSG_CTRUNC.
		truncated := flags&unix.MSG_CTRUNC != 0
		fds := receivedFDs(oob[:oobn])
		d.mu.Lock()
		if d.closing {
			// Exiting: unanswered, the provider asks the next logd.
			d.mu.Unlock()
			for _, fd := range fds {
				unix.Close(fd)
			}
			return
		}
		d.busy++
		d.mu.Unlock()
		var m logdMsg
		var rep logdReply
		if err := json.Unmarshal(buf[:n], &m); err != nil || m.Name == "" {
			rep.Error = "bad request"
		} else {
			switch m.Op {
			case "add":
				if len(fds) != 1 {
					rep.Error = "add needs one descriptor"
					if truncated {
						rep.Error = noDescriptor(m.Name)
					}
					break
				}
				// A second descriptor, reserved for the log file that
				// add opens (a pipe may take the last one): a daemon
				// whose output could not be written is refused now,
				// never left half-started.
				spare, err := unix.FcntlInt(uintptr(fds[0]), unix.F_DUPFD_CLOEXEC, 0)
				if err != nil {
					rep.Error = noDescriptor(m.Name)
					break
				}
				if err := d.add(fds[0], spare, m); err != nil {
					rep.Error = err.Error()
				}
				fds = fds[1:]
			case "linger":
				// A descriptor to close once this connection ends
				// (Provider.CloseLater).
				if len(fds) != 1 {
					rep.Error = "linger needs one descriptor"
					break
				}
				lingering = append(lingering, fds[0])
				fds = fds[1:]
			case "tidy":
				// Checked when removed: only what is a cgroup goes.
				d.addTidy(tidy, m)
			case "conf":
				d.mu.Lock()
				lw := d.writers[m.Name]
				d.mu.Unlock()
				if lw != nil {
					lw.setConf(m.MaxSize, m.MaxFiles)
				}
			default:
				rep.Error = "unknown op " + strconv.Quote(m.Op)
			}
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		// Counted live (add) before it stops being busy: no idle gap.
		d.mu.Lock()
		d.busy--
		d.mu.Unlock()
		d.notify()
		b, _ := json.Marshal(rep)
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

// receivedFDs returns the descriptors passed in a control message.
func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// noDescriptor is the refusal of a daemon's pipe when the log daemon has
// no descriptor left.
func noDescriptor(name string) string {
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	return fmt.Sprintf("no file descriptor left for the output of %s: the log daemon has all %d of its limit (RLIMIT_NOFILE) in use; raise the hard limit of orch's user (ulimit -Hn, or LimitNOFILE= for a service)", name, lim.Cur)
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit: the log
// daemon holds a descriptor per running daemon (its pipe), and up to
// --open-logs log files.
func raiseNofile() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

// add takes the read end of a pipe (fd, which it owns from now on) and
// copies it to the log of m.Name until no writer is left; spare (-1 for
// none) is a descriptor it closes just before it opens the log, so that
// there is one to open it with. A pipe already being read (recover found
// it, say) is closed again.
func (d *logd) add(fd, spare int, m logdMsg) error {
	closeSpare := func() {
		if spare >= 0 {
			unix.Close(spare)
			spare = -1
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		closeSpare()
		return errors.New("not a pipe")
	}
	id := fileID{uint64(st.Dev), uint64(st.Ino)}
	// Reserve the pipe and count it live at once, so that the idle exit
	// cannot happen while its log is being opened.
	d.mu.Lock()
	if d.open[id] {
		d.mu.Unlock()
		unix.Close(fd)
		closeSpare()
		return nil
	}
	d.open[id] = true
	d.live++
	d.mu.Unlock()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		closeSpare()
		d.unreserve(id)
		return err
	}
	d.notify()
	// The log is opened (created, the first time) before the answer: a
	// started daemon has its log file (orch logs, right after the start,
	// finds it), and a log that cannot be opened fails the start, named,
	// instead of a line on the log daemon's stderr. Opening it off the
	// caller's path saved some 20 us a start and left that window open.
	d.opening <- struct{}{}
	closeSpare()
	lw, err := d.acquire(m.Name, m.MaxSize, m.MaxFiles)
	<-d.opening
	if err != nil {
		unix.Close(fd)
		d.unreserve(id)
		return err // open PATH: cause; the start names the daemon
	}
	d.watch(&logPipe{fd: fd, id: id, name: m.Name, lw: lw})
	return nil
}

func (d *logd) unreserve(id fileID) {
	d.mu.Lock()
	delete(d.open, id)
	d.live--
	idle := d.live == 0 && d.busy == 0
	d.mu.Unlock()
	// The main loop cares only for the moment the log daemon becomes
	// idle: waking it at every pipe's end (1,000 in a stop of 1,000) was
	// 5% of the log daemon's CPU there.
	if idle {
		d.notify()
	}
}

// recover takes back the pipes of the registry's daemons that still run:
// the daemon's fd 1 (or 2) is opened through /proc when it still is the
// pipe recorded.
func (d *logd) recover() {
	entries, err := readRegistry(d.dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %v\n", LogdArg, err)
		return
	}
	for _, e := range entries.inst {
		name := e.Name
		if e.Pipe == 0 || len(e.Handle) == 0 || e.Pending {
			continue
		}
		hi, err := ParseHandle([]byte(e.Handle))
		if err != nil {
			continue
		}
		if st, ok := readStat(hi.Pid); !ok || st.StartTicks != hi.StartTicks {
			continue // gone, or the pid was reused
		}
		for _, n := range []int{1, 2} {
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", hi.Pid, n), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			var st unix.Stat_t
			if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Ino != e.Pipe {
				unix.Close(fd)
				continue
			}
			d.add(fd, -1, logdMsg{Op: "add", Name: name, MaxSize: e.MaxSize, MaxFiles: e.MaxFiles})
			break
		}
	}
}

// A logPipe is a daemon's pipe being copied to its log.
type logPipe struct {
	fd   int // non-blocking
	id   fileID
	name string
	lw   *logWriter
}

// pipeLoop copies a share of the pipes to their logs: one epoll set and
// one goroutine that waits on it (a thread in epoll_wait). A pipe costs its
// descriptor and a few dozen bytes, not a goroutine parked in Go's poller
// with its stack and an os.File (10,000 daemons: about 50 MB, issue 19).
type pipeLoop struct {
	ep    int
	mu    sync.Mutex
	pipes map[int32]*logPipe
}

// startLoops starts the pipe loops, one per core up to four.
func (d *logd) startLoops() error {
	for range min(max(runtime.GOMAXPROCS(0), 1), 4) {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll: %w", err)
		}
		lp := &pipeLoop{ep: ep, pipes: map[int32]*logPipe{}}
		d.loops = append(d.loops, lp)
		go d.serveLoop(lp)
	}
	return nil
}

// watch starts copying p, or ends it at once if it cannot.
func (d *logd) watch(p *logPipe) {
	lp := d.loops[p.fd%len(d.loops)]
	lp.mu.Lock()
	lp.pipes[int32(p.fd)] = p
	lp.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.fd)}
	if err := unix.EpollCtl(lp.ep, unix.EPOLL_CTL_ADD, p.fd, &ev); err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %s: epoll: %v\n", LogdArg, p.name, err)
		lp.mu.Lock()
		delete(lp.pipes, int32(p.fd))
		lp.mu.Unlock()
		d.endPipe(p)
	}
}

func (d *logd) endPipe(p *logPipe) {
	unix.Close(p.fd)
	d.release(p.name)
	d.unreserve(p.id)
}

// serveLoop copies what the pipes of lp carry to their logs, and ends a
// pipe once no writer is left. Only this goroutine removes a pipe and
// closes its descriptor, so a descriptor number is reused only after.
func (d *logd) serveLoop(lp *pipeLoop) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(lp.ep, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			fmt.Fprintf(os.Stderr, "orch %s: epoll_wait: %v\n", LogdArg, err)
			return
		}
		for _, ev := range events[:n] {
			lp.mu.Lock()
			p := lp.pipes[ev.Fd]
			lp.mu.Unlock()
			if p == nil || !copyPipe(p, buf) {
				continue
			}
			lp.mu.Lock()
			delete(lp.pipes, ev.Fd)
			lp.mu.Unlock()
			// Closing the log daemon's only descriptor of the pipe takes
			// it out of the epoll set (an EPOLL_CTL_DEL before was 7.5%
			// of the log daemon's CPU in a stop of 1,000).
			d.endPipe(p)
		}
	}
}

// copyPipe moves what p holds to its log, up to 16 buffers at a time (the
// epoll set is level-triggered: the rest comes next round, after the
// other pipes had their turn). It reports whether p has ended (no writer
// left, or an error).
func copyPipe(p *logPipe, buf []byte) (ended bool) {
	for range 16 {
		n, err := unix.Read(p.fd, buf)
		if n > 0 {
			p.lw.Write(buf[:n])
			continue
		}
		if err == unix.EINTR {
			continue
		}
		return err != unix.EAGAIN // EOF, or a real error: done
	}
	return false
}

func (d *logd) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// acquire returns the writer of name's log, opening it on first use, with
// the rotation settings given.
func (d *logd) acquire(name string, maxSize int64, maxFiles int) (*logWriter, error) {
	d.mu.Lock()
	lw := d.writers[name]
	if lw == nil {
		// Opened (created, the first time) outside the lock: other logs
		// are being opened meanwhile.
		d.mu.Unlock()
		fresh := &logWriter{path: filepath.Join(d.dir, name+logSuffix), files: d.files}
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
	lw.setConf(maxSize, maxFiles)
	return lw, nil
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

// viaDir calls fn with a path to name in dir short enough for a unix
// socket address (108 bytes): dir itself if that fits, else through
// /proc/self/fd and a descriptor of dir.
func viaDir(dir, name string, fn func(path string) error) error {
	full := filepath.Join(dir, name)
	if len(full) < 100 {
		return fn(full)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", fd, name))
}

// logWriter appends to one log file and rotates it by size: <path> is
// renamed <path>.1, <path>.1 <path>.2, and so on up to maxFiles; older
// files are removed. A file never grows past maxSize: a write that would
// cross it is split after its last newline that fits (or at maxSize when a
// single line is longer).
//
// Its file is open only while it is among the files.max most recently
// written logs (openLogs): a write to a closed one opens it again, with
// O_APPEND, and its size is read afresh from the file.
type logWriter struct {
	refs  int           // guarded by logd.mu
	elem  *list.Element // in files.lru while f may be open; guarded by files.mu
	files *openLogs

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

// open opens the log (w.mu held, or w not shared yet) and counts it
// among the open files, closing the least recently written ones beyond
// the bound. Out of descriptors, it closes one more and tries again.
func (w *logWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) && w.files != nil && w.files.evict(w, 1) {
		f, err = os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	}
	if err != nil {
		return err
	}
	if w.files != nil {
		w.files.opened(w)
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
	if w.files != nil {
		w.files.remove(w)
	}
}

// Write appends p, rotating as needed. Errors are reported on logd's
// stderr and the data dropped: a full disk must not stop the daemons.
func (w *logWriter) Write(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil && w.files != nil {
		w.files.touch(w)
	}
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
	RotateLog(w.path, w.maxFiles)
	if err := w.open(); err != nil {
		fmt.Fprintf(os.Stderr, "orch %s: %v\n", LogdArg, err)
	}
}

// openLogs is the set of log files open, most recently written first.
// Lock order: a logWriter's mu, then openLogs.mu; closing another writer's
// file takes its mu with TryLock only (a writer busy writing is skipped:
// it is the most recent anyway).
type openLogs struct {
	mu  sync.Mutex
	max int
	lru list.List // of *logWriter
}

// opened counts w's file as open and most recent, and closes the least
// recently written ones beyond max.
func (o *openLogs) opened(w *logWriter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w.elem == nil {
		w.elem = o.lru.PushFront(w)
	} else {
		o.lru.MoveToFront(w.elem)
	}
	o.evictLocked(w, o.lru.Len()-o.max)
}

// touch makes w the most recently written.
func (o *openLogs) touch(w *logWriter) {
	o.mu.Lock()
	if w.elem != nil {
		o.lru.MoveToFront(w.elem)
	}
	o.mu.Unlock()
}

// remove forgets w (its file is closed).
func (o *openLogs) remove(w *logWriter) {
	o.mu.Lock()
	if w.elem != nil {
		o.lru.Remove(w.elem)
		w.elem = nil
	}
	o.mu.Unlock()
}

// evict closes n files other than keep's, least recently written first;
// it reports whether it closed any.
func (o *openLogs) evict(keep *logWriter, n int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.evictLocked(keep, n) > 0
}

func (o *openLogs) evictLocked(keep *logWriter, n int) (closed int) {
	for e := o.lru.Back(); e != nil && closed < n; {
		prev := e.Prev()
		w := e.Value.(*logWriter)
		if w != keep && w.mu.TryLock() {
			if w.f != nil {
				w.f.Close()
				w.f = nil
			}
			o.lru.Remove(e)
			w.elem = nil
			w.mu.Unlock()
			closed++
		}
		e = prev
	}
	return closed
}

// RotateLog moves a full log at path aside (logfile.Rotate, shared with
// the module host so that every log of orch rotates to the same names).
func RotateLog(path string, keep int) { logfile.Rotate(path, keep) }

// writeFileAtomic writes path (mode 0600) through a temporary file and a
// rename, so that a reader sees the old content or the new, never half.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic replaces the file at path with what write writes, through a
// file beside it renamed over it: a reader sees the old file or the new
// one whole. An error leaves path as it was.
func writeAtomic(path string, write func(io.Writer) error) error {
	tmp := fmt.Sprintf("%s.tmp-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	f, err := owned.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
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
