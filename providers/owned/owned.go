// Package owned decides whether orch may trust a path it keeps state,
// logs, registries or sockets in: the path must belong to the user running
// orch (or to root) and must not be writable by anybody else. A directory
// that another user can write lets that user forge what orch later reads
// (a registry line naming a pid, a state record), so orch refuses it with
// an error that names the path and says what to fix.
//
// Directories orch creates are made 0700, files 0600.
package owned

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirMode and FileMode are the modes orch creates its own directories
// and files with.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// UntrustedError says why orch refuses a path.
type UntrustedError struct {
	Path   string
	Reason string // "is owned by uid 1001", "is writable by others"
	Fix    string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("refusing %s: it %s; %s", e.Path, e.Reason, e.Fix)
}

// uid is the effective user orch runs as; a variable for tests.
var uid = os.Geteuid()

// Check refuses path when it exists and is owned by another user (root
// excepted), or is writable by group or others (a directory with the
// sticky bit, such as /tmp, is refused too: orch's own files never live
// directly in one). A missing path is no error.
func Check(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return check(path, fi)
}

func check(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return &UntrustedError{Path: path, Reason: "is a symbolic link", Fix: "replace it with a directory or file of its own, or point orch elsewhere"}
	}
	if int(st.Uid) != uid && st.Uid != 0 {
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("is owned by uid %d, not by uid %d that runs orch", st.Uid, uid),
			Fix: fmt.Sprintf("remove it, or chown it to uid %d", uid)}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("is writable by others (mode %04o)", fi.Mode().Perm()),
			Fix: fmt.Sprintf("chmod go-w %s", path)}
	}
	return nil
}

// Dir makes sure dir exists as a directory orch may trust: missing
// components are created with DirMode, and dir itself and every
// component created here are checked. A dir that exists is checked, not
// changed: orch never silently takes over a path another user prepared.
func Dir(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &UntrustedError{Path: dir, Reason: "is not a directory", Fix: "remove it or point orch elsewhere"}
		}
		return check(dir, fi)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if _, err := os.Lstat(parent); errors.Is(err, fs.ErrNotExist) {
			if err := Dir(parent); err != nil {
				return err
			}
		}
	}
	if err := os.Mkdir(dir, DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err = os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &UntrustedError{Path: dir, Reason: "is not a directory", Fix: "remove it or point orch elsewhere"}
	}
	return check(dir, fi)
}

// OpenFile opens name (in a directory already checked with Dir) with
// flag, creating it FileMode, and refuses a file that is not orch's own
// to trust. O_NOFOLLOW is always added: a symbolic link planted at name
// is never followed.
func OpenFile(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, FileMode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &UntrustedError{Path: name, Reason: "is a symbolic link", Fix: "remove it"}
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = check(name, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
