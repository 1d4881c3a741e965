package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcled"
	"github.com/mattn/go-isatty"
	"github.com/mitchellh/go-wordwrap"
)

// defaultWidth is the width diagnostics wrap at when the terminal's is
// unknown.
const defaultWidth = 100

// writeDiags renders diags as text on a.Stderr, with source snippets from
// files. Colour is used only when stderr is a terminal and NO_COLOR is
// unset.
func (a *App) writeDiags(diags hcl.Diagnostics, files map[string]*hcl.File) {
	if len(diags) == 0 {
		return
	}
	diags = a.redactDiags(diags)
	if a.jsonApply {
		a.emitDiags(diags, files)
		return
	}
	width, colour := defaultWidth, false
	if f, ok := fileOf(a.Stderr); ok {
		if w := terminalWidth(f.Fd()); w > 0 {
			width = w
		}
		_, noColour := os.LookupEnv("NO_COLOR")
		colour = !noColour && !a.noColor && os.Getenv("TERM") != "dumb" &&
			(isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
	}
	// HCL's writer wraps a detail whole; here its prose is wrapped and
	// its indented lines (a daemon's last log lines, a command) are left
	// as they are, as Terraform does: a log line cut in two lost its
	// indentation and read as prose.
	wrapped := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		c := *d
		c.Detail = wrapDetail(d.Detail, width)
		wrapped[i] = &c
	}
	w := hcl.NewDiagnosticTextWriter(a.Stderr, files, 0, colour)
	_ = w.WriteDiagnostics(wrapped)
}

// wrapDetail wraps each line of a diagnostic's detail at width, but for
// lines that begin with a space or a tab, which are shown as they are.
func wrapDetail(detail string, width int) string {
	if width <= 0 || detail == "" {
		return detail
	}
	lines := strings.Split(detail, "\n")
	for i, l := range lines {
		if l != "" && l[0] != ' ' && l[0] != '\t' {
			lines[i] = wordwrap.WrapString(l, uint(width))
		}
	}
	return strings.Join(lines, "\n")
}

// JSONDiagnostics is the output of `orch validate -json`; its shape follows
// `terraform validate -json` and is documented in docs/cli.md. New fields
// may be added; existing ones keep their meaning while format_version's
// major number stays 1.
type JSONDiagnostics struct {
	FormatVersion string           `json:"format_version"`
	Valid         bool             `json:"valid"`
	ErrorCount    int              `json:"error_count"`
	WarningCount  int              `json:"warning_count"`
	Diagnostics   []JSONDiagnostic `json:"diagnostics"`
}

// JSONDiagnostic is one diagnostic. Range and Snippet are omitted when the
// problem has no place in a file (a missing directory, say).
type JSONDiagnostic struct {
	Severity string       `json:"severity"` // "error" or "warning"
	Summary  string       `json:"summary"`
	Detail   string       `json:"detail"`
	Range    *JSONRange   `json:"range,omitempty"`
	Snippet  *JSONSnippet `json:"snippet,omitempty"`
}

// JSONRange is a span of a file: lines and columns count from 1, bytes from
// 0; End is exclusive.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is one position in a file.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// JSONSnippet is the source around a diagnostic: Code holds whole lines
// starting at StartLine; the highlighted part is Code[HighlightStartOffset:
// HighlightEndOffset] (byte offsets). Context names the enclosing block,
// such as `daemon "api"`, or is null.
type JSONSnippet struct {
	Context              *string `json:"context"`
	Code                 string  `json:"code"`
	StartLine            int     `json:"start_line"`
	HighlightStartOffset int     `json:"highlight_start_offset"`
	HighlightEndOffset   int     `json:"highlight_end_offset"`
}

// newJSONDiagnostics converts diags, taking snippets from files.
func newJSONDiagnostics(diags hcl.Diagnostics, files map[string]*hcl.File) *JSONDiagnostics {
	out := &JSONDiagnostics{FormatVersion: "1.0", Diagnostics: []JSONDiagnostic{}}
	for _, d := range diags {
		jd := JSONDiagnostic{Summary: d.Summary, Detail: d.Detail, Severity: "error"}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
			out.WarningCount++
		} else {
			out.ErrorCount++
		}
		if d.Subject != nil {
			s := *d.Subject
			jd.Range = &JSONRange{
				Filename: s.Filename,
				Start:    JSONPos{Line: s.Start.Line, Column: s.Start.Column, Byte: s.Start.Byte},
				End:      JSONPos{Line: s.End.Line, Column: s.End.Column, Byte: s.End.Byte},
			}
			if f := files[s.Filename]; f != nil && f.Bytes != nil {
				jd.Snippet = newSnippet(f, s, d.Context)
			}
		}
		out.Diagnostics = append(out.Diagnostics, jd)
	}
	out.Valid = out.ErrorCount == 0
	return out
}

func newSnippet(f *hcl.File, subject hcl.Range, context *hcl.Range) *JSONSnippet {
	snip := subject
	if context != nil {
		snip = hcl.RangeOver(snip, *context)
	}
	if snip.Empty() {
		snip.End.Byte++
		snip.End.Column++
	}
	s := &JSONSnippet{StartLine: snip.Start.Line}
	if c := hcled.ContextString(f, subject.Start.Byte); c != "" {
		s.Context = &c
	}
	var code strings.Builder
	codeStart := -1
	sc := hcl.NewRangeScanner(f.Bytes, subject.Filename, bufio.ScanLines)
	for sc.Scan() {
		line := sc.Range()
		if !line.Overlaps(snip) {
			continue
		}
		if codeStart < 0 {
			codeStart = line.Start.Byte
			s.StartLine = line.Start.Line
		} else {
			code.WriteByte('\n')
		}
		code.Write(sc.Bytes())
	}
	s.Code = code.String()
	if codeStart < 0 {
		codeStart = subject.Start.Byte
	}
	clamp := func(n int) int { return max(0, min(n, len(s.Code))) }
	s.HighlightStartOffset = clamp(subject.Start.Byte - codeStart)
	s.HighlightEndOffset = clamp(subject.End.Byte - codeStart)
	return s
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
