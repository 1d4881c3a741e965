package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// programDir writes files into a fresh configuration directory and returns
// it; bin/tool there is a real executable and bin/data a file without the x
// permission.
func programDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "tool"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "data"), []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadPrograms(t *testing.T, dir string, environ ...string) hcl.Diagnostics {
	t.Helper()
	_, diags := Load(dir, Options{Schemas: testSchemas, CheckPrograms: true, Environ: environ})
	return diags
}

// wantProgramDiag checks that diags is one diagnostic of severity sev and
// summary at main.hcl line:col whose detail holds detail.
func wantProgramDiag(t *testing.T, diags hcl.Diagnostics, sev hcl.DiagnosticSeverity, summary string, line, col int, detail string) {
	t.Helper()
	if len(diags) != 1 {
		t.Fatalf("want one diagnostic, got %d:\n%s", len(diags), renderDiags(diags))
	}
	d := diags[0]
	if d.Severity != sev || d.Summary != summary || d.Subject == nil || d.Subject.Start.Line != line ||
		d.Subject.Start.Column != col || !strings.Contains(d.Detail, detail) {
		t.Fatalf("want %v %q at %d:%d with %q, got:\n%s (severity %v)", sev, summary, line, col, detail, renderDiags(diags), d.Severity)
	}
}

func TestProgramNotFound(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here")
	dir := programDir(t, map[string]string{"main.hcl": `daemon "ok" {
  command = ["/bin/sh", "-c", "sleep 1"]
}

daemon "api" {
  count   = 3
  command = ["` + missing + `", "--port", "80"]
}
`})
	diags := loadPrograms(t, dir)
	// one error, not one per instance, at the program's element
	wantProgramDiag(t, diags, hcl.DiagError, "Program not found", 7, 14, missing+", does not exist")
	if !diags.HasErrors() {
		t.Fatal("not an error")
	}

	// without CheckPrograms (apply, destroy, status) nothing is reported
	if _, diags := Load(dir, Options{Schemas: testSchemas}); len(diags) != 0 {
		t.Fatalf("%s", renderDiags(diags))
	}
}

func TestProgramSearchedInPATH(t *testing.T) {
	dir := programDir(t, map[string]string{"main.hcl": `daemon "api" {
  command = ["tool", "--x"]
}
`})
	// not in orch's PATH
	wantProgramDiag(t, loadPrograms(t, dir, "PATH=/nonexistent-dir"), hcl.DiagError, "Program not found", 2, 14,
		`"tool", is not found in its PATH "/nonexistent-dir"`)
	// in orch's PATH
	if diags := loadPrograms(t, dir, "PATH=/nonexistent-dir:"+filepath.Join(dir, "bin")); len(diags) != 0 {
		t.Fatalf("%s", renderDiags(diags))
	}
	// the daemon's env sets its own PATH, which wins over orch's
	dir2 := programDir(t, map[string]string{"main.hcl": `daemon "api" {
  command = ["tool"]
  env     = { PATH = "/usr/bin:${path.root}/bin" }
}

daemon "sh" {
  command = ["sh", "-c", "true"]
  env     = { PATH = "/nonexistent-dir" }
}
`})
	wantProgramDiag(t, loadPrograms(t, dir2, "PATH=/nonexistent-dir"), hcl.DiagError, "Program not found", 7, 14,
		`"sh", is not found in its PATH "/nonexistent-dir"`)
}

func TestProgramNotExecutable(t *testing.T) {
	outside := t.TempDir()
	data := filepath.Join(outside, "data")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := programDir(t, map[string]string{"main.hcl": `job "j" {
  command = ["` + data + `"]
}
`})
	wantProgramDiag(t, loadPrograms(t, dir), hcl.DiagError, "Program not executable", 2, 14, data+", is not executable")

	// a directory is no program either
	dir = programDir(t, map[string]string{"main.hcl": "job \"j\" {\n  command = [\"" + outside + "\"]\n}\n"})
	wantProgramDiag(t, loadPrograms(t, dir), hcl.DiagError, "Program not found", 2, 14, outside+", is a directory")
}

// TestProgramAJobMayCreate: a program in the configuration directory, or
// of a block that runs after a job, may be built by that job: a warning.
func TestProgramAJobMayCreate(t *testing.T) {
	dir := programDir(t, map[string]string{"main.hcl": `job "build" {
  command = ["/bin/sh", "-c", "true"]
}

daemon "api" {
  command = ["${path.root}/out/api"]
}

daemon "rel" {
  dir     = "bin"
  command = ["./tool"]
}

daemon "relmissing" {
  command = ["./out/relmissing"]
}

daemon "later" {
  command    = ["/nonexistent-dir/later"]
  depends_on = [daemon.after_build]
}

daemon "after_build" {
  command    = ["/bin/sh"]
  depends_on = [job.build]
}
`})
	diags := loadPrograms(t, dir)
	if diags.HasErrors() || len(diags) != 3 {
		t.Fatalf("want 3 warnings:\n%s", renderDiags(diags))
	}
	want := map[int]string{
		6:  "It lies in the configuration directory",
		15: "It lies in the configuration directory",
		19: "It runs after a job",
	}
	for _, d := range diags {
		if d.Severity != hcl.DiagWarning || d.Summary != "Program not found" || !strings.Contains(d.Detail, want[d.Subject.Start.Line]) {
			t.Errorf("unexpected: %s: %s: %s", d.Subject, d.Summary, d.Detail)
		}
	}
}

// TestProgramOtherRuntimes: a docker daemon's command runs in its image:
// not looked for on this host.
func TestProgramOtherRuntimes(t *testing.T) {
	dir := programDir(t, map[string]string{"main.hcl": `runtime "docker" "local" {}

daemon "web" {
  runtime = runtime.docker.local
  image   = "nginx"
  command = ["/usr/sbin/nginx-not-on-this-host"]
}
`})
	if diags := loadPrograms(t, dir); len(diags) != 0 {
		t.Fatalf("%s", renderDiags(diags))
	}
}

func TestProgramJSON(t *testing.T) {
	dir := programDir(t, map[string]string{"main.hcl.json": `{
  "daemon": {
    "api": {
      "command": ["/nonexistent-dir/api", "-v"]
    }
  }
}
`})
	d := loadPrograms(t, dir)
	if len(d) != 1 || d[0].Subject == nil || d[0].Subject.Filename != "main.hcl.json" || d[0].Subject.Start.Line != 4 || d[0].Subject.Start.Column != 19 {
		t.Fatalf("%s", renderDiags(d))
	}
}

// TestProbeProgramNotFound: the program of a health check's exec that is
// not there is reported at its element, as a command's is: an error, or a
// warning when a job may yet create it; a program found in orch's PATH
// is not reported.
func TestProbeProgramNotFound(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "pg_isready")
	dir := programDir(t, map[string]string{"main.hcl": `daemon "ok" {
  command = ["/bin/sh", "-c", "sleep 1"]
  health {
    exec = ["sh", "-c", "true"]
  }
}

daemon "db" {
  command = ["/bin/sh", "-c", "sleep 1"]
  health {
    exec = ["` + missing + `", "-h", "127.0.0.1"]
  }
}
`})
	diags := loadPrograms(t, dir)
	wantProgramDiag(t, diags, hcl.DiagError, "Program not found", 11, 13, "The program of the health check of daemon.db, "+missing+", does not exist")

	// a bare name is looked up in orch's PATH
	dir = programDir(t, map[string]string{"main.hcl": `daemon "db" {
  command = ["/bin/sh", "-c", "sleep 1"]
  health {
    exec = ["no-such-probe-anywhere"]
  }
}
`})
	wantProgramDiag(t, loadPrograms(t, dir), hcl.DiagError, "Program not found", 4, 13, "no-such-probe-anywhere")

	// after a job: a warning
	dir = programDir(t, map[string]string{"main.hcl": `job "setup" {
  command = ["/bin/sh", "-c", "true"]
}

daemon "db" {
  command    = ["/bin/sh", "-c", "sleep 1"]
  depends_on = [job.setup]
  health {
    exec = ["` + missing + `"]
  }
}
`})
	wantProgramDiag(t, loadPrograms(t, dir), hcl.DiagWarning, "Program not found", 9, 13, "the check never passes")
}
