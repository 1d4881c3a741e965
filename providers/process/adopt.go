package process

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
)

// KillStartEnv is a test hook: with ORCH_TEST_KILL_START=STEP (or
// STEP:N), the orch process SIGKILLs itself at step STEP of its first (or
// N-th) daemon start, so that tests can interrupt the start path at each
// of its steps through the real binary:
//
//	1 the daemon's pipe is made; nothing is written yet
//	2 the pending registry line is written, naming the cgroup; no
//	  cgroup yet, no process
//	3 the cgroup is made; no process yet
//	4 the process runs (through the exec wrapper: it may not have
//	  executed the program yet); no committed registry line
//	5 the committed registry line is written; logd has not the pipe
//	6 logd has the pipe; Start has not returned (orch records nothing)
//
// Unset (always, outside tests), it costs nothing.
const KillStartEnv = "ORCH_TEST_KILL_START"

// The steps of the start path, for KillStartEnv.
const (
	stepPipe      = 1
	stepPending   = 2
	stepCgroup    = 3
	stepForked    = 4
	stepCommitted = 5
	stepLogd      = 6
)

// killHook is KillStartEnv parsed; the zero value never kills.
type killHook struct {
	step   int
	nth    int64
	starts *atomic.Int64
}

func parseKillHook(v string) killHook {
	if v == "" {
		return killHook{}
	}
	s, n, _ := strings.Cut(v, ":")
	step, err := strconv.Atoi(s)
	if err != nil || step < stepPipe || step > stepLogd {
		return killHook{}
	}
	nth := int64(1)
	if n != "" {
		if nth, err = strconv.ParseInt(n, 10, 64); err != nil || nth < 1 {
			return killHook{}
		}
	}
	return killHook{step: step, nth: nth, starts: new(atomic.Int64)}
}

// begin counts a start and returns the function its steps call: it kills
// this process at the step of the start the hook names.
func (k killHook) begin() func(step int) {
	if k.step == 0 {
		return func(int) {}
	}
	n := k.starts.Add(1)
	return func(step int) {
		if step == k.step && n == k.nth {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// newStartID names one start in the registry.
func newStartID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// starterAlive reports whether the orch process that wrote a start still
// runs (this one included): its start may be in flight, and the instance
// is left to it.
func (p *Provider) starterAlive(by *starter) bool {
	if by == nil {
		return false // a line of an older orch: its starter is long gone
	}
	if by.Pid == p.me.Pid && by.StartTicks == p.me.StartTicks {
		return true
	}
	st, ok := readStat(by.Pid)
	return ok && st.StartTicks == by.StartTicks && st.State != 'Z' && st.State != 'X'
}

// JournalsStarts marks the Provider as a providers.StartJournal: Start
// appends a start's pending line to the registry before the program runs
// (in the page cache, which outlives orch; a crash of the host ends the
// program too), and Adopt finds the instance through it.
func (p *Provider) JournalsStarts() {}

// Adopt runs the adoption pass over the registry Start writes (a process
// cannot carry ownership labels, and scanning every process of the host
// would not tell ours anyway). Of the instances of req.Project (and of
// req.Runtime) it
//
//   - resolves the starts cut short (a pending line whose orch is dead):
//     the daemon is found by its pipe (/proc/<pid>/fd/1), its committed
//     line written; a start that never ran is forgotten;
//   - returns, for each address req.Known does not name, its newest
//     running instance, whose pipe it hands to the log daemon (an orch
//     killed before it did leaves it with nobody reading);
//   - stops every other running instance left over by a dead orch: older
//     instances of an address it adopts, and, for an address req.Known
//     names, those that are not the one req.KnownHandle gives. They are
//     stopped as the daemon was configured (stop signal, then SIGKILL
//     after the stop timeout) and their lines deleted.
//
// Instances whose orch still runs are left alone: their start may be in
// flight. The result is sorted by address.
func (p *Provider) Adopt(ctx context.Context, req providers.AdoptRequest) (providers.AdoptResponse, error) {
	var resp providers.AdoptResponse
	if req.StateDir == "" {
		return resp, &providers.Error{Op: "adopt", Err: errors.New("no state directory")}
	}
	logsDir := filepath.Join(req.StateDir, "logs")
	if err := owned.Check(logsDir); err != nil {
		return resp, &providers.Error{Op: "adopt", Err: err}
	}
	runtime := ""
	if req.Runtime != nil {
		runtime = req.Runtime.Addr.String()
	}
	ours := func(e *regEntry) bool {
		return (req.Project == "" || e.Project == "" || e.Project == req.Project) &&
			(runtime == "" || e.Runtime == "" || e.Runtime == runtime)
	}
	type group struct {
		addr  spec.Address
		known bool
		insts []regEntry // oldest first
	}
	nothing, current := adoptFromSummary(logsDir, req, ours)
	if nothing {
		return resp, nil // nothing to do, as the summary says
	}
	var groups []*group
	var pending []regEntry
	var summary *regSummary
	err := withRegistryAt(logsDir, func(live *regLive, dev, ino uint64, offset int64) {
		if !current && offset >= 0 {
			summary = summaryOf(live, dev, ino, offset)
		}
		for _, keys := range live.names {
			var g *group
			for _, k := range keys {
				e := live.inst[k]
				if !ours(&e) {
					continue
				}
				if e.Pending {
					if !p.starterAlive(e.By) {
						pending = append(pending, e)
					}
					continue
				}
				if len(e.Handle) == 0 {
					continue
				}
				if g == nil {
					addr, err := spec.ParseAddress(e.Address)
					if err != nil {
						break
					}
					g = &group{addr: addr, known: req.Known != nil && req.Known(addr)}
					// The common case costs no /proc read: the one
					// instance of an address the state records.
					if g.known && len(keys) == 1 && (req.KnownHandle == nil || bytes.Equal(req.KnownHandle(addr), e.Handle)) {
						g = nil
						break
					}
				}
				g.insts = append(g.insts, e)
			}
			if g != nil {
				groups = append(groups, g)
			}
		}
	})
	if err != nil {
		return resp, &providers.Error{Op: "adopt", Err: err}
	}
	if summary != nil {
		// The summary was missing or of another file: the next Adopt
		// reads this one.
		writeSummary(logsDir, summary)
	}
	if len(pending) > 0 {
		found, err := p.resolvePending(logsDir, pending)
		if err != nil {
			return resp, &providers.Error{Op: "adopt", Err: err}
		}
		for _, e := range found {
			addr, err := spec.ParseAddress(e.Address)
			if err != nil {
				continue
			}
			var g *group
			for _, o := range groups {
				if o.addr == addr {
					g = o
				}
			}
			if g == nil {
				g = &group{addr: addr, known: req.Known != nil && req.Known(addr)}
				if g.known {
					// Its other instances were left out above: take
					// them back to compare them with the state's.
					withRegistry(logsDir, func(live *regLive) {
						for _, o := range live.of(e.Name) {
							if !o.Pending && len(o.Handle) > 0 && o.ID != e.ID && ours(&o) {
								g.insts = append(g.insts, o)
							}
						}
					})
				}
				groups = append(groups, g)
			}
			g.insts = append(g.insts, e)
			sort.Slice(g.insts, func(i, j int) bool { return g.insts[i].seq < g.insts[j].seq })
		}
	}

	var orphans []regEntry
	for _, g := range groups {
		var knownHI HandleInfo
		knownOK := false
		if g.known {
			if req.KnownHandle == nil {
				continue // which one the state records is not known: touch none
			}
			if h := req.KnownHandle(g.addr); len(h) > 0 {
				knownHI, err = ParseHandle(h)
				knownOK = err == nil
			}
		}
		adopted := false
		for i := len(g.insts) - 1; i >= 0; i-- {
			e := g.insts[i]
			hi, err := ParseHandle(providers.Handle(e.Handle))
			if err != nil || p.identify(hi) != procAlive {
				continue
			}
			switch {
			case g.known && knownOK && hi.Pid == knownHI.Pid && hi.StartTicks == knownHI.StartTicks:
				// The state's own.
			case !g.known && !adopted:
				adopted = true
				obs := p.observeInfo(hi)
				resp.Objects = append(resp.Objects, providers.Adoptable{Addr: g.addr, Handle: providers.Handle(e.Handle), ConfigHash: e.ConfigHash, Observed: obs})
				p.handPipe(logsDir, e, hi)
			case p.starterAlive(e.By):
				// Its orch runs: it is that orch's business.
			default:
				orphans = append(orphans, e)
			}
		}
	}
	if len(orphans) > 0 {
		if err := p.stopOrphans(ctx, logsDir, orphans); err != nil {
			return resp, &providers.Error{Op: "adopt", Retryable: true, Err: err}
		}
	}
	sort.Slice(resp.Objects, func(i, j int) bool { return resp.Objects[i].Addr.Less(resp.Objects[j].Addr) })
	return resp, nil
}

// resolvePending finds the daemons of starts cut short (pending lines
// whose orch is dead) by the pipe each was given: one look at every
// process's fd 1 and 2. The leader found (a session leader holding the
// pipe, so the process the start forked) gets its committed line, and is
// returned; a start whose daemon is not found (never forked, or exited)
// is forgotten, and what still holds its pipe (children of a leader that
// exited) is killed.
func (p *Provider) resolvePending(logsDir string, pending []regEntry) ([]regEntry, error) {
	want := make(map[uint64]bool, len(pending))
	for _, e := range pending {
		if e.Pipe != 0 {
			want[e.Pipe] = true
		}
	}
	holders := pipeHolders(want)
	var found []regEntry
	for _, e := range pending {
		leader := -1
		var lst procStat
		for _, pid := range holders[e.Pipe] {
			if st, ok := readStat(pid); ok && st.Sid == pid && st.Pgid == pid && st.State != 'Z' && st.State != 'X' {
				leader, lst = pid, st
				break
			}
		}
		if leader < 0 {
			for _, pid := range holders[e.Pipe] {
				unix.Kill(pid, syscall.SIGKILL)
			}
			if e.Cgroup != nil {
				e.Cgroup.Remove() // kills what is in it first
			}
			if err := appendRegistry(logsDir, regEntry{Name: e.Name, ID: e.ID, Gone: true}); err != nil {
				return found, err
			}
			continue
		}
		hi := HandleInfo{Pid: leader, StartTicks: lst.StartTicks, Pgid: leader, Log: filepath.Join(logsDir, e.Name+logSuffix), BootID: p.boot.bootID, Cgroup: e.Cgroup, ID: e.ID}
		e.Pending = false
		e.Handle = []byte(hi.Encode())
		if err := appendRegistry(logsDir, e); err != nil {
			return found, err
		}
		found = append(found, e)
	}
	return found, nil
}

// pipeHolders returns, for each pipe inode of want, the processes whose
// fd 1 or 2 is that pipe: one pass over /proc.
func pipeHolders(want map[uint64]bool) map[uint64][]int {
	out := map[uint64][]int{}
	d, err := os.Open("/proc")
	if err != nil {
		return out
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	buf := make([]byte, 64)
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		for _, fd := range []string{"/1", "/2"} {
			k, err := unix.Readlink("/proc/"+n+"/fd"+fd, buf)
			if err != nil {
				continue
			}
			s := string(buf[:k])
			v, ok := strings.CutPrefix(s, "pipe:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64)
			if err == nil && want[ino] {
				out[ino] = append(out[ino], pid)
				break
			}
		}
	}
	return out
}

// handPipe gives the log daemon the pipe of an adopted daemon (through
// /proc/<pid>/fd/1, when it is the pipe recorded): the orch that started
// it may have died before it did. logd ignores a pipe it reads already.
// Best effort: the daemon runs either way, and a log daemon started later
// takes the pipe back from the registry.
func (p *Provider) handPipe(logsDir string, e regEntry, hi HandleInfo) {
	if e.Pipe == 0 {
		return
	}
	for _, n := range []int{1, 2} {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", hi.Pid, n), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Ino != e.Pipe {
			unix.Close(fd)
			continue
		}
		p.logdRequest(logsDir, logdMsg{Op: "add", Name: e.Name, MaxSize: e.MaxSize, MaxFiles: e.MaxFiles}, fd)
		unix.Close(fd)
		return
	}
}

// stopOrphans stops instances left over by a dead orch, all at once, each
// as it was configured to stop, and deletes their lines.
func (p *Provider) stopOrphans(ctx context.Context, logsDir string, orphans []regEntry) error {
	var wg sync.WaitGroup
	errs := make([]error, len(orphans))
	for i, e := range orphans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr, _ := spec.ParseAddress(e.Address)
			sig, err := spec.ParseSignal(e.StopSignal)
			if err != nil {
				sig = spec.Signal{Name: "SIGTERM", Num: syscall.SIGTERM}
			}
			timeout := time.Duration(e.StopTimeoutMS) * time.Millisecond
			if _, err := p.Stop(ctx, providers.StopRequest{Addr: addr, Handle: providers.Handle(e.Handle), Signal: sig, Timeout: timeout}); err != nil {
				errs[i] = fmt.Errorf("stopping %s (pid %s), left over by an interrupted orch: %w", e.Address, handlePid(e.Handle), err)
				return
			}
			errs[i] = appendRegistry(logsDir, regEntry{Name: e.Name, ID: e.ID, logConf: logConf{Handle: e.Handle}, Gone: true})
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func handlePid(h []byte) string {
	hi, err := ParseHandle(providers.Handle(h))
	if err != nil {
		return "?"
	}
	return strconv.Itoa(hi.Pid)
}
