package process

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
)

var _ providers.Watcher = (*Provider)(nil)

// Watch reports when the daemon behind req.Handle stops running. A child
// of this Provider is waited for through its reaper (the exit status is
// known); any other process through a pidfd that the reaper's thread
// holds in its own descriptor table (watchLater; Go's network poller
// where it cannot), so that a watch costs a parked goroutine and no
// thread, no timer and no descriptor in orch's table. Without pidfd
// (Linux < 5.3) it polls /proc, from 1ms up to 50ms.
// A bad handle is an error; a process that is already gone is reported at
// once.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.WatchResponse{}, &providers.Error{Op: "watch", Err: err}
	}
	ch := make(chan providers.Observed, 1)
	c := p.child(hi)
	go func() {
		defer close(ch)
		if c != nil {
			select {
			case <-c.done:
			case <-ctx.Done():
				return
			}
		} else if !p.waitPidfd(ctx, hi) {
			return
		}
		if c != nil {
			ch <- p.endOf(hi)
		} else {
			ch <- p.strangerEnded(ctx, hi)
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}

// reapGrace bounds how long the end of a process this Provider did not
// start (an adopted daemon) is held back until its parent reaps it.
const reapGrace = 2 * time.Second

// endOf is the observation of hi's process once it has ended.
func (p *Provider) endOf(hi HandleInfo) providers.Observed {
	obs := p.observeInfo(hi)
	if obs.State == providers.StateRunning {
		// Exited, but a stranger's zombie reaper has not run yet:
		// what ran is gone all the same.
		obs.State = providers.StateExited
	}
	return obs
}

// strangerEnded is endOf for a process this Provider did not start: read
// while it is still a zombie (its exit status is in its stat then), and
// returned once its parent reaped it, or after reapGrace, or ctx's end.
// Until then its pid is taken: a daemon restarted meanwhile that checks
// its pid file with kill(pid, 0) finds its old self still there
// (postgres: "lock file postmaster.pid already exists ... Is another
// postmaster (PID n) running", twice in a row under a PID 1 that reaps
// lazily, before it started on the third try). Under an init that reaps
// at once, nothing is held back.
func (p *Provider) strangerEnded(ctx context.Context, hi HandleInfo) providers.Observed {
	obs := p.endOf(hi)
	pollUntil(ctx, time.Now().Add(reapGrace), func() bool { return p.identify(hi) != procZombie })
	return obs
}

// NotifyExit is Watch without a goroutine per watch
// (providers.ExitNotifier): exited is called once the process of
// req.Handle has ended. A child of this process: from the reaper's
// dispatcher, as it is reaped. Another process (an adopted daemon): from a
// goroutine started when the reaper's thread sees its pidfd fire, so that
// 10,000 ending at once do not read /proc one after the other on the
// dispatcher. Supervising 10,000 daemons parked 10,000 goroutines in
// Watch.
func (p *Provider) NotifyExit(req providers.WatchRequest, exited func(providers.Observed)) (cancel func(), err error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return nil, &providers.Error{Op: "watch", Err: err}
	}
	if c := p.child(hi); c != nil {
		return p.onReaped(c, func() { exited(p.endOf(hi)) }), nil
	}
	// Until a cancel, or the end: a watch that falls back to polling.
	ctx, stop := context.WithCancel(context.Background())
	report := func() { exited(p.strangerEnded(ctx, hi)) }
	never := time.Now().Add(100 * 365 * 24 * time.Hour) // only a cancel ends the wait
	wait := func(how func(context.Context, HandleInfo, func(HandleInfo) procIdentity, time.Time) bool) {
		go func() {
			if how(ctx, hi, p.identify, never) {
				report()
			}
		}()
	}
	fd, err := unix.PidfdOpen(hi.Pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		stop()
		report()
		return func() {}, nil
	}
	if err != nil {
		wait(waitExitPolling)
		return stop, nil
	}
	// The pid may have changed hands before the pidfd was opened: check
	// after opening, so the pidfd is known to refer to our process.
	if p.identify(hi) != procAlive {
		unix.Close(fd)
		stop()
		report()
		return func() {}, nil
	}
	cancelWait, ok := watchLater(fd, func(ended bool) {
		if ended {
			go report()
		} else {
			wait(waitExit) // the reaper's thread could not hold the pidfd
		}
	})
	unix.Close(fd)
	if !ok {
		wait(waitExit)
		return stop, nil
	}
	return func() { cancelWait(); stop() }, nil
}

// onReaped calls f once child c is reaped (at once if it was), unless
// the returned cancel came first.
func (p *Provider) onReaped(c *child, f func()) (cancel func()) {
	p.mu.Lock()
	if c.ended {
		p.mu.Unlock()
		f()
		return func() {}
	}
	p.waiterID++
	id := p.waiterID
	c.waiters = append(c.waiters, childWaiter{id: id, f: f})
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, w := range c.waiters {
			if w.id == id {
				c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				break
			}
		}
	}
}

// waitPidfd blocks until the process of hi is no longer alive (true) or
// ctx is done (false).
func (p *Provider) waitPidfd(ctx context.Context, hi HandleInfo) bool {
	never := time.Now().Add(100 * 365 * 24 * time.Hour) // only ctx ends the wait
	fd, err := unix.PidfdOpen(hi.Pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	if err != nil {
		return pollUntil(ctx, never, func() bool { return p.identify(hi) != procAlive })
	}
	// The pid may have changed hands before the pidfd was opened: check
	// after opening, so the pidfd is known to refer to our process.
	if p.identify(hi) != procAlive {
		unix.Close(fd)
		return true
	}
	// The reaper's thread waits on a copy in its own descriptor table
	// (reaper.go): a watch of each of 10,000 adopted daemons leaves
	// orch's table, which each fork copies, as it was.
	fired := make(chan bool, 1)
	if cancel, ok := watchLater(fd, func(exited bool) { fired <- exited }); ok {
		unix.Close(fd)
		select {
		case exited := <-fired:
			if exited {
				return true
			}
			return waitExit(ctx, hi, p.identify, never)
		case <-ctx.Done():
			cancel()
			return false
		}
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails unless the poller holds f
	}
	if err != nil {
		return waitExit(ctx, hi, p.identify, never)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	exited := false
	rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		exited = n > 0
		return exited
	})
	return exited
}
