// Command eventcount is an orch module that counts the lifecycle events of
// daemons (started, exited, healthy, ...) in its key-value namespace, one
// key per daemon and event ("daemon.api/started") plus a total per event
// ("total/started"); the counts survive restarts of the module and of orch.
// Every count it changes is also published on the topic
// "eventcount.updated".
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o eventcount.wasm .
//
// Its config may name the events to count: {"events": ["started", "exited"]};
// by default it counts every one.
package main

import (
	"encoding/json"
	"strconv"

	"github.com/orch-dev/orch/providers/wasm/guest"
)

var only map[string]bool // the events to count; nil: all

func init() {
	guest.Register(guest.Module{
		Init: func(config []byte) error {
			var c struct{ Events []string }
			if err := json.Unmarshal(config, &c); err != nil {
				return err
			}
			if len(c.Events) > 0 {
				only = map[string]bool{}
				for _, e := range c.Events {
					only[e] = true
				}
			}
			return guest.Subscribe("orch.daemon.*")
		},
		OnEvent: func(ev guest.Event) error {
			var l struct{ Address, Event string }
			if err := json.Unmarshal(ev.Data, &l); err != nil {
				return err
			}
			if only != nil && !only[l.Event] {
				return nil
			}
			n, err := increment(l.Address + "/" + l.Event)
			if err != nil {
				return err
			}
			if _, err := increment("total/" + l.Event); err != nil {
				return err
			}
			guest.Logf(guest.Debug, "%s %s: %d times", l.Address, l.Event, n)
			return guest.Publish("eventcount.updated", []byte(`{"key":`+strconv.Quote(l.Address+"/"+l.Event)+`,"count":`+strconv.Itoa(n)+`}`))
		},
	})
}

// increment adds one to the count at key and returns it.
func increment(key string) (int, error) {
	v, _, err := guest.KV.Get(key)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(string(v))
	n++
	return n, guest.KV.Put(key, []byte(strconv.Itoa(n)))
}

func main() {} // a reactor's main never runs: see init
