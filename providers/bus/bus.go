package bus

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/spec"
)

// Event is one message on the event bus: a topic and opaque data (JSON by
// convention). Topics are dot-separated; those starting with "orch." are
// reserved for orch itself and refused to modules.
type Event struct {
	Topic string
	Data  []byte
}

// ReservedPrefix starts the topics only orch may publish.
const ReservedPrefix = "orch."

// Bus is the in-process event bus: publish and subscribe by topic pattern.
// Publish never blocks on a subscriber: each subscriber must hand the event
// over quickly (a Module queues it). It is safe for concurrent use; the
// zero value is not usable, use NewBus.
type Bus struct {
	mu   sync.Mutex // serializes writers of subs
	subs atomic.Pointer[[]*subscription]
}

type subscription struct {
	pattern string
	// unreserved: every topic outside ReservedPrefix, whatever pattern.
	unreserved bool
	deliver    func(Event)
}

func (s *subscription) matches(topic string) bool {
	if s.unreserved {
		return !strings.HasPrefix(topic, ReservedPrefix)
	}
	return Match(s.pattern, topic)
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	b := &Bus{}
	b.subs.Store(&[]*subscription{})
	return b
}

// Publish hands ev to every subscriber whose pattern matches its topic, on
// the calling goroutine, in the order they subscribed.
func (b *Bus) Publish(ev Event) {
	for _, s := range *b.subs.Load() {
		if s.matches(ev.Topic) {
			s.deliver(ev)
		}
	}
}

// Wants reports whether a subscriber's pattern matches topic: a publisher
// may skip building an event no one receives (orch's lifecycle events,
// JSON-encoded, with no module loaded: 2.5% of orch up's CPU in a stop of
// 1,000 daemons).
func (b *Bus) Wants(topic string) bool {
	for _, s := range *b.subs.Load() {
		if s.matches(topic) {
			return true
		}
	}
	return false
}

// Subscribe calls deliver with every event whose topic matches pattern
// (see Match) until cancel is called. deliver must not block.
func (b *Bus) Subscribe(pattern string, deliver func(Event)) (cancel func()) {
	return b.add(&subscription{pattern: pattern, deliver: deliver})
}

// SubscribeUnreserved calls deliver with every event whose topic is not
// reserved to orch (what modules publish) until cancel is called: unlike
// "*", it does not make orch's own lifecycle events wanted (Wants).
func (b *Bus) SubscribeUnreserved(deliver func(Event)) (cancel func()) {
	return b.add(&subscription{unreserved: true, deliver: deliver})
}

func (b *Bus) add(s *subscription) (cancel func()) {
	b.mu.Lock()
	old := *b.subs.Load()
	next := make([]*subscription, len(old), len(old)+1)
	copy(next, old)
	next = append(next, s)
	b.subs.Store(&next)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		old := *b.subs.Load()
		next := make([]*subscription, 0, len(old))
		for _, x := range old {
			if x != s {
				next = append(next, x)
			}
		}
		b.subs.Store(&next)
	}
}

// Match reports whether topic matches pattern: "*" matches every topic,
// "a.b.*" every topic that starts with "a.b.", anything else only itself.
func Match(pattern, topic string) bool {
	if pattern == "*" {
		return true
	}
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(topic, p)
	}
	return pattern == topic
}

// ValidTopic reports whether a module may publish on topic: not empty, at
// most 255 bytes, printable ASCII without spaces or '*', and not reserved.
func ValidTopic(topic string) bool {
	return ValidPattern(topic) && !strings.Contains(topic, "*") && !strings.HasPrefix(topic, ReservedPrefix)
}

func ValidPattern(p string) bool {
	if p == "" || len(p) > 255 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return false
	}
	return true
}

// Lifecycle is the data of a lifecycle event orch publishes, as JSON, on
// the topic "orch.<kind>.<event>" (orch.daemon.started,
// orch.module.failed, ...).
type Lifecycle struct {
	Address string    `json:"address"`
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Error   string    `json:"error,omitempty"`
}

// LifecycleEvent returns the event saying that addr went through event
// (started, healthy, exited, stopped, failed, ...); err may be nil.
func LifecycleEvent(addr spec.Address, event string, at time.Time, err error) Event {
	l := Lifecycle{Address: addr.String(), Event: event, Time: at.UTC()}
	if err != nil {
		l.Error = err.Error()
	}
	data, _ := json.Marshal(l)
	return Event{Topic: LifecycleTopic(addr.Kind, event), Data: data}
}

// LifecycleTopic is the topic of a lifecycle event of a kind of block.
func LifecycleTopic(kind spec.Kind, event string) string {
	return ReservedPrefix + kind.String() + "." + event
}
