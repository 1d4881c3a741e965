package owned

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirCreatesPrivate(t *testing.T) {
	base := t.TempDir()
	d := filepath.Join(base, "a", "b")
	if err := Dir(d); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "a"), d} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != DirMode {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), DirMode)
		}
	}
}

func TestDirRefusesWorldWritable(t *testing.T) {
	d := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	err := Dir(d)
	var ue *UntrustedError
	if !errors.As(err, &ue) || ue.Path != d || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("Dir(0777) = %v, want an UntrustedError naming %s", err, d)
	}
}

func TestDirRefusesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	d := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	err := Dir(d)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 1234") {
		t.Fatalf("Dir(owned by 1234) = %v", err)
	}
}

func TestOpenFileRefusesSymlink(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "target")
	os.WriteFile(target, []byte("x"), 0o600)
	link := filepath.Join(d, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(link, os.O_RDWR|os.O_APPEND|os.O_CREATE); err == nil {
		t.Fatal("OpenFile followed a symbolic link")
	}
	f, err := OpenFile(filepath.Join(d, "new"), os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	if fi.Mode().Perm() != FileMode&^0o022 && fi.Mode().Perm() != FileMode {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
}
