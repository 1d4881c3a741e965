package providers

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/orch-dev/orch/spec"
)

// Capability names an optional part of the contract. Over a wire
// (go-plugin, wazero) capabilities are declared as data and checked both
// ways; in-process they are found by type assertion.
type Capability string

const (
	CapDelete Capability = "delete"
	CapHealth Capability = "health"
	CapAdopt  Capability = "adopt"
	CapSignal Capability = "signal"
	CapLogs   Capability = "logs"
	CapEvents Capability = "events"
	CapUpdate Capability = "update"
	CapWatch  Capability = "watch"
	// CapListens: the instances share the host's network, and the
	// backend tells whether one's own processes listen on a port
	// (ListenerOwner); its schema then says OwnsListeners.
	CapListens Capability = "listens"
)

// Deleter removes what Stop leaves behind (a stopped container, a unit file).
type Deleter interface {
	Delete(ctx context.Context, req DeleteRequest) (DeleteResponse, error)
}

// Presignaler sends the stop signals of several instances at once, in one
// tight loop, before their Stops run: the executor asks it when it begins
// many independent stops together (orch up's shutdown, orch destroy), so
// that the signals go out before the stops' own work does, as a hand
// typing kill in a loop would send them. A Stop of a request presignaled
// with the same signal then only waits (it does not send the signal a
// second time); one that was not (an instance that was not running, or a
// different signal) stops as usual.
type Presignaler interface {
	Presignal(ctx context.Context, reqs []StopRequest)
}

// LaterTidier leaves what its stops and deletes tidy once their processes
// are gone (the process runtime's empty cgroups, whose removals the kernel
// makes one at a time, and its registry's lines) to the end of a batch of
// them, or to a helper of its that outlives the caller, instead of doing
// it before each returns. orch up's shutdown asks it: the stops end when
// the daemons have, and orch exits without waiting for the kernel's
// bookkeeping. TidyLater turns it on for the stops that follow; flush
// writes what they left, hands over what goes to the helper of stateDir,
// tidies itself what it cannot hand over, and turns it off. Its error is
// what could not be written.
type LaterTidier interface {
	TidyLater(stateDir string) (flush func() error)
}

// HealthChecker reports a backend's own health check (a container image's
// HEALTHCHECK); orch's exec/http/tcp checks need no provider. The engine
// of orch up follows it for daemons that declare no health block: their
// dependents wait for HealthHealthy (or HealthNone), and HealthUnhealthy
// restarts them per their policy.
type HealthChecker interface {
	Health(ctx context.Context, req HealthRequest) (HealthResponse, error)
}

// NotifyFollower is a HealthChecker whose backend receives the
// readiness notifications (sd_notify READY=1, WATCHDOG=1) of a daemon
// declared with health { notify = true } itself, as systemd does for a
// Type=notify unit: its Health then reports that readiness, and orch's
// own notify socket is not the daemon's.
type NotifyFollower interface {
	HealthChecker
	FollowsNotify()
}

// Adopter lists the objects of a project that the backend holds, so that
// orch finds its own after losing state.
type Adopter interface {
	Adopt(ctx context.Context, req AdoptRequest) (AdoptResponse, error)
}

// ListenerOwner tells whether an instance's own processes listen on a TCP
// port of the host. A health check of the new half of a
// create_before_destroy replace that its predecessor answers, on the same
// port, proves nothing: the engine asks this before it lets the old one
// go. Only a runtime whose instances share the host's network implements
// it (the process runtime, and a plugin runtime that declares "listens").
type ListenerOwner interface {
	Listens(ctx context.Context, req ListensRequest) (bool, error)
}

// ListensRequest asks whether the processes of the instance that Handle
// names (Addr's, on Runtime) listen on TCP port Port.
type ListensRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
	Port    int
	// UDP counts a UDP socket bound to Port too (a service's port may
	// be a UDP server's); a backend that cannot tell UDP sockets apart
	// may ignore it.
	UDP bool
}

// Signaler sends a signal to an instance.
type Signaler interface {
	Signal(ctx context.Context, req SignalRequest) (SignalResponse, error)
}

// LogReader opens an instance's log.
type LogReader interface {
	Logs(ctx context.Context, req LogsRequest) (LogsResponse, error)
}

// EventSource streams lifecycle events of the backend's objects until ctx
// is done. An event only says "look again"; the reconciler re-observes.
type EventSource interface {
	Events(ctx context.Context, req EventsRequest) (<-chan Event, error)
}

// Watcher tells when one instance stops running, without polling where the
// backend can push (a pidfd, a reaped child, a container event stream).
// The engine of orch up watches every daemon it supervises.
type Watcher interface {
	Watch(ctx context.Context, req WatchRequest) (WatchResponse, error)
}

// StartJournal is an Adopter whose start of an instance is kept on its own
// before the instance runs, for as long as the instance can outlive orch
// (the process runtime's registry line), so that its Adopt finds the
// instance even when orch's record of the start was lost (orch killed
// between the two): on the state file, the executor
// ends such a start's step without waiting for that record to be durable.
// An Adopter is not enough: a plugin's Adopt finds nothing unless the
// plugin declares adopt.
type StartJournal interface {
	Adopter
	JournalsStarts()
}

// ExitNotifier is a Watcher that parks no goroutine per watch: the
// engine of orch up uses it instead of Watch when the provider has it (an
// in-process provider: the process runtime), so that supervising 10,000
// daemons does not keep 10,000 goroutines waiting.
type ExitNotifier interface {
	// NotifyExit calls exited once the instance is no longer running,
	// with what Watch's channel would carry (at once, possibly before
	// NotifyExit returns, when it already is not). exited runs on a
	// goroutine of the provider's, which it must not block. cancel ends
	// the watch; exited may still be called once after it, so a caller
	// that starts watches anew tells them apart.
	NotifyExit(req WatchRequest, exited func(Observed)) (cancel func(), err error)
}

// Updater applies to a running instance, in place, the changes the plan
// marks as not forcing replacement (a container's memory limit, a
// process's log rotation). Without it such changes are only recorded and
// take effect when the instance next starts.
type Updater interface {
	Update(ctx context.Context, req UpdateRequest) (UpdateResponse, error)
}

// Capabilities lists what p implements beyond the required methods.
func Capabilities(p Provider) []Capability {
	var caps []Capability
	if _, ok := p.(Deleter); ok {
		caps = append(caps, CapDelete)
	}
	if _, ok := p.(HealthChecker); ok {
		caps = append(caps, CapHealth)
	}
	if _, ok := p.(Adopter); ok {
		caps = append(caps, CapAdopt)
	}
	if _, ok := p.(Signaler); ok {
		caps = append(caps, CapSignal)
	}
	if _, ok := p.(LogReader); ok {
		caps = append(caps, CapLogs)
	}
	if _, ok := p.(EventSource); ok {
		caps = append(caps, CapEvents)
	}
	if _, ok := p.(Updater); ok {
		caps = append(caps, CapUpdate)
	}
	if _, ok := p.(Watcher); ok {
		caps = append(caps, CapWatch)
	}
	if _, ok := p.(ListenerOwner); ok {
		caps = append(caps, CapListens)
	}
	return caps
}

type DeleteRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
}
type DeleteResponse struct{}

type HealthRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
	// Wait makes Health return only once the status differs from Prior,
	// or with ctx's error when ctx is done first: a long poll, so that a
	// backend that can push (an event stream) is not polled.
	Wait  bool
	Prior HealthStatus
}
type HealthResponse struct {
	Healthy bool // Status == HealthHealthy
	Status  HealthStatus
	Detail  string // the last probe's output or error, when known
}

// HealthStatus is what a backend's own health check says of an instance.
type HealthStatus uint8

const (
	HealthNone      HealthStatus = iota // the instance has no health check of its own
	HealthStarting                      // checked, no verdict yet
	HealthHealthy                       // passing
	HealthUnhealthy                     // failing, as the check's own retries count
)

var healthNames = [...]string{"none", "starting", "healthy", "unhealthy"}

func (s HealthStatus) String() string {
	if int(s) < len(healthNames) {
		return healthNames[s]
	}
	return fmt.Sprintf("HealthStatus(%d)", uint8(s))
}

type AdoptRequest struct {
	Runtime  *spec.Runtime
	Project  string
	StateDir string
	// Known, when set, says which addresses the state records: orch
	// adopts none of them (it observes them from their handles), so a
	// provider may leave them out rather than observe them twice.
	Known func(spec.Address) bool
	// KnownHandle, when set, gives the handle the state records for an
	// address Known names. A provider that can hold several instances of
	// one address (the process provider, after an orch was killed during
	// a replace) stops the others, which nothing else would ever stop.
	KnownHandle func(spec.Address) Handle
}

// Adoptable is one object the backend found that carries the project's
// ownership marks.
type Adoptable struct {
	Addr       spec.Address
	Runtime    spec.Address // filled in by orch: the runtime that was asked
	Handle     Handle
	ConfigHash string
	Observed   Observed
}
type AdoptResponse struct{ Objects []Adoptable }

type SignalRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
	Signal  spec.Signal
	// MainOnly sends the signal to the daemon's main process alone, not
	// to its whole process group (a reload: nginx's master re-reads its
	// configuration and replaces its workers itself). Backends whose
	// instance is one process (a container's init) ignore it.
	MainOnly bool
}
type SignalResponse struct{}

type LogsRequest struct {
	Runtime  *spec.Runtime
	Addr     spec.Address
	Handle   Handle
	StateDir string
	// Tail > 0 starts the log at its last Tail lines; 0 at its start; < 0
	// at its end (with Follow: only what is written from now on).
	Tail int
	// Follow keeps the log open: the reader then returns what is written
	// until ctx is done or the instance's log ends. Backends that cannot
	// follow ignore it (the process provider: orch logs -f tails files).
	Follow bool
}
type LogsResponse struct {
	// Log reads the log as requested; the caller closes it.
	Log io.ReadCloser
}

// EventsRequest asks for the events of one project's objects on a runtime:
// several projects may share a backend (one Docker Engine), and their
// instances may have the same addresses.
type EventsRequest struct {
	Runtime *spec.Runtime
	Project string // required: events of other projects are not wanted
}

// Event says something happened to an object.
type Event struct {
	Addr     spec.Address
	Time     time.Time
	Kind     string // "exited", "started", "destroyed", "health", "disconnected", "reconnected"
	Observed Observed
}

// WatchRequest names the instance to watch.
type WatchRequest struct {
	Runtime *spec.Runtime
	Addr    spec.Address
	Handle  Handle
}

// WatchResponse carries the notification channel.
type WatchResponse struct {
	// Exited receives one Observed (StateExited with its exit code or
	// signal when known, else StateMissing) once the instance is no longer
	// running, at once if it already is not, and is then closed. It is
	// closed without a value when the watch's ctx is done first.
	Exited <-chan Observed
}

// UpdateRequest carries the declared instance (with its new settings) and
// the handle of what runs.
type UpdateRequest struct {
	Runtime  *spec.Runtime
	Resource *spec.Resource
	Handle   Handle
	StateDir string
}

// UpdateResponse may carry a refreshed handle (nil: unchanged) and the
// backend's warnings.
type UpdateResponse struct {
	Handle   Handle
	Warnings []string
}
