package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/orch-dev/orch/providers"
)

// Update applies in place what a running daemon can take without a
// restart: its log rotation settings. It rewrites the daemon's .logconf,
// which the log daemon reloads when it changes. Everything else that does
// not force replacement (restart policy, health checks, stop settings) is
// orch's own business and needs nothing from the process.
func (p *Provider) Update(ctx context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	if req.Resource == nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: errors.New("no resource")}
	}
	addr := req.Resource.Addr
	confPath := filepath.Join(req.StateDir, "logs", FileName(addr)+confSuffix)
	conf, err := readLogConf(confPath)
	if errors.Is(err, os.ErrNotExist) {
		return providers.UpdateResponse{}, nil // never started here: nothing runs to update
	}
	if err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: fmt.Errorf("%s: %w", addr, err)}
	}
	conf.MaxSize, conf.MaxFiles = req.Resource.Log.MaxSize, req.Resource.Log.MaxFiles
	if conf.MaxSize <= 0 {
		conf.MaxSize = DefaultLogMaxSize
	}
	if conf.MaxFiles < 0 {
		conf.MaxFiles = DefaultLogMaxFiles
	}
	if err := writeJSONAtomic(confPath, conf); err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Retryable: true, Err: fmt.Errorf("%s: %w", addr, err)}
	}
	return providers.UpdateResponse{}, nil
}
