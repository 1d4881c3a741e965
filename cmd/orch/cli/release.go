package cli

import (
	"runtime/debug"
	"sync"

	"github.com/orch-dev/orch/executor/engine"
)

// releaseAfterReady wraps out so that, once the engine's first round is
// done (the ready event), the memory that round used and no longer needs
// is given back to the system, once, from a goroutine of its own (a
// collection, then the free pages returned): the first round of orch up
// loads, plans and applies everything at once, and the Go runtime would
// otherwise keep the pages of that peak for a long while. orch up
// supervising 10,000 adopted daemons stayed at 188 MB resident while it
// idled (its live heap at the first round's peak was 70 MB, its garbage
// counted against the collector's goal twice that).
func releaseAfterReady(out func(engine.Event)) func(engine.Event) {
	var once sync.Once
	return func(ev engine.Event) {
		out(ev)
		if ev.Type == engine.EventReady {
			once.Do(func() { go debug.FreeOSMemory() })
		}
	}
}
