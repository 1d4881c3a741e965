package executor

import (
	"context"
	"os/exec"
	"testing"

	"github.com/orch-dev/orch/executor/state"
	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/providers/process"
	"github.com/orch-dev/orch/spec"
)

// TestObserveRecordedEndedJob: for orch status, a job that ended
// (completed or failed) reads exited even once its process is gone for
// the kernel (as after a restart of orch, which showed "missing"), and so
// does a daemon that orch stopped (after orch up's shutdown every daemon
// read missing); a daemon whose process is gone otherwise still reads
// missing, and one whose start failed, with no handle to look up, reads
// missing too (it read unknown, as if its runtime were away).
func TestObserveRecordedEndedJob(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// Its pid, started at another time than any process that has it now.
	gone := providers.Handle(process.HandleInfo{Pid: cmd.Process.Pid, StartTicks: 1, Pgid: cmd.Process.Pid}.Encode())
	rt := spec.Address{Kind: spec.KindRuntime, Type: process.Kind, Name: "host"}
	rec := func(kind spec.Kind, name, status string) state.Instance {
		return state.Instance{Addr: spec.Address{Kind: kind, Name: name}, Runtime: rt, Status: status, Handle: gone}
	}
	neverRan := rec(spec.KindDaemon, "db", "failed")
	neverRan.Handle = nil
	stored := []state.Instance{rec(spec.KindJob, "done", "completed"), rec(spec.KindJob, "broke", "failed"),
		rec(spec.KindDaemon, "web", "running"), rec(spec.KindDaemon, "api", "stopped"), neverRan}
	obs := ObserveRecorded(context.Background(), Providers{process.Kind: process.New(process.Options{})}, nil, stored)
	for _, want := range []struct {
		name  string
		state providers.State
	}{{"job.done", providers.StateExited}, {"job.broke", providers.StateExited}, {"daemon.web", providers.StateMissing},
		{"daemon.api", providers.StateExited}, {"daemon.db", providers.StateMissing}} {
		var got providers.Observed
		for a, o := range obs {
			if a.String() == want.name {
				got = o
			}
		}
		if got.State != want.state {
			t.Errorf("%s: %v, want %v", want.name, got.State, want.state)
		}
	}
}
