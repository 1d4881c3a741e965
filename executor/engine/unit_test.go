package engine

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

func TestBackoff(t *testing.T) {
	r := spec.Restart{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := Backoff(r, i, 0.5); got != w*time.Millisecond {
			t.Errorf("attempt %d: %s, want %s", i, got, w*time.Millisecond)
		}
	}
	// Jitter spreads by ±20%, never above max_backoff.
	if got := Backoff(r, 0, 0); got != 80*time.Millisecond {
		t.Errorf("low jitter: %s", got)
	}
	if got := Backoff(r, 1, 0.999999); got < 239*time.Millisecond || got >= 240*time.Millisecond {
		t.Errorf("high jitter: %s", got)
	}
	if got := Backoff(r, 10, 0.999999); got != time.Second {
		t.Errorf("capped: %s", got)
	}
	if got := Backoff(spec.Restart{}, 5, 0.7); got != 0 {
		t.Errorf("zero backoff: %s", got)
	}
	// A huge attempt number does not overflow.
	if got := Backoff(spec.Restart{Backoff: time.Millisecond, MaxBackoff: time.Hour}, 1000, 0.5); got != time.Hour {
		t.Errorf("attempt 1000: %s", got)
	}
	if stableAfter(r) != time.Second {
		t.Errorf("stableAfter: %s", stableAfter(r))
	}
}

func TestRestartHistory(t *testing.T) {
	var h restartHistory
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !h.allow(t0.Add(time.Duration(i)*time.Second), time.Minute, 3) {
			t.Fatalf("restart %d refused", i)
		}
	}
	if h.allow(t0.Add(10*time.Second), time.Minute, 3) {
		t.Fatal("4th restart within the window allowed")
	}
	// Once the first ones leave the window, restarts are allowed again.
	if !h.allow(t0.Add(61*time.Second), time.Minute, 3) {
		t.Fatal("restart after the window refused")
	}
	var unlimited restartHistory
	for i := 0; i < 100; i++ {
		if !unlimited.allow(t0, time.Minute, 0) {
			t.Fatal("max 0 must not limit")
		}
	}
}

func TestProbeHTTP(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	h := &spec.Health{Kind: spec.HealthHTTP, HTTP: srv.URL + "/healthz", Timeout: time.Second}
	for _, c := range []struct {
		code int
		ok   bool
	}{{200, true}, {204, true}, {302, true}, {404, false}, {500, false}} {
		status = c.code
		err := Probe(context.Background(), h, nil)
		if (err == nil) != c.ok {
			t.Errorf("status %d: %v", c.code, err)
		}
	}
	status = 200
	slow := &spec.Health{Kind: spec.HealthHTTP, HTTP: srv.URL + "/slow", Timeout: 20 * time.Millisecond}
	if err := Probe(context.Background(), slow, nil); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("slow: %v", err)
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h := &spec.Health{Kind: spec.HealthTCP, TCP: addr, Timeout: time.Second}
	if err := Probe(context.Background(), h, nil); err != nil {
		t.Errorf("listening: %v", err)
	}
	ln.Close()
	if err := Probe(context.Background(), h, nil); err == nil {
		t.Error("closed port passed")
	}
}

func TestProbeExec(t *testing.T) {
	r := &spec.Resource{Dir: t.TempDir(), Env: map[string]string{"WANT": "yes"}}
	ok := &spec.Health{Kind: spec.HealthExec, Exec: []string{"/bin/sh", "-c", `test "$WANT" = yes && test "$PWD" = "` + r.Dir + `"`}, Timeout: 5 * time.Second}
	if err := Probe(context.Background(), ok, r); err != nil {
		t.Errorf("env and dir: %v", err)
	}
	bad := &spec.Health{Kind: spec.HealthExec, Exec: []string{"/bin/sh", "-c", "echo broken; exit 3"}, Timeout: 5 * time.Second}
	if err := Probe(context.Background(), bad, r); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("exit 3: %v", err)
	}
	// A probe that outlives its timeout is killed with its children.
	slow := &spec.Health{Kind: spec.HealthExec, Exec: []string{"/bin/sh", "-c", "sleep 30 & wait"}, Timeout: 50 * time.Millisecond}
	if err := Probe(context.Background(), slow, r); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("slow: %v", err)
	}
}

func TestMonitorTransitions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h := &spec.Health{Kind: spec.HealthTCP, TCP: addr, Interval: 5 * time.Millisecond, Timeout: time.Second, Retries: 2}
	got := make(chan bool, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		monitor(ctx, h, nil, time.Now(), func(ok bool, _ string) { got <- ok })
	}()
	next := func() bool {
		select {
		case v := <-got:
			return v
		case <-time.After(10 * time.Second):
			t.Fatal("no transition")
		}
		return false
	}
	if !next() {
		t.Fatal("first transition is not healthy")
	}
	ln.Close()
	if next() {
		t.Fatal("second transition is not unhealthy")
	}
	cancel()
	<-done
}

func TestIgnoredPath(t *testing.T) {
	for name, want := range map[string]bool{
		"/c/main.hcl": false, "/c/main.hcl.tmp": false, "/c/.main.hcl.swp": true, "/c/main.hcl~": true,
		"/c/#main.hcl#": true, "/c/4913": true, "/c/.orch": true, "/c/state": true, "/c/state/x": true,
	} {
		if got := ignoredPath(name, "/c/state"); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// TestMonitorSaysStillStarting: while no probe has passed, the monitor
// tells of the failing ones (still_starting), paced, with the last
// failure and the count; once a probe passes it is healthy and says no
// more of it.
func TestMonitorSaysStillStarting(t *testing.T) {
	defer func(f, e time.Duration) { stillStartingFirst, stillStartingEvery = f, e }(stillStartingFirst, stillStartingEvery)
	stillStartingFirst, stillStartingEvery = 30*time.Millisecond, 30*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every probe fails
	h := &spec.Health{Kind: spec.HealthTCP, TCP: addr, Interval: 5 * time.Millisecond, Timeout: time.Second, Retries: 1, StartTimeout: time.Hour}
	notes := make(chan string, 100)
	healthy := make(chan bool, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		monitorFrom(ctx, h, nil, time.Now(), false, func(ok bool, _ string) { healthy <- ok }, func(d string) { notes <- d })
	}()
	defer func() { cancel(); <-done }()
	for i := 0; i < 2; i++ {
		select {
		case d := <-notes:
			if !strings.Contains(d, "failed probes") || !strings.Contains(d, "start_timeout 1h0m0s") {
				t.Fatalf("still starting detail %q", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no still starting report in 10 s of failing probes")
		}
	}
	// Now a probe passes: healthy, and no report after that.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	select {
	case ok := <-healthy:
		if !ok {
			t.Fatal("reported unhealthy while starting")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not healthy 10 s after its port opened")
	}
	for len(notes) > 0 {
		<-notes // said before the pass
	}
	cancel()
	<-done
	select {
	case d := <-notes:
		t.Fatalf("still starting reported after the check passed: %q", d)
	default:
	}
}
