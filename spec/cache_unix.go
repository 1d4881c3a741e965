//go:build unix

package spec

import (
	"os"
	"syscall"
)

// trustedPath reports whether the cache may read or write path (the state
// directory or the cache file): it is what it should be (a directory, or a
// regular file), not a symbolic link, owned by the user running orch (or
// root) and writable by nobody else. A cache another user could write
// would let them choose the commands orch starts; the CLI refuses such a
// state directory too, but only once the configuration is loaded.
func trustedPath(path string, dir bool) bool {
	st, err := os.Lstat(path)
	if err != nil {
		return false
	}
	if dir && !st.IsDir() || !dir && !st.Mode().IsRegular() {
		return false
	}
	if st.Mode().Perm()&0o022 != 0 {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return sys.Uid == 0 || int(sys.Uid) == os.Geteuid()
}
