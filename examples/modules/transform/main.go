// Command transform is an orch module that transforms the files of a
// granted directory into another, writable one: each regular file of
// input is written to output with the same name, transformed. It runs at
// start, then again on every event of the topic "transform.run".
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o transform.wasm .
//
// Config: {"input": "/in", "output": "/out", "op": "upper"}, where op is
// "upper" (upper-case the text), "lower" or "lines" (prefix each line
// with its number). The module sees only its grants: input is mounted
// read-only, output read-write.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"

	"github.com/orch-dev/orch/providers/wasm/guest"
)

var config struct {
	Input, Output, Op string
}

func init() {
	guest.Register(guest.Module{
		Init: func(raw []byte) error {
			if err := json.Unmarshal(raw, &config); err != nil {
				return err
			}
			if config.Input == "" || config.Output == "" {
				return fmt.Errorf("config needs input and output directories")
			}
			if config.Op == "" {
				config.Op = "upper"
			}
			if op(config.Op) == nil {
				return fmt.Errorf("unknown op %q: upper, lower or lines", config.Op)
			}
			return guest.Subscribe("transform.run")
		},
		Start:   run,
		OnEvent: func(guest.Event) error { return run() },
	})
}

func op(name string) func([]byte) []byte {
	switch name {
	case "upper":
		return bytes.ToUpper
	case "lower":
		return bytes.ToLower
	case "lines":
		return func(b []byte) []byte {
			var out bytes.Buffer
			sc := bufio.NewScanner(bytes.NewReader(b))
			for n := 1; sc.Scan(); n++ {
				fmt.Fprintf(&out, "%d\t%s\n", n, sc.Bytes())
			}
			return out.Bytes()
		}
	}
	return nil
}

// run transforms every regular file of the input directory.
func run() error {
	f := op(config.Op)
	entries, err := os.ReadDir(config.Input)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.ReadFile(path.Join(config.Input, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(path.Join(config.Output, e.Name()), f(in), 0o644); err != nil {
			return err
		}
		n++
	}
	guest.Logf(guest.Info, "transformed %d files (%s) from %s to %s", n, config.Op, config.Input, config.Output)
	return guest.Publish("transform.done", []byte(fmt.Sprintf(`{"files":%d}`, n)))
}

func main() {} // a reactor's main never runs: see init
