package hostuser

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDenied: Denied names the first directory on the way to the working
// directory, or to the program, that another user may not enter, and a
// program it may not execute; nothing when the way is open, and nothing
// for orch's own user (nil) or root.
func TestDenied(t *testing.T) {
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} { // 0700 as made
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	open := filepath.Join(top, "open", "deep")
	shut := filepath.Join(top, "shut")
	inside := filepath.Join(shut, "inside")
	for _, d := range []string{open, inside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(shut, 0o700); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(open, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o744); err != nil {
		t.Fatal(err)
	}
	// Someone who owns none of it and is in none of its groups.
	other := &syscall.Credential{Uid: 64999, Gid: 64999}
	if why := Denied(other, open, "/bin/sh"); why != "" {
		t.Errorf("an open directory: %q", why)
	}
	why := Denied(other, inside, "/bin/sh")
	if !strings.Contains(why, "the working directory "+inside+" is not open to user 64999: "+shut+" (mode drwx------, owner ") {
		t.Errorf("a directory under one closed to the user: %q", why)
	}
	if why := Denied(other, open, prog); !strings.Contains(why, "the program "+prog+" (mode -rwxr--r--, owner ") || !strings.Contains(why, "may not be executed by user 64999") {
		t.Errorf("a program the user may not execute: %q", why)
	}
	if why := Denied(other, open, filepath.Join(inside, "prog")); !strings.Contains(why, "the program "+filepath.Join(inside, "prog")+" is not open to user 64999: "+shut) {
		t.Errorf("a program in a directory closed to the user: %q", why)
	}
	if Denied(nil, inside, prog) != "" || Denied(&syscall.Credential{Uid: 0}, inside, prog) != "" {
		t.Error("orch's own user, or root, denied")
	}
	// The group's bits for a member of the directory's group.
	st, _ := os.Stat(shut)
	gid := st.Sys().(*syscall.Stat_t).Gid
	if err := os.Chmod(shut, 0o710); err != nil {
		t.Fatal(err)
	}
	if why := Denied(&syscall.Credential{Uid: 64999, Gid: 64999, Groups: []uint32{gid}}, inside, "/bin/sh"); why != "" {
		t.Errorf("a member of the directory's group, which may enter it: %q", why)
	}
}
