package docker

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/hcl/v2"

	"github.com/orch-dev/orch/spec"
)

// TestErrorCorpus loads each testdata/errors/*.hcl with the docker schema
// and checks that its diagnostics are exactly its "# ERROR: <summary>"
// markers, by line (as spec/testdata/errors does for the language). A
// "# FILES: a/ a/b" line adds an empty directory and an empty file.
func TestErrorCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	marker := regexp.MustCompile(`#\s*ERROR:\s*(.+?)\s*$`)
	filesMarker := regexp.MustCompile(`^#\s*FILES:\s*(.*)$`)
	type key struct {
		line    int
		summary string
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".hcl"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fsys := fstest.MapFS{name: {Data: src}}
			want := map[key]bool{}
			for i, line := range strings.Split(string(src), "\n") {
				if m := filesMarker.FindStringSubmatch(line); m != nil {
					for _, f := range strings.Fields(m[1]) {
						if strings.HasSuffix(f, "/") {
							fsys[strings.TrimSuffix(f, "/")] = &fstest.MapFile{Mode: os.ModeDir | 0o755}
						} else {
							fsys[f] = &fstest.MapFile{Data: []byte("FROM scratch\n")}
						}
					}
				}
				if m := marker.FindStringSubmatch(line); m != nil {
					want[key{i + 1, m[1]}] = true
				}
			}
			_, diags := spec.LoadFS(fsys, "/orch-test/docker-errors", spec.Options{Schemas: map[string]spec.RuntimeSchema{Kind: Schema()}})
			got := map[key]bool{}
			var lines []string
			for _, d := range diags {
				if d.Subject == nil {
					t.Errorf("diagnostic without a place: %s: %s", d.Summary, d.Detail)
					continue
				}
				lines = append(lines, d.Subject.String()+": "+d.Summary+": "+d.Detail)
				if d.Severity == hcl.DiagError {
					got[key{d.Subject.Start.Line, d.Summary}] = true
				}
			}
			for k := range want {
				if !got[k] {
					t.Errorf("missing: line %d: %s", k.line, k.summary)
				}
			}
			for k := range got {
				if !want[k] {
					t.Errorf("unexpected: line %d: %s", k.line, k.summary)
				}
			}
			if t.Failed() || testing.Verbose() {
				sort.Strings(lines)
				t.Logf("diagnostics:\n  %s", strings.Join(lines, "\n  "))
			}
		})
	}
}
