package process

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/spec/workers"
)

// waitExit waits until the process of hi has exited (gone, a zombie, or its
// pid reused), until deadline or ctx is done, and reports whether it has.
// It sleeps in poll(2) on a pidfd, which becomes readable when the process
// exits; without pidfd (Linux < 5.3) it polls /proc with a backoff.
func waitExit(ctx context.Context, hi HandleInfo, identify func(HandleInfo) procIdentity, deadline time.Time) bool {
	fd, err := unix.PidfdOpen(hi.Pid, 0)
	if err == nil {
		defer unix.Close(fd)
		// The pid may have changed hands before the pidfd was opened: check
		// after opening, so the pidfd is known to refer to our process.
		if identify(hi) != procAlive {
			return true
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			left := time.Until(deadline)
			if left <= 0 || ctx.Err() != nil {
				return false
			}
			ms := int(min(left, 100*time.Millisecond) / time.Millisecond)
			n, err := unix.Poll(fds, max(ms, 1))
			if n > 0 {
				return true
			}
			if err != nil && err != unix.EINTR {
				break // fall back to polling
			}
		}
	}
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	return waitExitPolling(ctx, hi, identify, deadline)
}

// waitExitPolling is waitExit without pidfd: it polls /proc.
func waitExitPolling(ctx context.Context, hi HandleInfo, identify func(HandleInfo) procIdentity, deadline time.Time) bool {
	return pollUntil(ctx, deadline, func() bool { return identify(hi) != procAlive })
}

// waitGroupGone waits until process group pgid, whose leader was leader,
// has no live member (zombies waiting for their parent do not count),
// until deadline or ctx is done.
//
// kill(-pgid, 0) says "no member" for one system call. While it finds
// members (often only the exited leader, a zombie until init reaps it:
// orch is not its parent when another orch started it), the group's
// members as an index of every group lists them are looked at one by one
// (pid, start time, still in the group, not a zombie): the cost of a
// check is the group's size, not the machine's. The index comes from one
// scan of /proc that every Stop shares (see groupIndex).
func (p *Provider) waitGroupGone(ctx context.Context, pgid int, leader member, deadline time.Time) bool {
	var known []member
	var rescanned time.Time
	return pollUntil(ctx, deadline, func() bool {
		if unix.Kill(-pgid, 0) == unix.ESRCH {
			return true
		}
		if known == nil {
			known = p.groups.members(pgid, leader, p.boot.clockHz, time.Time{})
		}
		if anyLive(known, pgid) {
			return false
		}
		// kill(-pgid, 0) found a member and none known lives: the
		// leader's zombie explains that. Without one, a process joined
		// the group after the index was made: scan again, once.
		st, ok := readStat(leader.pid)
		if ok && st.StartTicks == leader.start && st.Pgid == pgid && (st.State == 'Z' || st.State == 'X') {
			return true
		}
		if !ok && unix.Kill(-pgid, 0) == unix.ESRCH {
			return true // the zombie was reaped meanwhile
		}
		if !rescanned.IsZero() {
			return true
		}
		rescanned = time.Now()
		known = p.groups.members(pgid, leader, p.boot.clockHz, rescanned)
		return !anyLive(known, pgid)
	})
}

// anyLive reports whether a member of ms still runs in group pgid.
func anyLive(ms []member, pgid int) bool {
	for _, m := range ms {
		if st, ok := readStat(m.pid); ok && st.StartTicks == m.start && st.Pgid == pgid && st.State != 'Z' && st.State != 'X' {
			return true
		}
	}
	return false
}

// member is a process of a group: pid and start time.
type member struct {
	pid   int
	start uint64
}

// groupIndexTTL is how long a scan of /proc serves Stops.
const groupIndexTTL = 2 * time.Second

// groupIndex is every process group's live members, from one scan of
// /proc shared by every Stop: a destroy scans /proc once, and again only
// once the index is older than groupIndexTTL, for a group whose leader
// started after the scan, or for a Stop whose group has a member that is
// neither known nor the leader's zombie — not once per daemon per poll.
// What it cannot see is a process that joined a group after the scan
// (forked by a member) while the leader is an unreaped zombie; it got the
// stop signal with the group, but a SIGKILL after the timeout would miss
// it.
type groupIndex struct {
	mu       sync.Mutex
	at       time.Time
	atTicks  uint64 // the scan's start, in clock ticks after boot (as start times are)
	groups   map[int][]member
	stats    map[int]procStat // an Observe's scan (offer), made into groups when first needed
	building chan struct{}    // closed when the scan in flight ends
	scans    int              // scans done, for tests
}

// offer gives the index the stats of every process, read by a scan of
// /proc begun at at (atTicks): an Observe of most of the machine's
// processes reads them all anyway (scanStats), and an apply's Stops after
// it then read none again.
func (x *groupIndex) offer(stats map[int]procStat, at time.Time, atTicks uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.building != nil || (x.groups != nil || x.stats != nil) && !x.at.Before(at) {
		return // a scan in flight, or a newer one
	}
	x.groups, x.stats, x.at, x.atTicks = nil, stats, at, atTicks
}

// members returns the members of group pgid, leader included, from a
// scan begun at notBefore or later.
func (x *groupIndex) members(pgid int, leader member, hz uint64, notBefore time.Time) []member {
	x.mu.Lock()
	for x.building != nil {
		ch := x.building
		x.mu.Unlock()
		<-ch
		x.mu.Lock()
	}
	if x.stats != nil {
		x.groups, x.stats = groupsOf(x.stats), nil
	}
	// A group whose leader started after the scan began is younger than
	// the index: scan again.
	if x.groups != nil && time.Since(x.at) < groupIndexTTL && leader.start < x.atTicks && !x.at.Before(notBefore) {
		ms := x.groups[pgid]
		x.mu.Unlock()
		return withLeader(ms, leader)
	}
	ch := make(chan struct{})
	x.building = ch
	x.mu.Unlock()
	at, atTicks := time.Now(), bootTicks(hz)
	groups := scanGroups()
	x.mu.Lock()
	x.groups, x.at, x.atTicks, x.building = groups, at, atTicks, nil
	x.scans++
	ms := groups[pgid]
	x.mu.Unlock()
	close(ch)
	return withLeader(ms, leader)
}

func withLeader(ms []member, leader member) []member {
	if slices.Contains(ms, leader) {
		return ms
	}
	return append(ms[:len(ms):len(ms)], leader)
}

// bootTicks is the time since boot (CLOCK_BOOTTIME, which start times in
// /proc count from) in clock ticks of hz, rounded down.
func bootTicks(hz uint64) uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0 // unknown: every group counts as younger, and is scanned
	}
	return uint64(ts.Sec)*hz + uint64(ts.Nsec)*hz/1e9
}

// scanGroups reads every process's /proc/<pid>/stat once and returns the
// live (not zombie) members of every process group.
func scanGroups() map[int][]member {
	groups := map[int][]member{}
	for _, pid := range listPids() {
		if st, ok := readStat(pid); ok && st.State != 'Z' && st.State != 'X' {
			groups[st.Pgid] = append(groups[st.Pgid], member{pid, st.StartTicks})
		}
	}
	return groups
}

// groupsOf is scanGroups from the stats of a scan.
func groupsOf(stats map[int]procStat) map[int][]member {
	groups := make(map[int][]member, len(stats))
	for pid, st := range stats {
		if st.State != 'Z' && st.State != 'X' {
			groups[st.Pgid] = append(groups[st.Pgid], member{pid, st.StartTicks})
		}
	}
	return groups
}

// listPids lists the pids in /proc; nil when it cannot be read.
func listPids() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n[0] >= '0' && n[0] <= '9' {
			pids = append(pids, int(atou([]byte(n))))
		}
	}
	return pids
}

// observeScanMin is the number of daemons from which an Observe reads
// every process's stat rather than its daemons' alone, when they are at
// least half of the machine's processes (scanStats).
const observeScanMin = 512

// scanStats reads the stat of every process, with workers goroutines,
// when the n daemons an Observe looks at are at least half of the
// machine's processes (nil otherwise: reading theirs alone costs less),
// and offers the scan to the group index. At 10,000 daemons this is about
// as many reads as the daemons' own, and the Stop of one of them in the
// apply that follows needs no scan of its own (0.15 s of CPU). A scan
// made ahead (WarmStats) is taken instead when there is one.
func (p *Provider) scanStats(n, parts int) map[int]procStat {
	stats, at, atTicks := takeWarmStats(n)
	if stats == nil {
		if stats, at, atTicks = scanAll(n, parts, p.boot.clockHz); stats == nil {
			return nil
		}
	}
	p.groups.offer(stats, at, atTicks)
	return stats
}

// scanAll reads the stat of every process with parts goroutines when n
// daemons are at least half of the machine's processes (nil otherwise),
// and says when the scan began (in clock ticks of hz too).
func scanAll(n, parts int, hz uint64) (map[int]procStat, time.Time, uint64) {
	at, atTicks := time.Now(), bootTicks(hz)
	pids := listPids()
	if len(pids) == 0 || n*2 < len(pids) {
		return nil, at, atTicks
	}
	type read struct {
		st procStat
		ok bool
	}
	reads := make([]read, len(pids))
	workers.Split(len(pids), parts, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			reads[i].st, reads[i].ok = readStat(pids[i])
		}
	})
	stats := make(map[int]procStat, len(pids))
	for i, r := range reads {
		if r.ok {
			stats[pids[i]] = r.st
		}
	}
	return stats, at, atTicks
}

// warmed is a scan of /proc made ahead by WarmStats, for the next
// scanStats of this process to take.
var warmed struct {
	sync.Mutex
	stats   map[int]procStat
	at      time.Time
	atTicks uint64
}

// warmTTL is how old a scan made ahead may be when an Observe takes it:
// a one-shot command loads its configuration in between, well under it
// (a var for the tests).
var warmTTL = 2 * time.Second

// WarmStats reads the stat of every process of the machine ahead of a
// refresh that will observe n daemons of the process runtime, so that a
// one-shot command (orch plan, apply, destroy) reads /proc while it loads
// its configuration instead of after: the refresh's Observe takes the scan
// (once, within warmTTL) instead of reading /proc again. Nothing is read
// when n is too few for an Observe to scan (observeScanMin, scanStats).
//
// At 10,000 daemons the scan is about 0.16 s of CPU. It is split across
// GOMAXPROCS goroutines: the load from the configuration cache, itself
// parallel, ends first, and a scan on one goroutine then ran alone on one
// core of two while the plan waited for it (the "open state" phase of a
// no-op plan of 10,000: 69-75 ms after the load, now 33-37 ms; end to end,
// 64 runs each in alternating blocks, median 0.47 s against 0.51 s, mean
// 0.48 s against 0.51 s, the same CPU).
//
// The records of the n daemons must have been read before WarmStats is
// called: each was written after its process started, so each process
// alive when the scan runs is in it; a process the scan did not see is
// read again by the Observe (observeStat), and one that ended after the
// scan is seen as running, as it would be had it ended just after an
// Observe of its own.
func WarmStats(n int) {
	if n < observeScanMin {
		return
	}
	stats, at, atTicks := scanAll(n, runtime.GOMAXPROCS(0), hostBoot().clockHz)
	if stats == nil {
		return
	}
	warmed.Lock()
	warmed.stats, warmed.at, warmed.atTicks = stats, at, atTicks
	warmed.Unlock()
}

// takeWarmStats takes the scan made ahead, if there is one younger than
// warmTTL that an Observe of n daemons would have made itself (n at least
// half of the processes it saw); nil otherwise. Either way it is dropped.
func takeWarmStats(n int) (map[int]procStat, time.Time, uint64) {
	warmed.Lock()
	stats, at, atTicks := warmed.stats, warmed.at, warmed.atTicks
	warmed.stats = nil
	warmed.Unlock()
	if stats == nil || time.Since(at) >= warmTTL || n*2 < len(stats) {
		return nil, at, atTicks
	}
	return stats, at, atTicks
}

// ReleaseWarmStats drops a scan made ahead that no Observe took.
func ReleaseWarmStats() {
	warmed.Lock()
	warmed.stats = nil
	warmed.Unlock()
}

// pollUntil calls done with a growing interval (1ms up to 50ms) until it
// returns true (then true), or deadline passes or ctx is done (then false).
func pollUntil(ctx context.Context, deadline time.Time, done func() bool) bool {
	d := time.Millisecond
	for {
		if done() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return false
		}
		t := time.NewTimer(min(d, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return done()
		}
		d = min(d*2, 50*time.Millisecond)
	}
}
