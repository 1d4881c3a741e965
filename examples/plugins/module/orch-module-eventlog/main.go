// orch-module-eventlog is an example module plugin: it appends every event
// of the topics it is configured with to a file, one JSON object per line,
// and counts them in its key-value namespace (key "count"), which
// survives restarts. When it stops it publishes eventlog.stopped with the
// count.
//
// Build it with `make plugins`, or
//
//	go build -o examples/plugins/bin/orch-module-eventlog ./examples/plugins/module/orch-module-eventlog
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/orch-dev/orch/providers/plugin/sdk"
)

type config struct {
	Path   string   `json:"path"`
	Topics []string `json:"topics"`
}

func main() {
	var (
		cfg   config
		host  *sdk.Host
		out   *os.File
		count int
	)
	sdk.ServeModule(sdk.Module{
		Init: func(ctx context.Context, raw []byte, h *sdk.Host) error {
			host = h
			if err := json.Unmarshal(raw, &cfg); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			if !filepath.IsAbs(cfg.Path) {
				return errors.New(`config: path must be absolute (write "${path.root}/...")`)
			}
			if len(cfg.Topics) == 0 {
				cfg.Topics = []string{"orch.*"}
			}
			for _, t := range cfg.Topics {
				if err := h.Subscribe(ctx, t); err != nil {
					return err
				}
			}
			v, _, err := h.Get(ctx, "count")
			if err != nil {
				return err
			}
			count, _ = strconv.Atoi(string(v))
			return nil
		},
		Start: func(ctx context.Context) error {
			var err error
			if out, err = os.OpenFile(cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
				return err
			}
			return host.Logf(ctx, sdk.Info, "writing %v to %s (%d so far)", cfg.Topics, cfg.Path, count)
		},
		OnEvent: func(ctx context.Context, ev sdk.Event) error {
			line, _ := json.Marshal(struct {
				Topic string          `json:"topic"`
				Data  json.RawMessage `json:"data,omitempty"`
			}{ev.Topic, rawJSON(ev.Data)})
			if _, err := out.Write(append(line, '\n')); err != nil {
				return err
			}
			count++
			return host.Put(ctx, "count", []byte(strconv.Itoa(count)))
		},
		Stop: func(ctx context.Context) error {
			if out != nil {
				out.Close()
			}
			return host.Publish(ctx, "eventlog.stopped", []byte(strconv.Itoa(count)))
		},
	})
}

// rawJSON keeps data as JSON when it is, else as a JSON string.
func rawJSON(data []byte) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	if json.Valid(data) {
		return data
	}
	s, _ := json.Marshal(string(data))
	return s
}
