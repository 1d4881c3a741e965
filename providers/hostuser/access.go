package hostuser

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Denied says why a process with cred could not start prog in dir: the
// first directory on the way to either that cred may not enter, or prog
// itself when cred may not execute it, as "directory D (mode M, owner O)
// is not open to user U". "" when neither is denied by its mode (or cred
// is nil or root's): a start that failed with EACCES as another user is
// most often its working directory, which the kernel does not name (a
// configuration directory under a home or a test's 0700 temporary
// directory, with a daemon that runs as postgres).
func Denied(cred *syscall.Credential, dir, prog string) string {
	if cred == nil || cred.Uid == 0 {
		return ""
	}
	who := "user " + name(cred.Uid)
	if dir != "" {
		if d, st := firstClosed(cred, dir); d != "" {
			return fmt.Sprintf("the working directory %s is not open to %s: %s (mode %s, owner %s) cannot be entered", dir, who, d, st.Mode(), ownerOf(st))
		}
	}
	if filepath.IsAbs(prog) {
		if d, st := firstClosed(cred, filepath.Dir(prog)); d != "" {
			return fmt.Sprintf("the program %s is not open to %s: %s (mode %s, owner %s) cannot be entered", prog, who, d, st.Mode(), ownerOf(st))
		}
		if st, err := os.Stat(prog); err == nil && !allows(cred, st, 1) {
			return fmt.Sprintf("the program %s (mode %s, owner %s) may not be executed by %s", prog, st.Mode(), ownerOf(st), who)
		}
	}
	return ""
}

// firstClosed returns the first directory of the absolute path dir, from
// the root down, that cred may not search, with its stat; "" when there
// is none, or when one cannot be read (nothing to say for sure).
func firstClosed(cred *syscall.Credential, dir string) (string, os.FileInfo) {
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) {
		return "", nil
	}
	d := "/"
	for _, part := range append([]string{""}, strings.Split(dir[1:], "/")...) {
		d = filepath.Join(d, part)
		st, err := os.Stat(d)
		if err != nil {
			return "", nil
		}
		if st.IsDir() && !allows(cred, st, 1) {
			return d, st
		}
	}
	return "", nil
}

// allows reports whether cred has the permission bit bit (1 execute or
// search, 2 write, 4 read) on st by its mode: the owner's bits for its
// owner, the group's for a member of its group, the others' otherwise.
func allows(cred *syscall.Credential, st os.FileInfo, bit os.FileMode) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := st.Mode().Perm()
	switch {
	case sys.Uid == cred.Uid:
		return mode&(bit<<6) != 0
	case sys.Gid == cred.Gid || slices.Contains(cred.Groups, sys.Gid):
		return mode&(bit<<3) != 0
	}
	return mode&bit != 0
}

func ownerOf(st os.FileInfo) string {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return name(sys.Uid)
	}
	return "?"
}

// name is a uid's user name, else the number.
func name(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}
