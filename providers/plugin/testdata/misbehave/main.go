// misbehave is a fault-injecting plugin for providers/plugin's tests: a
// small, correct in-memory provider (kind "mem") or module, which
// misbehaves as told at build time:
//
//	go build -ldflags "-X main.kind=provider -X main.mode=hang" ...
//
// Modes:
//
//	ok          behave
//	garbage     print garbage on stdout before the handshake (from init and
//	            main) and after it (from every call, through os.Stdout and
//	            straight to file descriptor 1), then behave
//	crash       panic in provider Start (the process dies: gRPC does not
//	            recover), exit with status 3 in module Start
//	crash-event exit with status 3 on the first event (module)
//	hang        never return from start (provider Start, module Start)
//	hang-event  never return from the first event (module)
//	early-exit  exit before serving: no handshake
//	wrong-kind  serve runtime kind "other" (provider)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/plugin/sdk"
	"github.com/orch-dev/orch/spec"
)

var kind, mode = "provider", "ok"

func init() {
	if mode == "garbage" {
		fmt.Println("garbage from init: 1|1|tcp|nonsense|grpc|")
	}
}

func garbage(where string) {
	if mode == "garbage" {
		fmt.Printf("garbage on os.Stdout from %s\n", where)
		syscall.Write(1, []byte("garbage on fd 1 from "+where+"\n"))
		fmt.Printf("a partial line from %s, without newline: ", where)
	}
}

func main() {
	garbage("main")
	if mode == "early-exit" {
		fmt.Fprintln(os.Stderr, "misbehave: exiting before the handshake")
		os.Exit(1)
	}
	if kind == "module" {
		serveModule()
		return
	}
	sdk.ServeProvider(&mem{objs: map[string]bool{}})
}

// mem keeps its "objects" in memory; a handle is the object's name and
// the pid of the plugin that made it, so that a relaunched plugin reports
// the objects of its predecessor as missing.
type mem struct {
	mu   sync.Mutex
	objs map[string]bool
	n    int
}

func (m *mem) Schema() spec.RuntimeSchema {
	k := "mem"
	if mode == "wrong-kind" {
		k = "other"
	}
	return spec.RuntimeSchema{Kind: k}
}

func (m *mem) Start(ctx context.Context, req providers.StartRequest) (providers.StartResponse, error) {
	garbage("start")
	switch mode {
	case "crash":
		panic("misbehave: crashing in start")
	case "hang":
		select {}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	name := req.Resource.Addr.String() + "#" + strconv.Itoa(m.n)
	m.objs[name] = true
	h, _ := json.Marshal([]any{name, os.Getpid()})
	return providers.StartResponse{Handle: h, Observed: providers.Observed{State: providers.StateRunning, Pid: os.Getpid(), ID: name}}, nil
}

func (m *mem) Observe(ctx context.Context, req providers.ObserveRequest) (providers.ObserveResponse, error) {
	garbage("observe")
	resp := providers.ObserveResponse{Objects: map[spec.Address]providers.Observed{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, h := range req.Handles {
		var hv []any
		json.Unmarshal(h, &hv)
		st := providers.StateMissing
		if len(hv) == 2 {
			if name, _ := hv[0].(string); m.objs[name] {
				st = providers.StateRunning
			}
		}
		resp.Objects[a] = providers.Observed{State: st, Pid: os.Getpid()}
	}
	return resp, nil
}

func (m *mem) Stop(ctx context.Context, req providers.StopRequest) (providers.StopResponse, error) {
	garbage("stop")
	var hv []any
	json.Unmarshal(req.Handle, &hv)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(hv) == 2 {
		name, _ := hv[0].(string)
		delete(m.objs, name)
	}
	return providers.StopResponse{Observed: providers.Observed{State: providers.StateExited}}, nil
}

func serveModule() {
	var host *sdk.Host
	var once sync.Once
	sdk.ServeModule(sdk.Module{
		Init: func(ctx context.Context, config []byte, h *sdk.Host) error {
			garbage("init")
			host = h
			return h.Subscribe(ctx, "test.*")
		},
		Start: func(ctx context.Context) error {
			garbage("start")
			switch mode {
			case "crash":
				syscall.Write(2, []byte("misbehave: crashing in start\n"))
				os.Exit(3)
			case "hang":
				select {}
			}
			return nil
		},
		OnEvent: func(ctx context.Context, ev sdk.Event) error {
			once.Do(func() { garbage("on_event") })
			switch mode {
			case "crash-event":
				syscall.Write(2, []byte("misbehave: crashing on an event\n"))
				os.Exit(3)
			case "hang-event":
				time.Sleep(time.Hour)
			}
			if ev.Topic == "test.fail" {
				return fmt.Errorf("told to fail")
			}
			if ev.Topic == "test.forge" {
				return host.Publish(ctx, "orch.daemon.started", []byte(`{"address":"daemon.x"}`))
			}
			if ev.Topic == "test.echo" {
				return host.Publish(ctx, "echo.reply", ev.Data)
			}
			return nil
		},
	})
}
