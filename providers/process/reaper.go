package process

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The reaper waits for the children of this process to exit: a pidfd for
// each, in one epoll set, on one OS thread whose descriptor table is its
// own (unshare(CLONE_FILES)).
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
// The table starts as a copy of the process's, so the thread closes every
// copied entry at once but its own two (the eventfd and its end of the
// socket pair) and the runtime's poller (closeAllBut): a copy would keep
// what the rest of orch closes open (a socket would not reach its end, a
// lock file would stay locked). Nothing but the reaper's own loop runs on
// that thread (it is locked to the loop's goroutine for good), and the
// loop only uses the descriptors it opened or received there, by raw
// system calls. What a reaped child's waiter must do (done) runs on
// another goroutine, the dispatcher, so no code of the rest of orch ever
// runs with that table.
var reaper struct {
	once sync.Once
	err  error
	efd  int // eventfd in both tables: wakes the thread for new children
	// sock is this side of a socket pair whose other end only the thread
	// holds: pidfds of processes that are not children (watchLater)
	// reach its table through it (SCM_RIGHTS), and their cancellations
	// follow in the same order.
	sock    int
	mu      sync.Mutex
	adds    []reapWait            // children to watch, for the thread to take
	watches map[uint64]func(bool) // watchLater's, by id, until they fire or are cancelled
	nextID  uint64
	out     chan reaped
}

type reapWait struct {
	pid   int // a child's; 0 for a watch (watchLater)
	done  func(*syscall.WaitStatus)
	watch uint64
}

// reaped is what the dispatcher runs: a child's done with its status, or
// the id of a watch that fired (lost: the thread could not hold its
// pidfd).
type reaped struct {
	done  func(*syscall.WaitStatus)
	ws    *syscall.WaitStatus
	watch uint64
	lost  bool
}

// The messages on reaper.sock: an op byte and a watch id.
const (
	opWatch  = 1 // with the pidfd to watch
	opCancel = 2
)

// reapLater reaps child pid once it has exited and then calls done with
// how it ended (nil when that could not be told), on the reaper's
// dispatcher goroutine: done must not block. It reports false when this
// kernel has no pidfds (Linux < 5.3): the caller waits otherwise.
func reapLater(pid int, done func(*syscall.WaitStatus)) bool {
	reaper.once.Do(startReaper)
	if reaper.err != nil {
		return false
	}
	reaper.mu.Lock()
	reaper.adds = append(reaper.adds, reapWait{pid: pid, done: done})
	reaper.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	for {
		if _, err := unix.Write(reaper.efd, one[:]); err != unix.EINTR {
			return true
		}
	}
}

func startReaper() {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		reaper.err = err
		return
	}
	unix.Close(fd)
	// The runtime's network poller exists before the table is copied
	// (closeAllBut keeps it there): a pipe's ends are put in it.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		reaper.err = err
		return
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		unix.Close(efd)
		reaper.err = err
		return
	}
	reaper.efd, reaper.sock = efd, pair[0]
	reaper.watches = map[uint64]func(bool){}
	reaper.out = make(chan reaped, 1024)
	ready := make(chan error, 1)
	offMainThread(func() {
		ep, err := ownTable(efd, pair[1])
		ready <- err
		if err != nil {
			return
		}
		reapLoop(ep, efd, pair[1])
	})
	err = <-ready
	unix.Close(pair[1]) // the thread's, in its own table
	if err != nil {
		reaper.err = err
		unix.Close(efd)
		unix.Close(pair[0])
		return
	}
	go func() {
		for r := range reaper.out {
			if r.done != nil {
				r.done(r.ws)
				continue
			}
			reaper.mu.Lock()
			done := reaper.watches[r.watch]
			delete(reaper.watches, r.watch)
			reaper.mu.Unlock()
			if done != nil {
				done(!r.lost)
			}
		}
	}()
}

// watchLater calls done(true), on the reaper's dispatcher goroutine (done
// must not block), once the process of pidfd has exited: a process that
// is not a child of this one, so only its end is told, not how it ended.
// The reaper's thread waits on its own copy of pidfd, which the caller may
// close at once; done(false) says it could not (no descriptor left in its
// table), and the caller must wait otherwise. cancel ends the watch; done
// is then never called. ok is false when there is no reaper, or the copy
// could not be passed.
func watchLater(pidfd int, done func(exited bool)) (cancel func(), ok bool) {
	reaper.once.Do(startReaper)
	if reaper.err != nil {
		return nil, false
	}
	reaper.mu.Lock()
	reaper.nextID++
	id := reaper.nextID
	reaper.watches[id] = done
	reaper.mu.Unlock()
	if err := sendReaper(opWatch, id, pidfd); err != nil {
		reaper.mu.Lock()
		delete(reaper.watches, id)
		reaper.mu.Unlock()
		return nil, false
	}
	// A cancel can only follow the watch's message (it is returned after
	// it was sent), so the thread meets them in that order.
	return func() {
		reaper.mu.Lock()
		_, live := reaper.watches[id]
		delete(reaper.watches, id)
		reaper.mu.Unlock()
		if live {
			sendReaper(opCancel, id, -1)
		}
	}, true
}

// sendReaper sends one message to the reaper's thread, with fd unless it
// is negative (a message of a SOCK_SEQPACKET socket goes whole). A full
// buffer is waited out, with no lock held: the thread drains it.
func sendReaper(op byte, id uint64, fd int) error {
	var msg [9]byte
	msg[0] = op
	binary.NativeEndian.PutUint64(msg[1:], id)
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
			unix.Poll([]unix.PollFd{{Fd: int32(reaper.sock), Events: unix.POLLOUT}}, 10)
			continue
		}
		return err
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
// only keep of what it copied, and an epoll set watching each of keep.
func ownTable(keep ...int) (int, error) {
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
	for _, fd := range keep {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return -1, err
		}
	}
	return ep, nil
}

// closeAllBut closes the descriptors of the calling thread's table but
// those of keep and the Go runtime's own: its network poller's epoll set and the
// eventfd that wakes it (readlink anon_inode:[eventpoll], [eventfd]). A
// collection that begins on this thread (its goroutine allocates) polls
// the network once the world starts again, through those descriptor
// numbers; kept, they are the same poller. Nothing else of the kind is
// held for long: an epoll set or an eventfd keeps no file open.
func closeAllBut(keep []int) error {
	dir, err := unix.Open("/proc/thread-self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var fds []int
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err != nil {
			unix.Close(dir)
			return err
		}
		if n == 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && !slices.Contains(keep, fd) && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
	unix.Close(dir)
	link := make([]byte, 64)
	for _, fd := range fds {
		n, err := unix.Readlink("/proc/thread-self/fd/"+strconv.Itoa(fd), link)
		if err == nil {
			if t := string(link[:n]); t == "anon_inode:[eventpoll]" || t == "anon_inode:[eventfd]" {
				continue
			}
		}
		unix.Close(fd)
	}
	return nil
}

// reapLoop is the reaper's thread: it takes new children (a pidfd each,
// opened here, in its own table) and reaps those whose pidfd is
// readable. Only it removes a pidfd and closes it.
func reapLoop(ep, efd, sock int) {
	waits := map[int32]reapWait{} // by pidfd; a watch's has no pid, only its id
	byID := map[uint64]int32{}    // the pidfds of the watches
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("process: epoll_wait of the child reaper: %v", err))
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(efd) {
				var buf [8]byte
				unix.Read(efd, buf[:])
				reaper.mu.Lock()
				adds := reaper.adds
				reaper.adds = nil
				reaper.mu.Unlock()
				for _, w := range adds {
					if !watchChild(ep, waits, w) {
						// No descriptor left here (EMFILE): a thread waits
						// for this one, as os.Process.Wait would.
						go func() { w.done(wait4(w.pid)) }()
					}
				}
				continue
			}
			if ev.Fd == int32(sock) {
				takeMessages(ep, sock, waits, byID)
				continue
			}
			w, ok := waits[ev.Fd]
			if !ok {
				continue
			}
			delete(waits, ev.Fd)
			unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			if w.pid == 0 {
				delete(byID, w.watch)
				unix.Close(int(ev.Fd))
				reaper.out <- reaped{watch: w.watch}
				continue
			}
			ws := wait4(w.pid)
			unix.Close(int(ev.Fd))
			reaper.out <- reaped{done: w.done, ws: ws}
		}
	}
}

// takeMessages reads what watchLater and its cancels sent, until none is
// left: a watch's pidfd joins the epoll set (or, if it cannot, the watch
// is reported lost), a cancel removes it.
func takeMessages(ep, sock int, waits map[int32]reapWait, byID map[uint64]int32) {
	var msg [9]byte
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(sock, msg[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != len(msg) {
			return // EAGAIN: nothing more
		}
		id := binary.NativeEndian.Uint64(msg[1:])
		switch msg[0] {
		case opWatch:
			fd := -1
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cmsgs) == 1 {
				if fds, err := unix.ParseUnixRights(&cmsgs[0]); err == nil && len(fds) == 1 {
					fd = fds[0]
				}
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
			if fd < 0 || unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
				if fd >= 0 {
					unix.Close(fd)
				}
				reaper.out <- reaped{watch: id, lost: true}
				continue
			}
			waits[int32(fd)] = reapWait{watch: id}
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

// watchChild adds w's child to the epoll set ep through a pidfd.
func watchChild(ep int, waits map[int32]reapWait, w reapWait) bool {
	pfd, err := unix.PidfdOpen(w.pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pfd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, pfd, &ev); err != nil {
		unix.Close(pfd)
		return false
	}
	waits[int32(pfd)] = w
	return true
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
