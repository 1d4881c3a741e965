package spec

import (
	"fmt"
	"io"
	"os"
)

// maxFileSize bounds what file() reads, so that file("/dev/zero") fails
// instead of eating memory.
const maxFileSize = 16 << 20

// Paths outside the configuration directory (an absolute plugin path, a
// file("/etc/...")) are read from the host file system, regular files only.
func osReadFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err == nil && len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than 16 MiB", p)
	}
	return b, err
}

func osStat(p string) (os.FileInfo, error) { return os.Stat(p) }

// osOpen opens a regular file of the host file system.
func osOpen(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return f, nil
}
