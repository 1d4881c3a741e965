package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/engine"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/notify"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/pflag"
)

// waitFlags are orch apply's -wait and -wait-timeout.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", true, "wait for what was started to be ready; dependents start only once their dependencies are (-wait=false: return once started)")
	fs.DurationVar(&w.timeout, "wait-timeout", 0, "bound on the whole wait for readiness (`DURATION`; 0: each daemon's health.start_timeout)")
}

// aliveAfter is how long after its start a daemon without a health check
// must still run for orch apply to call it started (one that dies at once,
// on a missing file or a port in use, is reported, not "complete").
const aliveAfter = 500 * time.Millisecond

// readiness is orch apply's wait: a daemon with a health check is ready
// once a probe passes (dependents wait for it); one without is checked
// still running aliveAfter after its start, all at once after the apply.
type readiness struct {
	s        *session
	deadline time.Time // zero: none beyond each start_timeout

	mu      sync.Mutex
	started []startedDaemon // without a health check, for checkAlive
	// logFrom is where each daemon's log file ended when this apply
	// began to start it: its failure quotes the lines written since, not
	// those of an earlier start (the process runtime appends every
	// start of a daemon to one file).
	logFrom map[spec.Address]int64
}

type startedDaemon struct {
	addr    spec.Address
	rt      spec.Address
	handle  providers.Handle
	started time.Time
}

func newReadiness(s *session, w *waitFlags) *readiness {
	r := &readiness{s: s}
	if w.timeout > 0 {
		r.deadline = time.Now().Add(w.timeout)
	}
	return r
}

// install makes ex wait for readiness.
func (r *readiness) install(ex *executor.Executor) {
	ex.WaitUp = r.waitUp
	ex.Ready = r.waitReady
	progress := ex.Progress
	ex.Progress = func(ev executor.StepEvent) {
		if ev.Kind == executor.StepUp && !ev.Done && !ev.Skipped && !ev.Running && ev.Addr.Kind == spec.KindDaemon {
			r.noteLogEnd(ev.Addr)
		}
		if progress != nil {
			progress(ev)
		}
	}
}

// noteLogEnd notes where addr's log file (the process runtime's) ends now,
// as its start begins; nothing when it has none.
func (r *readiness) noteLogEnd(addr spec.Address) {
	fi, err := os.Stat(process.LogPath(r.s.stateDir, addr))
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logFrom == nil {
		r.logFrom = map[spec.Address]int64{}
	}
	r.logFrom[addr] = fi.Size()
}

// waitReady is waitUp for the new half of a create_before_destroy
// replace, whose check the old instance, still running, may answer
// (engine.AwaitOwnListener, as orch up's engine waits).
func (r *readiness) waitReady(ctx context.Context, c *planner.Change, h providers.Handle) error {
	if err := r.waitUp(ctx, c, h); err != nil || c.Resource.Health == nil {
		return err
	}
	res := c.Resource
	deadline, within := r.bound(res.Health)
	gone := func() error { return r.exited(ctx, c, h) }
	err := engine.AwaitOwnListener(ctx, r.s.provs[res.Runtime.Type], r.runtime(res.Runtime), c, h, probeEvery(res.Health), deadline, within, gone)
	var nop *engine.NotOwnPortError
	if errors.As(err, &nop) {
		return r.failure(ctx, c.Addr, res.Runtime, h, err.Error())
	}
	return err
}

// bound is when a wait for hc's instance to be ready gives up: at its
// start_timeout from now, or at -wait-timeout when that comes first;
// within names which.
func (r *readiness) bound(hc *spec.Health) (deadline time.Time, within string) {
	limit := hc.StartTimeout
	if limit <= 0 {
		limit = spec.DefaultStartTimeout
	}
	deadline, within = time.Now().Add(limit), fmt.Sprintf("start_timeout %s", limit)
	if !r.deadline.IsZero() && r.deadline.Before(deadline) {
		deadline, within = r.deadline, "-wait-timeout"
	}
	return deadline, within
}

// probeEvery is how often a wait probes hc: its interval, at most 200 ms.
func probeEvery(hc *spec.Health) time.Duration {
	if every := min(hc.Interval, 200*time.Millisecond); every > 0 {
		return every
	}
	return 200 * time.Millisecond
}

// exited is the failure of c's instance h once it no longer runs; nil
// while it does (or cannot be told).
func (r *readiness) exited(ctx context.Context, c *planner.Change, h providers.Handle) error {
	if o, ok := r.observe(ctx, c.Resource.Runtime, c.Addr, h); ok && o.State != providers.StateRunning {
		return r.failure(ctx, c.Addr, c.Resource.Runtime, h, "exited before it was ready ("+o.Ended()+")")
	}
	return nil
}

func (r *readiness) waitUp(ctx context.Context, c *planner.Change, h providers.Handle) error {
	res := c.Resource
	if res.Health == nil {
		r.mu.Lock()
		r.started = append(r.started, startedDaemon{addr: c.Addr, rt: res.Runtime, handle: h, started: time.Now()})
		r.mu.Unlock()
		return nil
	}
	hc := res.Health
	deadline, within := r.bound(hc)
	why := "not ready within " + within
	if hc.Notify {
		return r.waitNotify(ctx, c, h, deadline, why)
	}
	every := probeEvery(hc)
	for {
		err := engine.Probe(ctx, hc, res)
		if err == nil {
			return nil
		}
		if err := r.exited(ctx, c, h); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return r.failure(ctx, c.Addr, res.Runtime, h, fmt.Sprintf("%s; the last probe: %v", why, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// waitNotify waits for a daemon declared with health { notify = true } to
// say READY=1. A backend that follows readiness itself (systemd: the
// unit is Type=notify, and NOTIFY_SOCKET is systemd's) is asked through
// its Health; otherwise the message comes to the daemon's notify socket,
// which the process provider bound in this process before the start.
func (r *readiness) waitNotify(ctx context.Context, c *planner.Change, h providers.Handle, deadline time.Time, why string) error {
	res := c.Resource
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	notReady := func(detail string) error {
		return r.failure(context.WithoutCancel(ctx), c.Addr, res.Runtime, h, why+"; "+detail)
	}
	if hc, ok := r.s.provs[res.Runtime.Type].(providers.NotifyFollower); ok {
		req := providers.HealthRequest{Runtime: r.runtime(res.Runtime), Addr: c.Addr, Handle: h}
		for {
			resp, err := hc.Health(ctx, req)
			switch {
			case ctx.Err() != nil && time.Now().Before(deadline):
				return ctx.Err()
			case ctx.Err() != nil:
				return notReady("its runtime says: " + resp.Detail)
			case err != nil:
				return r.failure(ctx, c.Addr, res.Runtime, h, "readiness unknown: "+err.Error())
			case resp.Status == providers.HealthHealthy:
				return nil
			case resp.Status == providers.HealthUnhealthy:
				return r.failure(ctx, c.Addr, res.Runtime, h, "never became ready: "+resp.Detail)
			}
			if resp.Status == providers.HealthNone {
				break // the backend leaves it to orch's own socket
			}
			req.Wait, req.Prior = true, resp.Status
		}
	}
	path, err := notify.Path(r.s.stateDir, c.Addr)
	var sock *notify.Socket
	if err == nil {
		sock, err = notify.Listen(path)
	}
	if err != nil {
		return r.failure(ctx, c.Addr, res.Runtime, h, "notify socket: "+err.Error())
	}
	defer sock.Close()
	o, _ := r.observe(ctx, res.Runtime, c.Addr, h)
	pid, cgroup := notify.Instance(o.Pid)
	for {
		st, wake := sock.State()
		if st.Ready != nil && st.Ready.From(pid, cgroup) {
			return nil
		}
		if err := r.exited(ctx, c, h); err != nil {
			return err
		}
		// A message wakes this at once; the exit check needs a poll.
		select {
		case <-wake:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			if time.Now().Before(deadline) {
				return ctx.Err()
			}
			detail := "no READY=1 on its notify socket"
			if st.Status != "" {
				detail += " (it said STATUS=" + st.Status + ")"
			}
			return notReady(detail)
		}
	}
}

// waits reports whether checkAlive will wait: the apply started daemons
// without a health check.
func (r *readiness) waits() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.started) > 0
}

// checkAlive reports the daemons without a health check that this apply
// started and that no longer run aliveAfter after their start.
func (r *readiness) checkAlive(ctx context.Context) []error {
	r.mu.Lock()
	ds := r.started
	r.started = nil
	r.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	last := ds[0].started
	for _, d := range ds {
		if d.started.After(last) {
			last = d.started
		}
	}
	if wait := time.Until(last.Add(aliveAfter)); wait > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	byRT := map[spec.Address]map[spec.Address]providers.Handle{}
	for _, d := range ds {
		if byRT[d.rt] == nil {
			byRT[d.rt] = map[spec.Address]providers.Handle{}
		}
		byRT[d.rt][d.addr] = d.handle
	}
	var errs []error
	for rtAddr, hs := range byRT {
		p := r.s.provs[rtAddr.Type]
		if p == nil {
			continue
		}
		resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: r.runtime(rtAddr), Handles: hs, NoUsage: true})
		if err != nil {
			continue
		}
		for a, h := range hs {
			if o, ok := resp.Objects[a]; ok && o.Gone() {
				errs = append(errs, r.failure(ctx, a, rtAddr, h, "exited right after it started ("+o.Ended()+")"))
			}
		}
	}
	return errs
}

func (r *readiness) runtime(a spec.Address) *spec.Runtime {
	if rt := r.s.cfg.Runtime(a); rt != nil {
		return rt
	}
	return &spec.Runtime{Addr: a, Kind: a.Type, Name: a.Name}
}

func (r *readiness) observe(ctx context.Context, rtAddr, addr spec.Address, h providers.Handle) (providers.Observed, bool) {
	p := r.s.provs[rtAddr.Type]
	if p == nil {
		return providers.Observed{}, false
	}
	resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: r.runtime(rtAddr), Handles: map[spec.Address]providers.Handle{addr: h}})
	if err != nil {
		return providers.Observed{}, false
	}
	o, ok := resp.Objects[addr]
	return o, ok
}

// failure is the error of a daemon that is not ready, with the last lines
// of its log.
func (r *readiness) failure(ctx context.Context, addr, rtAddr spec.Address, h providers.Handle, why string) error {
	msg := fmt.Sprintf("%s %s", addr, why)
	if lines := r.lastLines(ctx, addr, rtAddr, h, 10); len(lines) > 0 {
		msg += "\n  its last log lines:\n    " + strings.Join(lines, "\n    ")
	}
	return &notReadyError{addr: addr, msg: msg}
}

type notReadyError struct {
	addr spec.Address
	msg  string
}

func (e *notReadyError) Error() string { return e.msg }

func (r *readiness) lastLines(ctx context.Context, addr, rtAddr spec.Address, h providers.Handle, n int) []string {
	lp, ok := r.s.provs[rtAddr.Type].(providers.LogReader)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := lp.Logs(ctx, providers.LogsRequest{Runtime: r.runtime(rtAddr), Addr: addr, Handle: h, StateDir: r.s.stateDir, Tail: n})
	if err != nil || resp.Log == nil {
		return nil
	}
	defer resp.Log.Close()
	r.mu.Lock()
	from, ok := r.logFrom[addr]
	r.mu.Unlock()
	if f, isFile := resp.Log.(*os.File); ok && isFile {
		// What this start wrote: from where the file ended before it,
		// unless the file is shorter now (rotated since: all of it).
		if fi, err := f.Stat(); err == nil && fi.Size() >= from {
			f.Seek(from, io.SeekStart)
		}
	}
	var lines []string
	sc := bufio.NewScanner(resp.Log)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
