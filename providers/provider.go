package providers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orch-dev/orch/spec"
)

// Provider is what every runtime backend implements.
type Provider interface {
	// Schema describes the attributes the backend adds to the language.
	Schema() spec.RuntimeSchema
	// Observe reports the current state of the objects behind handles.
	// It never changes anything.
	Observe(ctx context.Context, req ObserveRequest) (ObserveResponse, error)
	// Start creates and starts an instance and returns its handle.
	Start(ctx context.Context, req StartRequest) (StartResponse, error)
	// Stop stops an instance: its stop signal, then after the timeout a
	// forced kill. Stopping an instance that is already gone succeeds.
	Stop(ctx context.Context, req StopRequest) (StopResponse, error)
}

// Handle is a provider's opaque reference to one object (for a process:
// pid, start time, process group; for a container: its id). orch stores it
// in state and hands it back unchanged.
type Handle []byte

// State is what Observe found for one handle.
type State uint8

const (
	StateUnknown State = iota // the provider could not tell
	StateRunning              // alive and ours
	StateExited               // known to have exited; ExitCode/Signal may tell how
	StateMissing              // gone, or the pid now belongs to someone else
)

var stateNames = [...]string{"unknown", "running", "exited", "missing"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Observed is the observed state of one object.
type Observed struct {
	State     State
	Pid       int    // 0 when not a process
	ID        string // container id, unit name, ...; empty for processes
	StartedAt time.Time
	ExitCode  int    // valid when State is StateExited and Signal is empty
	Signal    string // the signal that ended it, when known
	// Error says why it ended, when the provider knows more than an exit
	// status (a module's trap, a plugin's crash, "out of memory").
	Error string
	// Memory is what a running instance uses now, in bytes, and CPU the
	// CPU time it has used since it started; 0 when the provider cannot
	// tell (a native daemon without a cgroup).
	Memory uint64
	CPU    time.Duration
	// Says is what a running instance says of itself, when it does (the
	// last STATUS= of a daemon speaking sd_notify).
	Says string
}

// Gone reports that the instance is known to no longer run: it exited,
// or it is missing (its pid gone or another's). StateUnknown is not gone.
func (o Observed) Gone() bool { return o.State == StateExited || o.State == StateMissing }

// Ended says how an instance that is no longer running ended, for a
// message: "killed by SIGKILL", "code 3", or that it is not known.
func (o Observed) Ended() string {
	switch {
	case o.Signal != "":
		return "killed by " + o.Signal
	case o.State == StateExited:
		return fmt.Sprintf("code %d", o.ExitCode)
	}
	return "its exit status is unknown"
}

// ObserveRequest names the objects to look at.
type ObserveRequest struct {
	Runtime *spec.Runtime
	Handles map[spec.Address]Handle
	// NoUsage asks for each object's state alone: Memory and CPU may be
	// left zero. A plan shows neither, and reading them (a cgroup's files
	// per daemon) was a third of a no-op plan of 10,000 daemons.
	NoUsage bool
}

// ObserveResponse has one entry per requested handle.
type ObserveResponse struct {
	Objects map[spec.Address]Observed
}

// StartRequest starts one instance.
type StartRequest struct {
	Runtime  *spec.Runtime
	Resource *spec.Resource
	// Project and ConfigHash label what is created, for ownership checks.
	Project    string
	ConfigHash string
	// StateDir is the project's state directory (absolute): logs and
	// provider files go below it.
	StateDir string
}

// StartResponse carries the handle of what was started.
type StartResponse struct {
	Handle   Handle
	Observed Observed
}

// StopRequest stops one instance.
type StopRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
	Signal  spec.Signal
	Timeout time.Duration
}

// StopResponse says how the instance ended.
type StopResponse struct {
	// Killed is true when the timeout ran out and the instance was killed.
	Killed   bool
	Observed Observed
}

// Error is a provider failure that says whether retrying can help. It
// survives RPC as plain fields.
type Error struct {
	Op        string // "start", "stop", ...
	Retryable bool
	// Unreachable says the backend itself could not be reached (a Docker
	// Engine whose socket is gone or refuses connections, a connection
	// that broke during the call): the failure says nothing about the
	// instance. The engine of orch up does not count it as the instance's
	// crash; it waits for the backend to be back. Such an error is also
	// Retryable. (Not carried over the plugin wire yet: a provider
	// plugin's errors arrive without it.)
	Unreachable bool
	// Attr names the attribute of the declared instance the failure
	// concerns ("command", "dir", "user", "ports", ...), when the provider
	// knows it, so that orch points at where the user wrote it.
	Attr string
	Err  error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the backend could not be
// reached at all (Error.Unreachable).
func IsUnreachable(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Unreachable
}

// IsRetryable reports whether err says a retry may succeed.
func IsRetryable(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Retryable
}
