package engine

import (
	"errors"
	"testing"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

// The supervisor's transitions, legal and not: an illegal one changes
// nothing and is reported as a *transitionError.
func TestSupervisorTransitions(t *testing.T) {
	var s supervisor
	step := func(what string, err error, want phase) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s.phase != want {
			t.Fatalf("%s: phase %s, want %s", what, s.phase, want)
		}
	}
	illegal := func(what string, err error) {
		t.Helper()
		before := s
		var te *transitionError
		if !errors.As(err, &te) {
			t.Fatalf("%s from %s: %v, want a transition error", what, before.phase, err)
		}
		if s != before {
			t.Fatalf("%s from %s changed it to %+v", what, before.phase, s)
		}
	}
	illegal("verdict", s.verdict(true))
	illegal("pause", s.pause())
	illegal("stop", s.stopFor(stopLiveness))
	illegal("release", s.release())
	step("start", s.start(), phaseStarting)
	if !s.running() || s.healthy() || s.checked() {
		t.Fatalf("starting: %+v", s)
	}
	step("verdict failed", s.verdict(false), phaseUnhealthy)
	step("verdict ok", s.verdict(true), phaseReady)
	step("pause", s.pause(), phaseReady)
	if !s.isPaused() {
		t.Fatal("not paused")
	}
	step("resume", s.resume(), phaseReady)
	illegal("hold while running", s.hold())
	step("liveness", s.stopFor(stopLiveness), phaseReady)
	if !s.killing() {
		t.Fatal("not killing")
	}
	if c := s.end(); c != stopLiveness || s.phase != phaseDown || s.killing() {
		t.Fatalf("end: cause %d, %+v", c, s)
	}
	step("start again", s.start(), phaseStarting)
	step("restart requested", s.stopFor(stopRestart), phaseStarting)
	if c := s.end(); c != stopRestart {
		t.Fatalf("end after a requested restart: cause %d", c)
	}
	step("hold", s.hold(), phaseHeld)
	illegal("start while held", s.start())
	s.end()
	if !s.held() {
		t.Fatal("end released a hold")
	}
	step("release", s.release(), phaseDown)
}

// The states shown for a person, from the supervisor and the books.
func TestInstanceState(t *testing.T) {
	health := &spec.Health{}
	cases := []struct {
		name string
		inst func() *instance
		want string
	}{
		{"pending", func() *instance { return &instance{} }, "pending"},
		{"running without a check", func() *instance { i := &instance{}; i.sup.start(); return i }, "running"},
		{"starting", func() *instance { i := &instance{res: &spec.Resource{Health: health}}; i.sup.start(); return i }, "starting"},
		{"ready", func() *instance {
			i := &instance{res: &spec.Resource{Health: health}}
			i.sup.start()
			i.sup.verdict(true)
			return i
		}, "ready"},
		{"unhealthy", func() *instance {
			i := &instance{res: &spec.Resource{Health: health}}
			i.sup.start()
			i.sup.verdict(false)
			return i
		}, "unhealthy"},
		{"paused", func() *instance { i := &instance{}; i.sup.start(); i.sup.pause(); return i }, "paused"},
		{"held", func() *instance { i := &instance{status: planner.StatusStopped}; i.sup.hold(); return i }, "held"},
		{"waiting", func() *instance { return &instance{waiting: "for daemon.db to run"} }, "waiting"},
		{"blocked", func() *instance {
			return &instance{waiting: "for daemon.db, which failed", blockedBy: spec.Address{Kind: spec.KindDaemon, Name: "db"}}
		}, "blocked"},
		{"failed", func() *instance { return &instance{status: planner.StatusFailed, ran: true} }, "failed"},
		{"completed", func() *instance { return &instance{status: planner.StatusCompleted, ran: true} }, "completed"},
		{"stopped", func() *instance { return &instance{status: planner.StatusStopped} }, "stopped"},
		{"exited", func() *instance { return &instance{ran: true, status: planner.StatusRunning} }, "exited"},
	}
	for _, c := range cases {
		if got := c.inst().state(0).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
