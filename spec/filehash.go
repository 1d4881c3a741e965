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

// FileSHA256 returns the hex SHA-256 of the regular file at path (a
// module's binary, a plugin's executable). A file unchanged since it was
// last hashed in this process (same device, inode, size, mtime and ctime)
// is not read again.
func FileSHA256(path string) (string, error) {
	return hashFile(path, func() (fs.FileInfo, error) { return osStat(path) },
		func() (io.ReadCloser, error) { return osOpen(path) })
}

// fileSHA256 is FileSHA256 of the file p names in the configuration
// (relative to the configuration directory dir, read through fsys).
func fileSHA256(fsys fs.FS, dir, p string) (string, error) {
	return hashFile(absPath(dir, p), func() (fs.FileInfo, error) { return statConfigFile(fsys, dir, p) },
		func() (io.ReadCloser, error) { return openConfigFile(fsys, dir, p) })
}

func hashFile(key string, stat func() (fs.FileInfo, error), open func() (io.ReadCloser, error)) (string, error) {
	st, err := stat()
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
	f, err := open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	hash := hex.EncodeToString(sum.Sum(nil))
	if trusted {
		// A file that changed while it was read is not remembered.
		if st2, err := stat(); err == nil {
			if after, ok := identity(st2); ok && after == before {
				hashCache.Lock()
				hashCache.m[key] = hashedFile{id: after, hash: hash}
				hashCache.Unlock()
			}
		}
	}
	return hash, nil
}
