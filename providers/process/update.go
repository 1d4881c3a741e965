package process

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/orch-dev/orch/providers"
)

// Update applies in place what a running daemon can take without a
// restart: its log rotation settings. It appends them to the registry and
// tells the log daemon, if one runs (one started later reads the
// registry). Everything else that does not force replacement (restart
// policy, health checks, stop settings) is orch's own business and needs
// nothing from the process.
func (p *Provider) Update(ctx context.Context, req providers.UpdateRequest) (providers.UpdateResponse, error) {
	if req.Resource == nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: errors.New("no resource")}
	}
	addr := req.Resource.Addr
	logsDir := filepath.Join(req.StateDir, "logs")
	name := FileName(addr)
	e, ok, err := registryEntry(logsDir, name)
	if err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Err: fmt.Errorf("%s: %w", addr, err)}
	}
	if !ok {
		return providers.UpdateResponse{}, nil // never started here: nothing runs to update
	}
	e.MaxSize, e.MaxFiles = req.Resource.Log.MaxSize, req.Resource.Log.MaxFiles
	if e.MaxSize <= 0 {
		e.MaxSize = DefaultLogMaxSize
	}
	if e.MaxFiles < 0 {
		e.MaxFiles = DefaultLogMaxFiles
	}
	if err := appendRegistry(logsDir, e); err != nil {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Retryable: true, Err: fmt.Errorf("%s: %w", addr, err)}
	}
	// Only a running logd has the log open; none running is no error.
	if err := p.logdConn(logsDir).request(logdMsg{Op: "conf", Name: name, MaxSize: e.MaxSize, MaxFiles: e.MaxFiles}, -1, p.opts.LogdStartTimeout); err != nil && !errors.Is(err, errNoLogd) {
		return providers.UpdateResponse{}, &providers.Error{Op: "update", Retryable: true, Err: fmt.Errorf("%s: %w", addr, err)}
	}
	return providers.UpdateResponse{}, nil
}
