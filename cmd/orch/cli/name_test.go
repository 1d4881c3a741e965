package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory where a NAME goes (orch stop . as orch plan . is typed) is
// told as such, with what to do instead (leave out the current one, or
// name another with -chdir), instead of HCL's words for a bad traversal;
// a name that parses is taken whatever lies in the current directory.
func TestParseNameTellsADirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, arg := range []string{".", "..", dir, "./web"} {
		_, err := parseName(arg)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Fatalf("parseName(%q): %v, want a usage error", arg, err)
		}
		want := "-chdir=" + arg
		if arg == "." || arg == dir {
			want = "leave it out"
		}
		if msg := err.Error(); !strings.Contains(msg, "is a directory") || !strings.Contains(msg, want) {
			t.Errorf("parseName(%q): %q, want it to say %q", arg, msg, want)
		}
	}
	// "web" is a directory here, and a daemon's name too.
	if a, err := parseName("web"); err != nil || a.String() != "daemon.web" {
		t.Errorf(`parseName("web") = %v, %v`, a, err)
	}
	// Not a directory: the parser's own error.
	if _, err := parseName("a..b"); err == nil || strings.Contains(err.Error(), "is a directory") {
		t.Errorf(`parseName("a..b"): %v`, err)
	}
}
