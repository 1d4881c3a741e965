package process

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openWatch tells when a FIFO is opened (by logd), for every FIFO of a
// Provider through one inotify instance. One instance per FIFO was simpler
// but closing an inotify instance waits for an RCU grace period in the
// kernel: 5 to 20 ms on every daemon start.
type openWatch struct {
	mu      sync.Mutex
	ifd     int
	file    *os.File // ifd, read through Go's poller
	err     error    // why the watch could not be set up
	waiters map[int32]chan struct{}
}

// init sets up the inotify instance and its reader, once.
func (w *openWatch) init() error {
	if w.file != nil || w.err != nil {
		return w.err
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		w.err = fmt.Errorf("inotify: %w", err)
		return w.err
	}
	w.ifd, w.file, w.waiters = ifd, os.NewFile(uintptr(ifd), "inotify"), map[int32]chan struct{}{}
	go w.read()
	return nil
}

// read hands each IN_OPEN to its waiter, for as long as the process lives.
func (w *openWatch) read() {
	var buf [4096]byte
	for {
		n, err := w.file.Read(buf[:])
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // not expected; do not spin
			continue
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if ev.Mask&unix.IN_OPEN != 0 {
				if ch := w.waiters[ev.Wd]; ch != nil {
					close(ch)
					delete(w.waiters, ev.Wd)
				}
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		w.mu.Unlock()
	}
}

// add watches path for its next open; opened is closed when it happens.
func (w *openWatch) add(path string) (wd int32, opened <-chan struct{}, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.init(); err != nil {
		return 0, nil, err
	}
	n, err := unix.InotifyAddWatch(w.ifd, path, unix.IN_OPEN|unix.IN_ONESHOT)
	if err != nil {
		return 0, nil, fmt.Errorf("inotify %s: %w", path, err)
	}
	ch := make(chan struct{})
	w.waiters[int32(n)] = ch
	return int32(n), ch, nil
}

// remove stops watching wd (an IN_ONESHOT watch that fired is gone
// already; removing it again is harmless).
func (w *openWatch) remove(wd int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.waiters, wd)
	if w.file != nil {
		unix.InotifyRmWatch(w.ifd, uint32(wd))
	}
}

// waitOpened waits until opened is closed, or the deadline.
func waitOpened(opened <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-opened:
		return nil
	case <-t.C:
		return errors.New("timed out")
	}
}
