package process

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
)

var (
	_ providers.Watcher      = (*Provider)(nil)
	_ providers.ExitNotifier = (*Provider)(nil)
)

// Watch reports when the daemon behind req.Handle stops running: it is
// NotifyExit with a channel, and parks no goroutine either. A bad handle
// is an error; a process that is already gone is reported at once.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	ch := make(chan providers.Observed, 1)
	var once sync.Once
	end := func(obs *providers.Observed) {
		once.Do(func() {
			if obs != nil {
				ch <- *obs
			}
			close(ch)
		})
	}
	cancel, err := p.NotifyExit(req, func(obs providers.Observed) { end(&obs) })
	if err != nil {
		return providers.WatchResponse{}, err
	}
	context.AfterFunc(ctx, func() { cancel(); end(nil) })
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
		// From c itself, not looked up again: a Stop that waited for the
		// same reap may have forgotten c by then, and the exit would read
		// "missing", its status lost.
		return p.onReaped(c, func() { exited(p.observeChild(c, hi)) }), nil
	}
	// Until a cancel, or the end.
	ctx, stop := context.WithCancel(context.Background())
	report := func() { exited(p.strangerEnded(ctx, hi)) }
	never := time.Now().Add(100 * 365 * 24 * time.Hour) // only a cancel ends the wait
	// waitThen reports on a goroutine of its own once wait says the
	// process ended: the fallbacks, when the reaper's thread cannot wait.
	waitThen := func(wait func() bool) {
		go func() {
			if wait() {
				report()
			}
		}()
	}
	fd, err := unix.PidfdOpen(hi.Pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		go report()
		return stop, nil
	}
	if err != nil {
		waitThen(func() bool { return waitExitPolling(ctx, hi, p.identify, never) })
		return stop, nil
	}
	// The pid may have changed hands before the pidfd was opened: check
	// after opening, so the pidfd is known to refer to our process.
	if p.identify(hi) != procAlive {
		unix.Close(fd)
		go report() // it may wait for the reaping: not on the caller's goroutine
		return stop, nil
	}
	// The reaper's thread waits on a copy in its own descriptor table
	// (reaper.go): a watch of each of 10,000 adopted daemons leaves
	// orch's table, which each fork copies, as it was.
	cancelWait, ok := watchLater(fd, func(ended bool) {
		if ended {
			go report()
		} else {
			// The reaper's thread could not hold the pidfd.
			waitThen(func() bool { return waitExit(ctx, hi, p.identify, never) })
		}
	})
	if ok {
		unix.Close(fd)
		return func() { cancelWait(); stop() }, nil
	}
	waitThen(func() bool { return waitPolled(ctx, fd, hi, p.identify, never) })
	return stop, nil
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
	w := &f // its own pointer: what cancel finds it by
	c.waiters = append(c.waiters, w)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		c.waiters = slices.DeleteFunc(c.waiters, func(o *func()) bool { return o == w })
	}
}

// waitPolled waits, through Go's network poller, until the process of
// pidfd fd (hi's) has ended (true) or ctx is done (false), and closes fd:
// a watch when the reaper's thread is not there to hold it.
func waitPolled(ctx context.Context, fd int, hi HandleInfo, identify func(HandleInfo) procIdentity, never time.Time) bool {
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails unless the poller holds f
	}
	if err != nil {
		return waitExit(ctx, hi, identify, never)
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
