package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/owned"
)

// pipeSize is what the provider asks for each daemon's pipe
// (F_SETPIPE_SZ): a daemon can write this much while no logd reads before
// it blocks.
const pipeSize = 1 << 20

// daemonPipe makes the pipe a daemon writes its stdout and stderr to. It
// returns the daemon's end, opened read-write (through /proc/self/fd, from
// the read end), so the daemon never gets SIGPIPE, even while no log
// daemon reads: it blocks once the pipe is full instead; the read end, for
// logd; and the pipe's inode, by which a later logd recognises it. A pipe
// lives in no file system: making one creates no file.
func daemonPipe(cred *syscall.Credential) (daemon *os.File, read int, ino uint64, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, -1, 0, fmt.Errorf("pipe: %w", err)
	}
	unix.Close(p[1])
	rw, err := unix.Open("/proc/self/fd/"+strconv.Itoa(p[0]), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(p[0])
		return nil, -1, 0, fmt.Errorf("reopen pipe read-write: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(rw, &st); err != nil {
		unix.Close(p[0])
		unix.Close(rw)
		return nil, -1, 0, err
	}
	unix.FcntlInt(uintptr(rw), unix.F_SETPIPE_SZ, pipeSize) // best effort: capped by /proc/sys/fs/pipe-max-size for non-root
	if cred != nil {
		// A daemon that reopens /dev/stdout (/proc/self/fd/1) opens the
		// pipe by its inode: let its user do that.
		unix.Fchown(rw, int(cred.Uid), int(cred.Gid))
	}
	return os.NewFile(uintptr(rw), "pipe"), p[0], st.Ino, nil
}

// errNoLogd says that no log daemon took the request: none runs, or the one
// that ran was exiting.
var errNoLogd = errors.New("no log daemon")

// logdRequest sends m (and fd, unless negative) to the log daemon of
// logsDir and waits for its answer. It starts a log daemon when none runs,
// and tries again when the one it reached was exiting; it gives up after
// LogdStartTimeout. The caller keeps fd: logd has a copy once this
// returns nil.
func (p *Provider) logdRequest(logsDir string, m logdMsg, fd int) error {
	c := p.logdConn(logsDir)
	deadline := time.Now().Add(p.opts.LogdStartTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		err := c.request(m, fd, p.opts.LogdStartTimeout)
		if !errors.Is(err, errNoLogd) {
			return err
		}
		started, err := p.ensureLogd(logsDir)
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the log daemon of %s did not answer within %s", logsDir, p.opts.LogdStartTimeout)
		}
		if !started {
			// One holds the lock but did not answer: it is exiting.
			time.Sleep(wait)
		}
	}
}

// logdConn is a provider's connection to the log daemon of one logs
// directory, kept between requests (a connection costs a socket, a
// connect and a close) and made again when the log daemon it reached is
// gone. Requests on it take turns.
type logdConn struct {
	dir string
	mu  sync.Mutex
	fd  int // -1: not connected
}

func (p *Provider) logdConn(logsDir string) *logdConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.logds[logsDir]
	if c == nil {
		c = &logdConn{dir: logsDir, fd: -1}
		p.logds[logsDir] = c
	}
	return c
}

// request makes one request, connecting first if needed. Failing to reach
// logd, or losing it before its answer, is errNoLogd (and the connection
// is dropped).
func (c *logdConn) request(m logdMsg, fd int, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		s, err := dialLogd(c.dir, timeout)
		if err != nil {
			return err
		}
		c.fd = s
	}
	err := logdExchange(c.fd, c.dir, m, fd, timeout)
	var refused logdRefusal
	if err != nil && !errors.As(err, &refused) {
		unix.Close(c.fd) // lost, or in an unknown state: connect again
		c.fd = -1
	}
	return err
}

// dialLogd connects to the log daemon of logsDir; errNoLogd when none
// listens.
func dialLogd(logsDir string, timeout time.Duration) (int, error) {
	// A socket another user planted would receive the daemons' pipes.
	if err := owned.Check(filepath.Join(logsDir, logdSockName)); err != nil {
		return -1, err
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	err = viaDir(logsDir, logdSockName, func(path string) error {
		return unix.Connect(s, &unix.SockaddrUnix{Name: path})
	})
	if err != nil {
		unix.Close(s)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return -1, errNoLogd
		}
		return -1, fmt.Errorf("connect to the log daemon: %w", err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return s, nil
}

// logdRefusal is logd's answer refusing a request: the connection itself
// is fine.
type logdRefusal struct{ reason string }

func (r logdRefusal) Error() string { return "the log daemon: " + r.reason }

// logdExchange sends m (and fd, unless negative) on s and reads the
// answer.
func logdExchange(s int, logsDir string, m logdMsg, fd int, timeout time.Duration) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(s, b, oob, nil, 0); err != nil {
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ENOTCONN) {
			return errNoLogd
		}
		return fmt.Errorf("send to the log daemon: %w", err)
	}
	buf := make([]byte, 1024)
	for {
		n, err := unix.Read(s, buf)
		if err == unix.EINTR {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("the log daemon of %s did not answer within %s", logsDir, timeout)
		}
		if err != nil || n == 0 {
			return errNoLogd // reset or closed: it was exiting
		}
		var rep logdReply
		if err := json.Unmarshal(buf[:n], &rep); err != nil {
			return fmt.Errorf("the log daemon answered %q", buf[:n])
		}
		if rep.Error != "" {
			return logdRefusal{rep.Error}
		}
		return nil
	}
}

// ensureLogd starts the log daemon of logsDir unless one runs (holds the
// instance lock), and waits until the new one listens (it writes its pid
// file then). It reports whether it started one. Providers (of this
// process or another) serialise here on the start lock, so only one of
// them starts a log daemon at a time.
func (p *Provider) ensureLogd(logsDir string) (started bool, err error) {
	if err := owned.Dir(logsDir); err != nil {
		return false, err
	}
	sl, err := owned.OpenFile(filepath.Join(logsDir, startLockName), os.O_CREATE|os.O_RDWR)
	if err != nil {
		return false, err
	}
	defer sl.Close() // releases the start lock
	if err := flockRetry(int(sl.Fd()), unix.LOCK_EX); err != nil {
		return false, fmt.Errorf("lock %s: %w", sl.Name(), err)
	}
	lf, err := owned.OpenFile(filepath.Join(logsDir, logdLockName), os.O_CREATE|os.O_RDWR)
	if err != nil {
		return false, err
	}
	err = unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil // a logd runs
		}
		return false, fmt.Errorf("lock %s: %w", lf.Name(), err)
	}
	unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	lf.Close()
	return true, p.startLogd(logsDir)
}

// startLogd starts a log daemon for logsDir and waits until it listens.
func (p *Provider) startLogd(logsDir string) error {
	out, err := owned.OpenFile(filepath.Join(logsDir, logdOutName), os.O_CREATE|os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return err
	}
	defer out.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultPath
	}
	// logd closes its end of ready once it listens (or exits): no
	// polling for its pid file.
	ready, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer ready.Close()
	argv := append(append([]string(nil), p.self...), LogdArg, "--idle", p.opts.LogdIdle.String(), "--ready-fd", "3")
	if p.opts.LogdOpenLogs > 0 {
		argv = append(argv, "--open-logs", strconv.Itoa(p.opts.LogdOpenLogs))
	}
	argv = append(argv, logsDir)
	env := []string{"PATH=" + path, HelperEnv + "=logd"}
	if prof := os.Getenv(logdProfileEnv); prof != "" {
		env = append(env, logdProfileEnv+"="+prof)
	}
	proc, err := os.StartProcess(p.self[0], argv, &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{devnull, out, out, readyW},
		Sys:   &syscall.SysProcAttr{Setsid: true}, // outlives orch, deaf to its terminal
	})
	readyW.Close()
	if err != nil {
		return fmt.Errorf("cannot start the log daemon %q: %w", p.self[0], err)
	}
	exited := make(chan struct{})
	var status *os.ProcessState
	go func() { status, _ = proc.Wait(); close(exited) }() // reap it if it exits while orch runs
	ready.SetReadDeadline(time.Now().Add(p.opts.LogdStartTimeout))
	var b [1]byte
	if n, _ := ready.Read(b[:]); n == 1 {
		return nil // it listens
	}
	// Closed without a word: it exited (or timed out).
	select {
	case <-exited:
	case <-time.After(p.opts.LogdStartTimeout):
		return fmt.Errorf("the log daemon (pid %d) did not start within %s; see %s", proc.Pid, p.opts.LogdStartTimeout, out.Name())
	}
	if status != nil && status.Success() {
		// It ran and exited already: it found another logd, or it went
		// idle (a very short LogdIdle) at once. The caller tries again.
		return nil
	}
	return fmt.Errorf("the log daemon (%s %s) exited at once: %s; see %s", p.self[0], LogdArg, status, out.Name())
}
