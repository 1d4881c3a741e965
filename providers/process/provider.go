package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/cgroup"
	"github.com/orch-dev/orch/providers/hostuser"
	"github.com/orch-dev/orch/providers/notify"
	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
)

var (
	_ providers.Provider  = (*Provider)(nil)
	_ providers.Deleter   = (*Provider)(nil)
	_ providers.Adopter   = (*Provider)(nil)
	_ providers.Signaler  = (*Provider)(nil)
	_ providers.LogReader = (*Provider)(nil)
	_ providers.Updater   = (*Provider)(nil)
)

// DefaultPath is the daemon's PATH when neither its env nor orch's
// environment sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultStopTimeout is used when a StopRequest has no timeout.
const DefaultStopTimeout = 10 * time.Second

// Options configures a Provider. The zero value is ready to use.
type Options struct {
	// SelfCommand is the command that runs orch's hidden helpers: the
	// provider runs `SelfCommand... __exec ...` (ExecMain) and
	// `SelfCommand... __logd ...` (LogdMain). Default: the running
	// executable (os.Executable), which must dispatch them (HelperMain).
	SelfCommand []string
	// LogdIdle is how long the log daemon lingers without any live daemon
	// before it exits; default DefaultLogdIdle (30s).
	LogdIdle time.Duration
	// LogdStartTimeout bounds the wait for a newly started log daemon;
	// default 10s.
	LogdStartTimeout time.Duration
	// LogdOpenLogs bounds the log files the log daemon keeps open at
	// once; default DefaultLogdOpenLogs (512).
	LogdOpenLogs int
	// NoCgroups holds daemons in process groups only, as on a host where
	// orch can write no cgroup (resource limits are then an error).
	// Default: each daemon gets a cgroup of its own when the host allows
	// (cgroup.Detect).
	NoCgroups bool
}

// Provider is the built-in runtime "process". Its methods are safe for
// concurrent use. Processes it starts keep running when the Provider is
// dropped or orch exits; only Stop ends them.
type Provider struct {
	opts     Options
	self     []string // resolved SelfCommand; nil if selfErr
	selfErr  error
	boot     bootInfo
	umask    int     // orch's umask at New; -1 if unknown
	me       starter // this orch process, as the registry names it
	groups   groupIndex
	killHook killHook
	cg       *cgroup.Host // nil: cgroups off

	mu       sync.Mutex
	children map[childKey]*child       // processes this Provider started, while it lives
	sweepAt  int                       // len(children) at which track forgets long-ended ones
	cgLists  map[string]*cgList        // by project cgroup: names with cgroups when first looked
	logds    map[string]*logdConn      // connections to log daemons, by logs directory
	notify   map[string]*notify.Socket // notify sockets bound for daemons started here, by path
	// ended holds, by handle, what Stop ended here: its process group
	// gone and its cgroup removed. Delete, which follows, then has
	// nothing to look at but the registry (a stop of 1,000 parsed each
	// handle, read /proc and removed each cgroup a second time). Only an
	// optimisation: cleared when it grows past endedMax.
	ended map[string]HandleInfo
	// presignaled holds, by handle, the signal Presignal sent to a daemon
	// whose Stop has not run yet, and when.
	presignaled map[string]presignal
	// cgLive counts, by project cgroup directory, the cgroups this
	// Provider made there and has not removed (removeCgroup).
	cgLive map[string]int
	// tidy collects the cgroups left to the log daemon to remove while
	// TidyLater is on (tidy.go); tidying says it is on, for the reaper's
	// dispatcher, which takes no lock.
	tidy    *laterTidy
	tidying atomic.Bool
	// programs remembers where a program name was found in a PATH
	// (programCache).
	programs programCache
}

const endedMax = 4096

// presignal is a stop signal Presignal sent, and when: the Stop that
// follows counts its timeout from then.
type presignal struct {
	sig int
	at  time.Time
}

type childKey struct {
	pid   int
	start uint64
}

// child is a process started by this Provider: orch is its parent, so it
// reaps it and knows how it ended.
type child struct {
	done     chan struct{} // closed once reaped
	state    *syscall.WaitStatus
	exitedAt time.Time
	// oomKills is its cgroup's OOM count, read when it was reaped: an
	// empty cgroup is removed then.
	oomKills uint64
	// stopping is set by Stop before it signals: the cgroup is then
	// Stop's to end, not the reaper's (one removal, not two racing).
	stopping atomic.Bool
	// cgGone is set, before done is closed, when the exit Stop asked for
	// left the cgroup empty and the dispatcher removed it then (finish):
	// Stop only counts it out.
	cgGone atomic.Bool
	// froze is set once this Provider froze the child's cgroup (orch
	// pause through the agent that started it): only then, or for a
	// daemon this Provider did not start, does Stop read cgroup.events
	// to thaw it first.
	froze atomic.Bool
	// ended is set, and waiters taken, under the Provider's mu when the
	// child is reaped; each waiter (NotifyExit's, until it is reaped or
	// cancelled) is then called once.
	ended   bool
	waiters []*func()
}

// New returns a Provider. It reads a few constants of the host (boot id,
// clock ticks, orch's umask) and never fails: a SelfCommand that cannot be
// resolved is reported by the Start that needs it.
func New(opts Options) *Provider {
	p := &Provider{
		opts:     opts,
		boot:     hostBoot(),
		umask:    procUmask(),
		children: map[childKey]*child{},
		cgLists:  map[string]*cgList{},
		logds:    map[string]*logdConn{},
		notify:   map[string]*notify.Socket{},
	}
	p.me = starter{Pid: os.Getpid()}
	if st, ok := readStat(p.me.Pid); ok {
		p.me.StartTicks = st.StartTicks
	}
	p.killHook = parseKillHook(os.Getenv(KillStartEnv))
	resetIgnoredSignals()
	if !opts.NoCgroups {
		p.cg = cgroup.Detect()
	}
	if p.opts.LogdIdle <= 0 {
		p.opts.LogdIdle = DefaultLogdIdle
	}
	if p.opts.LogdStartTimeout <= 0 {
		p.opts.LogdStartTimeout = 10 * time.Second
	}
	if len(opts.SelfCommand) > 0 {
		self := append([]string(nil), opts.SelfCommand...)
		if path, err := exec.LookPath(self[0]); err != nil {
			p.selfErr = fmt.Errorf("orch's own command %q: %w", self[0], err)
		} else if path, err = filepath.Abs(path); err != nil {
			p.selfErr = err
		} else {
			self[0] = path
			p.self = self
		}
	} else if exe, err := os.Executable(); err != nil {
		p.selfErr = fmt.Errorf("cannot find orch's own executable: %w", err)
	} else {
		p.self = []string{exe}
	}
	return p
}

// Schema describes the runtime kind "process".
func (p *Provider) Schema() spec.RuntimeSchema { return Schema() }

func startErr(addr spec.Address, retry bool, format string, args ...any) error {
	return &providers.Error{Op: "start", Retryable: retry, Err: fmt.Errorf(addr.String()+": "+format, args...)}
}

// deniedAs says, for a start that failed with EACCES as another user
// (cred), which directory or program that user may not enter or execute
// (hostuser.Denied): the kernel says "permission denied" whether the
// working directory or the program is closed to it. dir "" is orch's own.
func deniedAs(err error, cred *syscall.Credential, dir, path string) string {
	// The exec wrapper's failure comes back as its message.
	if cred == nil || !errors.Is(err, syscall.EACCES) && !strings.HasSuffix(err.Error(), ": "+syscall.EACCES.Error()) {
		return ""
	}
	if dir == "" {
		dir, _ = os.Getwd()
	}
	return hostuser.Denied(cred, dir, path)
}

// attrErr is a start failure caused by one attribute of the daemon.
func attrErr(addr spec.Address, attr string, err error) error {
	return &providers.Error{Op: "start", Attr: attr, Err: fmt.Errorf("%s: %w", addr, err)}
}

// Start starts req.Resource.Command as a daemon: in its own session and
// process group, with exactly the environment PATH (orch's own PATH unless
// Env sets one) plus Env, in Dir, as User/Group, with Umask and Rlimits,
// stdout and stderr going to the log daemon. It returns once the program
// runs (exec succeeded); a program that cannot be found or executed, a
// missing Dir, an unknown user, or a failed setrlimit is an error from
// Start, never a process that dies later. Start needs no ctx: the process
// it starts outlives the call (and orch).
func (p *Provider) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	var resp providers.StartResponse
	r := req.Resource
	if r == nil {
		return resp, &providers.Error{Op: "start", Err: errors.New("no resource")}
	}
	addr := r.Addr
	if len(r.Command) == 0 || r.Command[0] == "" {
		return resp, startErr(addr, false, "no command to run")
	}
	if req.StateDir == "" {
		return resp, startErr(addr, false, "no state directory")
	}
	envMap := r.Env
	if r.Health != nil && r.Health.Notify {
		// Bound before the daemon runs, so that no READY=1 is lost; held
		// until the daemon is deleted (the engine's monitor shares it).
		sock, err := p.notifySocket(req.StateDir, addr)
		if err != nil {
			return resp, attrErr(addr, "health", err)
		}
		envMap = maps.Clone(r.Env)
		if envMap == nil {
			envMap = map[string]string{}
		}
		maps.Copy(envMap, notify.Env(sock.Path(), r.Health.Watchdog))
	}
	env := daemonEnv(envMap)
	if r.Dir != "" {
		fi, err := os.Stat(r.Dir)
		if err != nil {
			return resp, attrErr(addr, "dir", fmt.Errorf("working directory: %w", err))
		}
		if !fi.IsDir() {
			return resp, attrErr(addr, "dir", fmt.Errorf("working directory %q is not a directory", r.Dir))
		}
	}
	path, err := p.programs.lookPath(r.Command[0], envPath(env), r.Dir)
	if err != nil {
		return resp, attrErr(addr, "command", err)
	}
	cred, err := hostuser.Credential(r.User, r.Group)
	if err != nil {
		attr := "user"
		if r.User == "" {
			attr = "group"
		}
		return resp, attrErr(addr, attr, err)
	}
	for n := range r.Rlimits {
		if _, ok := rlimitResources[n]; !ok {
			return resp, attrErr(addr, "rlimits", fmt.Errorf("unknown resource limit %q", n))
		}
	}
	limits := limitsOf(r)
	// Before anything is made: limits nothing can enforce are the
	// configuration's error, not the host's.
	if err, _ := p.noCgroup(addr, limits); err != nil {
		return resp, err
	}
	umask := int(r.Umask.Perm())
	wrap := umask != p.umask || len(r.Rlimits) > 0
	// The log daemon is a helper too, so this holds even without wrap.
	if err := p.helpersOK(); err != nil {
		return resp, startErr(addr, false, "%w", err)
	}

	logsDir := filepath.Join(req.StateDir, "logs")
	if err := owned.Dir(logsDir); err != nil {
		var ue *owned.UntrustedError
		return resp, startErr(addr, !errors.As(err, &ue), "logs directory: %w", err)
	}
	name := FileName(addr)
	logPath := filepath.Join(logsDir, name+logSuffix)
	conf := logConf{
		Address:    addr.String(),
		Project:    req.Project,
		ConfigHash: req.ConfigHash,
		MaxSize:    r.Log.MaxSize,
		MaxFiles:   r.Log.MaxFiles,
	}
	if req.Runtime != nil {
		conf.Runtime = req.Runtime.Addr.String()
	}
	if conf.MaxSize <= 0 {
		conf.MaxSize = DefaultLogMaxSize
	}
	if conf.MaxFiles < 0 {
		conf.MaxFiles = DefaultLogMaxFiles
	}
	// The daemon writes to a pipe whose read end goes to the log daemon
	// once the daemon runs and its registry line, handle included, is
	// written. A pipe is no file: a start creates no file of its own
	// (creating one is the dearest part of a start on some file systems).
	out, readFD, pipeIno, err := daemonPipe(cred)
	if err != nil {
		return resp, startErr(addr, true, "%w", err)
	}
	defer out.Close()
	defer unix.Close(readFD)

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return resp, startErr(addr, true, "%w", err)
	}
	defer devnull.Close()

	// Record before run: the pending line (this start's ID, the pipe, who
	// starts it) is in the registry before the fork, so that a daemon
	// never runs without a line that Adopt reads, whenever orch dies. A
	// write(2) is enough for that: the page cache outlives the writer, and
	// what would lose it (the machine going down) ends the daemon too.
	rec := regEntry{Name: name, ID: newStartID(), logConf: conf, Pipe: pipeIno, By: &p.me,
		StopSignal: r.Stop.Signal.Name, StopTimeoutMS: r.Stop.Timeout.Milliseconds()}
	step := p.killHook.begin()
	step(stepPipe)
	// The daemon's cgroup is named in the pending line, then made, before
	// the fork: whatever becomes of this start, what reads the line finds
	// the cgroup (an orch killed before it is made names one that does
	// not exist, which its removal takes as removed).
	planned, err := p.planCgroup(addr, req.Project, req.StateDir, name, rec.ID, limits)
	if err != nil {
		return resp, err
	}
	pending := rec
	pending.Pending, pending.Cgroup = true, planned
	if err := appendRegistry(logsDir, pending); err != nil {
		var ue *owned.UntrustedError
		return resp, startErr(addr, !errors.As(err, &ue), "%w", err)
	}
	step(stepPending)
	var grp *cgroup.Group
	if planned != nil {
		if grp, err = p.makeCgroup(addr, req.Project, req.StateDir, name, rec.ID, limits); err != nil {
			appendRegistry(logsDir, regEntry{Name: name, ID: rec.ID, Gone: true})
			return resp, err
		}
	}
	forgetStart := func() {
		if grp != nil {
			p.removeCgroup(context.Background(), grp)
		}
		appendRegistry(logsDir, regEntry{Name: name, ID: rec.ID, Gone: true})
	}
	step(stepCgroup)

	attr := &os.ProcAttr{
		Dir:   r.Dir,
		Env:   env,
		Files: []*os.File{devnull, out, out},
		// Setsid: the daemon leads a new session and process group, so
		// stop reaches its children and a Ctrl-C in orch's terminal does
		// not reach it.
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	if grp != nil {
		// Forked into its cgroup (clone3 CLONE_INTO_CGROUP): nothing it
		// does can happen outside it.
		fd, err := grp.Open()
		if err != nil {
			forgetStart()
			return resp, startErr(addr, true, "%w", err)
		}
		defer fd.Close()
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, int(fd.Fd())
		// v1 controllers (a hybrid host) are joined by the wrapper,
		// before it executes the daemon.
		wrap = wrap || len(grp.V1) > 0
	}
	var proc *os.Process
	if wrap {
		var v1 map[string]string
		if grp != nil {
			v1 = grp.V1
		}
		proc, err = p.startWrapped(attr, execSpec{
			Umask: umask, Rlimits: r.Rlimits, Cred: cred, StatusFD: 3,
			Cgroups: v1, Path: path, Argv: r.Command,
		}, step)
	} else {
		attr.Sys.Credential = cred
		proc, err = os.StartProcess(path, r.Command, attr)
		if err != nil {
			forgetStart()
			if why := deniedAs(err, cred, r.Dir, path); why != "" {
				return resp, attrErr(addr, "user", fmt.Errorf("cannot start %q: %w: %s", path, err, why))
			}
			return resp, attrErr(addr, "command", fmt.Errorf("cannot start %q: %w", path, err))
		}
		step(stepForked)
	}
	if err != nil {
		forgetStart()
		if why := deniedAs(err, cred, r.Dir, path); why != "" {
			return resp, attrErr(addr, "user", fmt.Errorf("%w: %s", err, why))
		}
		return resp, startErr(addr, false, "%w", err)
	}
	// Not reaped yet, so /proc/<pid>/stat exists even if it already exited.
	st, ok := readStat(proc.Pid)
	if !ok {
		proc.Kill()
		proc.Wait()
		forgetStart()
		return resp, startErr(addr, true, "process %d vanished before it could be inspected", proc.Pid)
	}
	hi := HandleInfo{Pid: proc.Pid, StartTicks: st.StartTicks, Pgid: proc.Pid, Log: logPath, BootID: p.boot.bootID, Cgroup: grp, ID: rec.ID}
	p.track(proc, hi)

	resp.Handle = hi.Encode()
	err = appendRegistry(logsDir, regEntry{Name: name, ID: rec.ID, logConf: logConf{Handle: []byte(resp.Handle)}})
	if err == nil {
		step(stepCommitted)
		err = p.logdRequest(logsDir, logdMsg{Op: "add", Name: name, MaxSize: conf.MaxSize, MaxFiles: conf.MaxFiles}, readFD)
	}
	if err != nil {
		// Without its log the daemon must not run: end it, as if it had
		// never started.
		unix.Kill(-hi.Pgid, syscall.SIGKILL)
		if grp != nil {
			grp.Kill()
		}
		if c := p.child(hi); c != nil {
			<-c.done
		}
		p.forget(hi)
		forgetStart()
		return resp, startErr(addr, true, "%w", err)
	}
	step(stepLogd)
	resp.Observed = providers.Observed{State: providers.StateRunning, Pid: hi.Pid, StartedAt: p.boot.startedAt(st.StartTicks)}
	return resp, nil
}

// startWrapped starts the daemon through the exec wrapper and waits until
// the wrapper has executed it (the status pipe closes empty) or failed
// (the pipe carries the reason).
func (p *Provider) startWrapped(attr *os.ProcAttr, s execSpec, step func(int)) (*os.Process, error) {
	sr, sw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	attr.Files = append(attr.Files, sw) // fd 3 in the wrapper
	attr.Env = append(attr.Env[:len(attr.Env):len(attr.Env)], HelperEnv+"=exec")
	argv := append(append(append([]string(nil), p.self...), ExecArg), s.Args()...)
	proc, err := os.StartProcess(p.self[0], argv, attr)
	sw.Close()
	if err != nil {
		return nil, fmt.Errorf("cannot start orch's exec wrapper %q: %w", p.self[0], err)
	}
	step(stepForked)
	msg, _ := io.ReadAll(sr)
	if len(msg) > 0 {
		proc.Wait()
		return nil, errors.New(strings.TrimPrefix(string(msg), "orch "+ExecArg+": "))
	}
	return proc, nil
}

// track records a child of this process and reaps it when it exits.
func (p *Provider) track(proc *os.Process, hi HandleInfo) {
	c := &child{done: make(chan struct{})}
	p.mu.Lock()
	// Forget children that ended long ago: looked for each time the map
	// has doubled since, not at every start (10,000 starts would look
	// 50 million times).
	if len(p.children) >= p.sweepAt {
		for k, o := range p.children {
			if !o.exitedAt.IsZero() && time.Since(o.exitedAt) > 10*time.Minute {
				delete(p.children, k)
			}
		}
		p.sweepAt = max(64, 2*len(p.children))
	}
	p.children[childKey{hi.Pid, hi.StartTicks}] = c
	p.mu.Unlock()
	end := func(ws *syscall.WaitStatus, oom uint64) {
		p.mu.Lock()
		c.state, c.exitedAt, c.oomKills = ws, time.Now(), oom
		c.ended = true
		waiters := c.waiters
		c.waiters = nil
		p.mu.Unlock()
		close(c.done)
		for _, w := range waiters {
			(*w)()
		}
	}
	// finish is called on the reaper's dispatcher, which must not block.
	finish := func(ws *syscall.WaitStatus) {
		if hi.Cgroup == nil || c.stopping.Load() && !(ws != nil && ws.Signaled() && ws.Signal() == syscall.SIGKILL) {
			// Nothing to read: no cgroup, or an exit that Stop asked for
			// and that was not a kill (only a kill is put down to memory,
			// oomReason), whose cgroup is Stop's to end. At once: Stop
			// waits for it (a chain of stops, one after the other).
			// An empty cgroup is removed here, as the leader is reaped
			// (one rmdir, which does not block: a cgroup still busy is
			// left to Stop, which kills and waits): when 1,000 stop
			// together, the removals, which the kernel makes one at a
			// time, go on while the others die, instead of all after
			// the last death, once Stop's goroutines run.
			// Under TidyLater, Stop leaves it to the log daemon.
			if hi.Cgroup != nil && !p.tidying.Load() && hi.Cgroup.TryRemove() {
				c.cgGone.Store(true)
			}
			end(ws, 0)
			return
		}
		go func() {
			g := hi.Cgroup
			// A daemon that ended on its own leaves an empty cgroup that
			// no stop will come for (it may be started again instead).
			// What it left running keeps it, for stop to kill.
			oom := g.OOMKills()
			if !c.stopping.Load() && !g.Populated() {
				p.removeCgroup(context.Background(), g)
			}
			end(ws, oom)
		}()
	}
	// The reaper waits for the child on a pidfd of its own, in a
	// descriptor table of its own (reaper.go): proc's pidfd is released.
	// The child is not reaped yet, so its pid cannot change hands
	// meanwhile.
	if reapLater(hi.Pid, finish) {
		proc.Release()
		return
	}
	go func() {
		// No pidfd (Linux < 5.3): a thread waits.
		var ws *syscall.WaitStatus
		if st, _ := proc.Wait(); st != nil {
			if w, ok := st.Sys().(syscall.WaitStatus); ok {
				ws = &w
			}
		}
		finish(ws)
	}()
}

func (p *Provider) child(hi HandleInfo) *child {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.children[childKey{hi.Pid, hi.StartTicks}]
}

func (p *Provider) forget(hi HandleInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.children, childKey{hi.Pid, hi.StartTicks})
}

func (p *Provider) helpersOK() error {
	if p.selfErr != nil {
		return p.selfErr
	}
	if v := os.Getenv(HelperEnv); v != "" {
		return fmt.Errorf("%s=%s is set: %q ran as a helper but did not dispatch it (call process.HelperMain first thing in main or TestMain)", HelperEnv, v, p.self[0])
	}
	return nil
}

// daemonEnv is the daemon's whole environment: env, plus PATH from orch's
// environment (or DefaultPath) unless env sets PATH. Nothing else of orch's
// environment leaks in. Sorted, for a stable result.
func daemonEnv(env map[string]string) []string {
	out := make([]string, 0, len(env)+1)
	if _, ok := env["PATH"]; !ok {
		path := os.Getenv("PATH")
		if path == "" {
			path = DefaultPath
		}
		out = append(out, "PATH="+path)
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func envPath(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return ""
}

// lookPath resolves the program name against the daemon's PATH (not
// orch's): a name with a slash is taken as a path, relative to dir.
func lookPath(name, path, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("program %q: %w", p, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) && dir != "" {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found in the daemon's PATH %q", name, path)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("is not executable (no x permission)")
	}
	return nil
}

// Observe reports the state of each handle from /proc/<pid>/stat: running
// when the pid lives with the recorded start time, exited when it is a
// zombie or a child of this Provider that was reaped (with its exit code
// or signal), missing when it is gone or the pid belongs to another
// process now. Large batches are read in parallel; ctx is not consulted.
func (p *Provider) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	type item struct {
		addr spec.Address
		h    providers.Handle
		hi   HandleInfo
		err  error
		obs  providers.Observed
	}
	items := make([]item, 0, len(req.Handles))
	for a, h := range req.Handles {
		items = append(items, item{addr: a, h: h})
	}
	parts := workers.Count(len(items), 512)
	each := func(fn func(it *item)) {
		workers.Split(len(items), parts, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				fn(&items[i])
			}
		})
	}
	// The children of this Provider (orch up's daemons) are known without
	// reading /proc; the others are read. When those are most of the
	// machine's processes, read them all: the same reads, and the Stops
	// that follow (an apply) find every group's members in them instead
	// of reading them all again (scanStats).
	var outside atomic.Int64
	each(func(it *item) {
		if it.hi, it.err = ParseHandle(it.h); it.err == nil && p.child(it.hi) == nil {
			outside.Add(1)
		}
	})
	var stats map[int]procStat
	if n := int(outside.Load()); n >= observeScanMin {
		stats = p.scanStats(n, parts)
	}
	each(func(it *item) {
		if it.err != nil {
			it.obs = providers.Observed{State: providers.StateUnknown}
			return
		}
		it.obs = p.observeStat(it.hi, stats)
		if !req.NoUsage {
			usage(it.hi, &it.obs)
		}
	})
	resp := providers.ObserveResponse{Objects: make(map[spec.Address]providers.Observed, len(items))}
	for _, it := range items {
		if it.obs.State == providers.StateRunning {
			it.obs.Says = p.says(it.addr, it.h)
		}
		resp.Objects[it.addr] = it.obs
	}
	return resp, nil
}

func (p *Provider) observeInfo(hi HandleInfo) providers.Observed {
	return p.observeStat(hi, nil)
}

// observeChild is what child c, hi's process, is: running, or how it
// exited once reaped (c.ended: set before c.done is closed and its
// waiters called).
func (p *Provider) observeChild(c *child, hi HandleInfo) providers.Observed {
	obs := providers.Observed{Pid: hi.Pid, StartedAt: p.boot.startedAt(hi.StartTicks), State: providers.StateRunning}
	p.mu.Lock()
	ended, oom := c.ended, c.oomKills
	if ended {
		obs.State = providers.StateExited
		exitStatus(c.state, &obs)
	}
	p.mu.Unlock()
	if ended {
		obs.Error = oomReason(oom, obs)
	}
	return obs
}

// observeStat is observeInfo with the stats of a scan of /proc (nil:
// none); a process the scan did not see is read.
func (p *Provider) observeStat(hi HandleInfo, stats map[int]procStat) providers.Observed {
	if c := p.child(hi); c != nil {
		return p.observeChild(c, hi)
	}
	obs := providers.Observed{Pid: hi.Pid, StartedAt: p.boot.startedAt(hi.StartTicks)}
	switch id, st := p.identifyFrom(hi, stats); id {
	case procAlive:
		obs.State = providers.StateRunning
	case procZombie:
		// Not our child: only the kernel's record of its wait status
		// says how it ended. Without it the ending is unknown, which is
		// "missing", not "exited 0".
		obs.State = providers.StateMissing
		if st.HasExit {
			obs.State = providers.StateExited
			ws := syscall.WaitStatus(st.ExitStatus)
			if ws.Signaled() {
				obs.Signal = unix.SignalName(ws.Signal())
			} else {
				obs.ExitCode = ws.ExitStatus()
			}
			if hi.Cgroup != nil {
				obs.Error = oomReason(hi.Cgroup.OOMKills(), obs)
			}
		}
	default:
		obs.State = providers.StateMissing
	}
	return obs
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func exitStatus(ws *syscall.WaitStatus, obs *providers.Observed) {
	if ws == nil {
		return
	}
	if ws.Signaled() {
		obs.Signal = unix.SignalName(ws.Signal())
		return
	}
	obs.ExitCode = ws.ExitStatus()
}

// procIdentity says what a handle's pid is now.
type procIdentity uint8

const (
	procGone   procIdentity = iota // no process has the pid
	procAlive                      // our process, running
	procZombie                     // our process, exited but not reaped
	procOther                      // the pid belongs to another process (or another boot)
)

func (p *Provider) identify(hi HandleInfo) procIdentity {
	id, _ := p.identifyStat(hi)
	return id
}

func (p *Provider) identifyStat(hi HandleInfo) (procIdentity, procStat) {
	return p.identifyFrom(hi, nil)
}

// identifyFrom is identifyStat with the stats of a scan of /proc (nil:
// none): a pid the scan did not see (gone, or started since) is read.
func (p *Provider) identifyFrom(hi HandleInfo, stats map[int]procStat) (procIdentity, procStat) {
	if hi.BootID != "" && p.boot.bootID != "" && hi.BootID != p.boot.bootID {
		return procOther, procStat{}
	}
	st, ok := stats[hi.Pid]
	if !ok {
		st, ok = readStat(hi.Pid)
	}
	switch {
	case !ok:
		return procGone, st
	case st.StartTicks != hi.StartTicks:
		return procOther, st
	case st.State == 'Z' || st.State == 'X':
		return procZombie, st
	}
	return procAlive, st
}

// Stop sends req.Signal (default SIGTERM), then SIGCONT, to the daemon's
// whole process group; waits until the group leader is gone and then until
// no live member is left, up to req.Timeout (default 10s); then SIGKILLs
// the group and reports Killed. It checks the start time first and never
// signals a pid that now belongs to another process. Stopping what is
// already gone succeeds (and still sweeps members of its group left
// behind). When this Provider started the process it reaps it and reports
// its exit code or signal. A done ctx ends the wait early with ctx.Err();
// Stop can be called again.
func (p *Provider) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	var resp providers.StopResponse
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return resp, &providers.Error{Op: "stop", Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	sig := req.Signal.Num
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	p.mu.Lock()
	sent, pre := p.presignaled[string(req.Handle)]
	delete(p.presignaled, string(req.Handle))
	p.mu.Unlock()
	pre = pre && sent.sig == int(sig)
	// The timeout counts from the signal: from Presignal's, when it sent
	// this one (a stop that waited for a worker of its Apply does not
	// give its daemon longer than it was applied with).
	deadline := time.Now().Add(timeout)
	if pre {
		deadline = sent.at.Add(timeout)
	}

	c := p.child(hi)
	ident := procAlive
	if c == nil {
		// Not a child of ours: ask /proc.
		ident = p.identify(hi)
	}
	// A child this Provider reaped (its stop signal was presignalled and
	// it exited before this Stop ran) is not looked up in /proc: what is
	// left of its group, if anything, still holds its pid as the group's
	// id, which the kernel hands to no one else meanwhile, and without a
	// member left, kill finds no group (three system calls a stop fewer
	// when 1,000 stop together).

	if ident == procOther {
		// The pid (and so the group id) is someone else's now: ours is
		// gone. Its cgroup, named for this start alone, holds only what
		// it left behind.
		resp.Observed = providers.Observed{State: providers.StateMissing, Pid: hi.Pid}
		return resp, p.endCgroup(ctx, req.Addr, hi.Cgroup)
	}
	// A child this Provider never froze is not read for it: a pause
	// goes through the agent that started the daemon, so its Provider
	// knows (BenchmarkStop100, quiet, three A/B pairs: 54-58 ms against
	// 57-60 ms with the read).
	if hi.Cgroup != nil && (c == nil || c.froze.Load()) && hi.Cgroup.Frozen() {
		// A frozen daemon (orch pause) would handle its stop signal only
		// once thawed.
		hi.Cgroup.Thaw(ctx)
	}
	if c != nil {
		c.stopping.Store(true)
	}
	if !pre {
		p.signalGroup(hi, sig)
	}
	gone := p.waitLeader(ctx, hi, c, deadline)
	if gone {
		gone = p.waitGroupGone(ctx, hi.Pgid, member{hi.Pid, hi.StartTicks}, deadline)
	}
	if !gone {
		if err := ctx.Err(); err != nil {
			return resp, &providers.Error{Op: "stop", Retryable: true, Err: fmt.Errorf("%s: %w", req.Addr, err)}
		}
		unix.Kill(-hi.Pgid, syscall.SIGKILL)
		resp.Killed = true
		// SIGKILL is delivered when each member next runs: wait for that.
		killDeadline := time.Now().Add(10 * time.Second)
		if !p.waitLeader(ctx, hi, c, killDeadline) || !p.waitGroupGone(ctx, hi.Pgid, member{hi.Pid, hi.StartTicks}, killDeadline) {
			return resp, &providers.Error{Op: "stop", Retryable: true, Err: fmt.Errorf("%s: process group %d survived SIGKILL", req.Addr, hi.Pgid)}
		}
	}
	resp.Observed = providers.Observed{State: providers.StateExited, Pid: hi.Pid, StartedAt: p.boot.startedAt(hi.StartTicks)}
	var oom uint64
	if hi.Cgroup != nil && c == nil {
		oom = hi.Cgroup.OOMKills() // a child's was read when it was reaped
	}
	if c != nil {
		p.mu.Lock()
		exitStatus(c.state, &resp.Observed)
		oom = max(oom, c.oomKills)
		p.mu.Unlock()
		p.forget(hi)
	} else {
		// Not a child of this Provider (adopted: orch restarted since its
		// start): it is gone, but how it ended only its parent was told.
		// (An adopted server stopped by orch up's shutdown read "stopped
		// code=0" whatever its exit.)
		resp.Observed.State = providers.StateMissing
	}
	resp.Observed.Error = oomReason(oom, resp.Observed)
	// The process group is gone; whatever the daemon spawned outside it
	// (a setsid grandchild) goes with its cgroup, unless the cgroup was
	// empty and removed already, as the leader was reaped.
	if c != nil && c.cgGone.Load() {
		p.removedCgroup(hi.Cgroup)
	} else if p.tidyLater(hi.Cgroup) {
		// Left to flush (TidyLater): removed by the log daemon once
		// orch has exited, or by flush when something still runs in it.
	} else if err := p.endCgroup(ctx, req.Addr, hi.Cgroup); err != nil {
		return resp, err
	}
	p.mu.Lock()
	if p.ended == nil || len(p.ended) >= endedMax {
		p.ended = map[string]HandleInfo{}
	}
	p.ended[string(req.Handle)] = hi
	p.mu.Unlock()
	return resp, nil
}

// signalGroup sends sig to the daemon's process group, and SIGCONT after
// it: a stopped process handles sig only once continued. Alive, a zombie,
// or gone with its pid free: in each case a group with that id can only be
// ours (or what is left of it).
func (p *Provider) signalGroup(hi HandleInfo, sig syscall.Signal) {
	unix.Kill(-hi.Pgid, sig)
	if sig != syscall.SIGKILL && sig != syscall.SIGCONT {
		unix.Kill(-hi.Pgid, syscall.SIGCONT)
	}
}

// Presignal sends each request's stop signal to its daemon's group, in
// one loop (providers.Presignaler), for the daemons that run, children of
// this Provider or adopted, and are not frozen (a frozen one is thawed by
// its Stop first); Stop then only waits for them, its timeout counted
// from the signal. The others are left to their Stop. An adopted daemon
// is signalled once its pid is found to be its own still (its start
// time), as Stop does.
func (p *Provider) Presignal(ctx context.Context, reqs []providers.StopRequest) {
	type target struct {
		hi  HandleInfo
		c   *child // nil: adopted
		key string
		sig syscall.Signal
		at  time.Time
	}
	targets := make([]target, 0, len(reqs))
	for _, req := range reqs {
		hi, err := ParseHandle(req.Handle)
		if err != nil {
			continue
		}
		c := p.child(hi)
		if c != nil && (isDone(c.done) || c.froze.Load()) {
			continue
		}
		sig := req.Signal.Num
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		targets = append(targets, target{hi: hi, c: c, key: string(req.Handle), sig: sig})
	}
	// Children are signalled first: they need no look at /proc.
	sort.SliceStable(targets, func(i, j int) bool { return targets[i].c != nil && targets[j].c == nil })
	sent := targets[:0]
	for _, t := range targets {
		if t.c != nil {
			t.c.stopping.Store(true)
		} else if p.identify(t.hi) != procAlive || t.hi.Cgroup != nil && t.hi.Cgroup.Frozen() {
			continue
		}
		t.at = time.Now()
		p.signalGroup(t.hi, t.sig)
		sent = append(sent, t)
	}
	p.mu.Lock()
	if p.presignaled == nil {
		p.presignaled = map[string]presignal{}
	}
	for _, t := range sent {
		p.presignaled[t.key] = presignal{sig: int(t.sig), at: t.at}
	}
	p.mu.Unlock()
}

// waitLeader waits until the group leader has exited (reaped, for a
// child), until deadline or ctx is done; it reports whether it is gone.
func (p *Provider) waitLeader(ctx context.Context, hi HandleInfo, c *child, deadline time.Time) bool {
	if c != nil {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-c.done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return waitExit(ctx, hi, p.identify, deadline)
}

// Signal sends req.Signal to the daemon's process group, after checking
// that the pid is still the daemon's (same start time).
func (p *Provider) Signal(ctx context.Context, req providers.SignalRequest) (providers.SignalResponse, error) {
	hi, err := ParseHandle(req.Handle)
	if err != nil {
		return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	if req.Signal.Num == 0 {
		return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: no signal", req.Addr)}
	}
	alive := false
	if c := p.child(hi); c != nil && !isDone(c.done) {
		alive = true
	} else {
		alive = p.identify(hi) == procAlive
	}
	if !alive {
		return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: process %d is not running", req.Addr, hi.Pid)}
	}
	if hi.Cgroup != nil && !req.MainOnly && (req.Signal.Num == syscall.SIGSTOP || req.Signal.Num == syscall.SIGCONT) {
		// A daemon with a cgroup is paused by freezing it (orch pause
		// sends SIGSTOP, orch resume SIGCONT): the whole cgroup stops,
		// setsid grandchildren included, and no process sees a signal.
		var err error
		if req.Signal.Num == syscall.SIGSTOP {
			if c := p.child(hi); c != nil {
				c.froze.Store(true) // before: a Stop racing this freeze reads it
			}
			err = hi.Cgroup.Freeze(ctx)
		} else {
			err = hi.Cgroup.Thaw(ctx)
		}
		if err != nil {
			return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: %w", req.Addr, err)}
		}
		return providers.SignalResponse{}, nil
	}
	if req.MainOnly {
		if err := unix.Kill(hi.Pid, req.Signal.Num); err != nil {
			return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: %s to process %d: %w", req.Addr, req.Signal, hi.Pid, err)}
		}
		return providers.SignalResponse{}, nil
	}
	if err := unix.Kill(-hi.Pgid, req.Signal.Num); err != nil {
		return providers.SignalResponse{}, &providers.Error{Op: "signal", Err: fmt.Errorf("%s: %s to process group %d: %w", req.Addr, req.Signal, hi.Pgid, err)}
	}
	return providers.SignalResponse{}, nil
}

// Logs opens the daemon's current log file (the one logd appends to; the
// rotated ones are <log>.1, <log>.2, ...). The path comes from the handle,
// or from StateDir and the address when the handle has none.
func (p *Provider) Logs(ctx context.Context, req providers.LogsRequest) (providers.LogsResponse, error) {
	path := ""
	if hi, err := ParseHandle(req.Handle); err == nil {
		path = hi.Log
	}
	if path == "" {
		if req.StateDir == "" {
			return providers.LogsResponse{}, &providers.Error{Op: "logs", Err: fmt.Errorf("%s: no handle and no state directory", req.Addr)}
		}
		path = LogPath(req.StateDir, req.Addr)
	}
	f, err := os.Open(path)
	if err != nil {
		return providers.LogsResponse{}, &providers.Error{Op: "logs", Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	return providers.LogsResponse{Log: f}, nil
}

// CloseLater gives a copy of fd to the log daemon of stateDir, which
// holds it until this Provider's connection to it ends (this process
// exits, say) and closes it then, so that the caller's own close of fd is
// not the last and does not wait for what the last close does in the
// kernel (an inotify instance's: an SRCU grace period, up to 24 ms
// measured). fd stays the caller's. No log daemon running is an error
// (none is started for this): the caller closes fd itself then.
func (p *Provider) CloseLater(stateDir string, fd int) error {
	return p.logdConn(filepath.Join(stateDir, "logs")).request(logdMsg{Op: "linger", Name: "descriptor"}, fd, p.opts.LogdStartTimeout)
}

// Delete forgets a stopped daemon: its registry entry goes (so Adopt no
// longer finds it), unless a newer instance, from a create-before-destroy,
// owns the name now. Log files are kept. A daemon that still runs is an
// error: stop it first.
func (p *Provider) Delete(ctx context.Context, req providers.DeleteRequest) (providers.DeleteResponse, error) {
	p.mu.Lock()
	hi, stopped := p.ended[string(req.Handle)]
	delete(p.ended, string(req.Handle))
	p.mu.Unlock()
	if !stopped {
		// Not ended by this Provider's Stop just before: look.
		var err error
		if hi, err = ParseHandle(req.Handle); err != nil {
			return providers.DeleteResponse{}, &providers.Error{Op: "delete", Err: fmt.Errorf("%s: %w", req.Addr, err)}
		}
		if obs := p.observeInfo(hi); obs.State == providers.StateRunning {
			return providers.DeleteResponse{}, &providers.Error{Op: "delete", Err: fmt.Errorf("%s: process %d still runs; stop it first", req.Addr, hi.Pid)}
		}
		p.forget(hi)
		if err := p.endCgroup(ctx, req.Addr, hi.Cgroup); err != nil {
			return providers.DeleteResponse{}, err
		}
	}
	if hi.Log == "" {
		return providers.DeleteResponse{}, nil
	}
	dir := filepath.Dir(hi.Log)
	name := strings.TrimSuffix(filepath.Base(hi.Log), logSuffix)
	// The deletion names the instance it deletes (by its ID, or, for a
	// line of an older orch, by its handle): other instances of the name,
	// a newer one from a create-before-destroy say, stay. A handle that
	// carries its start's ID needs no look at the registry (which, read
	// by each of 100 deletes at once, was a third of orch's CPU in a
	// shutdown); a line already gone is marked gone again, harmlessly.
	gone := regEntry{Name: name, ID: hi.ID, Gone: true}
	if hi.ID == "" {
		var e regEntry
		var ok bool
		err := withRegistry(dir, func(live *regLive) { e, ok = live.withHandle(name, hi) })
		if err != nil {
			return providers.DeleteResponse{}, &providers.Error{Op: "delete", Retryable: true, Err: fmt.Errorf("%s: %w", req.Addr, err)}
		}
		if !ok {
			return providers.DeleteResponse{}, nil
		}
		gone.ID = e.ID
		if e.ID == "" {
			gone.Handle = e.Handle
		}
	}
	if p.tidyGone(dir, gone) {
		return providers.DeleteResponse{}, nil // written by flush (TidyLater)
	}
	if err := appendRegistry(dir, gone); err != nil {
		return providers.DeleteResponse{}, &providers.Error{Op: "delete", Retryable: true, Err: fmt.Errorf("%s: %w", req.Addr, err)}
	}
	return providers.DeleteResponse{}, nil
}
