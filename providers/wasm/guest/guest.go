// Package guest is the SDK of orch modules written in Go and compiled to
// WebAssembly. A module is a set of hooks handed to Register from an init
// function, built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o counter.wasm .
//
// The package implements orch's guest ABI (docs/modules.md): it exports
// orch_init, orch_start, orch_stop, orch_on_event and orch_alloc, and
// wraps the host functions of the "orch" import module (Log, Publish,
// Subscribe, KV, Now).
//
// Hooks run one at a time, on the goroutine of the host's call, within
// the module's call budget (limits.call_timeout): a hook must return, not
// block. Goroutines it starts run only while orch is inside one of its
// hooks. A hook that returns an error, panics or exits marks the module
// failed.
//
// Outside GOOS=wasip1 the package compiles, so that a module's code can be
// tested with the host's toolchain, but every call to the host returns
// ErrNotHosted and Register does nothing.
package guest

import "errors"

// Module is the hooks of a module; each may be nil.
type Module struct {
	// Init receives the module's config, as JSON ("null" when none).
	// Subscribe here or in Start.
	Init func(config []byte) error
	// Start is called once Init succeeded; after it returns nil the module
	// is running and receives events.
	Start func() error
	// Stop is called once, when orch stops the module; no event is
	// delivered after it.
	Stop func() error
	// OnEvent receives each event of a topic the module subscribed to, in
	// order, one at a time.
	OnEvent func(Event) error
}

// Event is one message from orch's event bus. Orch's own lifecycle events
// have topics "orch.<kind>.<event>" (orch.daemon.started,
// orch.module.failed) and JSON data: {"address", "event", "time", "error"}.
type Event struct {
	Topic string
	Data  []byte // the module's own copy
}

// Level is the severity of a log line.
type Level int32

// Log levels.
const (
	Debug Level = iota
	Info
	Warn
	Error
)

// errBatch: orch_on_events received a batch it cannot decode.
var errBatch = errors.New("malformed batch of events")

// ErrNotHosted is returned by host calls outside a wasip1 build.
var ErrNotHosted = errors.New("guest: not running inside orch (build with GOOS=wasip1 GOARCH=wasm)")

// ErrHost is returned when orch refused a host call (an invalid topic, a
// store error); the reason is in the module's log.
var ErrHost = errors.New("guest: orch refused the call (see the module's log)")

// KV is the module's own key-value namespace in orch's state store: it
// persists across restarts of the module and of orch. Keys are at most
// 1 KiB, values at most 1 MiB.
var KV kv

type kv struct{}

// Logf logs a formatted line at level into orch's log of the module.
func Logf(level Level, format string, args ...any) { Log(level, sprintf(format, args...)) }
