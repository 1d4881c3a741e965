package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/executor/agent"
)

// leakConfig quotes the sensitive variable tok in each place an error of
// orch can quote: a program that does not exist, an environment value a
// daemon prints before it exits (apply and orch up quote its last log
// lines), and a health URL that never answers (port 1 refuses).
const leakConfig = `variable "tok" {
  type      = string
  sensitive = true
}

daemon "nocmd" {
  command = ["/nonexistent/${var.tok}"]
}

daemon "leaky" {
  command = ["/bin/sh", "-c", "echo token=$TOKEN; exit 3"]
  env     = { TOKEN = var.tok }
  restart {
    policy = "never"
  }
}

daemon "web" {
  command = ["/bin/sleep", "1000"]
  health {
    http          = "http://u:${var.tok}@127.0.0.1:1/x/${var.tok}"
    interval      = "100ms"
    retries       = 1
    start_timeout = "1s"
  }
}
`

func newSecret(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "tok-" + hex.EncodeToString(b)
}

// noSecret fails when text, which orch wrote (what), holds secret.
func noSecret(t *testing.T, secret, what, text string) {
	t.Helper()
	if i := strings.Index(text, secret); i >= 0 {
		lo, hi := max(0, i-200), min(len(text), i+len(secret)+100)
		t.Errorf("%s holds the sensitive value:\n...%s...", what, text[lo:hi])
	}
}

// stateFiles returns what orch wrote in its state directory (the state
// file and its journal, the log daemon's own files), daemon logs aside:
// those are the daemons' own output.
func stateFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Join(dir, ".orch")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeType != 0 {
			return nil
		}
		if filepath.Base(filepath.Dir(p)) == "logs" && strings.HasPrefix(d.Name(), "daemon.") {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			out[p] = string(b)
		}
		return nil
	})
	if _, ok := out[filepath.Join(root, "state.db")]; !ok {
		t.Fatalf("no state file in %s", root)
	}
	return out
}

// TestSecretsNeverLeak gives a sensitive variable through ORCH_VAR_, -var
// and -var-file and looks for its value in everything orch writes: the
// output of plan (text, -json, -out file), apply, status -json and state
// show, and the state directory's files.
func TestSecretsNeverLeak(t *testing.T) {
	for _, source := range []string{"ORCH_VAR_tok", "-var", "-var-file"} {
		t.Run(source, func(t *testing.T) {
			secret := newSecret(t)
			dir := project(t, leakConfig)
			var env, args []string
			switch source {
			case "ORCH_VAR_tok":
				env = []string{"ORCH_VAR_tok=" + secret}
			case "-var":
				args = []string{"-var", "tok=" + secret}
			case "-var-file":
				vars := filepath.Join(t.TempDir(), "secret.vars")
				if err := os.WriteFile(vars, []byte("tok = \""+secret+"\"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"-var-file", vars}
			}
			with := func(a ...string) []string { return append(append([]string{}, a...), args...) }
			check := func(what string, r result) {
				t.Helper()
				noSecret(t, secret, what+" stdout", r.stdout)
				noSecret(t, secret, what+" stderr", r.stderr)
			}
			// plan -out refuses the missing program; apply tries it.
			check("plan", orch(t, dir, env, with("plan")...))
			check("plan -json", orch(t, dir, env, with("plan", "-json")...))
			r := orch(t, dir, env, with("apply", "-auto-approve")...).want(t, 1)
			check("apply", r)
			// the failures were reported, only without the value
			for _, want := range []string{"daemon.nocmd", "daemon.leaky", "daemon.web", "(sensitive value)"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("apply's stderr does not mention %s:\n%s", want, r.stderr)
				}
			}
			st := orch(t, dir, env, with("status", "-json")...)
			check("status -json", st)
			if !strings.Contains(st.stdout, `"last_error"`) {
				t.Errorf("status -json has no last_error:\n%s", st.stdout)
			}
			check("state show", orch(t, dir, env, "state", "show", "daemon.nocmd"))
			for name, text := range stateFiles(t, dir) {
				noSecret(t, secret, name, text)
			}

			// A plan that can be saved: without the missing program.
			ok := strings.Replace(leakConfig, `"/nonexistent/${var.tok}"`, `"/bin/sleep", "1000", var.tok`, 1)
			if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(ok), 0o644); err != nil {
				t.Fatal(err)
			}
			plan := filepath.Join(t.TempDir(), "saved.plan")
			check("plan -out", orch(t, dir, env, with("plan", "-out", plan)...).want(t, 0))
			b, err := os.ReadFile(plan)
			if err != nil {
				t.Fatal(err)
			}
			noSecret(t, secret, "the saved plan", string(b))
			// apply FILE needs the value again, and the same one.
			r = orch(t, dir, nil, "apply", plan).want(t, 1)
			if !strings.Contains(r.stderr, "does not hold the values of its sensitive variables (tok)") {
				t.Errorf("apply FILE without the value:\n%s", r.stderr)
			}
			other := "other-" + secret
			r = orch(t, dir, []string{"ORCH_VAR_tok=" + other}, "apply", plan).want(t, 1)
			if !strings.Contains(r.stderr, `another value of the sensitive variable "tok"`) {
				t.Errorf("apply FILE with another value:\n%s", r.stderr)
			}
			noSecret(t, other, "apply FILE with another value", r.stdout+r.stderr)
			r = orch(t, dir, env, append(append([]string{"apply"}, args...), plan)...)
			check("apply FILE", r)
			if !strings.Contains(r.stdout, "daemon.nocmd") {
				t.Errorf("apply FILE did not apply the plan:\n%s\n%s", r.stdout, r.stderr)
			}
			for name, text := range stateFiles(t, dir) {
				noSecret(t, secret, name, text)
			}
		})
	}
}

// TestSecretsNeverLeakFromUp runs the same configuration under orch up
// and looks for the value in its output, its events (replayed with
// -since all) and the agent API's status.
func TestSecretsNeverLeakFromUp(t *testing.T) {
	secret := newSecret(t)
	e := newEngineTest(t, leakConfig)
	e.env = []string{"ORCH_VAR_tok=" + secret}
	p := e.start("up")
	var events []string
	seen := map[string]bool{}
	e.stream("unhealthy and failed events", func(l string) bool {
		events = append(events, l)
		var ev struct {
			Type string
			Addr string `json:"address"`
		}
		json.Unmarshal([]byte(l), &ev)
		seen[ev.Type+" "+ev.Addr] = true
		return seen["unhealthy daemon.web"] && seen["failed daemon.nocmd"] && seen["exited daemon.leaky"]
	}, "events", "-json", "-since", "all", e.dir)
	noSecret(t, secret, "orch events -since all", strings.Join(events, "\n"))
	if !strings.Contains(strings.Join(events, "\n"), "(sensitive value)") {
		t.Errorf("no event says (sensitive value):\n%s", strings.Join(events, "\n"))
	}

	c, err := agent.Dial(e.socket())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	noSecret(t, secret, "the agent's status", string(b))
	if !strings.Contains(string(b), "last_error") {
		t.Errorf("the agent's status has no last_error: %s", b)
	}
	r := orch(t, e.dir, e.env, "status", "-json", e.dir)
	noSecret(t, secret, "status -json through the agent", r.stdout+r.stderr)
	for name, text := range stateFiles(t, e.dir) {
		noSecret(t, secret, name, text)
	}
	noSecret(t, secret, "orch up's output", p.output())
}
