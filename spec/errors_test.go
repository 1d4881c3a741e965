package spec

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"
)

// errorsDir is the fake absolute directory the error corpus is loaded as.
const errorsDir = "/orch-test/errors"

var (
	errorMarker = regexp.MustCompile(`#\s*ERROR:\s*(.+?)\s*$`)
	varsMarker  = regexp.MustCompile(`^#\s*VARS:\s*(.*)$`)
	filesMarker = regexp.MustCompile(`^#\s*FILES:\s*(.*)$`)
)

type diagKey struct {
	Line    int
	Summary string
}

// corpusCase is one file of testdata/errors: its source, the expected
// diagnostics and its directives.
type corpusCase struct {
	name  string
	src   []byte
	want  map[diagKey]bool
	vars  []string
	files []string
}

func readCorpusCase(t testing.TB, file string) corpusCase {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := corpusCase{name: filepath.Base(file), src: src, want: map[diagKey]bool{}}
	for i, line := range strings.Split(string(src), "\n") {
		if m := varsMarker.FindStringSubmatch(line); m != nil {
			c.vars = append(c.vars, strings.Fields(m[1])...)
			continue
		}
		if m := filesMarker.FindStringSubmatch(line); m != nil {
			c.files = append(c.files, strings.Fields(m[1])...)
			continue
		}
		if m := errorMarker.FindStringSubmatch(line); m != nil {
			c.want[diagKey{i + 1, m[1]}] = true
		}
	}
	return c
}

// fsys returns the case as a file system: the file alone, plus the empty
// files and directories (names ending in /) its FILES directive lists.
func (c corpusCase) fsys() fstest.MapFS {
	fsys := fstest.MapFS{c.name: {Data: c.src}}
	for _, f := range c.files {
		if strings.HasSuffix(f, "/") {
			fsys[strings.TrimSuffix(f, "/")] = &fstest.MapFile{Mode: os.ModeDir | 0o755}
		} else {
			fsys[f] = &fstest.MapFile{Data: []byte("\x00asm"), Mode: 0o755}
		}
	}
	return fsys
}

func TestErrorCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 35 {
		t.Fatalf("the error corpus has %d files; it should have at least 35", len(files))
	}
	for _, file := range files {
		c := readCorpusCase(t, file)
		t.Run(strings.TrimSuffix(c.name, ".hcl"), func(t *testing.T) {
			if len(c.want) == 0 {
				t.Fatalf("%s has no # ERROR: marker", c.name)
			}
			cfg, diags := LoadFS(c.fsys(), errorsDir, Options{Schemas: testSchemas, Vars: c.vars})
			if cfg == nil {
				t.Fatal("LoadFS returned a nil Config")
			}
			got := map[diagKey]bool{}
			for _, d := range diags {
				if d.Subject == nil {
					t.Errorf("diagnostic without a Subject: %s: %s", d.Summary, d.Detail)
					continue
				}
				if d.Subject.Filename != c.name {
					t.Errorf("diagnostic %q is in file %q, want %q", d.Summary, d.Subject.Filename, c.name)
				}
				if d.Subject.Start.Line < 1 {
					t.Errorf("diagnostic %q has no line", d.Summary)
				}
				if d.Severity == hcl.DiagError {
					got[diagKey{d.Subject.Start.Line, d.Summary}] = true
				}
			}
			for k := range c.want {
				if !got[k] {
					t.Errorf("missing: line %d: %s", k.Line, k.Summary)
				}
			}
			for k := range got {
				if !c.want[k] {
					t.Errorf("unexpected: line %d: %s", k.Line, k.Summary)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("diagnostics of %s:\n%s", c.name, renderDiags(diags))
			}
		})
	}
}

func renderDiags(diags hcl.Diagnostics) string {
	var lines []string
	for _, d := range diags {
		where := "-"
		if d.Subject != nil {
			where = d.Subject.String()
		}
		lines = append(lines, "  "+where+": "+d.Summary+": "+d.Detail)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

var _ = path.Base
