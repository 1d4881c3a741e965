package engine

import (
	"context"
	"sync"
	"time"

	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/planner"
	"github.com/orch-dev/orch/spec"
)

// The shutdown's plan is made from the records (planner.StopAll): listed
// and decoded at the interrupt, they held back orch up's first stop
// signal by about 2 ms at 100 daemons and 10 ms at 1,000 (listed at
// 1.2-1.5 ms after the SIGTERM, planned at 1.7-2.2, traced). While orch
// up runs, the records are listed and decoded ahead, in the background,
// whenever the state has changed (its serial), and the shutdown uses
// them when the state has not changed since: the same records, read
// earlier. Any doubt (no serial to compare, a failed read, a change since)
// and the shutdown lists them as before.

// serialViewer is a Store that says which writes its records have seen
// (state.Store): what was listed ahead is current while the serial is
// the one it was listed at.
type serialViewer interface {
	Serial() (uint64, error)
	ListSerial() ([]state.Instance, uint64, error)
}

// prepEvery is how often the state's serial is looked at (a read
// transaction, some microseconds); prepDuty bounds the share of time the
// listing ahead may take (a listing that took d waits prepDuty times d
// before the next): a state that changes all the time (10,000 daemons,
// one crash-looping) is listed at most that often.
// prepMax is the most records listed ahead: each holds its decoded
// configuration (1-3 KB), and at 10,000 daemons the listing at the
// interrupt (about 60 ms) is a small part of a stop that takes seconds,
// while 20-30 MB held ahead would not be.
const (
	prepEvery = 500 * time.Millisecond
	prepDuty  = 50
	prepMax   = 4096
)

// shutdownPrep holds the records listed ahead.
type shutdownPrep struct {
	mu     sync.Mutex
	ok     bool
	serial uint64
	stored map[spec.Address]*planner.Stored
	// done is closed by the next listing, which makes another: what
	// waits for a listing (a test) waits on it (listing).
	done chan struct{}
}

// set records a listing of serial (stored nil: none usable) and wakes
// what waits for one.
func (p *shutdownPrep) set(stored map[spec.Address]*planner.Stored, serial uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ok, p.serial, p.stored = stored != nil, serial, stored
	if p.done != nil {
		close(p.done)
		p.done = nil
	}
}

// listing is closed by the next listing.
func (p *shutdownPrep) listing() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = make(chan struct{})
	}
	return p.done
}

// prepareShutdown lists the records ahead until ctx is done (Run's).
func (e *Engine) prepareShutdown(ctx context.Context) {
	sv, ok := e.opts.Store.(serialViewer)
	if !ok {
		return
	}
	t := time.NewTimer(prepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		began := time.Now()
		listed, more := e.listAhead(sv)
		if !more {
			return
		}
		next := prepEvery
		if listed {
			next = max(next, prepDuty*time.Since(began))
		}
		t.Reset(next)
	}
}

// listAhead lists and decodes the records when the state's serial has
// moved since the last listing; listed says whether it did. more is false
// when there are more than prepMax records: the shutdown lists them, for
// the rest of this engine's run.
func (e *Engine) listAhead(sv serialViewer) (listed, more bool) {
	serial, err := sv.Serial()
	e.prep.mu.Lock()
	current := e.prep.ok && e.prep.serial == serial
	e.prep.mu.Unlock()
	if err != nil || current {
		return false, true
	}
	list, serial, err := sv.ListSerial()
	if err != nil {
		e.prep.set(nil, serial)
		return true, true
	}
	if len(list) > prepMax {
		e.prep.set(nil, serial)
		return true, false
	}
	e.prep.set(executor.StoredOf(list), serial)
	return true, true
}

// preparedStored is what was listed ahead when the state has not changed
// since; nil otherwise.
func (e *Engine) preparedStored() map[spec.Address]*planner.Stored {
	sv, ok := e.opts.Store.(serialViewer)
	if !ok {
		return nil
	}
	e.prep.mu.Lock()
	defer e.prep.mu.Unlock()
	if !e.prep.ok {
		return nil
	}
	serial, err := sv.Serial()
	if err != nil || serial != e.prep.serial {
		return nil
	}
	return e.prep.stored
}
