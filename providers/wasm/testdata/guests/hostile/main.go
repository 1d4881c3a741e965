// Command hostile is the guest of the sandbox's tests; its config
// ({"mode": ..., "paths": [...]}) says how it behaves:
//
//	loop    start never returns
//	bomb    start allocates memory until it is refused
//	trap    init panics
//	escape  init reads each of paths, publishes what happened on
//	        "escape.result" ("ok <path> <content>" or "err <path> <error>"),
//	        then tries to write /in/written, then publishes its config
//	        as the config host function gives it on "escape.config"
//	sink    subscribes to "bench.*" and counts what it receives
//
// One guest for every case: each .wasm file costs a compilation, which is
// slow under the race detector.
package main

import (
	"encoding/json"
	"os"

	"github.com/orch-dev/orch/providers/wasm/guest"
)

var (
	config struct {
		Mode  string
		Paths []string
	}
	n     int
	hoard [][]byte
)

func init() {
	guest.Register(guest.Module{
		Init: func(raw []byte) error {
			if err := json.Unmarshal(raw, &config); err != nil {
				return err
			}
			switch config.Mode {
			case "trap":
				var m map[string]int
				m["boom"] = 1 // assignment to entry in nil map
			case "escape":
				return escape()
			case "sink":
				return guest.Subscribe("bench.*")
			}
			return nil
		},
		Start: func() error {
			switch config.Mode {
			case "loop":
				for {
					n++
				}
			case "bomb":
				for {
					b := make([]byte, 1<<20)
					for i := range b {
						b[i] = byte(i)
					}
					hoard = append(hoard, b)
				}
			}
			return nil
		},
		OnEvent: func(guest.Event) error { n++; return nil },
	})
}

func escape() error {
	for _, p := range config.Paths {
		b, err := os.ReadFile(p)
		msg := "ok " + p + " " + string(b)
		if err != nil {
			msg = "err " + p + " " + err.Error()
		}
		if err := guest.Publish("escape.result", []byte(msg)); err != nil {
			return err
		}
	}
	err := os.WriteFile("/in/written", []byte("x"), 0o644)
	msg := "ok write"
	if err != nil {
		msg = "err write " + err.Error()
	}
	if err := guest.Publish("escape.result", []byte(msg)); err != nil {
		return err
	}
	// The configuration, read through the host function this time.
	c, err := guest.Config()
	if err != nil {
		return err
	}
	return guest.Publish("escape.config", c)
}

func main() {}
