package agent

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A socket in a directory others can write is not talked to: whoever put
// it there could answer for the agent.
func TestDialRefusesUntrustedSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.NotFoundHandler()) // answers as an agent does
	if _, err := Dial(sock); err != nil {
		t.Fatalf("a socket in a private directory: %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(sock)
	if err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("Dial of a socket in a 0777 directory = %v, want a refusal", err)
	}
}

// A socket that accepts but never answers (a killed agent's, still held
// by a process it was forking) is no agent.
func TestDialRefusesSilentSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // never accepts: the kernel queues the connection
	if _, err := Dial(sock); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("Dial of a socket nobody answers = %v, want ErrNoAgent", err)
	}
}
