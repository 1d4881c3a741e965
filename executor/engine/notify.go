package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/notify"
	"github.com/orch-dev/orch/spec"
)

// monitorNotify is the health monitor of a daemon declared with
// health { notify = true }: its readiness is its own READY=1 on its
// notify socket, and with health.watchdog its liveness is a WATCHDOG=1 at
// least that often. It reports like monitor:
//
//   - starting: READY=1 from the instance makes it healthy; none within
//     start_timeout makes it unhealthy;
//   - healthy: no WATCHDOG=1 for watchdog (counted from READY=1 or the
//     last one), or WATCHDOG=trigger, makes it unhealthy, which restarts
//     it per its policy; a later WATCHDOG=1 makes it healthy again.
//
// Only messages from the instance count: its main process, its session
// or its cgroup (an old instance of a replace sends to the same path).
// The socket is the one the provider bound before the start; after an
// orch restart it is bound again here, at the same path, and a READY=1
// said to an earlier orch still counts (it was written down).
func (e *Engine) monitorNotify(ctx context.Context, h *spec.Health, r *spec.Resource, rt *spec.Runtime, handle providers.Handle, started time.Time, ready bool, report func(healthy bool, detail string)) {
	path, err := notify.Path(e.opts.StateDir, r.Addr)
	var sock *notify.Socket
	if err == nil {
		sock, err = notify.Listen(path)
	}
	if err != nil {
		report(false, "notify socket: "+err.Error())
		return
	}
	defer sock.Close()
	pid, cgroup := e.mainProcess(ctx, rt, r.Addr, handle)
	from := func(s notify.Sender) bool { return s.From(pid, cgroup) }

	startTimeout := h.StartTimeout
	if startTimeout <= 0 {
		startTimeout = spec.DefaultStartTimeout
	}
	const (
		starting = iota
		healthy
		unhealthy
	)
	status := starting
	var lastDog time.Time // the last WATCHDOG=1 (or READY=1)
	if ready {
		status, lastDog = healthy, time.Now()
	}
	var seen uint64 // messages taken, by Socket sequence
	st, _ := sock.State()
	seen = st.Seq // what was said before: only READY=1 (in st.Ready) carries over
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		st, wake := sock.State()
		first := st.Seq - uint64(len(st.Messages))
		for i, m := range st.Messages {
			if first+uint64(i) < seen || !from(m.From) {
				continue
			}
			switch m.Fields["WATCHDOG"] {
			case "1":
				lastDog = m.Time
				if status == unhealthy && h.Watchdog > 0 && st.Ready != nil && from(*st.Ready) {
					status = healthy
					report(true, "")
				}
			case "trigger":
				if status != unhealthy {
					status = unhealthy
					report(false, "the daemon asked for a restart (WATCHDOG=trigger)")
				}
			}
		}
		seen = st.Seq
		if status == starting && st.Ready != nil && from(*st.Ready) {
			status, lastDog = healthy, time.Now()
			report(true, "")
		}
		now := time.Now()
		var next time.Duration = time.Hour
		switch {
		case status == starting:
			left := startTimeout - now.Sub(started)
			if left <= 0 {
				status = unhealthy
				report(false, fmt.Sprintf("no READY=1 on its notify socket within start_timeout %s", startTimeout))
				break
			}
			next = left
		case status == healthy && h.Watchdog > 0:
			left := h.Watchdog - now.Sub(lastDog)
			if left <= 0 {
				status = unhealthy
				report(false, fmt.Sprintf("watchdog: no WATCHDOG=1 for %s", h.Watchdog))
				break
			}
			next = left
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// mainProcess is the pid of the instance behind handle and its cgroup,
// as its provider observes it; 0 and "" when unknown (then any sender on
// the socket counts).
func (e *Engine) mainProcess(ctx context.Context, rt *spec.Runtime, addr spec.Address, handle providers.Handle) (int, string) {
	p := e.opts.Providers[rt.Addr.Type]
	if p == nil {
		return 0, ""
	}
	resp, err := p.Observe(ctx, providers.ObserveRequest{Runtime: rt, Handles: map[spec.Address]providers.Handle{addr: handle}})
	if err != nil {
		return 0, ""
	}
	return notify.Instance(resp.Objects[addr].Pid)
}

// followNotify is monitorNotify for a backend that receives the
// daemon's notifications itself (systemd, for a Type=notify unit): its
// Health says starting until READY=1, healthy once ready, unhealthy when
// the backend gave up on it (a missed watchdog); orch still bounds the
// start by start_timeout. It reports like monitor.
func followNotify(ctx context.Context, nf providers.NotifyFollower, h *spec.Health, rt *spec.Runtime, addr spec.Address, handle providers.Handle, started time.Time, ready bool, report func(healthy bool, detail string)) {
	startTimeout := h.StartTimeout
	if startTimeout <= 0 {
		startTimeout = spec.DefaultStartTimeout
	}
	req := providers.HealthRequest{Runtime: rt, Addr: addr, Handle: handle}
	status := providers.HealthStarting
	if ready {
		status = providers.HealthHealthy
	}
	delay := 100 * time.Millisecond
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if status == providers.HealthStarting {
			// Wake at start_timeout to say it never became ready.
			wctx, cancel = context.WithDeadline(ctx, started.Add(startTimeout))
		}
		resp, err := nf.Health(wctx, req)
		timedOut := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case timedOut && status == providers.HealthStarting:
			report(false, fmt.Sprintf("no READY=1 within start_timeout %s", startTimeout))
			status = providers.HealthUnhealthy
			req.Wait, req.Prior = true, resp.Status
			continue
		case err != nil:
			// The backend away: its reconnection is reported as such;
			// ask again, 100ms up to 5s apart.
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if resp.Status != status {
			switch resp.Status {
			case providers.HealthHealthy:
				report(true, "")
			case providers.HealthUnhealthy:
				report(false, resp.Detail)
			}
			status = resp.Status
		}
		req.Wait, req.Prior = true, resp.Status
	}
}
