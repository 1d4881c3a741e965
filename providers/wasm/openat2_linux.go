package wasm

import (
	"errors"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirFlags open a directory to resolve names in it; statFlags open a file
// to fstat it (O_PATH: neither needs read permission).
const (
	dirFlags  = unix.O_PATH | unix.O_DIRECTORY
	statFlags = unix.O_PATH
)

// errNoOpenat2: the kernel has no openat2 (or gave up resolving, a rename
// racing with ".."): use os.Root.
var errNoOpenat2 = errors.New("no openat2")

// hasOpenat2 reports whether the kernel has openat2 (and no seccomp
// filter refuses it), once.
var hasOpenat2 = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// openat2 opens name beneath the directory dirfd: the kernel refuses
// (EXDEV, returned as errEscape) any ".." above it, absolute symbolic
// link, or symbolic link leading out of it, and the magic links of /proc.
func openat2(dirfd int, name string, flag int, perm uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flag | unix.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	if flag&unix.O_CREAT != 0 {
		how.Mode = uint64(perm)
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, name, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR:
		case err == unix.EAGAIN && i < 8:
		case err == unix.EAGAIN:
			return -1, errNoOpenat2
		case err == unix.EXDEV:
			return -1, errEscape
		default:
			return -1, err
		}
	}
}

func datasync(fd int) error { return unix.Fdatasync(fd) }

// futimens is utimensat(fd, NULL, ts, 0): the file of fd itself.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
