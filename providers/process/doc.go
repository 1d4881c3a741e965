// Package process is the built-in runtime "process": a native process
// supervisor. It starts each daemon as a child of orch in its own session
// and process group, finds it again from a handle (pid + start time), stops
// it with its stop signal then SIGKILL to the whole group, and keeps its
// stdout and stderr in size-rotated files that keep being written while orch
// is not running.
//
// # Processes
//
//	orch (Provider; may exit at any time)
//	  |
//	  | fork+exec with Setsid; through `orch __exec ...` (execve in
//	  | place: same pid) when a umask or rlimits must be set
//	  v
//	daemon: own session, pgid = pid  ----- stop/signal: kill(-pgid) -----+
//	  |-- child       } same process group: stop reaches them all        |
//	  '-- grandchild  }                                                   |
//	  |                                                                   |
//	  | stdout + stderr (one descriptor, opened O_RDWR)                   |
//	  v                                                                   |
//	pipe (no file)                logd.registry, per start: a pending    |
//	  |                            line before the fork, the committed    |
//	  |                            one (handle) after; address, config    |
//	  |                            hash, pipe, max_size, max_files        |
//	  | read end sent to logd over logd.sock (SCM_RIGHTS)                 |
//	  v                                                                   |
//	orch __logd <state>/logs: own session, one per directory (flock      |
//	  |                        logd.lock), exits after LogdIdle idle      |
//	  | append, rotate by size                                            |
//	  v                                                                   |
//	<name>.log  <name>.log.1  ...  <name>.log.<max_files>                 |
//	                                                                      |
//	orch, later: Observe/Stop from the handle (pid + start time) ---------+
//	             Adopt from logd.registry
//
// <name> is FileName(address), for example "daemon.api[1]". Nothing ties a
// daemon or logd to orch's lifetime: `orch apply` exits and both go on;
// a later orch finds the daemon from its handle, or from the registry
// (Adopt), and starts logd again if it had exited.
//
// # Start
//
// The daemon's environment is exactly its env map plus PATH, taken from
// orch's own environment unless env sets PATH (DefaultPath when neither
// does); nothing else of orch's environment leaks in. argv[0] is resolved
// against that PATH (a name with a slash against Dir) before anything
// starts, so a missing or non-executable program is an error from Start
// naming the path. User and Group are looked up by name (or number); a
// credential is set only when they differ from orch's, which then needs
// root. Go's SysProcAttr has no umask and no rlimits, and changing orch's
// own umask around fork races with every other goroutine, so when the
// umask differs from orch's or rlimits are set the provider runs
//
//	<self> __exec --umask 0027 --rlimit nofile=4096 [--cred UID:GID[:G,...]] --status-fd 3 -- PATH ARGV0 ARGS...
//
// which applies them (limits before dropping privileges) and execve's the
// program in place: same pid, same start time. A close-on-exec status pipe
// tells Start whether that exec happened, so a refused setrlimit is an
// error from Start too. Start returns once the program runs.
//
// # Logs
//
// For each daemon the provider makes a pipe (pipe2, then the read end
// reopened O_RDWR through /proc/self/fd, F_SETPIPE_SZ 1 MiB) and hands the
// read-write end to the daemon as stdout and stderr. Read-write means the
// daemon never gets SIGPIPE, even while no logd reads: up to 1 MiB is
// buffered meanwhile, then the daemon blocks. A pipe is no file: a start
// creates no file of its own (the daemon's log is created by logd), which
// matters where creating a file is dear (about 0.7 ms on this machine's
// ext4, which has no journal and scans recently deleted inodes on every
// creation).
//
// Record before run: before the fork the provider appends a pending line
// to logd.registry (a start ID, address, project, runtime, config hash,
// rotation and stop settings, the pipe's inode, and the orch process that
// starts it), and once the daemon runs the committed line (the same, with
// the handle), so no daemon ever runs without a line Adopt reads. Adopt
// finds the daemon of a pending line whose orch died by its pipe
// (/proc/*/fd/1), adopts the newest instance of an address the state
// lost, and stops the other instances a dead orch left running (see
// Adopt). Then the provider sends the pipe's read end to logd over logd.sock
// (SOCK_SEQPACKET, SCM_RIGHTS), starting a logd when none answers; Start
// returns once logd has the descriptor, so even a daemon that writes one
// line and exits loses nothing. logd reads each pipe until its last writer
// is gone, all of them through epoll (a set and a goroutine per core, up
// to four), and keeps at most --open-logs (512) log files open: the least
// recently written is closed and opened again, O_APPEND, at its next
// write. So logd holds about one descriptor per daemon. A logd started later (after an idle exit, or after one was
// killed) takes back the pipes of the registry's daemons that still run,
// from /proc/<pid>/fd/1 when it is the pipe recorded, so a killed logd
// loses no running daemon's output. The handover between two logd
// instances has no gap either: logd exits only with no live pipe and no
// connected provider, stops accepting first, and a provider whose
// connection is refused or reset starts the next one (under
// logd.start.lock, so only one at a time).
//
// # Handles and observation
//
// A handle is the JSON of HandleInfo: pid, start time in clock ticks
// (field 22 of /proc/<pid>/stat), pgid, log path, boot id. A pid counts as
// the daemon only with the same start time in the same boot: a reused pid
// is "missing" and is never signalled. Observe reads /proc/<pid>/stat by
// hand, in parallel for large batches. Processes started by this Provider
// value are its children: it reaps them (no zombies) and reports their exit
// code or signal; it waits for them on their pidfds in one epoll set (no
// goroutine per child), held by one thread in a descriptor table of its
// own (reaper.go), so that a start's fork does not copy a descriptor per
// daemon. Stop waits on a pidfd (poll(2)), or polls /proc where
// pidfd_open is missing.
//
// # Entry points cmd/orch must dispatch
//
// HelperMain(os.Args[1:]) runs ExecMain for "__exec" and LogdMain for
// "__logd"; call it first in main. Tests do the same in TestMain, so that
// the test binary serves as <self>.
//
// # What this package must never do
//
//   - signal a pid without checking its start time first, or a process
//     group whose leader's pid now belongs to another process;
//   - run a daemon without a registry line naming it, or trust a logs
//     directory, registry or socket another user owns or may write
//     (providers/owned);
//   - run a command through a shell, or pass orch's environment to a daemon
//     beyond PATH;
//   - tie a daemon's or logd's life to orch's (no Pdeathsig, no shared
//     process group or session, no pipes whose reader is orch);
//   - change orch's own umask, rlimits or credentials;
//   - block Start on a daemon's output, or lose a daemon's pipe between
//     two logd instances;
//   - keep global state or register anything from init(): everything hangs
//     off a Provider made by New.
package process
