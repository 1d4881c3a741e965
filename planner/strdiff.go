package planner

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Multi-line strings (a configuration file rendered with templatefile, a
// script) are written as Terraform writes them: a heredoc, one line of
// the value per line of the plan, and, when one changed, a diff line by
// line, with the unchanged lines far from any change hidden. A plan
// that quoted them showed a one-line edit of a 40-line nginx.conf as the
// whole file twice, escaped, on one line.

// printable reports whether s can be written as it is, a line of it at
// a time: valid UTF-8 without control characters but tabs and line
// breaks (anything else is quoted, which says exactly what it holds).
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// heredocLines splits s into its lines when it is written as a heredoc:
// it has a line break and is printable. A final line break ends the last
// line rather than starting an empty one.
func heredocLines(s string) ([]string, bool) {
	if !strings.Contains(s, "\n") || !printable(s) {
		return nil, false
	}
	return splitLines(s), true
}

// splitLines splits s at its line breaks, a final one ending the last
// line; "" has no line.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// appendHeredoc writes lines as a heredoc whose content is indented by
// indent+4 and whose closing marker by indent (the caller has written
// what precedes the opening one).
func appendHeredoc(b *bytes.Buffer, lines []string, indent int) {
	b.WriteString("<<-EOT\n")
	for _, l := range lines {
		appendHeredocLine(b, l, indent+4)
	}
	pad(b, indent)
	b.WriteString("EOT")
}

// diffContext is how many unchanged lines a string diff shows on each
// side of a change.
const diffContext = 2

// lineOp is one line of a diff: ' ' unchanged, '-' removed, '+' added.
type lineOp struct {
	kind byte
	line string
}

// lineDiffMax bounds the table of the longest common subsequence of the
// lines that differ (old lines times new ones): beyond it, the lines
// between the common head and tail are shown removed, then added.
const lineDiffMax = 1 << 20

// diffLines is a shortest edit of a into b, line by line: the common head
// and tail, and between them the longest common subsequence.
func diffLines(a, b []string) []lineOp {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	ops := make([]lineOp, 0, len(a)+len(b)-head-tail)
	for _, l := range a[:head] {
		ops = append(ops, lineOp{' ', l})
	}
	am, bm := a[head:len(a)-tail], b[head:len(b)-tail]
	if len(am)*len(bm) > lineDiffMax {
		for _, l := range am {
			ops = append(ops, lineOp{'-', l})
		}
		for _, l := range bm {
			ops = append(ops, lineOp{'+', l})
		}
	} else {
		// lcs[i][j]: the longest common subsequence of am[i:] and bm[j:].
		w := len(bm) + 1
		lcs := make([]int32, (len(am)+1)*w)
		for i := len(am) - 1; i >= 0; i-- {
			for j := len(bm) - 1; j >= 0; j-- {
				if am[i] == bm[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(am) || j < len(bm) {
			switch {
			case i < len(am) && j < len(bm) && am[i] == bm[j]:
				ops = append(ops, lineOp{' ', am[i]})
				i, j = i+1, j+1
			case j == len(bm) || i < len(am) && lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
				ops = append(ops, lineOp{'-', am[i]})
				i++
			default:
				ops = append(ops, lineOp{'+', bm[j]})
				j++
			}
		}
	}
	for _, l := range a[len(a)-tail:] {
		ops = append(ops, lineOp{' ', l})
	}
	return ops
}

// lineDiff is the change of a string from old to new, line by line, when
// it is one to show so: one of them has several lines, both are
// printable, and their lines differ (not merely a final line break, which
// a heredoc does not show). ok false: the caller quotes them.
func lineDiff(old, new string) (ops []lineOp, ok bool) {
	if !strings.Contains(old, "\n") && !strings.Contains(new, "\n") || !printable(old) || !printable(new) {
		return nil, false
	}
	ol, nl := splitLines(old), splitLines(new)
	if slices.Equal(ol, nl) {
		return nil, false
	}
	return diffLines(ol, nl), true
}

// appendLineDiff writes ops as a heredoc, comment after its opening
// marker: removed lines marked "-", added ones "+", at indent+2,
// unchanged ones at indent+4, those more than diffContext lines from a
// change counted in a "# (N unchanged lines hidden)" line, the closing
// marker at indent.
func (r *renderer) appendLineDiff(b *bytes.Buffer, ops []lineOp, indent int, comment string) {
	// shown[i]: op i is within diffContext lines of a change.
	shown := make([]bool, len(ops))
	for i, op := range ops {
		if op.kind == ' ' {
			continue
		}
		for k := max(0, i-diffContext); k <= min(len(ops)-1, i+diffContext); k++ {
			shown[k] = true
		}
	}
	b.WriteString("<<-EOT")
	b.WriteString(comment)
	b.WriteByte('\n')
	hidden := 0
	for i, op := range ops {
		if !shown[i] {
			hidden++
			continue
		}
		if hidden > 0 {
			pad(b, indent+4)
			b.WriteString(hiddenComment(hidden, "line"))
			b.WriteByte('\n')
			hidden = 0
		}
		if op.kind == ' ' {
			appendHeredocLine(b, op.line, indent+4)
			continue
		}
		color := green
		if op.kind == '-' {
			color = red
		}
		pad(b, indent+2)
		b.WriteString(r.c(color, string(op.kind)))
		if op.line != "" {
			b.WriteByte(' ')
		}
		appendHeredocLine(b, op.line, 0)
	}
	if hidden > 0 {
		pad(b, indent+4)
		b.WriteString(hiddenComment(hidden, "line"))
		b.WriteByte('\n')
	}
	pad(b, indent)
	b.WriteString("EOT")
}

// appendHeredocLine writes one line of a heredoc, indented unless empty.
func appendHeredocLine(b *bytes.Buffer, line string, indent int) {
	if line != "" {
		pad(b, indent)
		b.WriteString(line)
	}
	b.WriteByte('\n')
}

// hiddenComment is "# (N unchanged NOUNs hidden)", NOUN singular for one.
func hiddenComment(n int, noun string) string {
	if n != 1 {
		noun += "s"
	}
	return "# (" + strconv.Itoa(n) + " unchanged " + noun + " hidden)"
}
