package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDaemonsInheritNothing: a descriptor orch inherited from its caller
// (here the write end of a pipe, as a CI runner or `orch apply | tee`
// leaves one) reaches neither the daemons nor the log daemon: each daemon
// has stdin, stdout and stderr only, and the caller's pipe ends as soon
// as orch apply has exited, while the daemon and the log daemon run on.
func TestDaemonsInheritNothing(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
daemon "quiet" {
  command = ["sleep", "600"]
}
`})
	stateDir := filepath.Join(dir, ".orch")
	defer stopRegistered(stateDir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(orchBin, "apply", "-auto-approve", dir)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	cmd.ExtraFiles = []*os.File{w} // fd 3 in orch, not close-on-exec
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	w.Close()
	if err != nil {
		t.Fatalf("orch apply: %v\n%s", err, out.String())
	}
	pids := registeredPids(stateDir)
	if len(pids) != 1 {
		t.Fatalf("daemons registered: %v\n%s", pids, out.String())
	}
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pids[0]), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		fds = append(fds, e.Name())
	}
	sort.Strings(fds)
	if strings.Join(fds, ",") != "0,1,2" {
		t.Errorf("the daemon's descriptors are %v, want 0, 1 and 2 only", fds)
	}
	// Every holder of the pipe's write end has exited or closed it: a
	// read ends (EOF). A holder left (the daemon, the log daemon) would
	// block it: the deadline only bounds the hang.
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := r.Read(b[:])
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read a byte from the pipe no one writes to")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the caller's pipe is still open: a process orch started holds it")
	}
}
