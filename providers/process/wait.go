package process

import (
	"context"
	"errors"
	"os"
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
func waitGroupGone(ctx context.Context, pgid int, deadline time.Time) bool {
	return pollUntil(ctx, deadline, func() bool { return !groupLive(pgid) })
}

// groupLive reports whether process group pgid has a member that is not a
// zombie. kill(-pgid, 0) answers "no member" cheaply; only when it finds
// members is /proc scanned, to tell zombies from live ones.
func groupLive(pgid int) bool {
	if err := unix.Kill(-pgid, 0); err == unix.ESRCH {
		return false
	}
	d, err := os.Open("/proc")
	if err != nil {
		return true
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		pid := int(atou([]byte(n)))
		if st, ok := readStat(pid); ok && st.Pgid == pgid && st.State != 'Z' && st.State != 'X' {
			return true
		}
	}
	return false
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
