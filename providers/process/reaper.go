package process

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
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
// copied entry at once but its eventfd and the runtime's poller
// (closeAllBut): a copy would keep what the rest of orch closes open (a
// socket would not reach its end, a lock file would stay locked). Nothing but the reaper's own loop runs on that thread
// (it is locked to the loop's goroutine for good), and the loop only uses
// the descriptors it opened there, by raw system calls. What a reaped
// child's waiter must do (done) runs on another goroutine, the
// dispatcher, so no code of the rest of orch ever runs with that table.
var reaper struct {
	once sync.Once
	err  error
	efd  int // eventfd in both tables: wakes the thread for new children
	mu   sync.Mutex
	adds []reapWait // children to watch, for the thread to take
	out  chan reaped
}

type reapWait struct {
	pid  int
	done func(*syscall.WaitStatus)
}

type reaped struct {
	done func(*syscall.WaitStatus)
	ws   *syscall.WaitStatus
}

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
	reaper.adds = append(reaper.adds, reapWait{pid, done})
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
	reaper.efd = efd
	reaper.out = make(chan reaped, 1024)
	ready := make(chan error, 1)
	offMainThread(func() {
		ep, err := ownTable(efd)
		ready <- err
		if err != nil {
			return
		}
		reapLoop(ep, efd)
	})
	if err := <-ready; err != nil {
		reaper.err = err
		unix.Close(efd)
		return
	}
	go func() {
		for r := range reaper.out {
			r.done(r.ws)
		}
	}()
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
			if fd, err := strconv.Atoi(name); err == nil && fd != keep && fd != dir {
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
func reapLoop(ep, efd int) {
	waits := map[int32]reapWait{}
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
			w, ok := waits[ev.Fd]
			if !ok {
				continue
			}
			delete(waits, ev.Fd)
			unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			ws := wait4(w.pid)
			unix.Close(int(ev.Fd))
			reaper.out <- reaped{w.done, ws}
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
