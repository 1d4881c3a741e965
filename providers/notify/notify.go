// Package notify is orch's side of the sd_notify protocol: a daemon
// declared with health { notify = true } gets NOTIFY_SOCKET, a unix
// datagram socket orch listens on (one per daemon address, below the state
// directory), and says READY=1 when it is ready, STATUS=... for people,
// WATCHDOG=1 to show it is alive (with WATCHDOG_USEC, as systemd's
// WatchdogSec=), WATCHDOG=trigger to ask for a restart.
//
// A Socket is shared within the orch process by path: the process
// provider binds it before it starts the daemon (so that nothing is lost),
// and the engine's monitor takes the same Socket to follow readiness and
// the watchdog. READY=1 is also written next to the socket (a file
// "ready"), so that an orch started later, which binds the socket again
// at the same path, knows the instance announced it already.
//
// Every message carries the sender's credentials (SO_PASSCRED): its pid,
// and when it was read, its session and cgroup, so that a message counts
// only for the instance it came from (an old instance of a replace sends
// to the same path).
package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
)

// SocketName is the socket's file name in its directory; a container gets
// the directory mounted at ContainerDir.
const SocketName = "notify.sock"

// ContainerDir is where a container finds its daemon's notify directory.
const ContainerDir = "/run/orch-notify"

// Dir is the directory of daemon addr's notify socket below stateDir:
// <stateDir>/notify/<hash of the address>. A hash keeps the socket's path
// short (a unix socket path has 107 bytes at most).
func Dir(stateDir string, addr spec.Address) string {
	sum := sha256.Sum256([]byte(addr.String()))
	return filepath.Join(stateDir, "notify", hex.EncodeToString(sum[:6]))
}

// Path is the notify socket of addr below stateDir, or an error naming
// the daemon when that path is too long for a unix socket.
func Path(stateDir string, addr spec.Address) (string, error) {
	p := filepath.Join(Dir(stateDir, addr), SocketName)
	if len(p) > 107 {
		return "", fmt.Errorf("%s: its notify socket %s is longer than a unix socket path may be (107 bytes): use a shorter state directory", addr, p)
	}
	return p, nil
}

// Env is what a daemon gets in its environment: NOTIFY_SOCKET and, with a
// watchdog, WATCHDOG_USEC.
func Env(socket string, watchdog time.Duration) map[string]string {
	env := map[string]string{"NOTIFY_SOCKET": socket}
	if watchdog > 0 {
		env["WATCHDOG_USEC"] = strconv.FormatInt(watchdog.Microseconds(), 10)
	}
	return env
}

// Sender is who sent a message, as the kernel vouches.
type Sender struct {
	Pid    int    `json:"pid"`
	Sid    int    `json:"sid,omitempty"`    // its session, when it could be read
	Cgroup string `json:"cgroup,omitempty"` // its unified cgroup path, when it could be read
}

// From reports whether s is the instance whose main process is pid (with
// session and cgroup as read from /proc when the monitor began): the main
// process itself, a process of its session (the process provider makes
// each daemon a session leader), or of its cgroup (a container, a daemon
// with a cgroup). pid 0 (unknown) matches any sender.
func (s Sender) From(pid int, cgroup string) bool {
	switch {
	case pid == 0:
		return true
	case s.Pid == pid || s.Sid == pid:
		return true
	case cgroup != "" && cgroup != "/" && s.Cgroup == cgroup:
		return true
	}
	return false
}

// Message is one datagram, parsed.
type Message struct {
	Time   time.Time
	From   Sender
	Fields map[string]string // READY=1 -> {"READY": "1"}
}

// Socket is one daemon address's notify socket, bound by this process.
type Socket struct {
	path string

	mu     sync.Mutex
	refs   int
	conn   *net.UnixConn
	ready  *Sender // READY=1, from the file or a message
	status string
	log    []Message // the last messages (WATCHDOG, READY, ...), newest last
	seq    uint64
	wake   chan struct{} // closed and replaced on each message
	closed bool
}

var (
	socketsMu sync.Mutex
	sockets   = map[string]*Socket{}
)

// Listen binds the notify socket at path (its directory is made as
// providers/owned makes orch's own: private, checked) or returns the one
// this process bound already. A stale socket file (an orch that ended) is
// replaced: the same path works again for a daemon that kept it. Each
// Listen is matched by a Close.
func Listen(path string) (*Socket, error) {
	socketsMu.Lock()
	defer socketsMu.Unlock()
	if s := sockets[path]; s != nil {
		s.mu.Lock()
		s.refs++
		s.mu.Unlock()
		return s, nil
	}
	dir := filepath.Dir(path)
	if err := owned.Dir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, &owned.UntrustedError{Path: path, Reason: "is not a socket", Fix: "remove it"}
		}
		os.Remove(path)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	// Anyone who can reach the directory (orch's user: it is private)
	// may send; a datagram socket needs write permission.
	os.Chmod(path, 0o622)
	rc, err := conn.SyscallConn()
	if err == nil {
		rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	s := &Socket{path: path, refs: 1, conn: conn, wake: make(chan struct{})}
	s.ready = readReady(path)
	sockets[path] = s
	go s.read()
	return s, nil
}

// Bound reports whether this process has any socket bound (Lookup finds
// none otherwise): a plan's observation of 10,000 daemons need not make
// the path of each one's socket to look it up.
func Bound() bool {
	socketsMu.Lock()
	defer socketsMu.Unlock()
	return len(sockets) > 0
}

// Lookup returns the socket this process bound at path, or nil; it takes
// no reference (no Close).
func Lookup(path string) *Socket {
	socketsMu.Lock()
	defer socketsMu.Unlock()
	return sockets[path]
}

// Close drops one Listen; the last closes the socket (its file stays).
func (s *Socket) Close() {
	socketsMu.Lock()
	defer socketsMu.Unlock()
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		s.closed = true
	}
	s.mu.Unlock()
	if last {
		s.conn.Close()
		if sockets[s.path] == s {
			delete(sockets, s.path)
		}
	}
}

// Path is the socket's path.
func (s *Socket) Path() string { return s.path }

// Reset forgets READY=1 and every message: a new instance of the daemon
// is about to start and must announce itself.
func (s *Socket) Reset() {
	s.mu.Lock()
	s.ready, s.status, s.log = nil, "", nil
	s.mu.Unlock()
	os.Remove(readyFile(s.path))
}

// State is what the daemon said so far.
type State struct {
	Ready  *Sender // who said READY=1; nil: nobody yet
	Status string  // the last STATUS=
	// Messages are the last messages received (at most 64), oldest
	// first; Seq counts every message ever received.
	Messages []Message
	Seq      uint64
}

// State returns what was said so far and a channel closed at the next
// message.
func (s *Socket) State() (State, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Status: s.status, Messages: append([]Message(nil), s.log...), Seq: s.seq}
	if s.ready != nil {
		r := *s.ready
		st.Ready = &r
	}
	return st, s.wake
}

func (s *Socket) read() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := Message{Time: time.Now(), Fields: parse(buf[:n])}
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if cred, err := unix.ParseUnixCredentials(&c); err == nil {
					m.From = senderOf(int(cred.Pid))
				}
			}
		}
		s.take(m)
	}
}

func (s *Socket) take(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if m.Fields["READY"] == "1" {
		from := m.From
		s.ready = &from
		writeReady(s.path, from)
	}
	if st, ok := m.Fields["STATUS"]; ok {
		s.status = st
	}
	s.log = append(s.log, m)
	if len(s.log) > 64 {
		s.log = append(s.log[:0:0], s.log[len(s.log)-64:]...)
	}
	s.seq++
	close(s.wake)
	s.wake = make(chan struct{})
}

// parse reads newline-separated KEY=VALUE assignments.
func parse(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// senderOf reads pid's session and cgroup while it is (likely) alive.
func senderOf(pid int) Sender {
	s := Sender{Pid: pid}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		str := string(b)
		if i := strings.LastIndexByte(str, ')'); i >= 0 {
			f := strings.Fields(str[i+1:])
			if len(f) > 4 {
				s.Sid, _ = strconv.Atoi(f[4])
			}
		}
	}
	s.Cgroup = CgroupOf(pid)
	return s
}

// CgroupOf is pid's path in the unified cgroup hierarchy ("" when
// unknown).
func CgroupOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return rel
		}
	}
	return ""
}

func readyFile(path string) string { return filepath.Join(filepath.Dir(path), "ready") }

func readReady(path string) *Sender {
	f, err := owned.OpenFile(readyFile(path), os.O_RDONLY)
	if err != nil {
		return nil
	}
	defer f.Close()
	var s Sender
	if json.NewDecoder(f).Decode(&s) != nil || s.Pid <= 0 {
		return nil
	}
	return &s
}

func writeReady(path string, s Sender) {
	b, _ := json.Marshal(s)
	tmp := readyFile(path) + ".tmp"
	f, err := owned.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return
	}
	_, err = f.Write(b)
	f.Close()
	if err == nil {
		os.Rename(tmp, readyFile(path))
	}
}

// Instance is what tells the messages of the instance whose main process
// is pid from others' (the arguments of Sender.From): its pid, and its
// cgroup unless that is orch's own (a daemon without a cgroup of its
// own: the cgroup then says nothing of the sender). pid <= 0: anyone.
func Instance(pid int) (int, string) {
	if pid <= 0 {
		return 0, ""
	}
	cg := CgroupOf(pid)
	if cg == CgroupOf(os.Getpid()) {
		cg = ""
	}
	return pid, cg
}
