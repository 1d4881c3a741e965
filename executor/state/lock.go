package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/orch-dev/orch/providers/owned"
	"golang.org/x/sys/unix"
)

// lockPollInterval is how often a waiting writer retries the lock.
const lockPollInterval = 25 * time.Millisecond

// LockInfo identifies the holder of a state lock. It is what the lock file
// holds, as JSON.
type LockInfo struct {
	Pid       int       `json:"pid"`
	Operation string    `json:"operation"` // "apply", "up", "destroy", ...
	Since     time.Time `json:"since"`
	Host      string    `json:"host"`
}

// LockedError is returned by Open when another writer holds the lock and
// Options.LockTimeout ran out (or was zero). Its fields describe the holder
// as it recorded itself; they are zero when the holder had not written
// them yet.
type LockedError struct {
	Path string // the lock file
	LockInfo
}

func (e *LockedError) Error() string {
	if e.Pid == 0 {
		return "state locked by another process (it has not recorded who it is yet): " + e.Path
	}
	op := e.Operation
	if op == "" {
		op = "unknown operation"
	}
	return fmt.Sprintf("state locked by pid %d since %s (%s on host %s): %s",
		e.Pid, e.Since.Format(time.RFC3339), op, e.Host, e.Path)
}

// fileLock is a held exclusive flock on a lock file.
type fileLock struct {
	f    *os.File
	info LockInfo
}

// acquireLock takes the exclusive lock on path, waiting up to timeout
// (zero or less: not at all). onWait, when not nil, is called after each
// failed attempt (tests use it to know a waiter is waiting).
func acquireLock(path string, info LockInfo, timeout time.Duration, onWait func()) (*fileLock, error) {
	// owned.OpenFile opens with O_CLOEXEC (a daemon forked by orch never
	// inherits the lock) and O_NOFOLLOW, and refuses a lock file another
	// user owns or may write.
	f, err := owned.OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	graced := false
	for {
		err := flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", path, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			holder := readHolder(f)
			if !graced && holderGone(holder) {
				// The holder died, but a process it was starting still
				// holds a copy of the lock: a fork has a copy of every
				// descriptor until its exec closes those marked
				// close-on-exec, and a holder killed meanwhile (orch up
				// killed in the middle of its starts) does not wait for
				// that. It is released in a moment.
				graced = true
				deadline = time.Now().Add(deadHolderGrace)
				continue
			}
			f.Close()
			return nil, &LockedError{Path: path, LockInfo: holder}
		}
		if onWait != nil {
			onWait()
		}
		time.Sleep(min(left, lockPollInterval))
	}
	// Write our identity first, then cut what a dead predecessor left
	// behind: a contender reading in between decodes the first JSON value
	// and ignores the tail.
	b, _ := json.Marshal(info)
	b = append(b, '\n')
	if _, err := f.WriteAt(b, 0); err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if err != nil {
		flock(f, unix.LOCK_UN)
		f.Close()
		return nil, fmt.Errorf("write state lock %s: %w", path, err)
	}
	return &fileLock{f: f, info: info}, nil
}

// release empties the lock file and releases the lock.
func (l *fileLock) release() error {
	err := l.f.Truncate(0)
	if uerr := flock(l.f, unix.LOCK_UN); err == nil {
		err = uerr
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readHolder reads the holder's identity from a lock file we failed to
// lock. The holder writes it right after taking the lock, so for a short
// while the file may be empty or still name a dead predecessor; retry
// briefly before settling for what is there.
func readHolder(f *os.File) LockInfo {
	var info LockInfo
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		info = LockInfo{}
		buf := make([]byte, 4096)
		n, _ := f.ReadAt(buf, 0)
		err := json.NewDecoder(bytes.NewReader(buf[:n])).Decode(&info)
		plausible := err == nil && info.Pid > 0 && !holderGone(info)
		if plausible || time.Now().After(deadline) {
			return info
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadHolderGrace is how long a writer waits for a lock whose recorded
// holder is gone, beyond its own timeout (acquireLock).
const deadHolderGrace = 2 * time.Second

// holderGone reports whether the lock's recorded holder is a process of
// this host that no longer exists.
func holderGone(h LockInfo) bool {
	host, _ := os.Hostname()
	return h.Pid > 0 && h.Host == host && unix.Kill(h.Pid, 0) == unix.ESRCH
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
