package planner

// Status is an instance's status: a closed vocabulary, whose String is
// the word of the state records, of orch status and of the agent API.
// The executor records the first four (in state.Instance.Status, as
// their String); the engine of orch up reports the others for what it
// has not started.
type Status uint8

const (
	StatusNone      Status = iota // no record, or a status this orch does not know
	StatusRunning                 // started (a daemon or module), or starting (a job)
	StatusFailed                  // its start failed, the job failed, or a crash loop
	StatusCompleted               // a job that exited 0
	StatusStopped                 // stopped by orch up on its way out, or by orch stop: its record stays
	StatusWaiting                 // (engine) its start waits for a dependency
	StatusBlocked                 // (engine) what it waits for failed, or is held
	StatusHeld                    // (engine) stopped by orch stop until orch start
	StatusPending                 // (engine) its start is part of the round under way, queued or in flight: no process yet
)

var statusNames = [...]string{"", "running", "failed", "completed", "stopped", "waiting", "blocked", "held", "pending"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return ""
}

// ParseStatus reads a recorded status; an unknown word is StatusNone.
func ParseStatus(s string) Status {
	switch s {
	case "running":
		return StatusRunning
	case "failed":
		return StatusFailed
	case "completed":
		return StatusCompleted
	case "stopped":
		return StatusStopped
	case "waiting":
		return StatusWaiting
	case "blocked":
		return StatusBlocked
	case "held":
		return StatusHeld
	case "pending":
		return StatusPending
	}
	return StatusNone
}
