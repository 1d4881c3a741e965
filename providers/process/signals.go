package process

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// inheritable are the signals whose disposition a daemon would inherit
// from orch when orch was started with them ignored: nohup ignores
// SIGHUP, a shell's background job SIGINT and SIGQUIT, some service
// managers SIGPIPE.
var inheritable = []syscall.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2,
	syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGCHLD, syscall.SIGWINCH,
}

// sink takes the signals orch handles only so that its daemons do not
// inherit them ignored; it is never read (a full channel drops).
var sink = make(chan os.Signal, 1)

// resetIgnoredSignals gives the daemons orch starts the default
// disposition of every signal, as systemd gives its services. A signal
// ignored when orch started would otherwise stay ignored across exec in
// every daemon, and a daemon cannot even trap it (a shell may not trap
// a signal ignored on entry): started under nohup, orch signal -s HUP
// would never reach nginx's reload. orch handles such a signal itself
// instead (and drops it, so orch still ignores it); a handled signal is
// reset to its default at exec.
func resetIgnoredSignals() {
	// The kernel's view (SigIgn of /proc/self/status) as well as Go's:
	// Go's bookkeeping can say a signal is no longer ignored while the
	// disposition every child inherits still is (signal.Ignore, then
	// signal.Reset: TestSignal after TestDaemonsDoNotInheritIgnoredSignals
	// in one test binary found its daemon ignoring SIGHUP).
	kernel := ignoredMask()
	var ignored []os.Signal
	for _, s := range inheritable {
		if signal.Ignored(s) || kernel&(1<<(uint(s)-1)) != 0 {
			ignored = append(ignored, s)
		}
	}
	if len(ignored) > 0 {
		signal.Notify(sink, ignored...)
	}
}

// ignoredMask is the SigIgn mask of /proc/self/status (bit n-1 for
// signal n); 0 when it cannot be read.
func ignoredMask() uint64 {
	m, _ := strconv.ParseUint(selfStatus("SigIgn"), 16, 64)
	return m
}
