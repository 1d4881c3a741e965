package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"sync"
	"syscall"
	"time"
)

// ModuleRuntime is the runtime address of every module instance: modules
// run in the engine that hosts them (providers/module), not on a declared
// runtime. It appears in state and in the provider routing, never in the
// configuration.
var ModuleRuntime = Address{Kind: KindRuntime, Type: "module", Name: "host"}

// hashCache remembers the SHA-256 of files read before, by path and
// identity (device, inode, size, mtime, ctime): a reload of a
// configuration whose module binaries did not change reads none of them.
var hashCache = struct {
	sync.Mutex
	m map[string]hashedFile
}{m: map[string]hashedFile{}}

type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

type hashedFile struct {
	id   fileID
	hash string
}

// identity returns a file's identity, or false when the file system does
// not tell enough (no inode and ctime) to trust a cached hash.
func identity(st fs.FileInfo) (fileID, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys == nil {
		return fileID{}, false
	}
	return fileID{dev: uint64(sys.Dev), ino: sys.Ino, size: st.Size(),
		mtime: st.ModTime().UnixNano(), ctime: time.Unix(sys.Ctim.Unix()).UnixNano()}, true
}

// fileSHA256 returns the hex SHA-256 of the file p names (relative to the
// configuration directory dir).
func fileSHA256(fsys fs.FS, dir, p string) (string, error) {
	key := absPath(dir, p)
	st, err := statConfigFile(fsys, dir, p)
	if err != nil {
		return "", err
	}
	before, trusted := identity(st)
	if trusted {
		hashCache.Lock()
		h, ok := hashCache.m[key]
		hashCache.Unlock()
		if ok && h.id == before {
			return h.hash, nil
		}
	}
	f, err := openConfigFile(fsys, dir, p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	hash := hex.EncodeToString(sum.Sum(nil))
	if st2, err := statConfigFile(fsys, dir, p); err == nil && trusted {
		// A file that changed while it was read is not remembered.
		if after, ok := identity(st2); ok && after == before {
			hashCache.Lock()
			hashCache.m[key] = hashedFile{id: after, hash: hash}
			hashCache.Unlock()
		}
	}
	return hash, nil
}
