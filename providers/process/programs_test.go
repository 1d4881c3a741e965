package process

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeProgram(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestProgramCache(t *testing.T) {
	base := t.TempDir()
	d1, d2, d3 := filepath.Join(base, "1"), filepath.Join(base, "2"), filepath.Join(base, "3")
	for _, d := range []string{d1, d2, d3} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := strings.Join([]string{d1, d2, d3}, ":")
	clock := time.Unix(1000, 0)
	c := &programCache{now: func() time.Time { return clock }}
	look := func(want string) {
		t.Helper()
		got, err := c.lookPath("prog", path, "")
		if err != nil {
			t.Fatalf("lookPath: %v", err)
		}
		if got != want {
			t.Fatalf("lookPath = %q, want %q", got, want)
		}
	}

	// A failure is not remembered: the program is found as soon as it is
	// installed.
	if _, err := c.lookPath("prog", path, ""); err == nil || !strings.Contains(err.Error(), "not found in the daemon's PATH") {
		t.Fatalf("lookPath of a missing program: %v", err)
	}
	writeProgram(t, filepath.Join(d2, "prog"))
	look(filepath.Join(d2, "prog"))

	// Within programTTL the memo answers: a program installed since
	// earlier in the PATH is not seen yet; after it, it is.
	writeProgram(t, filepath.Join(d1, "prog"))
	clock = clock.Add(programTTL / 2)
	look(filepath.Join(d2, "prog"))
	clock = clock.Add(programTTL)
	look(filepath.Join(d1, "prog"))

	// A remembered program that is gone, or no longer executable, is
	// searched for again at once.
	if err := os.Remove(filepath.Join(d1, "prog")); err != nil {
		t.Fatal(err)
	}
	look(filepath.Join(d2, "prog"))
	writeProgram(t, filepath.Join(d3, "prog"))
	if err := os.Chmod(filepath.Join(d2, "prog"), 0o644); err != nil {
		t.Fatal(err)
	}
	look(filepath.Join(d3, "prog"))
	if err := os.Remove(filepath.Join(d3, "prog")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.lookPath("prog", path, ""); err == nil {
		t.Fatal("lookPath found a program that is gone")
	}

	// The key is the whole search: another PATH or directory is its own.
	writeProgram(t, filepath.Join(d3, "prog"))
	look(filepath.Join(d3, "prog"))
	got, err := c.lookPath("prog", "bin", base)
	if err == nil {
		t.Fatalf("lookPath in %s/bin = %q, want not found", base, got)
	}
	rel, err := c.lookPath("prog", "3", base)
	if err != nil || rel != filepath.Join(d3, "prog") {
		t.Fatalf("lookPath with a relative PATH = %q, %v", rel, err)
	}
}
