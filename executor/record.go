package executor

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

// stateError is a failure to write state: orch's own infrastructure fault,
// which stops the apply.
type stateError struct{ err error }

func (e *stateError) Error() string { return "writing state: " + e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// commitLinger bounds how long a transaction waits for the writes of the
// steps still running.
const commitLinger = 2 * time.Millisecond

// releasedLinger bounds it instead while every write of the transaction
// is released (the record of a stop whose step was already reported
// done, releasesEarly): nothing waits on such a record but the end of
// the Apply, and a crash before it is durable leaves a record of an
// instance that is gone, which the next refresh observes as gone.
const releasedLinger = 50 * time.Millisecond

type recordOp struct {
	put  *state.Instance
	del  spec.Address
	done chan error
	// released: the step was reported done before this write (a stop's
	// record); see releasedLinger.
	released bool
}

// groupCommit writes the results of steps to the store as they happen,
// gathering the writes that arrive while a transaction runs into the next
// one. A step returns only once its record is durable, so a crash never
// loses a step that was reported done, and 1,000 concurrent steps cost a
// handful of transactions instead of 1,000 fsyncs.
//
// Steps that run side by side rarely end together (a hundred starts end
// one by one, as fast as the kernel forks), so a transaction begun at the
// first write would hold one or two. While other steps are still running
// (running, which the executor keeps), a transaction waits up to
// commitLinger for their writes: a step's record is durable at most that
// much later, and a lone step (a restart) never waits. A transaction of
// released writes only waits up to releasedLinger: a stop of a chain of
// 100 links, one link every 0.7 ms, writes its records in two or three
// transactions instead of one every 2 ms, whose opens, fsyncs and closes
// took a quarter of orch up's CPU in the stop (perf, 2 cores).
type groupCommit struct {
	running atomic.Int64 // steps running; set by the executor
	// redact removes sensitive values from what put records (LastError).
	redact *spec.Redactor
	store  Recorder
	ops    chan recordOp
	wg     sync.WaitGroup
	once   sync.Once
	closed chan struct{}
}

func newGroupCommit(store Recorder) *groupCommit {
	g := &groupCommit{store: store, ops: make(chan recordOp, 1024), closed: make(chan struct{})}
	g.wg.Add(1)
	go g.loop()
	return g
}

func (g *groupCommit) loop() {
	defer g.wg.Done()
	for {
		var batch []recordOp
		select {
		case op := <-g.ops:
			batch = append(batch, op)
		case <-g.closed:
			return
		}
	drain:
		for len(batch) < 4096 {
			select {
			case op := <-g.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		if int64(len(batch)) < g.running.Load() {
			released := allReleased(batch)
			wait := commitLinger
			if released {
				wait = releasedLinger
			}
			t := time.NewTimer(wait)
		linger:
			for len(batch) < 4096 && int64(len(batch)) < g.running.Load() {
				select {
				case op := <-g.ops:
					batch = append(batch, op)
					if released && !op.released {
						// A step waits on this one: no longer than
						// commitLinger from here.
						released = false
						t.Reset(commitLinger)
					}
				case <-t.C:
					break linger
				}
			}
			t.Stop()
		}
		err := g.store.Update(func(tx *state.Tx) error {
			for _, op := range batch {
				var err error
				if op.put != nil {
					err = tx.Put(*op.put)
				} else {
					err = tx.Delete(op.del)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", opAddr(op), err)
				}
			}
			return nil
		})
		for _, op := range batch {
			op.done <- err
		}
	}
}

// allReleased reports whether every write of batch is released.
func allReleased(batch []recordOp) bool {
	for _, op := range batch {
		if !op.released {
			return false
		}
	}
	return true
}

func opAddr(op recordOp) spec.Address {
	if op.put != nil {
		return op.put.Addr
	}
	return op.del
}

func (g *groupCommit) do(op recordOp) error {
	op.done = make(chan error, 1)
	g.ops <- op
	if err := <-op.done; err != nil {
		return &stateError{err}
	}
	return nil
}

func (g *groupCommit) put(inst state.Instance) error {
	inst.LastError = g.redact.Redact(inst.LastError)
	return g.do(recordOp{put: &inst})
}
func (g *groupCommit) delete(a spec.Address) error { return g.do(recordOp{del: a}) }

// putReleased and deleteReleased write the record of a step that was
// already reported done (releasedLinger).
func (g *groupCommit) putReleased(inst state.Instance) error {
	inst.LastError = g.redact.Redact(inst.LastError)
	return g.do(recordOp{put: &inst, released: true})
}
func (g *groupCommit) deleteReleased(a spec.Address) error {
	return g.do(recordOp{del: a, released: true})
}

// close stops the writer once every step has returned (each step waits
// for its own record, so nothing is pending by then).
func (g *groupCommit) close() {
	g.once.Do(func() { close(g.closed) })
	g.wg.Wait()
}

// MarkFailed records that a's instance failed for why, a failure the
// executor did not see happen (a crash loop that orch up's supervisor
// gives up on): its record stays, with status failed and why as its last
// error. The executor is the only writer of records; the engine asks it.
func MarkFailed(store Recorder, redact *spec.Redactor, a spec.Address, why string) error {
	return store.Update(func(tx *state.Tx) error {
		inst, err := tx.Get(a)
		if err != nil {
			return err
		}
		inst.Status, inst.LastError = StatusFailed.String(), redact.Redact(why)
		return tx.Put(inst)
	})
}
