// Package logfile holds what every writer of orch's log files shares:
// their default size limits and their rotation, so that the log daemon
// (providers/process), the module host (providers/module) and orch logs
// agree on the names path, path.1, path.2, ...
package logfile

import (
	"os"
	"strconv"
)

// Defaults of a log block: a log is rotated when it passes DefaultMaxSize
// bytes, and DefaultMaxFiles rotated files are kept.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
)

// Rotate moves a full log at path aside: path.N-1 becomes path.N, ...,
// path becomes path.1, keeping keep rotated files (path.keep+1 is
// removed); with keep 0 the log is removed.
func Rotate(path string, keep int) {
	if keep <= 0 {
		os.Remove(path)
		return
	}
	os.Remove(path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
	}
	os.Rename(path, path+".1")
}
