package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/plugin/wire"
	"github.com/orch-dev/orch/spec"
)

// Binary names one plugin executable and the block that declared it.
type Binary struct {
	// Path is the executable, absolute.
	Path string
	// SHA256 is the hex SHA-256 the executable must have; "" when the
	// configuration pins none.
	SHA256 string
	// Block is the address of the block that declared it
	// ("runtime.files.local", "module.mirror"), for errors.
	Block string
}

// ChecksumError says that a plugin executable is not the one pinned.
type ChecksumError struct {
	Block, Path string
	Want, Got   string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: the plugin %s does not have the declared checksum: sha256 = %q is declared, the file's is %q. Rebuild or reinstall the plugin you meant, or update sha256 if this binary is trusted", e.Block, e.Path, e.Want, e.Got)
}

// verify checks that b's executable exists and has its pinned checksum.
func (b Binary) verify() (*goplugin.SecureConfig, error) {
	st, err := os.Stat(b.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: plugin %s: %w", b.Block, b.Path, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%s: plugin %s is not an executable file", b.Block, b.Path)
	}
	if b.SHA256 == "" {
		return nil, nil
	}
	want := strings.ToLower(b.SHA256)
	sum, err := hex.DecodeString(want)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%s: sha256 %q is not a hex SHA-256", b.Block, b.SHA256)
	}
	got, err := spec.FileSHA256(b.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: plugin %s: %w", b.Block, b.Path, err)
	}
	if got != want {
		return nil, &ChecksumError{Block: b.Block, Path: b.Path, Want: want, Got: got}
	}
	// go-plugin checks again right before it starts the executable.
	return &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// proc is one running plugin process.
type proc struct {
	bin     Binary
	client  *goplugin.Client
	cmd     *exec.Cmd
	raw     any // what the go-plugin Plugin's GRPCClient returned
	pid     int
	started time.Time
	out     *lineLog

	exited  chan struct{} // closed once the process is gone
	exitMu  sync.Mutex
	exitMsg string // how it ended; set before exited is closed
	killed  bool   // orch ended it (Kill), as opposed to a crash
}

// launchOptions configures launch.
type launchOptions struct {
	kind         string          // wire.ProviderPlugin or wire.ModulePlugin
	plugin       goplugin.Plugin // host side of that kind
	startTimeout time.Duration
	log          func(line string) // the plugin's output, line by line; nil discards
}

// launch starts b and completes go-plugin's handshake (with AutoMTLS, and
// the checksum pinned when b has one), then dispenses the plugin of kind.
// The process is in its own process group (a Ctrl-C in orch's terminal
// does not reach it) and gets SIGKILL if orch's thread that started it
// dies; the SDK also exits when its parent changes.
func launch(b Binary, o launchOptions) (*proc, error) {
	secure, err := b.verify()
	if err != nil {
		return nil, err
	}
	pidfd := -1
	cmd := exec.Command(b.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd}
	out := &lineLog{log: o.log}
	p := &proc{bin: b, cmd: cmd, out: out, exited: make(chan struct{})}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          goplugin.PluginSet{o.kind: o.plugin},
		Cmd:              cmd,
		SecureConfig:     secure,
		AutoMTLS:         true,
		GRPCDialOptions:  wire.DialOptions(),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		StartTimeout:     o.startTimeout,
		Managed:          true,
		Stderr:           out,
		SyncStdout:       out,
		SyncStderr:       out,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "go-plugin", Level: hclog.Off, Output: io.Discard}),
	})
	p.client = client
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return nil, fmt.Errorf("%s: plugin %s: %s%s", b.Block, b.Path, launchErr(err), out.tail())
	}
	p.pid = cmd.Process.Pid
	p.started = time.Now()
	go p.wait(pidfd)
	raw, err := rpc.Dispense(o.kind)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("%s: plugin %s: it does not serve a %s plugin: %w", b.Block, b.Path, o.kind, err)
	}
	p.raw = raw
	return p, nil
}

func launchErr(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		return "the executable changed after its checksum was verified"
	case strings.Contains(msg, "Incompatible API version"):
		return "it speaks another version of orch's plugin protocol (" + msg + "); orch speaks " + wire.Protocol
	case strings.Contains(msg, "plugin exited before we could connect"),
		strings.Contains(msg, "Failed to read any lines from plugin's stdout"):
		return "it exited before completing the handshake"
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return "no handshake within the start timeout"
	case strings.HasPrefix(msg, "Unrecognized remote plugin message: "):
		return "its first line on stdout is not go-plugin's handshake: " + strconv.Quote(firstLine(strings.TrimPrefix(msg, "Unrecognized remote plugin message: ")))
	}
	return "handshake failed: " + firstLine(msg)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// wait closes p.exited once the process is gone, noting how it ended. It
// waits on the pidfd: go-plugin itself reaps the process.
func (p *proc) wait(pidfd int) {
	defer close(p.exited)
	if !waitPidfd(pidfd) {
		// No pidfd to wait on: go-plugin's reaping is the only sign.
		for !p.client.Exited() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// go-plugin reaps it and then sets Exited under its lock; once it says
	// so, cmd.ProcessState is safe to read.
	for i := 0; !p.client.Exited(); i++ {
		time.Sleep(time.Millisecond)
		if i > 5000 { // its stdout or stderr is held open by a child
			break
		}
	}
	p.exitMu.Lock()
	defer p.exitMu.Unlock()
	switch {
	case p.killed:
		p.exitMsg = "killed by orch"
	case p.client.Exited() && p.cmd.ProcessState != nil:
		p.exitMsg = p.cmd.ProcessState.String()
	default:
		p.exitMsg = "exited"
	}
}

// waitPidfd waits until the process of pidfd has ended, and closes
// pidfd. It reports false, at once, when it cannot wait (no pidfd).
//
// It blocks its thread in poll(2). Go's poller cannot wait on the pidfd:
// it is blocking (RawConn.Read fails at once, "waiting for unsupported
// file type"), and making it non-blocking would make the os.Process's
// non-blocking too (a dup of it: one file description), whose Wait would
// then fail (EAGAIN) instead of reaping the process.
func waitPidfd(pidfd int) bool {
	if pidfd < 0 {
		return false
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		// A pidfd is readable once its process has ended.
		n, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// alive reports whether the process still runs.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitReason says how the process ended, with the last lines it wrote.
func (p *proc) exitReason() string {
	p.exitMu.Lock()
	defer p.exitMu.Unlock()
	return p.exitMsg + p.out.tail()
}

// kill ends the process (go-plugin asks it to exit, then kills it) and
// waits until it is gone.
func (p *proc) kill() {
	p.exitMu.Lock()
	p.killed = true
	p.exitMu.Unlock()
	p.client.Kill()
	if p.pid > 0 {
		// A hung plugin that ignores the graceful shutdown is killed by
		// go-plugin; make sure, by pid, while we still hold its pidfd.
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.exited
		}
	}
}

// lineLog splits a plugin's output into lines for log and keeps the last
// few for error messages.
type lineLog struct {
	log   func(string)
	mu    sync.Mutex
	part  []byte
	last  []string
	panic string // the first "panic: " or "fatal error: " line
}

const tailLines = 3

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	if len(l.part) > 64<<10 {
		l.line(string(l.part))
		l.part = nil
	}
	return len(b), nil
}

func (l *lineLog) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	if l.panic == "" && (strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ")) {
		l.panic = s
	}
	if len(l.last) == tailLines {
		copy(l.last, l.last[1:])
		l.last = l.last[:tailLines-1]
	}
	l.last = append(l.last, s)
	if l.log != nil {
		l.log(s)
	}
}

// tail returns the last lines written, as a suffix for an error message.
func (l *lineLog) tail() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.panic != "" {
		return "; " + l.panic
	}
	if len(l.last) == 0 {
		return ""
	}
	return "; its last output: " + strings.Join(l.last, " | ")
}
