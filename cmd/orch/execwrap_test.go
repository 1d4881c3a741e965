package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestExecWrapperRunsFirst: orch as the exec wrapper (`orch __exec`, what
// a daemon with a umask or rlimits is started through) executes the
// daemon from the init of 0orch/execwrap, before the packages orch links
// for everything else are initialised (the Docker, etcd and protobuf
// clients, orch's own: 50 ms of CPU a start when they were), and does
// what it is asked (the umask here).
func TestExecWrapperRunsFirst(t *testing.T) {
	cmd := exec.Command(orchBin, "__exec", "--umask", "0027", "--", "/bin/sh", "sh", "-c", "umask")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1", "ORCH_PROCESS_HELPER=exec")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("orch __exec: %v\n%s", err, out)
	}
	var inits []string
	umask := ""
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
			inits = append(inits, f[1])
		} else if strings.TrimSpace(line) != "" {
			umask = strings.TrimSpace(line)
		}
	}
	if umask != "0027" {
		t.Errorf("the daemon's umask: %q, want 0027\n%s", umask, out)
	}
	if len(inits) == 0 {
		t.Fatalf("no init trace (GODEBUG=inittrace=1):\n%s", out)
	}
	for _, p := range inits {
		for _, heavy := range []string{"github.com/orch-dev/orch/", "go.etcd.io/", "google.golang.org/protobuf/reflect", "github.com/docker/", "github.com/distribution/", "github.com/tetratelabs/wazero"} {
			if strings.HasPrefix(p, heavy) {
				t.Errorf("%s was initialised before the wrapper executed the daemon (%d inits before it)", p, len(inits))
			}
		}
	}
}
