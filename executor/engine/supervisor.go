package engine

import (
	"fmt"

	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

// supervisor is the state machine of one instance under this engine:
// its phase, and two overlays of a running phase (paused, and why the
// engine is stopping it). Its fields change only through its methods,
// each a transition; one that does not leave the current phase that way
// changes nothing and returns a *transitionError, which the engine
// reports as an error event (Engine.illegal) instead of acting on a
// state the instance is not in.
//
//	                 start                          verdict ok
//	    down ------------------------> starting ------------------> ready
//	   ^ |  ^                              |  verdict failed          |  ^
//	   | |  |                              v                          |  | verdict ok
//	   | |  |                          unhealthy <---- verdict failed -'  |
//	   | |  |                              '------------------------------'
//	   | |  |
//	   | |  '--- end: from starting, ready or unhealthy (its exit, a failed
//	   | |       start, orch stop); when the engine stopped it, stopFor said
//	   | |       why first (liveness: the exit counts as a failure; a
//	   | |       requested restart: it is started again at once)
//	   | | hold (orch stop, once it ended)
//	   | v
//	   held: no restart policy, edit or promotion starts it
//	   |
//	   '---- release (orch start), then a start planned as any other
//
//	start also leaves starting, ready or unhealthy: a new generation (a
//	replace, an adoption of another handle) begins without a verdict.
//	paused (pause, resume) is an overlay of starting, ready and unhealthy:
//	its health verdicts are not taken meanwhile.
//
// Around it the engine keeps what is not the instance's own state: a
// start that waits for a dependency is waiting, or blocked when what it
// waits for failed or is held (package gate); a down instance whose
// restart policy scheduled a start is restarting (its timer); a crash
// loop or a start that failed is failed (its record), a job that ended
// well is completed. State names all of them for a person.
type supervisor struct {
	phase  phase
	paused bool      // running: SIGSTOP (orch pause) until resume
	stop   stopCause // running: the engine is stopping it, and why
}

// phase is where a supervised instance is.
type phase uint8

const (
	phaseDown      phase = iota // not running under this engine (never started, exited, stopped)
	phaseStarting               // running; no health verdict yet (or no health check)
	phaseReady                  // running; its health check passed
	phaseUnhealthy              // running; its health check failed
	phaseHeld                   // stopped by the user (orch stop) until release (orch start)
)

var phaseNames = [...]string{"down", "starting", "ready", "unhealthy", "held"}

func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// stopCause is why the engine stops a running instance.
type stopCause uint8

const (
	stopNone     stopCause = iota
	stopLiveness           // its health check failed retries times: its exit counts as a failure
	stopRestart            // orch restart, restart_with: started again at once when it exits
)

// transitionError is a transition asked of a supervisor in a phase it
// does not leave that way.
type transitionError struct {
	from phase
	what string
}

func (e *transitionError) Error() string {
	return fmt.Sprintf("supervisor: %s while %s", e.what, e.from)
}

func (s *supervisor) illegal(what string) error { return &transitionError{from: s.phase, what: what} }

func (s *supervisor) running() bool {
	return s.phase == phaseStarting || s.phase == phaseReady || s.phase == phaseUnhealthy
}
func (s *supervisor) healthy() bool    { return s.phase == phaseReady }
func (s *supervisor) checked() bool    { return s.phase == phaseReady || s.phase == phaseUnhealthy }
func (s *supervisor) isPaused() bool   { return s.running() && s.paused }
func (s *supervisor) killing() bool    { return s.running() && s.stop == stopLiveness }
func (s *supervisor) restarting() bool { return s.running() && s.stop == stopRestart }
func (s *supervisor) held() bool       { return s.phase == phaseHeld }

// start: a new generation runs (a start's step returned, an adoption, a
// reverted replace's old instance taken back), its health unknown.
func (s *supervisor) start() error {
	if s.phase == phaseHeld {
		return s.illegal("start")
	}
	*s = supervisor{phase: phaseStarting}
	return nil
}

// verdict takes a health check's result.
func (s *supervisor) verdict(ok bool) error {
	if !s.running() {
		return s.illegal("health verdict")
	}
	s.phase = phaseUnhealthy
	if ok {
		s.phase = phaseReady
	}
	return nil
}

// pause and resume: SIGSTOP and SIGCONT of a running instance.
func (s *supervisor) pause() error {
	if !s.running() {
		return s.illegal("pause")
	}
	s.paused = true
	return nil
}

func (s *supervisor) resume() error {
	if !s.running() {
		return s.illegal("resume")
	}
	s.paused = false
	return nil
}

// stopFor marks a running instance as being stopped by the engine.
func (s *supervisor) stopFor(c stopCause) error {
	if !s.running() {
		return s.illegal("stop")
	}
	s.stop = c
	return nil
}

// end: it no longer runs (its exit, a failed start, the engine stopped
// supervising it); it returns why the engine was stopping it, if it was.
// A held instance stays held; one that was down stays down.
func (s *supervisor) end() stopCause {
	c := s.stop
	if s.phase != phaseHeld {
		*s = supervisor{phase: phaseDown}
	}
	return c
}

// hold: orch stop, once its supervision ended (end).
func (s *supervisor) hold() error {
	if s.running() {
		return s.illegal("hold")
	}
	*s = supervisor{phase: phaseHeld}
	return nil
}

// release: orch start.
func (s *supervisor) release() error {
	if s.phase != phaseHeld {
		return s.illegal("release")
	}
	*s = supervisor{phase: phaseDown}
	return nil
}

// State is where an instance is, for a person (orch top, the snapshot of
// the agent API, metrics): a closed vocabulary, whose String is the word
// shown. A module that said a state of its own shows that instead.
type State uint8

const (
	StatePending    State = iota // declared; nothing done yet
	StateStarting                // runs; its health check has not passed yet
	StateRunning                 // runs; it has no health check
	StateReady                   // runs; its health check passes
	StateUnhealthy               // runs; its health check fails
	StatePaused                  // orch pause
	StateRestarting              // exited; its restart policy scheduled a start
	StateExited                  // exited; not restarted (policy, or not yet decided)
	StateCompleted               // a job that exited 0
	StateFailed                  // its start or the job failed, or a crash loop
	StateStopped                 // stopped (by orch up on its way out)
	StateWaiting                 // its start waits for a dependency
	StateBlocked                 // what its start waits for failed, or is held
	StateHeld                    // orch stop, until orch start
)

var stateNames = [...]string{"pending", "starting", "running", "ready", "unhealthy", "paused", "restarting",
	"exited", "completed", "failed", "stopped", "waiting", "blocked", "held"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Health is what a running instance's health check says, for a person
// (InstanceStatus.Health): a closed vocabulary.
type Health uint8

const (
	HealthNone      Health = iota // no health check, or it does not run
	HealthStarting                // no verdict yet
	HealthHealthy                 // it passes
	HealthUnhealthy               // it fails
	HealthPaused                  // suspended: orch pause
)

var healthNames = [...]string{"", "starting", "healthy", "unhealthy", "paused"}

func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return fmt.Sprintf("Health(%d)", uint8(h))
}

// state is where inst is, from its supervisor and the engine's books;
// exits counts its ends under this engine.
func (inst *instance) state(exits uint64) State {
	s := &inst.sup
	switch {
	case s.isPaused():
		return StatePaused
	case s.running():
		switch inst.health() {
		case HealthStarting:
			return StateStarting
		case HealthHealthy:
			return StateReady
		case HealthUnhealthy:
			return StateUnhealthy
		}
		return StateRunning
	case s.held():
		return StateHeld
	case inst.waiting != "":
		if !inst.blockedBy.IsZero() {
			return StateBlocked
		}
		return StateWaiting
	case inst.timer != nil:
		return StateRestarting
	case inst.status == planner.StatusFailed:
		return StateFailed
	case inst.status == planner.StatusCompleted:
		return StateCompleted
	case inst.status == planner.StatusStopped:
		return StateStopped
	case inst.ran || exits > 0:
		return StateExited
	}
	return StatePending
}

// illegal reports a transition the supervisor of a refused: the engine
// asked something of a state the instance is not in (a defect of the
// engine, not of what it runs).
func (e *Engine) illegal(a spec.Address, err error) {
	if err != nil {
		if illegalSeen != nil {
			illegalSeen(a, err)
		}
		e.emit(Event{Type: EventError, Addr: a, Detail: "internal: " + err.Error()})
	}
}

// illegalSeen, when set (by the package's tests, before any engine
// runs), is told of every illegal transition, so that a test run in
// which one happened fails.
var illegalSeen func(spec.Address, error)

// hold marks inst stopped by the user (orch stop), once its supervision
// ended: no restart policy, no edit and no promotion starts it until
// release. A pending restart is dropped and its crash-loop count starts
// afresh.
func (e *Engine) hold(inst *instance) {
	if inst.timer != nil {
		inst.timer.Stop()
		inst.timer = nil
	}
	inst.history, inst.attempt = nil, 0
	e.illegal(inst.addr, inst.sup.hold())
}

// stopSupervising ends the supervision of inst's current generation
// before the engine stops it on purpose: its exit is not a crash, its
// health is no longer checked.
func (inst *instance) stopSupervising() {
	if inst.cancel != nil {
		inst.cancel()
	}
	inst.sup.end()
	inst.exitBusy, inst.sickBusy = nil, ""
}
