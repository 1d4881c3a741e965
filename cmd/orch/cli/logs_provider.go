package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// providerLogs prints the log of addr through its runtime's provider
// (providers.LogReader) when the instance runs on a runtime other than
// process (a container: the Engine keeps its log), written to w. handled
// is false when the log is a file under the state directory (the process
// provider's log daemon's, or a module's written by the engine), which the
// caller tails itself. n and follow are orch logs' -n and -f.
func (a *App) providerLogs(ctx context.Context, cfg *spec.Config, stateDir string, addr spec.Address, n int, follow bool, w io.Writer) (handled bool, err error) {
	path := filepath.Join(stateDir, "state.db")
	st, err := state.OpenReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading state %s: %w", path, err)
	}
	insts, err := st.List()
	st.Close()
	if err != nil {
		return false, fmt.Errorf("reading state %s: %w", path, err)
	}
	var rec *state.Instance
	for i := range insts {
		if insts[i].Addr == addr {
			rec = &insts[i]
		}
	}
	if rec == nil || rec.Runtime.Type == process.Kind || rec.Runtime.IsZero() {
		return false, nil
	}
	// The whole set, plugins included; a runtime that keeps no log of its
	// own (module: the engine writes the file) is read from the file.
	lr, ok := a.providerSet()[rec.Runtime.Type].(providers.LogReader)
	if !ok {
		return false, nil
	}
	tail := n // orch logs: -n -1 is everything, -n 0 nothing
	switch {
	case n < 0:
		tail = 0
	case n == 0:
		tail = -1
	}
	resp, err := lr.Logs(ctx, providers.LogsRequest{Runtime: runtimeOf(cfg, rec.Runtime), Addr: addr, Handle: rec.Handle,
		StateDir: stateDir, Tail: tail, Follow: follow})
	if err != nil {
		return true, err
	}
	defer resp.Log.Close()
	go func() { <-ctx.Done(); resp.Log.Close() }()
	if _, err := io.Copy(w, resp.Log); err != nil && ctx.Err() == nil {
		return true, err
	}
	return true, nil
}
