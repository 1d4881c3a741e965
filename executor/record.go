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
// done, releasesEarly), and releasedBatch how many such writes it
// gathers: nothing waits on them but the end of the Apply, and a crash
// before they are durable leaves records of instances that are gone,
// which the next refresh observes as gone. Past releasedBatch the
// transaction commits at once, so that the one left for the end of the
// Apply, which nothing overlaps, stays small (a commit here: about 0.5 ms,
// two fsyncs, plus 10-30 us a record).
var releasedLinger = 50 * time.Millisecond // a var for a test

const releasedBatch = 16

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
// one. A step returns only once its record is durable (but a released
// one: a stop's, or a start's that its runtime would find again,
// releasesStart), so a crash never loses a start that was reported done,
// and 1,000 concurrent steps cost a handful of transactions instead of
// 1,000 fsyncs.
//
// Steps that run side by side rarely end together (a hundred starts end
// one by one, as fast as the kernel forks), so a transaction begun at the
// first write would hold one or two. While other steps are still running
// (running, which the executor keeps), a transaction waits up to
// commitLinger for their writes: a step's record is durable at most that
// much later, and a lone step (a restart) never waits. Released writes
// (a stop's record, which its step does not wait for: putReleased) wait
// up to releasedLinger for releasedBatch of them: a stop of a chain of
// 100 links, one link every 0.7 ms, writes its records in 7 transactions
// instead of one every 2 ms, whose opens, fsyncs and closes took a
// quarter of orch up's CPU in the stop (perf, 2 cores).
type groupCommit struct {
	running atomic.Int64 // steps running; set by the executor
	// writers counts the steps of the Apply that may still write a
	// record: not ended, launched or not, and not recorded ahead. Set by
	// the executor; see mayWrite.
	writers atomic.Int64
	// redact removes sensitive values from what put records (LastError).
	redact *spec.Redactor
	store  Recorder
	ops    chan recordOp
	wg     sync.WaitGroup
	once   sync.Once
	closed chan struct{}
	// ended wakes a lingering transaction when a step ends (stepEnded):
	// a released write comes from a step that no longer waits for it.
	ended chan struct{}
	// late counts the released writes not yet committed; lateErr is the
	// first of their failures, which flush returns.
	late    sync.WaitGroup
	lateMu  sync.Mutex
	lateErr error
}

func newGroupCommit(store Recorder) *groupCommit {
	g := &groupCommit{store: store, ops: make(chan recordOp, 1024), closed: make(chan struct{}), ended: make(chan struct{}, 1)}
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
		if g.mayWrite(batch) {
			released := allReleased(batch)
			wait := commitLinger
			if released {
				wait = releasedLinger
			}
			t := time.NewTimer(wait)
		linger:
			for len(batch) < 4096 && g.mayWrite(batch) {
				select {
				case op := <-g.ops:
					batch = append(batch, op)
					if released && !op.released {
						// A step waits on this one: no longer than
						// commitLinger from here.
						released = false
						t.Reset(commitLinger)
					}
				case <-g.ended:
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
			if op.released {
				if err != nil {
					g.lateMu.Lock()
					if g.lateErr == nil {
						g.lateErr = err
					}
					g.lateMu.Unlock()
				}
				g.late.Done()
				continue
			}
			op.done <- err
		}
	}
}

// mayWrite reports whether batch should wait for more. A batch a step
// waits on waits while a step still running may add a write to it (fewer
// of its writes are waited on than steps run). A batch of released writes
// alone waits while a step of the Apply may still write (writers: on a
// chain of stops each link records ahead as it is launched, one at a
// time), unless it is full: releasedBatch, or a quarter of those steps
// when more (a stop of 1,000 commits its records in a few transactions,
// and the one left for the end stays small as the steps run out); and a
// stop of 100 recorded ahead at once commits at once, while its daemons
// die. A full batch still waits when the steps that may write are fewer
// than it holds: they are about to end, and one transaction for all is
// cheaper than a full one and then the rest, one after the other (a stop
// of 100 ended on two, each two fsyncs, after its last daemon was gone).
// releasedLinger bounds that wait too (a chain's links end one at a
// time).
func (g *groupCommit) mayWrite(batch []recordOp) bool {
	waited := 0
	for _, op := range batch {
		if !op.released {
			waited++
		}
	}
	if waited == 0 {
		// Released writes alone: they wait for those of the steps that
		// may still write, launched or not (on a chain of stops, one step
		// runs at a time, and each records ahead as it is launched).
		writers, n := g.writers.Load(), int64(len(batch))
		return writers > 0 && !(n >= max(releasedBatch, writers/4) && writers > n)
	}
	return int64(waited) < g.running.Load()
}

// stepEnded is called by the executor when a step has returned; ahead:
// it was recorded ahead, and counted out then.
func (g *groupCommit) stepEnded(ahead bool) {
	if !ahead {
		g.running.Add(-1)
		g.writers.Add(-1)
	}
	g.wake()
}

// skipped is called by the executor for a step that ends without running.
func (g *groupCommit) skipped() {
	g.writers.Add(-1)
	g.wake()
}

// wake wakes a lingering transaction: what it waits for may have changed.
func (g *groupCommit) wake() {
	select {
	case g.ended <- struct{}{}:
	default:
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

// putReleased and deleteReleased queue the record of a step that was
// already reported done (releasedLinger) and return: the step's goroutine
// does not wait for it. flush waits for every such record and returns the
// first failure to write one.
func (g *groupCommit) putReleased(inst state.Instance) {
	inst.LastError = g.redact.Redact(inst.LastError)
	g.release(recordOp{put: &inst})
}
func (g *groupCommit) deleteReleased(a spec.Address) { g.release(recordOp{del: a}) }

// ahead queues the record of a step just launched that writes nothing
// more (recordAhead): for the transactions, the step has ended (it no
// longer counts among those a transaction waits for), and the executor
// does not call stepEnded for it.
func (g *groupCommit) ahead(inst state.Instance) {
	g.running.Add(-1)
	g.writers.Add(-1)
	g.putReleased(inst)
}

func (g *groupCommit) release(op recordOp) {
	op.released = true
	g.late.Add(1)
	g.ops <- op
}

// flush waits until every released record is durable (or failed) and
// returns the first failure as a *stateError.
func (g *groupCommit) flush() error {
	g.late.Wait()
	g.lateMu.Lock()
	defer g.lateMu.Unlock()
	if g.lateErr != nil {
		return &stateError{g.lateErr}
	}
	return nil
}

// close stops the writer once every step has returned and flush has
// returned (each step waits for its own record but a released one, so
// nothing is pending by then).
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
