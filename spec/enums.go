package spec

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
)

// RestartPolicy says when a daemon that exited is started again.
type RestartPolicy uint8

const (
	RestartOnFailure RestartPolicy = iota // restart after a non-zero exit or a signal (the default)
	RestartAlways                         // restart whatever the exit status
	RestartNever                          // never restart
)

var restartNames = [...]string{"on-failure", "always", "never"}

func (p RestartPolicy) String() string {
	if int(p) < len(restartNames) {
		return restartNames[p]
	}
	return fmt.Sprintf("RestartPolicy(%d)", uint8(p))
}

// ParseRestartPolicy reads "always", "on-failure" or "never".
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	for i, n := range restartNames {
		if s == n {
			return RestartPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not a restart policy; use one of %s", s, quoteList(restartNames[:]))
}

// Signal is a POSIX signal orch can send. The vocabulary is closed: only the
// signals in the table below are accepted.
type Signal struct {
	Name string // canonical name, with the SIG prefix: "SIGTERM"
	Num  syscall.Signal
}

func (s Signal) String() string { return s.Name }

var signalTable = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGKILL": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGTERM": syscall.SIGTERM, "SIGSTOP": syscall.SIGSTOP, "SIGCONT": syscall.SIGCONT,
	"SIGWINCH": syscall.SIGWINCH, "SIGPWR": syscall.SIGPWR, "SIGALRM": syscall.SIGALRM,
	"SIGABRT": syscall.SIGABRT, "SIGTSTP": syscall.SIGTSTP,
}

// SignalNames lists the accepted signal names, sorted.
func SignalNames() []string {
	names := make([]string, 0, len(signalTable))
	for n := range signalTable {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ParseSignal reads a signal name: "SIGTERM" or "TERM", in any case.
func ParseSignal(s string) (Signal, error) {
	up := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	if n, ok := signalTable[up]; ok {
		return Signal{Name: up, Num: n}, nil
	}
	return Signal{}, fmt.Errorf("%q is not a signal orch knows; use one of %s", s, strings.Join(SignalNames(), ", "))
}

// SIGTERM is the default stop signal.
var SIGTERM = Signal{Name: "SIGTERM", Num: syscall.SIGTERM}

// HealthKind is the kind of a health check.
type HealthKind uint8

const (
	HealthNone   HealthKind = iota
	HealthExec              // run a command; exit 0 is healthy
	HealthHTTP              // GET a URL; 2xx or 3xx is healthy
	HealthTCP               // connect to host:port
	HealthNotify            // the daemon says READY=1 on its NOTIFY_SOCKET
)

var healthNames = [...]string{"none", "exec", "http", "tcp", "notify"}

func (h HealthKind) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return fmt.Sprintf("HealthKind(%d)", uint8(h))
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
