package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/orch-dev/orch/providers/owned"
)

// maxSocketPath is the longest path a unix socket can be bound to
// (sun_path is 108 bytes with its NUL).
const maxSocketPath = 107

// Listener is the agent's socket. Close removes the socket file, unless
// another agent has replaced it since.
type Listener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
}

// Listen creates the unix socket at path with owner-only permissions
// (0600; its directory is created 0700 when missing). A directory that
// another user owns or may write is refused (providers/owned): that user
// could replace the socket and answer for the agent. A socket left by an
// agent that was killed is detected (connecting to it fails) and
// replaced; a live one is an error. The socket is bound under a temporary
// name, made 0600, then renamed into place, so nobody else can ever
// connect to it.
func Listen(path string) (*Listener, error) {
	if len(path)+len(".00000000.tmp") > maxSocketPath {
		return nil, fmt.Errorf("the agent socket path %s is too long for a unix socket (%d bytes at most): set agent_socket (--agent-socket, ORCH_AGENT_SOCKET) to a shorter one", path, maxSocketPath-len(".00000000.tmp"))
	}
	if err := owned.Dir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or set agent_socket elsewhere", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("an agent already listens on %s", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
		}
	}
	tmp := fmt.Sprintf("%s.%08d.tmp", path, os.Getpid()%100000000)
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &Listener{UnixListener: ln, path: path, fi: fi}, nil
}

// Path is where the socket is.
func (l *Listener) Path() string { return l.path }

// Close stops listening and removes the socket file if it is still ours.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	if fi, e := os.Lstat(l.path); e == nil && os.SameFile(fi, l.fi) {
		os.Remove(l.path)
	}
	return err
}
