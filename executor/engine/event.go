package engine

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/orch-dev/orch/spec"
)

// EventType is the kind of an Event. A closed vocabulary; its String is the
// "type" of the JSON form.
type EventType uint8

const (
	EventStarted        EventType = iota + 1 // an instance was started (pid)
	EventAdopted                             // an instance already running is now supervised
	EventUpdated                             // new settings recorded for a running instance
	EventCompleted                           // a job exited 0
	EventExited                              // a daemon exited (exit code or signal)
	EventRestarting                          // a daemon will be started again after a delay
	EventHealthy                             // its health check passes
	EventUnhealthy                           // its health check failed retries times in a row
	EventFailed                              // a start failed, a job failed, or a crash loop
	EventWaiting                             // a start waits for a dependency
	EventSkipped                             // a step did not run because what it needs failed
	EventStopping                            // orch up is stopping it (shutdown)
	EventStopped                             // it stopped (shutdown, or replaced)
	EventDestroyed                           // it is no longer declared and was removed
	EventConfigReloaded                      // the configuration changed and is valid
	EventConfigInvalid                       // the configuration changed and is invalid; nothing changed
	EventPlan                                // the plan about to be applied (Detail: rendered)
	EventPlanApplied                         // the plan was applied (Detail: summary)
	EventReady                               // the first apply is done; supervising
	EventShutdown                            // stopping everything (ctx done)
	EventError                               // an infrastructure fault; the engine goes on
	EventUnreachable                         // a runtime's backend cannot be reached (Addr: the runtime)
	EventReconnected                         // it can be reached again; everything on it is looked at afresh
	EventPaused                              // orch pause stopped it (SIGSTOP); its health checks wait
	EventResumed                             // orch resume continued it (SIGCONT)
	EventReloaded                            // its reload signal applied a change of its reload.on
	EventBlocked                             // its start waits on an instance that failed (Detail names it)
	EventModuleState                         // a module went through a state of its own (Detail: loaded, starting, running, stopping, stopped, failed)
	EventPublished                           // a module published on the bus (Topic; Detail: the data)

	// Services (services.go): Detail is the DNS name, the address and
	// the route; for a deregistration, why.
	EventServiceRegistered   // it is ready: in DNS, on the proxy, announced
	EventServiceDeregistered // it left DNS, the proxy and mDNS

	// EventConfigValid: the configuration is valid again after a
	// config_invalid, and declares what already runs: nothing changed.
	// (A valid save that changes something is config_reloaded.)
	EventConfigValid

	// EventStillStarting: its health check has not passed yet, and its
	// last probe failed (Detail: that failure, the failed probes so far,
	// and when start_timeout gives up on it). Said 5 s after its start,
	// then every 15 s, until a probe passes or start_timeout runs out.
	EventStillStarting
)

var eventNames = [...]string{"", "started", "adopted", "updated", "completed", "exited", "restarting",
	"healthy", "unhealthy", "failed", "waiting", "skipped", "stopping", "stopped", "destroyed",
	"config_reloaded", "config_invalid", "plan", "plan_applied", "ready", "shutdown", "error",
	"unreachable", "reconnected", "paused", "resumed", "reloaded", "blocked",
	"module_state", "published", "service_registered", "service_deregistered",
	"config_valid", "still_starting"}

func (t EventType) String() string {
	if int(t) < len(eventNames) && t != 0 {
		return eventNames[t]
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// MarshalText renders the type by name.
func (t EventType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a type by name; an unknown name is an error.
func (t *EventType) UnmarshalText(b []byte) error {
	for i, n := range eventNames {
		if i > 0 && n == string(b) {
			*t = EventType(i)
			return nil
		}
	}
	return fmt.Errorf("unknown event type %q", b)
}

// Event is one thing the engine did or saw. Addr is zero for events about
// the engine as a whole (config_reloaded, plan_applied, ...).
type Event struct {
	Time     time.Time
	Type     EventType
	Addr     spec.Address
	Pid      int
	ExitCode *int   // set when an exit code is known
	Signal   string // the signal that ended it
	Detail   string
	Topic    string // the bus topic of a published event
}

type jsonEvent struct {
	Time     time.Time `json:"time"`
	Type     EventType `json:"type"`
	Address  string    `json:"address,omitempty"`
	Pid      int       `json:"pid,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Signal   string    `json:"signal,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Topic    string    `json:"topic,omitempty"`
}

// MarshalJSON renders the event as one NDJSON object: {time, type,
// address, pid, exit_code, signal, detail}.
func (e Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

// AppendJSON appends what MarshalJSON returns to dst, byte for byte what
// encoding/json makes of jsonEvent, without its reflection: orch up -json
// prints two events per daemon in a stop of 1,000, and encoding/json
// (through MarshalJSON, and again by the Encoder checking its output) was
// a tenth of orch's CPU there. A string that needs escaping is left to
// encoding/json.
func (e Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"time":`...)
	if y := e.Time.Year(); y < 0 || y > 9999 {
		b, _ := json.Marshal(e.Time) // an error there is what encoding/json would say too
		dst = append(dst, b...)
	} else {
		dst = append(dst, '"')
		dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, e.Type.String())
	if !e.Addr.IsZero() {
		dst = append(dst, `,"address":`...)
		dst = appendJSONString(dst, e.Addr.String())
	}
	if e.Pid != 0 {
		dst = append(dst, `,"pid":`...)
		dst = strconv.AppendInt(dst, int64(e.Pid), 10)
	}
	if e.ExitCode != nil {
		dst = append(dst, `,"exit_code":`...)
		dst = strconv.AppendInt(dst, int64(*e.ExitCode), 10)
	}
	for _, f := range [...]struct{ key, val string }{{`,"signal":`, e.Signal}, {`,"detail":`, e.Detail}, {`,"topic":`, e.Topic}} {
		if f.val != "" {
			dst = append(dst, f.key...)
			dst = appendJSONString(dst, f.val)
		}
	}
	return append(dst, '}')
}

// appendJSONString appends s as encoding/json writes a string: quoted,
// with <, > and & escaped as it does by default.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// UnmarshalJSON reads what MarshalJSON wrote (a client of the agent API
// reading the event stream).
func (e *Event) UnmarshalJSON(b []byte) error {
	var j jsonEvent
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Event{Time: j.Time, Type: j.Type, Pid: j.Pid, ExitCode: j.ExitCode, Signal: j.Signal, Detail: j.Detail, Topic: j.Topic}
	if j.Address != "" {
		a, err := spec.ParseAddress(j.Address)
		if err != nil {
			return err
		}
		e.Addr = a
	}
	return nil
}

// String renders the event as one readable line (more for a plan or
// diagnostics): "12:00:01 daemon.api started pid=123".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Time.Format("15:04:05"))
	b.WriteByte(' ')
	if !e.Addr.IsZero() {
		b.WriteString(e.Addr.String())
		b.WriteByte(' ')
	}
	switch e.Type {
	case EventConfigReloaded:
		b.WriteString("config reloaded")
	case EventConfigInvalid:
		b.WriteString("config invalid, everything keeps running as it was")
	case EventConfigValid:
		b.WriteString("config valid again, nothing to change")
	case EventPlanApplied:
		b.WriteString("plan applied")
	case EventPlan:
		b.WriteString("applying")
	case EventPublished:
		b.WriteString("published " + e.Topic)
	case EventStillStarting:
		b.WriteString("still starting, its health check fails")
	default:
		b.WriteString(e.Type.String())
	}
	if e.Pid != 0 {
		fmt.Fprintf(&b, " pid=%d", e.Pid)
	}
	if e.Signal != "" {
		fmt.Fprintf(&b, " signal=%s", e.Signal)
	} else if e.ExitCode != nil {
		fmt.Fprintf(&b, " code=%d", *e.ExitCode)
	}
	if e.Detail != "" {
		switch {
		case strings.Contains(e.Detail, "\n"):
			b.WriteString(":\n")
			b.WriteString(strings.TrimRight(e.Detail, "\n"))
		case e.Type == EventRestarting || e.Type == EventWaiting:
			b.WriteByte(' ')
			b.WriteString(e.Detail)
		default:
			b.WriteString(": ")
			b.WriteString(e.Detail)
		}
	}
	return b.String()
}
