package process

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// TestDeleteNamesItsOwnStart: two starts of one address (a replace that
// creates before it destroys) leave two registry lines; deleting the old
// one, by the start ID its handle carries or (a handle of an older orch,
// without an ID) by pid and start time, marks that line gone and no
// other. Real processes; the registry is read back from its file.
func TestDeleteNamesItsOwnStart(t *testing.T) {
	state := t.TempDir()
	p := New(Options{})
	t.Cleanup(func() {
		if pid := logdPidOf(state); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	a := spec.Address{Kind: spec.KindDaemon, Name: "a"}
	start := func() (providers.Handle, HandleInfo) {
		t.Helper()
		r := &spec.Resource{Addr: a, Command: []string{"sleep", "60"}, Umask: spec.DefaultUmask, Log: spec.Log{MaxSize: 1 << 20, MaxFiles: 3}}
		resp, err := p.Start(context.Background(), providers.StartRequest{Resource: r, StateDir: state, Project: "proj"})
		if err != nil {
			t.Fatal(err)
		}
		hi, err := ParseHandle(resp.Handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-hi.Pgid, syscall.SIGKILL) })
		return resp.Handle, hi
	}
	end := func(h providers.Handle) {
		t.Helper()
		if _, err := p.Stop(context.Background(), providers.StopRequest{Addr: a, Handle: h, Signal: spec.SIGTERM, Timeout: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Delete(context.Background(), providers.DeleteRequest{Addr: a, Handle: h}); err != nil {
			t.Fatal(err)
		}
	}
	live := func() []string {
		t.Helper()
		all, err := readRegistry(filepath.Join(state, "logs"))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range all.of(FileName(a)) {
			ids = append(ids, e.ID)
		}
		return ids
	}

	h1, hi1 := start()
	_, hi2 := start()
	if hi1.ID == "" || hi2.ID == "" || hi1.ID == hi2.ID {
		t.Fatalf("start IDs in the handles: %q, %q", hi1.ID, hi2.ID)
	}
	end(h1)
	if got := live(); len(got) != 1 || got[0] != hi2.ID {
		t.Fatalf("after deleting the first start: live %v, want [%s]", got, hi2.ID)
	}

	// A handle written by an older orch has no ID: found by pid and start
	// time instead.
	_, hi3 := start()
	var m map[string]any
	h2, _ := json.Marshal(hi2)
	json.Unmarshal(h2, &m)
	delete(m, "id")
	old, _ := json.Marshal(m)
	end(providers.Handle(old))
	if got := live(); len(got) != 1 || got[0] != hi3.ID {
		t.Fatalf("after deleting the second start by an ID-less handle: live %v, want [%s]", got, hi3.ID)
	}
}

// logdPidOf is the pid of the log daemon of state (its logs directory's
// logd.pid); 0 when there is none.
func logdPidOf(state string) int {
	b, err := os.ReadFile(filepath.Join(state, "logs", "logd.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
