package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// busAddr is where a scope's manager is reached: a D-Bus address, and
// whether it is a bus daemon (which wants a Hello) or systemd's private
// socket (which does not).
type busAddr struct {
	scope string
	addr  string
	hello bool
}

func (b busAddr) String() string { return b.scope + " bus " + b.addr }

// systemPrivate is systemd's own socket, which only root may use; orch
// falls back to it when the system has no D-Bus daemon.
const systemPrivate = "unix:path=/run/systemd/private"

// locate finds the bus of scope from the environment, as systemctl does:
// the system bus at $DBUS_SYSTEM_BUS_ADDRESS, else D-Bus's default socket
// (or, for root on a system without a bus daemon, systemd's private
// socket); the user bus at $DBUS_SESSION_BUS_ADDRESS, else
// $XDG_RUNTIME_DIR/bus (or, without one, the user manager's own socket,
// $XDG_RUNTIME_DIR/systemd/private). A user scope with neither is an error: orch never
// launches a bus of its own.
func locate(scope string) (busAddr, error) {
	switch scope {
	case ScopeUser:
		if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
			return busAddr{scope, a, true}, nil
		}
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			// Without a user bus (no dbus-user-session), the user's
			// manager still answers on its own socket, as systemctl
			// --user finds it.
			if _, err := os.Stat(d + "/bus"); err != nil {
				if _, err := os.Stat(d + "/systemd/private"); err == nil {
					return busAddr{scope, "unix:path=" + d + "/systemd/private", false}, nil
				}
			}
			return busAddr{scope, "unix:path=" + d + "/bus", true}, nil
		}
		return busAddr{}, errors.New(`scope = "user" needs the user's systemd bus, and neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set (run orch in the user's login session, or set XDG_RUNTIME_DIR=/run/user/$UID)`)
	default:
		if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
			return busAddr{ScopeSystem, a, true}, nil
		}
		const def = "/run/dbus/system_bus_socket"
		if _, err := os.Stat(def); err != nil && os.Geteuid() == 0 {
			if _, err := os.Stat("/run/systemd/private"); err == nil {
				return busAddr{ScopeSystem, systemPrivate, false}, nil
			}
		}
		return busAddr{ScopeSystem, "unix:path=" + def, true}, nil
	}
}

// dial opens one authenticated connection to b. The connection lives
// until it is closed or the peer goes away; ctx is not tied to it.
func dial(b busAddr) (*dbus.Conn, error) {
	c, err := dbus.Dial(b.addr)
	if err != nil {
		return nil, err
	}
	// EXTERNAL with the numeric uid, as go-systemd does: no user name
	// look-up, which a static binary could not make.
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, err
	}
	if b.hello {
		if err := c.Hello(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// manager is the method connection to one scope's systemd.
type manager struct {
	*sd.Conn
	bus     busAddr
	runtime string // the runtime's address, for messages
}

// manager returns the connection to rt's systemd, made on first use and
// made again when the old one broke. Failing to reach it is an
// Unreachable error that names the runtime and the bus.
func (p *Provider) manager(rt *spec.Runtime, op string, addr spec.Address) (manager, error) {
	scope := scopeOf(rt)
	name := runtimeName(rt)
	b, err := locate(scope)
	if err != nil {
		return manager{}, &providers.Error{Op: op, Err: fmt.Errorf("%s%s: %w", prefix(addr), name, err)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := b.String()
	if c := p.conns[key]; c != nil {
		if c.Connected() {
			return manager{c, b, name}, nil
		}
		c.Close()
		delete(p.conns, key)
	}
	c, err := sd.NewConnection(func() (*dbus.Conn, error) { return dial(b) })
	if err != nil {
		return manager{}, &providers.Error{Op: op, Retryable: true, Unreachable: true,
			Err: fmt.Errorf("%s%s: cannot reach systemd on the %s: %w", prefix(addr), name, b, err)}
	}
	p.conns[key] = c
	return manager{c, b, name}, nil
}

func runtimeName(rt *spec.Runtime) string {
	if rt == nil || rt.Addr.IsZero() {
		return "runtime." + Kind
	}
	return rt.Addr.String()
}

func prefix(addr spec.Address) string {
	if addr.IsZero() {
		return ""
	}
	return addr.String() + ": "
}

// err wraps a failed call of op about addr. A call that could not reach
// systemd (the connection broke, the bus or systemd went away) is
// Unreachable and Retryable, and the broken connection is dropped so that
// the next call dials again.
func (m manager) err(p *Provider, op string, addr spec.Address, err error) error {
	away := m.unreachable(err)
	if away {
		p.drop(m)
	}
	return &providers.Error{Op: op, Retryable: away || errors.Is(err, context.DeadlineExceeded), Unreachable: away,
		Err: fmt.Errorf("%s%s (systemd on the %s): %w", prefix(addr), m.runtime, m.bus, err)}
}

// unreachable says whether err is a failure to reach systemd rather than
// an answer from it.
func (m manager) unreachable(err error) bool {
	if err == nil {
		return false
	}
	if !m.Connected() || errors.Is(err, dbus.ErrClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var de dbus.Error
	if errors.As(err, &de) {
		// The bus answered for systemd: it is not there (restarting).
		return de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" ||
			de.Name == "org.freedesktop.DBus.Error.NoReply" || de.Name == "org.freedesktop.DBus.Error.Disconnected"
	}
	return strings.Contains(err.Error(), "connection closed")
}

func (p *Provider) drop(m manager) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[m.bus.String()] == m.Conn {
		delete(p.conns, m.bus.String())
		m.Close()
	}
}
