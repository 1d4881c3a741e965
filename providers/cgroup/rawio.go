package cgroup

import (
	"os"

	"golang.org/x/sys/unix"
)

// readFile reads a small control file (cgroup.events, memory.events,
// cpu.stat) with three system calls: open, read, close. os.Open would
// register each descriptor with Go's poller (cgroup.events is pollable)
// and set it non-blocking, and os.ReadFile stats it first: at a daemon's
// end orch reads these files several times, and with 100 daemons ending
// at once that overhead was a quarter of orch's CPU in the shutdown.
func readFile(p string) ([]byte, error) {
	fd, err := openRetry(p, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 512)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: p, Err: err}
		}
		if n == 0 {
			return out, nil
		}
		if out == nil && n < len(buf) {
			// The common case: all of it in one read; a second read
			// confirms the end.
			out = buf[:n:n]
			buf = make([]byte, 512)
			continue
		}
		out = append(out, buf[:n]...)
	}
}

// writeFile writes v to a control file in one write(2), as the kernel
// wants it (one value per write).
func writeFile(p, v string) error {
	fd, err := openRetry(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	for {
		_, err = unix.Write(fd, []byte(v))
		if err != unix.EINTR {
			break
		}
	}
	cerr := unix.Close(fd)
	if err != nil {
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	if cerr != nil {
		return &os.PathError{Op: "close", Path: p, Err: cerr}
	}
	return nil
}

func openRetry(p string, flags int) (int, error) {
	for {
		fd, err := unix.Open(p, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
