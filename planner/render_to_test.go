package planner

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// chunkWriter keeps each write apart.
type chunkWriter struct{ writes []string }

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// TestRenderToWholeChanges: RenderTo writes Render's text, in writes that
// each end where a change (or the plan) ends, so that a writer redacting
// each write whole never sees a value cut in two; and in more than one
// write for a large plan.
func TestRenderToWholeChanges(t *testing.T) {
	for _, n := range []int{400, 1500} { // 1,500: rendered on several cores (changesSplit)
		renderToWholeChanges(t, n)
	}
}

func renderToWholeChanges(t *testing.T, n int) {
	var src strings.Builder
	for i := range n {
		fmt.Fprintf(&src, "daemon \"d%04d\" {\n  command = [\"sleep\", \"%d\"]\n  env = { A = \"%s\" }\n}\n", i, i, strings.Repeat("x", i%400))
	}
	cfg := load(t, src.String(), nil)
	p, _ := Make(Input{Config: cfg})
	for _, color := range []bool{false, true} {
		// the split, on more goroutines than this machine may have
		for _, parts := range []int{2, 3, 7} {
			var w chunkWriter
			r := &renderer{b: &bytes.Buffer{}, out: &w, opts: RenderOptions{Color: color}}
			r.render(p, parts)
			r.spill(0)
			if got, want := strings.Join(w.writes, ""), Render(p, RenderOptions{Color: color}); got != want {
				t.Fatalf("%d changes rendered in %d parts differ from Render", n, parts)
			}
		}
		opts := RenderOptions{Color: color}
		want := Render(p, opts)
		var w chunkWriter
		if err := RenderTo(&w, p, opts); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(w.writes, ""); got != want {
			t.Fatalf("RenderTo wrote other text than Render:\n%s\nwant\n%s", got, want)
		}
		if len(w.writes) < 2 {
			t.Fatalf("a plan of %d bytes in %d write(s)", len(want), len(w.writes))
		}
		for i, s := range w.writes[:len(w.writes)-1] {
			if !strings.HasSuffix(s, "    }\n") || !strings.HasPrefix(w.writes[i+1], "\n") {
				t.Fatalf("write %d does not end at a change's end: ...%q | %q...", i, s[max(0, len(s)-40):], w.writes[i+1][:min(40, len(w.writes[i+1]))])
			}
		}
	}
}

// TestRenderToNoChanges: a plan without changes is one write.
func TestRenderToNoChanges(t *testing.T) {
	empty, _ := Make(Input{Config: load(t, "runtime \"process\" \"x\" {}\n", nil)})
	var w chunkWriter
	RenderTo(&w, empty, RenderOptions{})
	if strings.Join(w.writes, "") != Render(empty, RenderOptions{}) {
		t.Fatalf("no-change plan: %q", w.writes)
	}
}
