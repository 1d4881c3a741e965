//go:build !linux

package wasm

import (
	"fmt"
	"runtime"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// grantFS: directory grants need Linux (resolving beneath a grant's root
// without following a symbolic link out of it is written for Linux only,
// as is orch).
type grantFS struct {
	experimentalsys.UnimplementedFS
}

func openGrant(dir string) (*grantFS, error) {
	return nil, fmt.Errorf("directory grants are not supported on %s", runtime.GOOS)
}

func (*grantFS) Close() error { return nil }
