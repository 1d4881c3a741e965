package module

import (
	"context"
	"fmt"

	"github.com/orch-dev/orch/providers/bus"
	"github.com/orch-dev/orch/spec"
)

// Guest is one loaded module instance, whatever hosts it: a WebAssembly
// instance in wazero (providers/wasm) or a plugin process over go-plugin
// (providers/plugin).
type Guest interface {
	// Run starts the guest (its init hook with its configuration, then its
	// start hook), calls ready once it runs, serves it (event delivery, host
	// calls) until ctx is done, then calls its stop hook and releases it.
	// It returns nil when the guest stopped cleanly, or why it failed (a
	// trap, a crash, a hook error, a call over its budget) as soon as it
	// fails; either way nothing of the guest runs any more when Run
	// returns. Run is called at most once.
	Run(ctx context.Context, ready func()) error
	// Close releases a guest that was loaded and will not run. After Run
	// it does nothing.
	Close(ctx context.Context) error
}

// Loader loads modules of one kind.
type Loader interface {
	// Load reads, verifies and prepares the module of req; the guest is
	// loaded, not running. An error means it cannot run as declared
	// (missing file, checksum mismatch, invalid binary, failed handshake).
	Load(ctx context.Context, req LoadRequest) (Guest, error)
}

// LoadRequest names the module to load and what it may reach.
type LoadRequest struct {
	// Resource is the module instance: Addr, Source, SHA256, Config,
	// Grants and Limits.
	Resource *spec.Resource
	// Services are the engine's, for the guest's host calls.
	Services Services
}

// Services is what the engine offers every module.
type Services struct {
	// Bus is the event bus: modules publish on it and subscribe to it;
	// orch publishes lifecycle events (orch.<kind>.<event>) there.
	Bus *bus.Bus
	// KV is the module's own persistent namespace.
	KV KV
	// Log receives what the module logs.
	Log func(Record)
}

// KV is one module's namespace of small persistent state, backed by the
// state store. Implementations are safe for concurrent use.
type KV interface {
	// Get returns the value of key; ok is false when there is none.
	Get(key string) (value []byte, ok bool, err error)
	Put(key string, value []byte) error
	// Delete removes key; a missing key is not an error.
	Delete(key string) error
}

// Level is the severity of a logged line.
type Level int32

// Levels, as guests pass them.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return fmt.Sprintf("Level(%d)", int32(l))
}

// Record is one line a module logged.
type Record struct {
	Addr    spec.Address
	Level   Level
	Message string
}

// State is where a module is in its lifecycle:
//
//	loaded -> starting -> running -> stopping -> stopped
//	              \           \          \
//	               '-----------'----------'--> failed
type State int32

// States of a module.
const (
	StateLoaded State = iota
	StateStarting
	StateRunning
	StateStopping
	StateStopped
	StateFailed
)

func (s State) String() string {
	switch s {
	case StateLoaded:
		return "loaded"
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateStopping:
		return "stopping"
	case StateStopped:
		return "stopped"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}
