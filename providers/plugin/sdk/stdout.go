package sdk

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"regexp"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers/plugin/wire"
)

// handshakeOut is the real standard output, kept for go-plugin's handshake
// line; nil when this process was not launched as an orch plugin.
var handshakeOut *os.File

func init() {
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		return
	}
	fd, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return
	}
	if err := unix.Dup3(2, 1, 0); err != nil {
		unix.Close(fd)
		return
	}
	handshakeOut = os.NewFile(uintptr(fd), "handshake")
}

// handshakeLine matches go-plugin's handshake (core version 1, our
// protocol version, network, address, protocol, certificate) anywhere in a
// line, so that a partial line printed just before it cannot hide it.
var handshakeLine = regexp.MustCompile(`1\|[0-9]+\|(unix|tcp)\|[^|\s]+\|grpc\|[^|\s]*(\|(true|false))?$`)

// guardStdout gives go-plugin a pipe as os.Stdout and forwards the one
// handshake line it writes there to the real standard output; every other
// byte written to the pipe (by code that printed while go-plugin was
// starting) goes to stderr. It returns at once.
func guardStdout() {
	if handshakeOut == nil {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	stderr := os.Stderr
	os.Stdout = w
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		out := handshakeOut
		for sc.Scan() {
			line := sc.Bytes()
			if out != nil {
				if loc := handshakeLine.FindIndex(line); loc != nil {
					if loc[0] > 0 {
						stderr.Write(append(bytes.Clone(line[:loc[0]]), '\n'))
					}
					out.Write(append(bytes.Clone(line[loc[0]:]), '\n'))
					out.Close()
					out = nil
					continue
				}
			}
			stderr.Write(append(bytes.Clone(line), '\n'))
		}
		io.Copy(stderr, r)
	}()
}
