package planner

import "strconv"

// ReasonKind is why the planner made a change that its diffs alone do
// not explain: a closed vocabulary. Reason.String is the text the plan
// renders and its JSON form carries.
type ReasonKind uint8

const (
	ReasonNone             ReasonKind = iota // the diffs say it all
	ReasonLeftOver                           // a Delete of what an earlier apply left running and no longer declared
	ReasonReplaceRequested                   // -replace named it
	ReasonAdopted                            // running, ours, and missing from state
	ReasonAdoptedDiffers                     // an adopted instance runs another configuration
	ReasonUnreadable                         // its stored configuration cannot be read
	ReasonReload                             // its reload signal applies the change (Arg: the signal)
	ReasonLastStartFailed                    // not running: its last start failed
	ReasonKilled                             // not running: killed by a signal (Arg)
	ReasonStopped                            // not running: it was stopped
	ReasonExited                             // not running: it exited (Code)
	ReasonNotRunning                         // not running: missing
	ReasonStateUnknown                       // its state cannot be observed
	ReasonRestartPolicy                      // a restart by its restart policy (Arg: the policy)
	ReasonRestartRequested                   // orch restart
	ReasonAdoptedNewer                       // running, ours, and newer than its record, whose instance is gone
)

// Reason is why a change was planned (Change.Reason).
type Reason struct {
	Kind ReasonKind
	Arg  string // the signal (ReasonReload, ReasonKilled) or the policy (ReasonRestartPolicy)
	Code int    // the exit code (ReasonExited)
}

// IsZero says there is no reason beyond the diffs.
func (r Reason) IsZero() bool { return r.Kind == ReasonNone }

func (r Reason) String() string {
	switch r.Kind {
	case ReasonLeftOver:
		return "left over by an earlier apply: ours, running, and no longer declared"
	case ReasonReplaceRequested:
		return "as requested with -replace"
	case ReasonAdopted:
		return "running, ours, and missing from state"
	case ReasonAdoptedNewer:
		return "running, ours, and newer than its record"
	case ReasonAdoptedDiffers:
		return "adopted instance runs a different configuration"
	case ReasonUnreadable:
		return "the stored configuration is unreadable"
	case ReasonReload:
		return "reload: " + r.Arg
	case ReasonLastStartFailed:
		return "its last start failed"
	case ReasonKilled:
		return "it was killed by " + r.Arg
	case ReasonStopped:
		return "it was stopped"
	case ReasonExited:
		return "it exited with code " + strconv.Itoa(r.Code)
	case ReasonNotRunning:
		return "it is not running"
	case ReasonStateUnknown:
		return "its state is unknown"
	case ReasonRestartPolicy:
		return "restart policy " + r.Arg
	case ReasonRestartRequested:
		return "orch restart"
	}
	return ""
}
