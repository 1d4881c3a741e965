package module

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/orch-dev/orch/spec"
)

// TestFileLogRefusesUntrusted: a module log directory others may write,
// or owned by another user, and a log file owned by another user, are
// not written to (the refusal goes to stderr); a log directory orch
// creates is 0700 and its files 0600.
func TestFileLogRefusesUntrusted(t *testing.T) {
	addr := spec.Address{Kind: spec.KindModule, Name: "m"}
	write := func(path string) {
		l := NewFileLog(func(spec.Address) string { return path })
		defer l.Close()
		l.Write(Record{Addr: addr, Level: LevelInfo, Message: "hello"})
	}
	t.Run("created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "logs", "module.m.log")
		write(path)
		for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: %v %v, want mode %v", p, fi, err, want)
			}
		}
	})
	t.Run("dir 0777", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "logs")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, 0o777)
		path := filepath.Join(dir, "module.m.log")
		write(path)
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a log was written in a directory others may write: %v", err)
		}
	})
	if os.Geteuid() != 0 {
		t.Skip("the chown case needs root")
	}
	t.Run("file chown 1234", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "module.m.log")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, 1234, 1234)
		write(path)
		if fi, _ := os.Stat(path); fi.Size() != 0 {
			t.Fatal("a log file owned by another user was written to")
		}
	})
}
