package engine

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/providers/notify"
)

// orch up under systemd (NOTIFY_SOCKET set) says READY=1 once its first
// apply is done, and STOPPING=1 on its way out.
func TestOrchUpSaysReady(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(`
daemon "web" {
  command = ["sleep", "600"]
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := notify.Listen(filepath.Join(t.TempDir(), "n", notify.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	cmd := exec.Command(orchBin, "up", dir)
	cmd.Env = append(cleanEnv(t), "NOTIFY_SOCKET="+sock.Path())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	said := func(key, val string) bool {
		st, _ := sock.State()
		for _, m := range st.Messages {
			if m.Fields[key] == val && m.From.Pid == cmd.Process.Pid {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(30 * time.Second)
	for !said("READY", "1") {
		if time.Now().After(deadline) {
			t.Fatal("orch up never said READY=1")
		}
		_, wake := sock.State()
		select {
		case <-wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The first apply was done: the daemon runs and is recorded.
	out, err := orchOutput(t, "status", "-json", dir)
	var lines []struct{ Address, State string }
	if err != nil || json.Unmarshal(out, &lines) != nil || len(lines) != 1 || lines[0].State != "running" {
		t.Fatalf("READY=1 before the first apply was done: status %s %v", out, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("orch up: %v", err)
	}
	if !said("STOPPING", "1") {
		t.Fatal("orch up stopped without STOPPING=1")
	}
}
