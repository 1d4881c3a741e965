package service

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// ListenError is a listener of the orch block (dns, proxy) whose address
// cannot be bound: the one error an agent reports for it, naming the
// listener and the address.
type ListenError struct {
	Listener string // "dns", "proxy"
	Addr     string
	Err      error // the errno when there is one (syscall.EADDRINUSE)
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("orch { %s { listen = %q } }: %v", e.Listener, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// NewListenError wraps err, from binding addr for listener, without the
// layers of net's errors that repeat the address.
func NewListenError(listener, addr string, err error) *ListenError {
	var se *os.SyscallError
	var oe *net.OpError
	switch {
	case errors.As(err, &se):
		err = se.Err
	case errors.As(err, &oe) && oe.Err != nil:
		err = oe.Err
	}
	return &ListenError{Listener: listener, Addr: addr, Err: err}
}
