package process

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The reaper waits for processes to exit: the children of this process,
// which it reaps (reapLater), and others, such as daemons adopted after
// orch restarted (watchLater). It holds a pidfd for each, in one epoll
// set, on one OS thread whose descriptor table is its own
// (unshare(CLONE_FILES)).
//
// Why a table of its own: fork copies the forking thread's descriptor
// table, and the child's exec then closes every close-on-exec entry, so a
// start costs time in proportion to the descriptors orch holds. A pidfd
// per daemon in orch's table made the 10,000th start of a create about
// 2.7 ms dearer than the first (2.3 ms at no descriptors, 5.1 ms at
// 10,000, measured with /bin/sleep on 2 cores) and a create of 10,000
// quadratic. The reaper's thread holds the pidfds, and no other thread
// forks from its table.
//
// A caller opens the pidfd and passes it to the thread over a socket pair
// whose other end only the thread holds (SCM_RIGHTS), then closes its own;
// a watch's cancel follows on the same socket, so the thread meets the two
// in order. The table starts as a copy of the process's, so the thread
// closes every copied entry at once but its end of the socket pair and the
// runtime's poller (closeAllBut): a copy would keep what the rest of orch
// closes open (a socket would not reach its end, a lock file would stay
// locked). Nothing but the reaper's own loop runs on that thread (it is
// locked to the loop's goroutine for good), and the loop only uses the
// descriptors it received or opened there, by raw system calls. What a
// waiter must do once its process has exited runs on another goroutine,
// the dispatcher, so no code of the rest of orch ever runs with that
// table.
var reaper struct {
	once   sync.Once
	err    error
	sock   int // this side of the socket pair
	mu     sync.Mutex
	waits  map[uint64]reapWait // by id, until the process has exited or the watch is cancelled
	nextID uint64
	out    chan reaped
	// send is held by the one goroutine sending (sendReaper): a full
	// buffer is waited out by it alone, the others park behind it.
	send sync.Mutex
	// waited counts the waits for a full buffer, waiting the senders
	// waiting now, and overlapped is set once two waited at once (for
	// tests: send keeps it unset).
	waited, waiting atomic.Int32
	overlapped      atomic.Bool
}

// reapWait is what waits for one process: a child (pid set) to reap and
// tell done how it ended, or another process to tell fired of its end.
type reapWait struct {
	pid   int
	done  func(*syscall.WaitStatus)
	fired func(exited bool)
}

// reaped is what the thread tells the dispatcher of wait id: the process
// exited (a child's status, nil if it could not be told), or the thread
// could not hold its pidfd (lost: no descriptor left in its table).
type reaped struct {
	id   uint64
	ws   *syscall.WaitStatus
	lost bool
}

// The messages on the socket pair: an op byte, an id, and for opWait the
// pid to reap (0: not a child), with the pidfd.
const (
	opWait   = 1
	opCancel = 2
	msgLen   = 17
)

// reapLater reaps child pid once it has exited and then calls done with
// how it ended (nil when that could not be told), on the reaper's
// dispatcher goroutine: done must not block. It reports false when it
// cannot (no pidfds on this kernel, Linux < 5.3, or none left): the
// caller waits otherwise. The child must not be reaped by anything else.
func reapLater(pid int, done func(*syscall.WaitStatus)) bool {
	// Not reaped yet, the child keeps its pid: the pidfd is its.
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	defer unix.Close(pidfd)
	_, ok := register(pidfd, reapWait{pid: pid, done: done})
	return ok
}

// watchLater calls fired(true), on the reaper's dispatcher goroutine
// (fired must not block), once the process of pidfd has exited: a process
// that is not a child of this one, so only its end is told, not how it
// ended. The reaper's thread waits on its own copy of pidfd, which the
// caller may close at once; fired(false) says it could not (no descriptor
// left in its table), and the caller must wait otherwise. cancel ends the
// watch; fired is then never called. ok is false when there is no
// reaper, or the copy could not be passed.
func watchLater(pidfd int, fired func(exited bool)) (cancel func(), ok bool) {
	id, ok := register(pidfd, reapWait{fired: fired})
	if !ok {
		return nil, false
	}
	// A cancel can only follow the wait's message (it is returned after
	// it was sent), so the thread meets them in that order.
	return func() {
		reaper.mu.Lock()
		_, live := reaper.waits[id]
		delete(reaper.waits, id)
		reaper.mu.Unlock()
		if live {
			sendReaper(opCancel, id, 0, -1)
		}
	}, true
}

// register records w and passes a copy of pidfd to the reaper's thread.
func register(pidfd int, w reapWait) (uint64, bool) {
	reaper.once.Do(startReaper)
	if reaper.err != nil {
		return 0, false
	}
	reaper.mu.Lock()
	reaper.nextID++
	id := reaper.nextID
	reaper.waits[id] = w
	reaper.mu.Unlock()
	if err := sendReaper(opWait, id, w.pid, pidfd); err != nil {
		reaper.mu.Lock()
		delete(reaper.waits, id)
		reaper.mu.Unlock()
		return 0, false
	}
	return id, true
}

// sendReaper sends one message to the reaper's thread, with fd unless it
// is negative (a message of a SOCK_SEQPACKET socket goes whole). A full
// buffer is waited out, by one sender at a time (reaper.send; the thread
// drains it meanwhile, and needs no lock of ours to). Without that, every
// goroutine that met a full buffer polled it on a thread of its own: orch
// up's shutdown cancels the watch of each adopted daemon at once, and the
// 2,000 cancels of 2,000 adopted daemons woke one another in 2,000
// threads, 10 ms at a time, for 4-7 s (2 s of CPU) before the first stop
// was signalled.
func sendReaper(op byte, id uint64, pid int, fd int) error {
	reaper.send.Lock()
	defer reaper.send.Unlock()
	var msg [msgLen]byte
	msg[0] = op
	binary.NativeEndian.PutUint64(msg[1:], id)
	binary.NativeEndian.PutUint64(msg[9:], uint64(pid))
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	for {
		err := unix.Sendmsg(reaper.sock, msg[:], oob, nil, 0)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			reaper.waited.Add(1)
			if reaper.waiting.Add(1) > 1 {
				reaper.overlapped.Store(true)
			}
			unix.Poll([]unix.PollFd{{Fd: int32(reaper.sock), Events: unix.POLLOUT}}, 10)
			reaper.waiting.Add(-1)
			continue
		}
		return err
	}
}

func startReaper() {
	// The runtime's network poller exists before the table is copied
	// (closeAllBut keeps it there): a pipe's ends are put in it.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		reaper.err = err
		return
	}
	reaper.sock = pair[0]
	reaper.waits = map[uint64]reapWait{}
	reaper.out = make(chan reaped, 1024)
	ready := make(chan error, 1)
	offMainThread(func() {
		ep, err := ownTable(pair[1])
		ready <- err
		if err != nil {
			return
		}
		reapLoop(ep, pair[1])
	})
	err = <-ready
	unix.Close(pair[1]) // the thread's, in its own table
	if err != nil {
		reaper.err = err
		unix.Close(pair[0])
		return
	}
	go dispatch()
}

// dispatch runs what waits for each process the thread reports.
func dispatch() {
	for r := range reaper.out {
		reaper.mu.Lock()
		w, ok := reaper.waits[r.id]
		delete(reaper.waits, r.id)
		reaper.mu.Unlock()
		switch {
		case !ok: // a cancelled watch
		case w.pid != 0 && r.lost:
			// A thread waits for this child instead, as os.Process.Wait
			// would.
			go func() { w.done(wait4(w.pid)) }()
		case w.pid != 0:
			w.done(r.ws)
		default:
			w.fired(!r.lost)
		}
	}
}

// offMainThread runs f on a goroutine locked for good to a thread that is
// not the process's main thread: when f returns, its thread ends, and no
// other goroutine ever runs there. /proc/PID/fd (and /proc/self/fd, which
// daemonPipe reopens a pipe through) shows the main thread's table, which
// must stay the process's.
func offMainThread(f func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			f()
			return
		}
		// This goroutine holds the main thread, so the next one starts on
		// another; this one lets the main thread go once it has.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			f()
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
}

// ownTable gives the calling thread a descriptor table of its own, with
// only keep of what it copied, and an epoll set watching keep.
func ownTable(keep int) (int, error) {
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return -1, fmt.Errorf("unshare(CLONE_FILES): %w", err)
	}
	if err := closeAllBut(keep); err != nil {
		return -1, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(keep)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, keep, &ev); err != nil {
		return -1, err
	}
	return ep, nil
}

// closeAllBut closes the descriptors of the calling thread's table but
// keep and the Go runtime's own: its network poller's epoll set and the
// eventfd that wakes it (readlink anon_inode:[eventpoll], [eventfd]). A
// collection that begins on this thread (its goroutine allocates) polls
// the network once the world starts again, through those descriptor
// numbers; kept, they are the same poller. Nothing else of the kind is
// held for long: an epoll set or an eventfd keeps no file open.
func closeAllBut(keep int) error {
	ents, err := os.ReadDir("/proc/thread-self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd == keep {
			continue
		}
		// The directory's own descriptor, listed too, is closed already:
		// its readlink fails, and so does its close.
		link, err := os.Readlink("/proc/thread-self/fd/" + e.Name())
		if err == nil && slices.Contains([]string{"anon_inode:[eventpoll]", "anon_inode:[eventfd]"}, link) {
			continue
		}
		unix.Close(fd)
	}
	return nil
}

// reapLoop is the reaper's thread: it takes what register sent (a pidfd
// each) and tells the dispatcher of each process whose pidfd is
// readable, reaping it first when it is a child. Only it closes a pidfd.
func reapLoop(ep, sock int) {
	type held struct {
		id  uint64
		pid int
	}
	waits := map[int32]held{} // by pidfd
	byID := map[uint64]int32{}
	events := make([]unix.EpollEvent, 128)
	var msg [msgLen]byte
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("process: epoll_wait of the reaper: %v", err))
		}
		for _, ev := range events[:n] {
			if ev.Fd != int32(sock) {
				h, ok := waits[ev.Fd]
				if !ok {
					continue
				}
				delete(waits, ev.Fd)
				delete(byID, h.id)
				unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
				var ws *syscall.WaitStatus
				if h.pid != 0 {
					ws = wait4(h.pid)
				}
				unix.Close(int(ev.Fd))
				reaper.out <- reaped{id: h.id, ws: ws}
				continue
			}
			// Every message waiting, until none is left.
			for {
				n, oobn, _, _, err := unix.Recvmsg(sock, msg[:], oob, unix.MSG_CMSG_CLOEXEC)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n != msgLen {
					break // EAGAIN: nothing more
				}
				id := binary.NativeEndian.Uint64(msg[1:])
				switch msg[0] {
				case opWait:
					fd := receivedFD(oob[:oobn])
					ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
					if fd < 0 || unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
						if fd >= 0 {
							unix.Close(fd)
						}
						reaper.out <- reaped{id: id, lost: true}
						continue
					}
					waits[int32(fd)] = held{id, int(binary.NativeEndian.Uint64(msg[9:]))}
					byID[id] = int32(fd)
				case opCancel:
					if fd, ok := byID[id]; ok {
						delete(byID, id)
						delete(waits, fd)
						unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(fd), nil)
						unix.Close(int(fd))
					}
				}
			}
		}
	}
}

// receivedFD is the one descriptor oob carries, or -1.
func receivedFD(oob []byte) int {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(cmsgs) != 1 {
		return -1
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1
	}
	return fds[0]
}

// wait4 reaps child pid, waiting for it to exit.
func wait4(pid int) *syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		return &ws
	}
}
