package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/providers/owned"
)

// TestListenOwnDir: the socket's directory is created 0700 and the socket
// is 0600.
func TestListenOwnDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode(), err, want)
		}
	}
}

// TestListenRefusesUntrustedDir: a socket directory others may write, or
// owned by another user, is refused with the path and no socket is made
// in it (another user could replace the socket and answer for the agent).
func TestListenRefusesUntrustedDir(t *testing.T) {
	cases := map[string]func(dir string) error{
		"0777": func(dir string) error { return os.Chmod(dir, 0o777) },
	}
	if os.Geteuid() == 0 {
		cases["chown 1234"] = func(dir string) error { return os.Chown(dir, 1234, 1234) }
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".orch")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := spoil(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "agent.sock")
			ln, err := Listen(path)
			if err == nil {
				ln.Close()
			}
			var ue *owned.UntrustedError
			if !errors.As(err, &ue) || ue.Path != dir || !strings.Contains(err.Error(), "agent socket") {
				t.Fatalf("got %v, want a refusal of %s", err, dir)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left in the refused directory: %v", ents)
			}
		})
	}
}
