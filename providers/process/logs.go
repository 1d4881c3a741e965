package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pipeSize is what the provider asks for each FIFO (F_SETPIPE_SZ): a
// daemon can write this much while logd is down before it blocks.
const pipeSize = 1 << 20

var fifoSeq atomic.Uint64

// fifo is a daemon's FIFO between createFIFO and publishFIFO: made under
// a temporary name, opened read-write (f, for the daemon's stdout and
// stderr) and watched for opens (wd, opened).
type fifo struct {
	w          *openWatch
	f          *os.File
	tmp, final string
	wd         int32
	opened     <-chan struct{}
	placed     bool
}

// createFIFO creates the FIFO of <logsDir>/<name>.fifo under a temporary
// name that logd does not look at, and opens it O_RDWR: the open never
// blocks and the daemon never gets SIGPIPE, even with no logd. A daemon
// may start writing to it at once; the pipe holds its output until logd
// reads it. close releases it.
func (p *Provider) createFIFO(logsDir, name string, cred *syscall.Credential) (*fifo, error) {
	final := filepath.Join(logsDir, name+fifoSuffix)
	tmp := fmt.Sprintf("%s.tmp-%d-%d", final, os.Getpid(), fifoSeq.Add(1))
	if err := unix.Mkfifo(tmp, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", tmp, err)
	}
	fd, err := unix.Open(tmp, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("open %s: %w", tmp, err)
	}
	f := os.NewFile(uintptr(fd), final)
	unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize) // best effort: capped by /proc/sys/fs/pipe-max-size for non-root
	if cred != nil {
		// A daemon that reopens /dev/stdout (/proc/self/fd/1) opens the
		// FIFO by path: let its user do that.
		unix.Fchown(fd, int(cred.Uid), int(cred.Gid))
	}
	// Watch for logd's open before anyone but us can see the FIFO. Our
	// own open above came before the watch: it does not count.
	wd, opened, err := p.opens.add(tmp)
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &fifo{w: &p.opens, f: f, tmp: tmp, final: final, wd: wd, opened: opened}, nil
}

// close closes our end of the FIFO (the daemon has its own copies) and
// removes it if it was never published.
func (ff *fifo) close() {
	ff.f.Close()
	ff.w.remove(ff.wd)
	if !ff.placed {
		os.Remove(ff.tmp)
	}
}

// publishFIFO renames the FIFO into place, where logd finds it, so logd
// never sees a FIFO without a writer (for logd, EOF means the daemon is
// gone). Rename and the check that a logd runs happen under the start
// lock: see logd.tryExit for why. It returns once logd has opened the
// FIFO (an inotify IN_OPEN on it): until then ff.f is the only thing that
// keeps a short-lived daemon's output alive, and the caller may close it
// right after. On an error the FIFO is removed.
func (p *Provider) publishFIFO(logsDir string, ff *fifo) error {
	if err := p.placeFIFO(logsDir, ff.tmp, ff.final); err != nil {
		return err
	}
	ff.placed = true
	if err := waitOpened(ff.opened, time.Now().Add(p.opts.LogdStartTimeout)); err != nil {
		os.Remove(ff.final)
		return fmt.Errorf("the log daemon of %s did not open %s: %w", logsDir, filepath.Base(ff.final), err)
	}
	return nil
}

// placeFIFO renames tmp to final and makes sure a logd runs, under the
// start lock.
func (p *Provider) placeFIFO(logsDir, tmp, final string) error {
	sl, err := os.OpenFile(filepath.Join(logsDir, startLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	defer sl.Close() // releases the start lock
	if err := flockRetry(int(sl.Fd()), unix.LOCK_EX); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lock %s: %w", sl.Name(), err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := p.ensureLogd(logsDir); err != nil {
		os.Remove(final)
		return err
	}
	return nil
}

// ensureLogd starts the log daemon of logsDir unless one runs (holds the
// instance lock), and waits until the new one holds it (it writes its pid
// file after taking the lock). The caller holds the start lock, so no
// other provider starts one meanwhile and no logd exits meanwhile without
// a last scan.
func (p *Provider) ensureLogd(logsDir string) error {
	lf, err := os.OpenFile(filepath.Join(logsDir, logdLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // a logd runs
		}
		return fmt.Errorf("lock %s: %w", lf.Name(), err)
	}
	unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	lf.Close()

	out, err := os.OpenFile(filepath.Join(logsDir, logdOutName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
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
	argv := append(append([]string(nil), p.self...), LogdArg, "--idle", p.opts.LogdIdle.String(), logsDir)
	proc, err := os.StartProcess(p.self[0], argv, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=" + path, HelperEnv + "=logd"},
		Files: []*os.File{devnull, out, out},
		Sys:   &syscall.SysProcAttr{Setsid: true}, // outlives orch, deaf to its terminal
	})
	if err != nil {
		return fmt.Errorf("cannot start the log daemon %q: %w", p.self[0], err)
	}
	exited := make(chan struct{})
	go func() { proc.Wait(); close(exited) }() // reap it if it exits while orch runs
	want := strconv.Itoa(proc.Pid)
	pidPath := filepath.Join(logsDir, logdPidName)
	deadline := time.Now().Add(p.opts.LogdStartTimeout)
	for d := time.Millisecond; ; d = min(2*d, 20*time.Millisecond) {
		if b, err := os.ReadFile(pidPath); err == nil && strings.TrimSpace(string(b)) == want {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the log daemon (%s %s) exited at once; see %s", p.self[0], LogdArg, out.Name())
		case <-time.After(d):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the log daemon (pid %d) did not start within %s; see %s", proc.Pid, p.opts.LogdStartTimeout, out.Name())
		}
	}
}

// writeJSON writes v as JSON into path, in place.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}
