package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/state/etcdstate/etcdtest"
)

// TestBackendSetting: the backend setting through the built binary. The
// flag -backend beats ORCH_BACKEND, which beats the settings file's
// backend key, which beats the configuration's orch { backend } block;
// each apply's record lands under the prefix of the one that won, in a
// real etcd. backend = "file" keeps the state in the state file whatever
// the block says. A bad value, wherever it is written, is one error
// naming where.
func TestBackendSetting(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ep := strings.TrimPrefix(c.Endpoints()[0], "http://")
	dir := project(t, `orch {
  name = "bs"
  backend "etcd" {
    endpoints = ["`+ep+`"]
    prefix    = "/orch/hcl"
  }
}

job "j" {
  command = ["/bin/true"]
}
`)
	settings := filepath.Join(t.TempDir(), "settings.toml")
	writeSettings := func(body string) {
		t.Helper()
		if err := os.WriteFile(settings, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cli := c.Client()
	recorded := func(prefix string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := cli.Get(ctx, prefix+"/instances/job.j")
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Kvs) == 1
	}
	all := []string{"/orch/flag", "/orch/env", "/orch/file", "/orch/hcl"}
	// apply runs orch apply with a fresh state directory (each backend
	// leaves its pointer there) and returns the prefixes now holding the
	// job's record that did not before.
	apply := func(env []string, args ...string) []string {
		t.Helper()
		before := map[string]bool{}
		for _, p := range all {
			before[p] = recorded(p)
		}
		args = append([]string{"apply", "-auto-approve", "-state-dir", t.TempDir(), "-settings", settings}, args...)
		orch(t, dir, env, args...).want(t, 0)
		var got []string
		for _, p := range all {
			if recorded(p) && !before[p] {
				got = append(got, p)
			}
		}
		return got
	}
	writeSettings(`backend = "etcd://` + ep + `/orch/file"` + "\n")
	env := []string{"ORCH_BACKEND=etcd://" + ep + "/orch/env"}
	for _, step := range []struct {
		what string
		env  []string
		args []string
		want string
	}{
		{"flag, env, file and block", env, []string{"-backend", "etcd://" + ep + "/orch/flag"}, "/orch/flag"},
		{"env, file and block", env, nil, "/orch/env"},
		{"file and block", nil, nil, "/orch/file"},
	} {
		if got := apply(step.env, step.args...); len(got) != 1 || got[0] != step.want {
			t.Fatalf("%s: the record went to %v, want %s", step.what, got, step.want)
		}
	}
	writeSettings("")
	if got := apply(nil); len(got) != 1 || got[0] != "/orch/hcl" {
		t.Fatalf("the block alone: the record went to %v, want /orch/hcl", got)
	}
	// backend = "file": the state file, though the block names etcd.
	writeSettings(`backend = "file"` + "\n")
	stateDir := t.TempDir()
	orch(t, dir, nil, "apply", "-auto-approve", "-state-dir", stateDir, "-settings", settings).want(t, 0)
	if _, err := os.Stat(filepath.Join(stateDir, "state.db")); err != nil {
		t.Fatalf("backend = \"file\": no state file: %v", err)
	}

	// One error each, naming where the bad value was written.
	writeSettings(`backend = "etcd://` + ep + `/orch/bad/"` + "\n")
	for _, bad := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"-backend", "etc://" + ep}, `Error: invalid backend in --backend: "etc://` + ep + `": unknown backend`},
		{[]string{"ORCH_BACKEND=etcd://" + ep + "/p?lock_ttl=1.5s"}, nil, `Error: invalid backend in environment variable ORCH_BACKEND: "etcd://` + ep + `/p?lock_ttl=1.5s": lock_ttl is a whole number of seconds`},
		{nil, []string{"-settings", settings}, `Error: invalid backend in settings file ` + settings + `: "etcd://` + ep + `/orch/bad/": the prefix must not end with /`},
		{nil, []string{"-backend", "etcd://,"}, `Error: invalid backend in --backend: "etcd://,": an endpoint is empty`},
	} {
		for _, cmd := range [][]string{{"agent", "-node", "n1"}, {"status"}, {"plan"}} {
			r := orch(t, dir, bad.env, append(cmd, bad.args...)...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, bad.want) || strings.Count(r.stderr, "Error:") != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("orch %v %v (env %v): exit %d\n%s\nwant one line starting %q", cmd, bad.args, bad.env, r.code, r.stderr, bad.want)
			}
		}
	}
	writeSettings("backend = 3\n")
	r := orch(t, dir, nil, "status", "-settings", settings).want(t, 1)
	if !strings.Contains(r.stderr, "Error: invalid backend in settings file "+settings+": 3 is not a string") {
		t.Errorf("backend = 3: %s", r.stderr)
	}
	// orch settings shows where it came from.
	r = orch(t, dir, []string{"ORCH_BACKEND=file"}, "settings").want(t, 0)
	if !strings.Contains(r.stdout, "backend       file   env ORCH_BACKEND") {
		t.Errorf("orch settings:\n%s", r.stdout)
	}
}
