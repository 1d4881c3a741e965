package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionForms: orch version -json (which failed with "unknown
// shorthand flag 'j'"), orch --version and orch -version.
func TestVersionForms(t *testing.T) {
	r := orch(t, t.TempDir(), nil, "version", "-json").want(t, 0)
	var v struct{ Version, Go, Platform string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != "dev" || !strings.HasPrefix(v.Go, "go") || !strings.Contains(v.Platform, "/") {
		t.Errorf("version -json: %v %q", err, r.stdout)
	}
	for _, flag := range []string{"--version", "-version"} {
		if r := orch(t, t.TempDir(), nil, flag).want(t, 0); r.stdout != "orch dev\n" {
			t.Errorf("orch %s = %q", flag, r.stdout)
		}
	}
}

// TestUnknownFlagSuggests: an unknown flag is named as written, with the
// nearest flag of the command.
func TestUnknownFlagSuggests(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", "-jsn"}, "unknown flag -jsn; did you mean -json?"},
		{[]string{"plan", "--detailed-exitcod"}, "unknown flag -detailed-exitcod; did you mean -detailed-exitcode?"},
		{[]string{"apply", "-auto-aprove"}, "unknown flag -auto-aprove; did you mean -auto-approve?"},
		{[]string{"logs", "-follw", "api"}, "unknown flag -follw; did you mean -follow?"},
		{[]string{"validate", "-zzzzzz"}, "Error: unknown flag -zzzzzz\nRun 'orch validate -help' for usage.\n"},
		{[]string{"plan", "-chdir=" + dir}, "-chdir must come before the subcommand"},
	} {
		r := orch(t, dir, nil, tc.args...).want(t, 1)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("orch %v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}

// TestChdir: orch -chdir=DIR CMD runs CMD in DIR, as Terraform does; the
// settings file and -var-file are read from there.
func TestChdir(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig, "p.vars": "port = 9090\n"})
	elsewhere := t.TempDir()
	r := orch(t, elsewhere, nil, "-chdir="+dir, "validate").want(t, 0)
	if !strings.Contains(r.stdout, "Success!") {
		t.Errorf("-chdir=DIR validate: %q", r.stdout)
	}
	r = orch(t, elsewhere, nil, "-no-color", "-chdir", dir, "graph", "-var-file", "p.vars").want(t, 0)
	if !strings.Contains(r.stdout, "daemon.api") {
		t.Errorf("-chdir DIR graph -var-file: %q", r.stdout)
	}
	r = orch(t, elsewhere, nil, "-chdir="+filepath.Join(dir, "nope"), "validate").want(t, 1)
	if !strings.Contains(r.stderr, "-chdir="+filepath.Join(dir, "nope")+": no such file or directory") {
		t.Errorf("-chdir to nowhere: %q", r.stderr)
	}
}

// TestCompletion: cobra's completion scripts for bash, zsh and fish.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := orch(t, t.TempDir(), nil, "completion", sh).want(t, 0)
		if !strings.Contains(r.stdout, "orch") || len(r.stdout) < 1000 {
			t.Errorf("completion %s: %d bytes", sh, len(r.stdout))
		}
	}
	// The completion itself: orch's subcommands.
	r := orch(t, t.TempDir(), nil, "__complete", "st").want(t, 0)
	if !strings.Contains(r.stdout, "status") {
		t.Errorf("__complete st: %q", r.stdout)
	}
}

// TestGraphJSON: graph -json lists the nodes and the edges from dependent
// to dependency.
func TestGraphJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig})
	r := orch(t, dir, nil, "graph", "-json").want(t, 0)
	var g struct {
		Nodes []string
		Edges []struct{ From, To string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatal(err, r.stdout)
	}
	found := false
	for _, e := range g.Edges {
		found = found || e.From == "daemon.api" && e.To == "daemon.db"
	}
	if len(g.Nodes) != 3 || !found {
		t.Errorf("graph -json: %s", r.stdout)
	}
}

// TestApplyDestroyJSON: apply and destroy -json print JSON lines: the
// plan, each step, and a summary; without -auto-approve they refuse.
func TestApplyDestroyJSON(t *testing.T) {
	dir := project(t, `
daemon "svc" {
  command = ["/bin/sleep", "600"]
}

job "once" {
  command = ["/bin/true"]
}
`)
	r := orch(t, dir, nil, "apply", "-json").want(t, 1)
	if !strings.Contains(r.stderr, "-json needs -auto-approve") {
		t.Errorf("apply -json without -auto-approve: %q", r.stderr)
	}
	types := func(out string) (seq []string, last map[string]any) {
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("not a JSON line: %q (%v)", sc.Text(), err)
			}
			seq = append(seq, l["type"].(string))
			last = l
		}
		return seq, last
	}
	r = orch(t, dir, nil, "apply", "-json", "-auto-approve").want(t, 0)
	seq, last := types(r.stdout)
	if len(seq) != 6 || seq[0] != "plan" || last["type"] != "summary" || last["add"] != 2.0 || last["ok"] != true {
		t.Errorf("apply -json:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, `"address":"daemon.svc","action":"create","phase":"done"`) {
		t.Errorf("apply -json: no done step for daemon.svc:\n%s", r.stdout)
	}
	r = orch(t, dir, nil, "destroy", "-json", "-auto-approve").want(t, 0)
	if _, last := types(r.stdout); last["destroy"] != 2.0 {
		t.Errorf("destroy -json:\n%s", r.stdout)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
