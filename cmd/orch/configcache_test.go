package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The evaluated-configuration cache (spec/cache.go) through the binary:
// orch plan prints the same plan, and the same error at the same
// file:line:col, whether the blocks come from the cache or not.
func TestPlanConfigCache(t *testing.T) {
	var b strings.Builder
	b.WriteString("variable \"tag\" {\n  default = \"v1\"\n}\n\nlocals {\n  bin = \"/bin/sleep\"\n}\n\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "daemon \"d%02d\" {\n  command = [local.bin, \"%d\"]\n  env     = { TAG = var.tag }\n}\n\n", i, 1000+i)
	}
	b.WriteString("daemon \"last\" {\n  command = [\"/bin/sleep\", daemon.d01.env.TAG]\n}\n")
	base := b.String()
	dir := writeFiles(t, map[string]string{"main.hcl": base})
	cache := filepath.Join(dir, ".orch", "config-cache")
	// plan with the cache, and again with the cache deleted first
	both := func(args ...string) (cached, fresh result) {
		t.Helper()
		orch(t, dir, nil, args...) // writes the cache
		if _, err := os.Stat(cache); err != nil {
			t.Fatalf("no cache after orch %v: %v", args, err)
		}
		cached = orch(t, dir, nil, args...)
		if err := os.Remove(cache); err != nil {
			t.Fatal(err)
		}
		fresh = orch(t, dir, nil, args...)
		if cached.code != fresh.code || cached.stdout != fresh.stdout || cached.stderr != fresh.stderr {
			t.Fatalf("orch %v differs with the cache:\n%d %s%s\nwithout:\n%d %s%s", args,
				cached.code, cached.stdout, cached.stderr, fresh.code, fresh.stdout, fresh.stderr)
		}
		return cached, fresh
	}
	// orch validate makes nothing; the first orch plan makes the state
	// directory and writes the cache there from its own load
	orch(t, dir, nil, "validate").want(t, 0)
	if _, err := os.Lstat(filepath.Join(dir, ".orch")); err == nil {
		t.Fatal("orch validate made the state directory")
	}
	orch(t, dir, nil, "plan").want(t, 0)
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no cache after the first orch plan: %v", err)
	}
	r, _ := both("plan", "-no-color")
	if !strings.Contains(r.stdout, "Plan: 41 to add") {
		t.Fatalf("plan:\n%s", r.stdout)
	}
	r, _ = both("plan", "-no-color", "-var", "tag=v2")
	if !strings.Contains(r.stdout, `"v2"`) {
		t.Fatalf("plan with -var tag=v2 does not show v2:\n%s", r.stdout)
	}
	// an error in one block among cached ones
	bad := strings.Replace(base, `[local.bin, "1017"]`, `[local.bin, nope.x]`, 1)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	orch(t, dir, nil, "plan").want(t, 0+1)
	// the cache written by the valid load is there; the invalid load
	// reads it and must report as without it
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	orch(t, dir, nil, "plan").want(t, 0)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	withCache := orch(t, dir, nil, "plan", "-no-color")
	os.Remove(cache)
	without := orch(t, dir, nil, "plan", "-no-color")
	if withCache.stderr != without.stderr || withCache.code != without.code {
		t.Fatalf("the error differs with the cache:\n%s\nwithout:\n%s", withCache.stderr, without.stderr)
	}
	line := strings.Count(bad[:strings.Index(bad, "nope.x")], "\n") + 1
	if want := fmt.Sprintf("on main.hcl line %d, in daemon \"d17\"", line); !strings.Contains(withCache.stderr, want) {
		t.Fatalf("the error does not point at %s:\n%s", want, withCache.stderr)
	}
}
