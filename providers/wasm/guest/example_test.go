package guest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/orch-dev/orch/providers/wasm/guest"
)

// A whole module: it counts the daemons that started, in its key-value
// namespace, and says so on the bus. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o started.wasm .
//
// and declare it with module "started" { source = "started.wasm" }.
func Example() {
	guest.Register(guest.Module{
		Init: func(config []byte) error { return guest.Subscribe("orch.daemon.started") },
		OnEvent: func(ev guest.Event) error {
			var e struct{ Address string }
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return err
			}
			v, _, err := guest.KV.Get(e.Address)
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(v))
			if err := guest.KV.Put(e.Address, []byte(strconv.Itoa(n+1))); err != nil {
				return err
			}
			guest.Logf(guest.Info, "%s started %d times", e.Address, n+1)
			return guest.Publish("started.count", []byte(strconv.Itoa(n+1)))
		},
	})
}

// Config arrives as JSON in Init; decode it into the module's own type.
func ExampleModule_init() {
	var config struct {
		Greeting string `json:"greeting"`
	}
	guest.Register(guest.Module{
		Init: func(raw []byte) error { return json.Unmarshal(raw, &config) },
		Start: func() error {
			guest.Log(guest.Info, config.Greeting)
			return nil
		},
	})
}

// Outside a wasip1 build, host calls report ErrNotHosted, so a module's
// logic can be unit-tested with the host's toolchain.
func ExampleErrNotHosted() {
	err := guest.Publish("greetings", []byte("hello"))
	fmt.Println(errors.Is(err, guest.ErrNotHosted))
	// Output: true
}
