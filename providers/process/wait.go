package process

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// waitExit waits until the process of hi has exited (gone, a zombie, or its
// pid reused), until deadline or ctx is done, and reports whether it has.
// It sleeps in poll(2) on a pidfd, which becomes readable when the process
// exits; without pidfd (Linux < 5.3) it polls /proc with a backoff.
func waitExit(ctx context.Context, hi HandleInfo, identify func(HandleInfo) procIdentity, deadline time.Time) bool {
	fd, err := unix.PidfdOpen(hi.Pid, 0)
	if err == nil {
		defer unix.Close(fd)
		// The pid may have changed hands before the pidfd was opened: check
		// after opening, so the pidfd is known to refer to our process.
		if identify(hi) != procAlive {
			return true
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			left := time.Until(deadline)
			if left <= 0 || ctx.Err() != nil {
				return false
			}
			ms := int(min(left, 100*time.Millisecond) / time.Millisecond)
			n, err := unix.Poll(fds, max(ms, 1))
			if n > 0 {
				return true
			}
			if err != nil && err != unix.EINTR {
				break // fall back to polling
			}
		}
	}
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	return waitExitPolling(ctx, hi, identify, deadline)
}

// waitExitPolling is waitExit without pidfd: it polls /proc.
func waitExitPolling(ctx context.Context, hi HandleInfo, identify func(HandleInfo) procIdentity, deadline time.Time) bool {
	return pollUntil(ctx, deadline, func() bool { return identify(hi) != procAlive })
}

// waitGroupGone waits until process group pgid has no live member (zombies
// waiting for their parent do not count), until deadline or ctx is done.
//
// kill(-pgid, 0) says "no member" for one system call; while it finds
// members (often only the exited leader, a zombie until init reaps it:
// orch is not its parent when another orch started it), it is asked again
// with a growing interval for groupReapWait. Only then is /proc read to
// tell zombies from live members, through scans, one process's every
// Stop waiting at once shares: the cost is that of a few scans of /proc
// per destroy, not of one scan per daemon per poll.
func (p *Provider) waitGroupGone(ctx context.Context, pgid int, deadline time.Time) bool {
	first := time.Now()
	return pollUntil(ctx, deadline, func() bool {
		if unix.Kill(-pgid, 0) == unix.ESRCH {
			return true
		}
		if time.Since(first) < groupReapWait {
			return false
		}
		return !p.scans.groupLive(pgid, time.Now())
	})
}

// groupReapWait is how long a Stop waits for a process group to empty
// (its zombies reaped) before it reads /proc to tell zombies from live
// members.
const groupReapWait = 100 * time.Millisecond

// groupScans shares scans of /proc among the goroutines that ask at once
// whether a process group has a live member.
type groupScans struct {
	mu      sync.Mutex
	running chan struct{} // closed when the scan in flight ends; nil if none
	at      time.Time     // when the last finished scan began
	live    map[int]bool  // pgids with a live member, as of that scan
	count   int           // scans done, for tests
}

// groupLive reports whether process group pgid had a live (not zombie)
// member in a scan of /proc begun at since or later: a scan in flight that
// began earlier is waited for, then a new one made (by one of the
// goroutines asking, for all of them).
func (s *groupScans) groupLive(pgid int, since time.Time) bool {
	for {
		s.mu.Lock()
		if s.live != nil && !s.at.Before(since) {
			v := s.live[pgid]
			s.mu.Unlock()
			return v
		}
		if ch := s.running; ch != nil {
			s.mu.Unlock()
			<-ch
			continue
		}
		ch := make(chan struct{})
		s.running = ch
		s.mu.Unlock()
		at := time.Now()
		live := scanGroups()
		s.mu.Lock()
		s.live, s.at, s.running = live, at, nil
		s.count++
		s.mu.Unlock()
		close(ch)
	}
}

// scanGroups reads every process's /proc/<pid>/stat once and returns the
// process groups that have a live (not zombie) member.
func scanGroups() map[int]bool {
	live := map[int]bool{}
	d, err := os.Open("/proc")
	if err != nil {
		return live
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		pid := int(atou([]byte(n)))
		if st, ok := readStat(pid); ok && st.State != 'Z' && st.State != 'X' {
			live[st.Pgid] = true
		}
	}
	return live
}

// pollUntil calls done with a growing interval (1ms up to 50ms) until it
// returns true (then true), or deadline passes or ctx is done (then false).
func pollUntil(ctx context.Context, deadline time.Time, done func() bool) bool {
	d := time.Millisecond
	for {
		if done() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return false
		}
		t := time.NewTimer(min(d, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return done()
		}
		d = min(d*2, 50*time.Millisecond)
	}
}
