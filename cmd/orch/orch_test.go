package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// orchBin is the orch binary built once by TestMain; every test runs it as
// a user would.
// orchBin is the orch binary testMain builds into testBinDir, which it
// removes at the end (with the example plugins built there).
var orchBin, testBinDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orch-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testBinDir = dir
	orchBin = filepath.Join(dir, "orch")
	build := exec.Command(goTool(), "build", "-o", orchBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building orch:", err)
		return 1
	}
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

type result struct {
	stdout, stderr string
	code           int
}

// orch runs the binary in dir with a clean environment: no ORCH_*
// variables, HOME and XDG_CONFIG_HOME in fresh temporary directories (so
// the user's own settings file is never read), plus env.
func orch(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(orchBin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "xdg"), "PATH=" + os.Getenv("PATH")}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running orch %v: %v", args, err)
	}
	return res
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// writeFiles creates a directory holding files (name -> content).
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const validConfig = `variable "port" {
  type    = number
  default = 8080
}

daemon "db" {
  command = ["/bin/sleep", "1000"]
}

daemon "api" {
  command    = ["/bin/echo", var.port]
  depends_on = [daemon.db]
}
`

// invalidConfig refers to an undeclared daemon on line 3.
const invalidConfig = `daemon "api" {
  command    = ["/bin/true"]
  depends_on = [daemon.nope]
}
`

func TestValidateOK(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig})
	r := orch(t, dir, nil, "validate").want(t, 0)
	if strings.TrimSpace(r.stdout) != "Success! The configuration is valid." {
		t.Errorf("stdout = %q", r.stdout)
	}
	// DIR as an argument, from elsewhere.
	orch(t, t.TempDir(), nil, "validate", dir).want(t, 0)
}

func TestValidateInvalid(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": invalidConfig})
	r := orch(t, dir, nil, "validate").want(t, 1)
	if strings.Contains(r.stdout, "Success") {
		t.Errorf("stdout claims success: %q", r.stdout)
	}
	for _, want := range []string{"Error: ", "on main.hcl line 3", "daemon.nope"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("colour codes on a stderr that is not a terminal:\n%q", r.stderr)
	}
	// From the parent directory, the file is named as it can be opened.
	r = orch(t, filepath.Dir(dir), nil, "validate", filepath.Base(dir)).want(t, 1)
	if want := "on " + filepath.Join(filepath.Base(dir), "main.hcl") + " line 3"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	// A directory without configuration is an error too.
	orch(t, t.TempDir(), nil, "validate").want(t, 1)
}

type jsonReport struct {
	FormatVersion string `json:"format_version"`
	Valid         bool   `json:"valid"`
	ErrorCount    int    `json:"error_count"`
	WarningCount  int    `json:"warning_count"`
	Diagnostics   []struct {
		Severity string `json:"severity"`
		Summary  string `json:"summary"`
		Detail   string `json:"detail"`
		Range    *struct {
			Filename string `json:"filename"`
			Start    struct{ Line, Column, Byte int }
			End      struct{ Line, Column, Byte int }
		} `json:"range"`
		Snippet *struct {
			Context              *string `json:"context"`
			Code                 string  `json:"code"`
			StartLine            int     `json:"start_line"`
			HighlightStartOffset int     `json:"highlight_start_offset"`
			HighlightEndOffset   int     `json:"highlight_end_offset"`
		} `json:"snippet"`
	} `json:"diagnostics"`
}

func parseReport(t *testing.T, r result) jsonReport {
	t.Helper()
	var rep jsonReport
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, r.stdout)
	}
	return rep
}

func TestValidateJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig})
	rep := parseReport(t, orch(t, dir, nil, "validate", "-json").want(t, 0))
	if !rep.Valid || rep.FormatVersion != "1.0" || rep.ErrorCount != 0 || rep.Diagnostics == nil {
		t.Errorf("valid report = %+v", rep)
	}

	dir = writeFiles(t, map[string]string{"main.hcl": invalidConfig})
	r := orch(t, dir, nil, "validate", "--json").want(t, 1)
	if r.stderr != "" {
		t.Errorf("stderr with -json: %q", r.stderr)
	}
	rep = parseReport(t, r)
	if rep.Valid || rep.ErrorCount != 1 || len(rep.Diagnostics) != 1 {
		t.Fatalf("invalid report = %+v", rep)
	}
	d := rep.Diagnostics[0]
	if d.Severity != "error" || d.Summary == "" || d.Range == nil || d.Snippet == nil {
		t.Fatalf("diagnostic = %+v", d)
	}
	if d.Range.Filename != "main.hcl" || d.Range.Start.Line != 3 || d.Range.Start.Column < 1 {
		t.Errorf("range = %+v, want main.hcl line 3", *d.Range)
	}
	s := d.Snippet
	if s.StartLine != 3 || s.Context == nil || *s.Context != `daemon "api"` {
		t.Errorf("snippet = %+v", *s)
	}
	if hl := s.Code[s.HighlightStartOffset:s.HighlightEndOffset]; !strings.Contains(hl, "daemon.nope") {
		t.Errorf("highlight %q in %q does not show daemon.nope", hl, s.Code)
	}
}

func TestValidateVariables(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.hcl": "variable \"n\" {\n  type = number\n}\n\ndaemon \"x\" {\n  command = [\"/bin/echo\", var.n]\n}\n",
		"ok.vars":  "n = 3\n",
		"bad.vars": "n = \"three\"\n",
	})
	orch(t, dir, nil, "validate").want(t, 1)
	orch(t, dir, nil, "validate", "-var", "n=1").want(t, 0)
	orch(t, dir, nil, "validate", "-var=n=1").want(t, 0)
	orch(t, dir, nil, "validate", "--var", "n=x").want(t, 1)
	orch(t, dir, nil, "validate", "-var-file", "ok.vars").want(t, 0)
	orch(t, dir, nil, "validate", "-var-file=bad.vars").want(t, 1)
	// -var applies after -var-file.
	orch(t, dir, nil, "validate", "-var-file", "bad.vars", "-var", "n=2").want(t, 0)
	orch(t, dir, []string{"ORCH_VAR_n=5"}, "validate").want(t, 0)
	r := orch(t, dir, nil, "validate", "-var-file", "missing.vars").want(t, 1)
	if !strings.Contains(r.stderr, "missing.vars") {
		t.Errorf("stderr does not name the missing file:\n%s", r.stderr)
	}
}

func TestGraph(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": validConfig})
	r := orch(t, dir, nil, "graph").want(t, 0)
	for _, want := range []string{"digraph orch {", `"daemon.api" -> "daemon.db";`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("graph lacks %q:\n%s", want, r.stdout)
		}
	}
	dir = writeFiles(t, map[string]string{"main.hcl": invalidConfig})
	r = orch(t, dir, nil, "graph").want(t, 1)
	if r.stdout != "" || !strings.Contains(r.stderr, "main.hcl line 3") {
		t.Errorf("invalid graph: stdout %q, stderr:\n%s", r.stdout, r.stderr)
	}
}

const unformatted = "daemon \"x\" {\n    command = [\"/bin/true\"]\n  env = { A = \"1\" }\n}\n"
const formatted = "daemon \"x\" {\n  command = [\"/bin/true\"]\n  env     = { A = \"1\" }\n}\n"

func TestFmtCheck(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": formatted})
	r := orch(t, dir, nil, "fmt", "-check").want(t, 0)
	if r.stdout != "" {
		t.Errorf("stdout for a formatted dir: %q", r.stdout)
	}
	dir = writeFiles(t, map[string]string{"a.hcl": formatted, "b.hcl": unformatted})
	r = orch(t, dir, nil, "fmt", "-check").want(t, 1)
	if strings.TrimSpace(r.stdout) != "b.hcl" {
		t.Errorf("stdout = %q, want b.hcl", r.stdout)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "b.hcl")); string(got) != unformatted {
		t.Errorf("-check wrote the file")
	}
	orch(t, dir, nil, "fmt", "--check", "a.hcl").want(t, 0)
	orch(t, dir, nil, "fmt", "--check", "b.hcl").want(t, 1)
}

func TestFmtDiff(t *testing.T) {
	dir := writeFiles(t, map[string]string{"b.hcl": unformatted})
	r := orch(t, dir, nil, "fmt", "-check", "-diff", "-list=false").want(t, 1)
	want := "--- old/b.hcl\n+++ new/b.hcl\n@@ -1,5 +1,5 @@\n daemon \"x\" {\n-    command = [\"/bin/true\"]\n-  env = { A = \"1\" }\n+  command = [\"/bin/true\"]\n+  env     = { A = \"1\" }\n }\n"
	if !strings.HasPrefix(r.stdout, "--- old/b.hcl\n+++ new/b.hcl\n") || !strings.Contains(r.stdout, "-    command = [\"/bin/true\"]\n") ||
		!strings.Contains(r.stdout, "+  env     = { A = \"1\" }\n") {
		t.Errorf("diff:\n%s\nwant like:\n%s", r.stdout, want)
	}
}

func TestFmtWrites(t *testing.T) {
	dir := writeFiles(t, map[string]string{"b.hcl": unformatted, "c.hcl.json": `{"daemon": {"x": {"command":   ["/bin/true"]}}}`})
	p := filepath.Join(dir, "b.hcl")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r := orch(t, dir, nil, "fmt").want(t, 0)
	if strings.TrimSpace(r.stdout) != "b.hcl" {
		t.Errorf("stdout = %q, want b.hcl", r.stdout)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != formatted {
		t.Fatalf("b.hcl = %q (%v), want %q", got, err, formatted)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "c.hcl.json")); !strings.Contains(string(got), ":   [") {
		t.Errorf("fmt touched a .hcl.json file: %s", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("left files behind: %v", entries)
	}
	// A second run has nothing to do.
	if r := orch(t, dir, nil, "fmt").want(t, 0); r.stdout != "" {
		t.Errorf("second run printed %q", r.stdout)
	}
	// -write=false reports without writing.
	if err := os.WriteFile(p, []byte(unformatted), 0o600); err != nil {
		t.Fatal(err)
	}
	orch(t, dir, nil, "fmt", "-write=false").want(t, 0)
	if got, _ := os.ReadFile(p); string(got) != unformatted {
		t.Errorf("-write=false wrote the file")
	}
	// Standard input to standard output.
	cmd := exec.Command(orchBin, "fmt", "-")
	cmd.Stdin = strings.NewReader(unformatted)
	out, err := cmd.Output()
	if err != nil || string(out) != formatted {
		t.Errorf("fmt - = %q (%v), want %q", out, err, formatted)
	}
}

func TestFmtSyntaxError(t *testing.T) {
	bad := "daemon \"x\" {\n  command = [\"/bin/true\"\n  env = {}\n}\n"
	dir := writeFiles(t, map[string]string{"bad.hcl": bad, "good.hcl": unformatted})
	r := orch(t, dir, nil, "fmt").want(t, 1)
	if !strings.Contains(r.stderr, "Error: ") || !strings.Contains(r.stderr, "on bad.hcl line ") || !strings.Contains(r.stderr, `daemon "x"`) {
		t.Errorf("stderr lacks a diagnostic with a snippet:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "bad.hcl")); string(got) != bad {
		t.Errorf("the broken file was rewritten")
	}
	// The other files are still formatted.
	if got, _ := os.ReadFile(filepath.Join(dir, "good.hcl")); string(got) != formatted {
		t.Errorf("good.hcl = %q", got)
	}
	orch(t, dir, nil, "fmt", "nonexistent.hcl").want(t, 1)
	orch(t, dir, nil, "fmt", "x.hcl.json").want(t, 1)
}

// settingsOf runs orch settings -json and returns key -> [value, source].
func settingsOf(t *testing.T, env []string, args ...string) map[string][2]string {
	t.Helper()
	r := orch(t, t.TempDir(), env, append(args, "settings", "-json")...).want(t, 0)
	var out struct {
		File     string
		Settings []struct {
			Key    string
			Value  any
			Source string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("settings -json: %v\n%s", err, r.stdout)
	}
	m := map[string][2]string{}
	for _, s := range out.Settings {
		m[s.Key] = [2]string{fmt.Sprint(s.Value), s.Source}
	}
	return m
}

func TestSettingsPrecedence(t *testing.T) {
	xdg := t.TempDir()
	file := filepath.Join(xdg, "orch", "settings.toml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("log_level = \"warn\"\nparallelism = 4\nstate_dir = \"/from/file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_CONFIG_HOME=" + xdg, "ORCH_PARALLELISM=7", "ORCH_STATE_DIR=/from/env", "ORCH_VAR_parallelism=99"}
	got := settingsOf(t, env, "--state-dir", "/from/flag")
	want := map[string][2]string{
		"state_dir":    {"/from/flag", "flag"},
		"parallelism":  {"7", "env ORCH_PARALLELISM"},
		"log_level":    {"warn", "file " + file},
		"agent_socket": {"", "default"},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}

	// Defaults with no file.
	got = settingsOf(t, nil)
	for k, w := range map[string][2]string{
		"state_dir": {"", "default"}, "log_level": {"info", "default"},
		"parallelism": {"10", "default"}, "agent_socket": {"", "default"},
	} {
		if got[k] != w {
			t.Errorf("default %s = %v, want %v", k, got[k], w)
		}
	}

	// --settings replaces the XDG file; single-dash works before the command.
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte("agent_socket = \"/tmp/a.sock\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got = settingsOf(t, []string{"XDG_CONFIG_HOME=" + xdg}, "-settings", other)
	if got["agent_socket"] != [2]string{"/tmp/a.sock", "file " + other} || got["log_level"] != [2]string{"info", "default"} {
		t.Errorf("with --settings: %v", got)
	}

	// The table names the source too.
	r := orch(t, t.TempDir(), []string{"ORCH_LOG_LEVEL=debug"}, "settings", "--parallelism=3").want(t, 0)
	for _, want := range []string{"KEY", "log_level     debug  env ORCH_LOG_LEVEL", "parallelism   3      flag"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	xdg := t.TempDir()
	file := filepath.Join(xdg, "orch", "settings.toml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"XDG_CONFIG_HOME=" + xdg}
	for _, tc := range []struct {
		file string
		env  []string
		args []string
		want []string
	}{
		{file: "paralelism = 3\n", want: []string{file, `paralelism`}},
		{file: "[server]\nport = 3\n", want: []string{file, "server.port"}},
		{file: "log_level = \"loud\"\n", want: []string{file, "log_level", `"loud"`}},
		{file: "parallelism = 0\n", want: []string{file, "parallelism"}},
		{file: "parallelism = \"4\"\n", want: []string{file, "parallelism"}},
		{file: "log_level = \n", want: []string{file}},
		{env: []string{"ORCH_PARALLELISM=many"}, want: []string{"ORCH_PARALLELISM", `"many"`}},
		{args: []string{"--log-level", "verbose"}, want: []string{"--log-level", "verbose"}},
		{args: []string{"--settings", filepath.Join(xdg, "missing.toml")}, want: []string{"missing.toml"}},
	} {
		write(tc.file)
		r := orch(t, t.TempDir(), append(append([]string{}, env...), tc.env...), append(tc.args, "settings")...).want(t, 1)
		if strings.Count(r.stderr, "Error:") != 1 {
			t.Errorf("%+v: want exactly one error, got:\n%s", tc, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%+v: error lacks %q:\n%s", tc, w, r.stderr)
			}
		}
	}
	// Other commands refuse bad settings too, but version still works.
	write("nope = 1\n")
	orch(t, writeFiles(t, map[string]string{"main.hcl": validConfig}), env, "validate").want(t, 1)
	orch(t, t.TempDir(), env, "version").want(t, 0)
	orch(t, t.TempDir(), env, "help", "validate").want(t, 0)
	orch(t, t.TempDir(), env, "validate", "--help").want(t, 0)
}

func TestSingleDashFlags(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": invalidConfig, "f.hcl": unformatted})
	parseReport(t, orch(t, dir, nil, "validate", "-json").want(t, 1))
	parseReport(t, orch(t, dir, nil, "validate", "-json=true").want(t, 1))
	parseReport(t, orch(t, dir, nil, "-log-level", "debug", "validate", "-json", ".").want(t, 1))
	r := orch(t, dir, nil, "fmt", "-check", "-diff", "f.hcl").want(t, 1)
	if !strings.Contains(r.stdout, "+++ new/f.hcl") {
		t.Errorf("fmt -check -diff printed no diff:\n%s", r.stdout)
	}
	// An unknown single-dash flag is still an error, not a set of shorthands.
	r = orch(t, dir, nil, "validate", "-bogus").want(t, 1)
	if !strings.Contains(r.stderr, "-bogus") && !strings.Contains(r.stderr, "-b") {
		t.Errorf("stderr = %q", r.stderr)
	}
	// -help works like --help.
	if r := orch(t, dir, nil, "fmt", "-help").want(t, 0); !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("fmt -help:\n%s", r.stdout)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, c := range []string{"validate", "fmt", "graph", "settings", "version"} {
		r := orch(t, t.TempDir(), nil, c, "--help").want(t, 0)
		if !strings.Contains(r.stdout, "Usage:\n  orch "+c) || len(strings.SplitN(r.stdout, "\n\n", 2)[0]) < 100 {
			t.Errorf("%s --help lacks a description or usage:\n%s", c, r.stdout)
		}
	}
	if r := orch(t, t.TempDir(), nil, "version").want(t, 0); r.stdout != "orch dev\n" {
		t.Errorf("version = %q", r.stdout)
	}
	r := orch(t, t.TempDir(), nil, "frobnicate").want(t, 1)
	if !strings.Contains(r.stderr, "unknown command") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestExamples validates every example configuration in the repository.
func TestExamples(t *testing.T) {
	entries, err := os.ReadDir("../../examples")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("the repository has no examples directory yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir, _ := filepath.Abs(filepath.Join("../../examples", e.Name()))
		t.Run(e.Name(), func(t *testing.T) {
			hcl, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
			js, _ := filepath.Glob(filepath.Join(dir, "*.hcl.json"))
			if len(hcl)+len(js) == 0 {
				t.Skipf("examples/%s has no configuration files yet", e.Name())
			}
			orch(t, dir, nil, "validate").want(t, 0)
			orch(t, dir, nil, "graph").want(t, 0)
		})
	}
}

// TestImportDirection holds the layering of docs/CONVENTIONS.md: spec
// imports no other orch package, and the planner stays pure.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/orch-dev/orch"
	deps := func(t *testing.T, pkg string) []string {
		t.Helper()
		cmd := exec.Command(goTool(), "list", "-deps", pkg)
		cmd.Dir = "../.."
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
		}
		return strings.Fields(string(out))
	}
	t.Run("spec", func(t *testing.T) {
		for _, d := range deps(t, "./spec") {
			if strings.HasPrefix(d, mod+"/") && d != mod+"/spec" {
				t.Errorf("spec depends on %s", d)
			}
		}
	})
	t.Run("planner", func(t *testing.T) {
		gofiles, _ := filepath.Glob("../../planner/*.go")
		var nonTest int
		for _, f := range gofiles {
			if !strings.HasSuffix(f, "_test.go") {
				nonTest++
			}
		}
		if nonTest == 0 {
			t.Skip("planner has no Go files yet")
		}
		forbidden := []string{mod + "/providers/", mod + "/executor", mod + "/cmd/"}
		for _, d := range deps(t, "./planner") {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("planner depends on %s (planner must stay pure: no process, executor or CLI packages)", d)
				}
			}
		}
	})
}
