package state_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/spec"
)

func Example() {
	dir, _ := os.MkdirTemp("", "orch")
	defer os.RemoveAll(dir)
	path := state.DefaultPath(dir)

	s, err := state.Open(path, state.Options{Operation: "apply"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	api, _ := spec.ParseAddress("daemon.api[0]")
	host, _ := spec.ParseAddress("runtime.process.host")
	err = s.Put(state.Instance{
		Addr:       api,
		Runtime:    host,
		Config:     []byte(`{"command":["./bin/api"]}`),
		ConfigHash: "sha256:...",
		Handle:     []byte(`{"pid":4242}`),
		Status:     "running",
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// A second writer is refused at once and told who holds the lock.
	_, err = state.Open(path, state.Options{Operation: "destroy"})
	var locked *state.LockedError
	fmt.Println(errors.As(err, &locked), locked.Operation)

	// A reader needs no lock.
	r, _ := state.OpenReadOnly(path)
	inst, _ := r.Get(api)
	fmt.Println(inst.Addr, inst.Status, string(inst.Config), filepath.Base(path))
	// Output:
	// true apply
	// daemon.api[0] running {"command":["./bin/api"]} state.db
}
