package process

import (
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInherited marks every descriptor above stderr that this process
// inherited close-on-exec, so that none reaches what it starts: daemons,
// the log daemon, plugins. Go opens its own descriptors close-on-exec,
// but one its parent left open (a CI runner's pipe, a shell's) would
// otherwise pass to every daemon, and a daemon holding the write end of
// the caller's output pipe keeps `orch apply | tee log` (or a CI step)
// from ever seeing its end. systemd and supervisord start their services
// with nothing but what they pass; so does orch. cmd/orch calls it first
// thing; the helpers (__exec, __logd) receive only what orch passes them
// and need nothing else either.
func CloseInherited() {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	// Before Linux 5.11: one by one, from /proc.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
