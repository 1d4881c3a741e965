package systemd

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

var (
	_ providers.Watcher     = (*Provider)(nil)
	_ providers.EventSource = (*Provider)(nil)
)

// reconnectMax bounds the pause between two attempts to reach a bus or a
// systemd that went away.
const reconnectMax = 5 * time.Second

// safetyPoll is how often a watch looks at its unit even when no signal
// came: a signal lost in a full buffer must not leave a crash unseen.
const safetyPoll = 10 * time.Second

// A monitor follows one bus's systemd signals for every watch and event
// stream of the provider on that bus: one connection, however many units
// (a bus daemon limits the connections of each user).
//
//	dial, AddMatch, Manager.Subscribe
//	  |  PropertiesChanged / JobRemoved / UnitRemoved -> note{unit}
//	  |  NameOwnerChanged(org.freedesktop.systemd1, gone)  -> note{disconnected}
//	  |      (daemon-reexec: systemd leaves the bus and comes back)
//	  |  NameOwnerChanged(..., back): Subscribe again      -> note{reconnected}
//	  |  the connection closes (the bus went away)         -> note{disconnected}
//	  '- dial again, from 100ms up to 5s apart; once it works -> note{reconnected}
type monitor struct {
	bus    busAddr
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	cancel context.CancelFunc
}

// note is what a monitor tells its subscribers: a unit to look at again,
// or that systemd went away or came back.
type note struct {
	kind string // "unit", "disconnected", "reconnected"
	unit string
}

// subscriber receives notes; f must not block.
type subscriber struct{ f func(note) }

// subscribe registers f with the monitor of rt's bus, starting it when it
// is the first; the returned function unregisters it, and the last one
// stops the monitor.
func (p *Provider) subscribe(rt *spec.Runtime, f func(note)) (func(), error) {
	b, err := locate(scopeOf(rt))
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := b.String()
	mo := p.monitors[key]
	if mo == nil {
		ctx, cancel := context.WithCancel(context.Background())
		mo = &monitor{bus: b, subs: map[*subscriber]struct{}{}, cancel: cancel}
		p.monitors[key] = mo
		go mo.run(ctx)
	}
	s := &subscriber{f: f}
	mo.mu.Lock()
	mo.subs[s] = struct{}{}
	mo.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		mo.mu.Lock()
		delete(mo.subs, s)
		last := len(mo.subs) == 0
		mo.mu.Unlock()
		if last && p.monitors[key] == mo {
			delete(p.monitors, key)
			mo.cancel()
		}
	}, nil
}

func (mo *monitor) send(n note) {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	for s := range mo.subs {
		s.f(n)
	}
}

const (
	ifaceManager = "org.freedesktop.systemd1.Manager"
	ifaceProps   = "org.freedesktop.DBus.Properties"
	systemdName  = "org.freedesktop.systemd1"
	unitPathBase = "/org/freedesktop/systemd1/unit/"
)

func (mo *monitor) run(ctx context.Context) {
	wait := 100 * time.Millisecond
	away := false
	for ctx.Err() == nil {
		conn, err := mo.connect()
		if err != nil {
			if !away {
				away = true
				mo.send(note{kind: "disconnected"})
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			wait = min(2*wait, reconnectMax)
			continue
		}
		wait = 100 * time.Millisecond
		if away {
			away = false
			mo.send(note{kind: "reconnected"})
		}
		ch := make(chan *dbus.Signal, 1024)
		conn.Signal(ch)
		away = mo.follow(ctx, conn, ch)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		if !away {
			away = true
			mo.send(note{kind: "disconnected"})
		}
	}
}

// connect dials the bus, asks for systemd's signals and subscribes to
// them. A bus whose systemd is not there (yet) is a failure.
func (mo *monitor) connect() (*dbus.Conn, error) {
	conn, err := dial(mo.bus)
	if err != nil {
		return nil, err
	}
	rules := []string{
		"type='signal',interface='" + ifaceManager + "',member='JobRemoved'",
		"type='signal',interface='" + ifaceManager + "',member='UnitRemoved'",
		"type='signal',interface='" + ifaceProps + "',member='PropertiesChanged',path_namespace='/org/freedesktop/systemd1/unit'",
	}
	if mo.bus.hello {
		rules = append(rules, "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='"+systemdName+"'")
	}
	for _, r := range rules {
		if err := conn.BusObject().Call("org.freedesktop.DBus.AddMatch", 0, r).Err; err != nil && mo.bus.hello {
			conn.Close()
			return nil, err
		}
	}
	if err := subscribeSystemd(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func subscribeSystemd(conn *dbus.Conn) error {
	return conn.Object(systemdName, "/org/freedesktop/systemd1").Call(ifaceManager+".Subscribe", 0).Err
}

// follow passes the signals of ch on until the connection closes or ctx
// is done; away says it ended with systemd gone from the bus (and
// "disconnected" already sent).
func (mo *monitor) follow(ctx context.Context, conn *dbus.Conn, ch chan *dbus.Signal) (away bool) {
	for {
		select {
		case <-ctx.Done():
			return away
		case sig, ok := <-ch:
			if !ok {
				return away
			}
			switch sig.Name {
			case "org.freedesktop.DBus.NameOwnerChanged":
				if len(sig.Body) < 3 {
					continue
				}
				prev, _ := sig.Body[1].(string)
				owner, _ := sig.Body[2].(string)
				switch {
				case owner == "":
					if !away {
						away = true
						mo.send(note{kind: "disconnected"})
					}
				case away || prev != "":
					// systemd is back, or another systemd process took its
					// name over (daemon-reexec hands the name from the old
					// connection to the new one): what happened meanwhile
					// was not seen, and its subscribers are not all kept,
					// so subscribe again and say so.
					if !away {
						mo.send(note{kind: "disconnected"})
					}
					if err := subscribeSystemd(conn); err != nil {
						return true
					}
					away = false
					mo.send(note{kind: "reconnected"})
				}
			case ifaceManager + ".JobRemoved":
				if len(sig.Body) >= 3 {
					if u, ok := sig.Body[2].(string); ok {
						mo.send(note{kind: "unit", unit: u})
					}
				}
			case ifaceManager + ".UnitRemoved":
				if len(sig.Body) >= 1 {
					if u, ok := sig.Body[0].(string); ok {
						mo.send(note{kind: "unit", unit: u})
					}
				}
			case ifaceProps + ".PropertiesChanged":
				if u := unitOfPath(sig.Path); u != "" {
					mo.send(note{kind: "unit", unit: u})
				}
			}
		}
	}
}

// unitOfPath is the unit name of a unit's object path (systemd escapes
// every byte but letters and digits as _xx), "" for other paths.
func unitOfPath(p dbus.ObjectPath) string {
	s, ok := strings.CutPrefix(string(p), unitPathBase)
	if !ok || s == "" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Watch reports when the unit behind req.Handle stops running: on each
// signal about the unit (and every 10s regardless), it reads the unit, and
// sends how it ended once it no longer runs: exited with its main
// process's status, or missing when it is gone or was started again since.
// While systemd cannot be reached the watch keeps trying and reports
// nothing: a bus that went away does not mean the unit did. The channel is
// closed without a value when ctx is done first.
func (p *Provider) Watch(ctx context.Context, req providers.WatchRequest) (providers.WatchResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.WatchResponse{}, userErr("watch", req.Addr, "", "%v", err)
	}
	kick := make(chan struct{}, 1)
	unsub, err := p.subscribe(req.Runtime, func(n note) {
		if n.kind == "unit" && n.unit != hi.Unit || n.kind == "disconnected" {
			return
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return providers.WatchResponse{}, userErr("watch", req.Addr, "", "%s: %v", runtimeName(req.Runtime), err)
	}
	ch := make(chan providers.Observed, 1)
	go func() {
		defer close(ch)
		defer unsub()
		wait := 100 * time.Millisecond
		for {
			next := safetyPoll
			m, err := p.manager(req.Runtime, "watch", req.Addr)
			if err == nil {
				var u unit
				u, err = m.read(ctx, hi.Unit)
				if err != nil && m.unreachable(err) {
					p.drop(m)
				}
				if err == nil {
					if obs := u.observed(hi.Invocation); obs.State != providers.StateRunning {
						ch <- obs
						return
					}
					wait = 100 * time.Millisecond
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				next, wait = wait, min(2*wait, reconnectMax)
			}
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-time.After(next):
			}
		}
	}()
	return providers.WatchResponse{Exited: ch}, nil
}

// Events streams what happens to orch's units of req.Project on
// req.Runtime: "exited" when one stops running (with how, when it is still
// loaded), "started" when one starts, "destroyed" when one is unloaded,
// each with the unit's address. When systemd cannot be reached (the bus
// went away, or systemd left it for a daemon-reexec) it sends
// "disconnected" (no address), and "reconnected" once it is back: events
// in between are lost, so the receiver lists and re-observes everything.
// The channel is closed when ctx is done.
func (p *Provider) Events(ctx context.Context, req providers.EventsRequest) (<-chan providers.Event, error) {
	if req.Project == "" {
		return nil, &providers.Error{Op: "events", Err: errors.New("no project: the events of every project on this systemd would be mixed")}
	}
	notes := make(chan note, 1024)
	unsub, err := p.subscribe(req.Runtime, func(n note) {
		if n.kind == "unit" && !strings.HasPrefix(n.unit, unitPrefix(req.Project)) {
			return
		}
		select {
		case notes <- n:
		default: // an event only says "look again"; a full buffer has that
		}
	})
	if err != nil {
		return nil, &providers.Error{Op: "events", Err: err}
	}
	out := make(chan providers.Event, 64)
	go func() {
		defer close(out)
		defer unsub()
		rt := runtimeName(req.Runtime)
		known := map[string]spec.Address{} // unit -> address, of this project's units
		last := map[string]bool{}          // unit -> running, as last seen
		for {
			var n note
			select {
			case <-ctx.Done():
				return
			case n = <-notes:
			}
			ev := providers.Event{Time: time.Now(), Kind: n.kind}
			if n.kind == "unit" {
				var ok bool
				if ev, ok = p.unitEvent(ctx, req.Runtime, n.unit, req.Project, rt, known, last); !ok {
					continue
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// unitEvent reads unit name and turns a change of whether it runs into an
// event; ok is false when nothing orch cares about changed.
func (p *Provider) unitEvent(ctx context.Context, rt *spec.Runtime, name, project, rtName string, known map[string]spec.Address, last map[string]bool) (providers.Event, bool) {
	m, err := p.manager(rt, "events", spec.Address{})
	if err != nil {
		return providers.Event{}, false
	}
	u, err := m.read(ctx, name)
	if err != nil {
		return providers.Event{}, false
	}
	addr, seen := known[name]
	if u.ours(project) && u.Marks.Runtime == rtName {
		if a, err := spec.ParseAddress(u.Marks.Address); err == nil {
			addr, seen = a, true
			known[name] = a
		}
	}
	if !seen {
		return providers.Event{}, false
	}
	ev := providers.Event{Addr: addr, Time: time.Now(), Observed: u.observed("")}
	// A unit seen for the first time that does not run has stopped
	// since it was started (this stream began after that).
	run := u.running()
	was, before := last[name]
	switch {
	case !u.Loaded:
		ev.Kind = "destroyed"
	case run && (!was || !before):
		ev.Kind = "started"
	case !run && (was || !before):
		ev.Kind = "exited"
	default:
		return providers.Event{}, false
	}
	last[name] = run
	if !u.Loaded {
		delete(known, name)
		delete(last, name)
	}
	return ev, true
}
