package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/orch-dev/orch/providers/hostuser"
	"github.com/orch-dev/orch/spec"
)

// Probe runs one health check of h, bounded by h.Timeout (default 5s), and
// returns nil when it passes:
//
//   - exec: the command exits 0; it runs in r's directory with r's env
//     plus PATH, in its own process group, killed as a group on timeout;
//   - http: a GET answers 2xx or 3xx (redirects are not followed);
//   - tcp:  a connection to host:port is accepted;
//   - notify: nothing to probe: readiness is the daemon's own READY=1 on
//     its notify socket, which the engine follows (monitorNotify), and
//     Probe passes.
//
// r may be nil (exec then runs in the current directory with PATH only).
func Probe(ctx context.Context, h *spec.Health, r *spec.Resource) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch h.Kind {
	case spec.HealthExec:
		return probeExec(ctx, h.Exec, r)
	case spec.HealthHTTP:
		return probeHTTP(ctx, h.HTTP)
	case spec.HealthTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.TCP)
		if err != nil {
			return fmt.Errorf("tcp %s: %w", h.TCP, unwrapOp(err))
		}
		c.Close()
		return nil
	}
	return nil
}

func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Err != nil {
		return oe.Err
	}
	return err
}

var probeClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http %s: %w", url, err)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("http %s: no answer within the timeout", url)
		}
		return fmt.Errorf("http %s: %w", url, unwrapOp(unwrapURL(err)))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http %s: status %s", url, resp.Status)
	}
	return nil
}

func unwrapURL(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		if _, isOp := err.(*net.OpError); isOp {
			return err
		}
		err = u.Unwrap()
	}
}

// hostUsers reports whether a daemon's user and group on runtime rt are
// users of this host: the process and systemd runtimes'. A container's
// are its image's, so its exec check runs as orch does.
func hostUsers(rt spec.Address) bool { return rt.Type == "process" || rt.Type == "systemd" }

func probeExec(ctx context.Context, argv []string, r *spec.Resource) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if r != nil && (r.User != "" || r.Group != "") && hostUsers(r.Runtime) {
		// As the daemon runs: a probe of a daemon declared to run as
		// postgres runs as postgres, not as root (pg_isready as root
		// made postgres log "role root does not exist" at every probe).
		cred, err := hostuser.Credential(r.User, r.Group)
		if err != nil {
			return fmt.Errorf("exec %s: %w", argv[0], err)
		}
		cmd.SysProcAttr.Credential = cred
	}
	env := map[string]string{"PATH": os.Getenv("PATH")}
	if r != nil {
		cmd.Dir = r.Dir
		for k, v := range r.Env {
			env[k] = v
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("exec %s: no result within the timeout", argv[0])
	}
	msg := strings.TrimSpace(out.String())
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg != "" {
		return fmt.Errorf("exec %s: %v: %s", argv[0], err, msg)
	}
	return fmt.Errorf("exec %s: %v", argv[0], err)
}

// monitor probes h every interval until ctx is done and calls report on
// each transition. It is a startup probe until the first pass and a
// liveness probe after:
//
//   - starting (unknown): failures do not count; a pass makes it healthy;
//     no pass within h.StartTimeout since started makes it unhealthy.
//   - healthy: retries failures in a row make it unhealthy.
//   - unhealthy: a pass makes it healthy again.
//
// Failures during h.StartPeriod never count. The first probe runs at once.
func monitor(ctx context.Context, h *spec.Health, r *spec.Resource, started time.Time, report func(healthy bool, detail string)) {
	monitorFrom(ctx, h, r, started, false, report, nil)
}

// stillStartingFirst and stillStartingEvery pace the failing (still
// starting) reports of monitorFrom (vars for a test).
var (
	stillStartingFirst = 5 * time.Second
	stillStartingEvery = 15 * time.Second
)

// probeTiming is h's interval and retries as the monitor uses them: a
// health block orch made itself (not loaded, where both are checked) may
// leave them zero.
func probeTiming(h *spec.Health) (interval time.Duration, retries int) {
	interval = h.Interval
	if interval <= 0 {
		interval = spec.DefaultHealthInterval
	}
	return interval, max(h.Retries, 1)
}

// monitorFrom is monitor starting from ready (a daemon resumed after a
// pause, which had passed before) or from starting. While the instance
// starts, failing (when not nil) is told of its failing probes:
// stillStartingFirst after its start, then every stillStartingEvery, so
// that a server that never binds does not stay silent until its
// start_timeout (60 s by default).
func monitorFrom(ctx context.Context, h *spec.Health, r *spec.Resource, started time.Time, ready bool, report func(healthy bool, detail string), failing func(detail string)) {
	interval, retries := probeTiming(h)
	startTimeout := h.StartTimeout
	if startTimeout <= 0 {
		startTimeout = spec.DefaultStartTimeout
	}
	const (
		starting = iota
		healthy
		unhealthy
	)
	status, fails := starting, 0
	if ready {
		status = healthy
	}
	notice := started.Add(stillStartingFirst)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t0 := time.Now()
		err := Probe(ctx, h, r)
		if ctx.Err() != nil {
			return
		}
		probed(ctx, time.Since(t0), err)
		up := time.Since(started)
		switch {
		case err == nil:
			fails = 0
			if status != healthy {
				status = healthy
				report(true, "")
			}
		case up < h.StartPeriod:
			// not counted
		case status == starting:
			fails++
			if up >= startTimeout {
				status = unhealthy
				report(false, fmt.Sprintf("%v (not ready within start_timeout %s: %d failed probes, none passed)", err, startTimeout, fails))
			} else if failing != nil && !time.Now().Before(notice) {
				notice = time.Now().Add(stillStartingEvery)
				failing(fmt.Sprintf("%v (%d failed probes in %s; unhealthy at start_timeout %s)", err, fails, up.Round(100*time.Millisecond), startTimeout))
			}
		default:
			fails++
			if fails >= retries && status != unhealthy {
				status = unhealthy
				report(false, fmt.Sprintf("%v (%d failures in a row)", err, fails))
			}
		}
		next := interval
		if status == starting {
			// Do not probe past the deadline by most of an interval.
			if left := startTimeout - up; left > 0 && left < next {
				next = left
			}
		}
		t.Reset(next)
	}
}
