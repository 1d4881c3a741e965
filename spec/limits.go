package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apparentlymart/go-textseg/v15/textseg"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The limits below are checked before any HCL parser sees a source: HCL's
// parsers recurse once per level of nesting, and a deep enough input (60,000
// unclosed "[" is 60 KB) exhausts the Go stack, which is a fatal error that
// no recover() catches. orch refuses such input with a diagnostic instead.
const (
	// MaxNestingDepth is how deep an expression or block may nest: each
	// bracket, brace, parenthesis, quoted string, heredoc, template
	// interpolation or directive (${, %{, %{if}, %{for}), and each operator
	// of one expression (a + b + c is two levels: its syntax tree is) adds
	// a level. Real configurations stay far below it; HCL's parsers
	// overflow the stack tens of thousands of levels deep.
	MaxNestingDepth = 256
	// MaxConfigFileSize is the most orch reads from one configuration or
	// -var-file file (8 MiB).
	MaxConfigFileSize = 8 << 20
)

// readConfigSource reads name from fsys, at most MaxConfigFileSize bytes;
// a larger file returns its first MaxConfigFileSize+1 bytes and tooBig.
func readConfigSource(fsys fs.FS, name string) (src []byte, tooBig bool, err error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if st, err := f.Stat(); err == nil && st.Size() > 0 && st.Size() <= MaxConfigFileSize {
		buf.Grow(int(st.Size()) + 1)
	}
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxConfigFileSize+1)); err != nil {
		return nil, false, err
	}
	src = buf.Bytes()
	return src, len(src) > MaxConfigFileSize, nil
}

// sizeDiag is the diagnostic of a file larger than MaxConfigFileSize.
func sizeDiag(name string, src []byte) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Configuration file too large",
		Detail: fmt.Sprintf("%s is larger than %d MiB, the most orch reads from one file; the limit is passed here. Split it into several files.",
			name, MaxConfigFileSize>>20),
		Subject: byteRange(src, name, min(len(src), MaxConfigFileSize)),
	}
}

// CheckSource checks src, the content of the configuration or variables
// file name, against MaxConfigFileSize and MaxNestingDepth, before any
// parser sees it: *.json is HCL's JSON syntax, anything else native syntax.
// It returns nil when src is within the limits.
func CheckSource(src []byte, name string) *hcl.Diagnostic {
	if len(src) > MaxConfigFileSize {
		return sizeDiag(name, src)
	}
	var at int
	if strings.HasSuffix(name, ".json") {
		at, _ = jsonNesting(src, MaxNestingDepth)
	} else {
		at, _ = nativeNesting(src, modeConfig, MaxNestingDepth)
	}
	if at < 0 {
		return nil
	}
	return nestingDiag(src, name, at)
}

// checkExpressionSource is CheckSource for a standalone expression (a -var
// value): it returns the byte offset where the nesting cap is passed, or -1.
func checkExpressionSource(src []byte) int {
	at, _ := nativeNesting(src, modeExpression, MaxNestingDepth)
	return at
}

// checkTemplateSource is CheckSource for a template (templatefile).
func checkTemplateSource(src []byte, name string) *hcl.Diagnostic {
	if len(src) > MaxConfigFileSize {
		return sizeDiag(name, src)
	}
	if at, _ := nativeNesting(src, modeTemplate, MaxNestingDepth); at >= 0 {
		return nestingDiag(src, name, at)
	}
	return nil
}

func nestingDiag(src []byte, name string, at int) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Configuration nested too deeply",
		Detail: fmt.Sprintf("This passes %d levels of nesting, the most orch accepts: brackets, braces, parentheses, strings, heredocs, template interpolations and directives, and the operators of one expression each add a level. orch refuses it before parsing. Flatten it, for example with local values.",
			MaxNestingDepth),
		Subject: byteRange(src, name, at),
	}
}

// byteRange is the range of the character at byte offset at of src (an
// empty range at the end of src), with HCL's line and column numbering:
// columns count grapheme clusters.
func byteRange(src []byte, name string, at int) *hcl.Range {
	at = min(max(at, 0), len(src))
	line := 1 + bytes.Count(src[:at], []byte{'\n'})
	ls := bytes.LastIndexByte(src[:at], '\n') + 1
	// the column is that of HCL's lexer, which skips a leading BOM
	prefix := src[ls:at]
	if ls == 0 {
		prefix = bytes.TrimPrefix(prefix, []byte("\xef\xbb\xbf"))
	}
	col := 1
	if len(prefix) > 0 {
		n, err := textseg.TokenCount(prefix, textseg.ScanGraphemeClusters)
		if err != nil {
			n = utf8.RuneCount(prefix)
		}
		col += n
	}
	start := hcl.Pos{Line: line, Column: col, Byte: at}
	end := start
	if at < len(src) {
		_, size := utf8.DecodeRune(src[at:])
		end.Byte += size
		end.Column++
	}
	return &hcl.Range{Filename: name, Start: start, End: end}
}

// scanMode is what a source is, for nativeNesting.
type scanMode int

const (
	modeConfig     scanMode = iota // a file body: newlines end attributes
	modeExpression                 // a standalone expression: newlines are spaces
	modeTemplate                   // a bare template (templatefile, JSON strings)
)

// frame kinds of nativeNesting
const (
	frBody   = 'B' // the file body
	frExpr   = 'E' // a standalone expression
	frBrace  = '{' // block body or object
	frBrack  = '['
	frParen  = '('
	frInterp = '$' // ${ or %{ up to its closing brace
	frQuote  = '"'
	frHere   = 'h' // heredoc
	frTmpl   = 'T' // a bare template
	frFor    = 'f' // {for ...}: a for expression, blind to newlines
)

type nestFrame struct {
	kind byte
	ops  int  // operators (and open template directives) counted in it
	star bool // a "[" that held a *: foo[*] nests what follows it
}

// lexMode is the mode of HCL's lexer (scan_tokens.rl) that nativeNesting
// mirrors: code, a quoted template, a heredoc, or a bare template.
type lexMode struct {
	kind        byte // 'c' code, '"' quoted, 'h' heredoc, 'T' bare template
	marker      []byte
	startOfLine bool
}

// nestScanner measures the nesting of a native-syntax source in one pass,
// following the mode changes of HCL's lexer: strings, heredocs, comments
// and template sequences are told apart exactly as it does, so that a
// bracket in a string or a comment is not counted.
type nestScanner struct {
	src    []byte
	limit  int
	frames []nestFrame
	depth  int // the sum over frames of 1+ops, the root's 1 excepted
	max    int
	at     int // where depth first passed limit, or -1

	modes     []lexMode
	braces    int
	retBraces []int
	noClose   int // no "*/" starts at or after it
}

// nativeNesting returns the byte offset where the nesting of src first
// passes limit (-1 if never) and the deepest nesting seen; the scan stops
// at the first offset past the limit.
func nativeNesting(src []byte, mode scanMode, limit int) (at, deepest int) {
	var s nestScanner
	return s.measure(src, mode, limit)
}

// measure is nativeNesting on s, whose stacks are reused from a previous
// measure (jsonNesting measures every string of a file).
func (s *nestScanner) measure(src []byte, mode scanMode, limit int) (at, deepest int) {
	if !utf8.Valid(src) {
		// HCL's lexer reads bytes that are not UTF-8 in ways hard to
		// foretell (some become part of an identifier); such a source
		// is rare, and measured on the lexer's own tokens.
		var tokens hclsyntax.Tokens
		switch mode {
		case modeConfig:
			tokens, _ = hclsyntax.LexConfig(src, "", hcl.InitialPos)
		case modeExpression:
			tokens, _ = hclsyntax.LexExpression(src, "", hcl.InitialPos)
		default:
			tokens, _ = hclsyntax.LexTemplate(src, "", hcl.InitialPos)
		}
		return tokenNesting(tokens, mode, limit)
	}
	*s = nestScanner{src: src, limit: limit, at: -1, noClose: len(src) + 1,
		frames: s.frames[:0], modes: s.modes[:0], retBraces: s.retBraces[:0]}
	switch mode {
	case modeConfig:
		s.frames = append(s.frames, nestFrame{kind: frBody})
		s.modes = append(s.modes, lexMode{kind: 'c'})
	case modeExpression:
		s.frames = append(s.frames, nestFrame{kind: frExpr})
		s.modes = append(s.modes, lexMode{kind: 'c'})
	case modeTemplate:
		s.frames = append(s.frames, nestFrame{kind: frTmpl})
		s.modes = append(s.modes, lexMode{kind: 'T'})
	}
	s.run()
	return s.at, s.max
}

// push opens a frame at byte i; it reports false once the limit is passed.
func (s *nestScanner) push(kind byte, i int) bool {
	s.frames = append(s.frames, nestFrame{kind: kind})
	return s.grow(1, i)
}

func (s *nestScanner) grow(n, i int) bool {
	s.depth += n
	if s.depth > s.max {
		s.max = s.depth
	}
	if s.depth > s.limit && s.at < 0 {
		s.at = i
		return false
	}
	return true
}

// op counts an operator at byte i in the innermost frame.
func (s *nestScanner) op(i int) bool {
	s.frames[len(s.frames)-1].ops++
	return s.grow(1, i)
}

// pop closes the innermost frame if it is of kind; a close that matches
// nothing is left to the parser to report.
func (s *nestScanner) pop(kind byte, i int) bool {
	top := len(s.frames) - 1
	if top == 0 || s.frames[top].kind != kind && !(kind == frBrace && s.frames[top].kind == frFor) {
		return true
	}
	f := s.frames[top]
	s.frames = s.frames[:top]
	s.depth -= 1 + f.ops
	if f.star && f.kind == frBrack {
		// foo[*]: the splat takes the rest of the traversal as its operand
		return s.op(i)
	}
	return true
}

// popTo closes frames up to and including the innermost one of kind.
func (s *nestScanner) popTo(kind byte) {
	for top := len(s.frames) - 1; top > 0; top-- {
		f := s.frames[top]
		s.frames = s.frames[:top]
		s.depth -= 1 + f.ops
		if f.kind == kind {
			return
		}
	}
}

// star notes a * in a "[" (a splat, foo[*], when alone).
func (s *nestScanner) star() {
	if f := &s.frames[len(s.frames)-1]; f.kind == frBrack {
		f.star = true
	}
}

// reset ends an expression in the innermost frame: its operators no longer
// nest what follows.
func (s *nestScanner) reset() {
	f := &s.frames[len(s.frames)-1]
	s.depth -= f.ops
	f.ops = 0
}

func (s *nestScanner) run() {
	i := 0
	if bytes.HasPrefix(s.src, []byte("\xef\xbb\xbf")) {
		i = 3
	}
	for i < len(s.src) && s.at < 0 {
		m := &s.modes[len(s.modes)-1]
		switch m.kind {
		case 'c':
			i = s.code(i)
		case '"':
			i = s.quoted(i)
		default:
			i = s.template(i, m)
		}
	}
}

var codePlain = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	t['_'], t[' '], t['\t'], t['.'], t[':'], t['='] = true, true, true, true, true, true
	return t
}()

// code scans code from i until the mode changes or the source ends.
func (s *nestScanner) code(i int) int {
	src := s.src
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '.' || c == ':':
			i++
		case c >= '0' && c <= '9':
			i = skipNumber(src, i)
		case c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'):
			i = skipIdent(src, i)
		case c == '\n':
			s.newline()
			i++
		case c == '\r':
			if i+1 < len(src) && src[i+1] == '\n' {
				s.newline()
				i++
			}
			i++
		case c == '#':
			i = s.lineComment(i)
		case c == '/':
			if i+1 < len(src) && src[i+1] == '/' {
				i = s.lineComment(i)
			} else if i+1 < len(src) && src[i+1] == '*' {
				if e := s.commentEnd(i); e >= 0 {
					i = e
				} else {
					// unterminated: HCL's lexer reads "/" and "*" as tokens
					if !s.op(i) {
						return i
					}
					i++
				}
			} else {
				if !s.op(i) {
					return i
				}
				i++
			}
		case c == '"':
			s.modes = append(s.modes, lexMode{kind: '"'})
			s.push(frQuote, i)
			return i + 1
		case c == '<':
			if n, marker := heredocIntro(src, i); n > 0 {
				s.modes = append(s.modes, lexMode{kind: 'h', marker: marker, startOfLine: true})
				s.push(frHere, i)
				return i + n
			}
			if !s.op(i) {
				return i
			}
			if i+1 < len(src) && src[i+1] == '=' {
				i++
			}
			i++
		case c == '{':
			s.braces++
			kind := byte(frBrace)
			if s.forExpr(i + 1) {
				kind = frFor
			}
			if !s.push(kind, i) {
				return i
			}
			i++
		case c == '}' || c == '~' && i+1 < len(src) && src[i+1] == '}':
			n := 1
			if c == '~' {
				n = 2
			}
			if len(s.retBraces) > 0 && s.retBraces[len(s.retBraces)-1] == s.braces {
				// the end of a template interpolation or directive
				s.braces--
				s.retBraces = s.retBraces[:len(s.retBraces)-1]
				s.modes = s.modes[:len(s.modes)-1]
				s.popTo(frInterp)
				return i + n
			}
			s.braces--
			if c == '}' {
				s.pop(frBrace, i)
			}
			i += n
		case c == '[':
			if !s.push(frBrack, i) {
				return i
			}
			i++
		case c == ']':
			if !s.pop(frBrack, i) {
				return i
			}
			i++
		case c == '(':
			if !s.push(frParen, i) {
				return i
			}
			i++
		case c == ')':
			s.pop(frParen, i)
			i++
		case c == ',':
			s.reset()
			i++
		case c == '*':
			s.star()
			if !s.op(i) {
				return i
			}
			i++
		case c == '!' || c == '>' || c == '=':
			if c == '=' && (i+1 >= len(src) || src[i+1] != '=') {
				i++ // = and =>
				if i < len(src) && src[i] == '>' {
					i++
				}
				continue
			}
			if !s.op(i) {
				return i
			}
			if i+1 < len(src) && src[i+1] == '=' {
				i++
			}
			i++
		case c == '+' || c == '-' || c == '%' || c == '?':
			if !s.op(i) {
				return i
			}
			i++
		case c == '&' || c == '|':
			if i+1 < len(src) && src[i+1] == c {
				if !s.op(i) {
					return i
				}
				i++
			}
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(src[i:])
			if size > 1 && isIDStart(r) {
				i = skipIdent(src, i)
			} else {
				i += size
			}
		default:
			i++
		}
	}
	return i
}

// newline ends the expression of a body or an object, whose items end at a
// newline (HCL's parser reads newlines there).
func (s *nestScanner) newline() {
	if k := s.frames[len(s.frames)-1].kind; k == frBody || k == frBrace {
		s.reset()
	}
}

// lineComment skips a # or // comment, whose newline ends an item as a
// newline does; it returns the offset after the comment.
func (s *nestScanner) lineComment(i int) int {
	e := bytes.IndexByte(s.src[i:], '\n')
	if e < 0 {
		return len(s.src)
	}
	s.newline()
	return i + e + 1
}

// quoted scans a quoted template from i.
func (s *nestScanner) quoted(i int) int {
	src := s.src
	for i < len(src) {
		switch src[i] {
		case '"':
			s.modes = s.modes[:len(s.modes)-1]
			s.popTo(frQuote)
			return i + 1
		case '\\':
			if i+1 < len(src) && src[i+1] != '\n' && src[i+1] != '\r' {
				i += 2
			} else {
				i++
			}
		case '$', '%':
			if n, ok := s.sequence(i); ok {
				return n
			} else {
				i = n
			}
		default:
			i++
		}
	}
	return i
}

// template scans a heredoc or a bare template from i.
func (s *nestScanner) template(i int, m *lexMode) int {
	src := s.src
	for i < len(src) {
		if m.kind == 'h' && m.startOfLine {
			m.startOfLine = false
			e := bytes.IndexByte(src[i:], '\n')
			if e >= 0 {
				line := src[i : i+e]
				if bytes.Equal(bytes.TrimSpace(line), m.marker) {
					s.modes = s.modes[:len(s.modes)-1]
					s.popTo(frHere)
					// the newline is the code's: it may end an attribute
					if e > 0 && line[e-1] == '\r' {
						return i + e - 1
					}
					return i + e
				}
			}
		}
		switch src[i] {
		case '\n':
			m.startOfLine = true
			i++
		case '$', '%':
			if n, ok := s.sequence(i); ok {
				if m.kind == 'h' {
					m.startOfLine = false
				}
				return n
			} else {
				i = n
			}
		default:
			i++
		}
	}
	return i
}

// sequence handles a $ or % at i in a template: an interpolation or a
// directive (it reports true and the offset after its opening) or a
// literal ($${ and %%{ are escapes; it reports false and the offset after
// the literal).
func (s *nestScanner) sequence(i int) (int, bool) {
	src := s.src
	c := src[i]
	if i+1 < len(src) && src[i+1] == '{' {
		n := i + 2
		if n < len(src) && src[n] == '~' {
			n++
		}
		if c == '%' {
			// %{if and %{for open a level of the template that ends at
			// %{endif or %{endfor
			switch s.directiveKeyword(n) {
			case "if", "for":
				if !s.op(i) {
					return i, true
				}
			case "endif", "endfor":
				if f := &s.frames[len(s.frames)-1]; f.ops > 0 {
					f.ops--
					s.depth--
				}
			}
		}
		s.braces++
		s.retBraces = append(s.retBraces, s.braces)
		s.modes = append(s.modes, lexMode{kind: 'c'})
		s.push(frInterp, i)
		return n, true
	}
	if i+2 < len(src) && src[i+1] == c && src[i+2] == '{' {
		return i + 3, false
	}
	return i + 1, false
}

// directiveKeyword returns the identifier that starts a template directive
// at i, after spaces and comments.
func (s *nestScanner) directiveKeyword(i int) string {
	src := s.src
	i = s.skipTrivia(i)
	if i >= len(src) {
		return ""
	}
	return string(src[i:skipIdent(src, i)])
}

// forExpr reports whether the "{" before i opens a for expression: "for"
// and an identifier follow it.
func (s *nestScanner) forExpr(i int) bool {
	src := s.src
	i = s.skipTrivia(i)
	if !bytes.HasPrefix(src[i:], []byte("for")) || skipIdent(src, i) != i+3 {
		return false
	}
	i = s.skipTrivia(i + 3)
	return i < len(src) && skipIdent(src, i) > i
}

// commentEnd returns the offset after the */ that ends the comment opened
// at i, or -1. Where no */ is left is remembered: /*/*/* ... must not be
// searched to its end once per /*.
func (s *nestScanner) commentEnd(i int) int {
	if i+2 >= s.noClose {
		return -1
	}
	e := bytes.Index(s.src[i+2:], []byte("*/"))
	if e < 0 {
		s.noClose = i + 2
		return -1
	}
	return i + 2 + e + 2
}

// skipTrivia returns the offset of the first byte at or after i that is
// not a space, a newline or in a comment.
func (s *nestScanner) skipTrivia(i int) int {
	src := s.src
	for i < len(src) {
		switch c := src[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || c == '/' && i+1 < len(src) && src[i+1] == '/':
			e := bytes.IndexByte(src[i:], '\n')
			if e < 0 {
				return len(src)
			}
			i += e + 1
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			e := s.commentEnd(i)
			if e < 0 {
				return i
			}
			i = e
		default:
			return i
		}
	}
	return i
}

// nextTokens returns the first n tokens of ts that are not comments or
// newlines.
func nextTokens(ts hclsyntax.Tokens, n int) hclsyntax.Tokens {
	var out hclsyntax.Tokens
	for _, t := range ts {
		if len(out) == n {
			break
		}
		if t.Type != hclsyntax.TokenComment && t.Type != hclsyntax.TokenNewline {
			out = append(out, t)
		}
	}
	return out
}

// skipIdent returns the offset after the identifier at i: HCL identifiers
// may hold '-'.
func skipIdent(src []byte, i int) int {
	for i < len(src) {
		c := src[i]
		if c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
				i++
				continue
			}
			return i
		}
		r, size := utf8.DecodeRune(src[i:])
		if size <= 1 || !isIDContinue(r) {
			return i
		}
		i += size
	}
	return i
}

// skipNumber returns the offset after the number at i (its exponent sign
// is not an operator).
func skipNumber(src []byte, i int) int {
	for i < len(src) {
		c := src[i]
		switch {
		case c >= '0' && c <= '9' || c == '.':
			i++
		case (c == 'e' || c == 'E') && i+1 < len(src):
			j := i + 1
			if src[j] == '+' || src[j] == '-' {
				j++
			}
			if j < len(src) && src[j] >= '0' && src[j] <= '9' {
				i = j
				continue
			}
			return i
		default:
			return i
		}
	}
	return i
}

// heredocIntro returns the length of a heredoc introducer at i (<<ID or
// <<-ID and a newline) and its marker; 0 if there is none.
func heredocIntro(src []byte, i int) (int, []byte) {
	j := i + 2
	if j > len(src) || src[i+1] != '<' {
		return 0, nil
	}
	if j < len(src) && src[j] == '-' {
		j++
	}
	start := j
	if j >= len(src) {
		return 0, nil
	}
	if c := src[j]; c < utf8.RuneSelf {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			return 0, nil
		}
	} else if r, _ := utf8.DecodeRune(src[j:]); !isIDStart(r) {
		return 0, nil
	}
	j = skipIdent(src, j)
	marker := src[start:j]
	if j < len(src) && src[j] == '\r' {
		j++
	}
	if j >= len(src) || src[j] != '\n' {
		return 0, nil
	}
	return j + 1 - i, marker
}

// isIDStart and isIDContinue are Unicode's ID_Start and ID_Continue, which
// HCL's identifiers are made of.
func isIDStart(r rune) bool {
	return (unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_ID_Start, r)) &&
		!unicode.Is(unicode.Pattern_Syntax, r) && !unicode.Is(unicode.Pattern_White_Space, r)
}

func isIDContinue(r rune) bool {
	return isIDStart(r) || (unicode.In(r, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Pc, unicode.Other_ID_Continue) &&
		!unicode.Is(unicode.Pattern_Syntax, r) && !unicode.Is(unicode.Pattern_White_Space, r))
}

// jsonNesting is nativeNesting for HCL's JSON syntax: arrays and objects
// nest, and every string adds the nesting of its content, which HCL parses
// as a template (and, for the value of "type", which typeexpr reads, as an
// expression).
func jsonNesting(src []byte, limit int) (at, deepest int) {
	depth := 0
	var stack, lastKey []byte
	var sc nestScanner
	for i := 0; i < len(src); {
		c := src[i]
		switch c {
		case '{', '[':
			stack = append(stack, c)
			depth++
			deepest = max(deepest, depth)
			if depth > limit {
				return i, deepest
			}
			i++
		case '}', ']':
			if n := len(stack); n > 0 && stack[n-1] == c-2 { // '{'+2 == '}', '['+2 == ']'
				stack = stack[:n-1]
				depth--
			}
			i++
		case '"':
			end, escaped := i+1, false
			for end < len(src) && src[end] != '"' && src[end] >= 32 {
				if src[end] == '\\' {
					escaped = true
					if end+1 < len(src) && src[end+1] < 32 {
						end++
						break
					}
					end++
				}
				end++
			}
			end = min(end, len(src))
			raw := src[i+1 : end]
			content := raw
			if escaped {
				var str string
				if json.Unmarshal(src[i:min(end+1, len(src))], &str) != nil {
					content = nil // HCL refuses the string before parsing it
				} else {
					content = []byte(str)
				}
			}
			next := end + 1
			for next < len(src) && (src[next] == ' ' || src[next] == '\t' || src[next] == '\n' || src[next] == '\r') {
				next++
			}
			isKey := next < len(src) && src[next] == ':'
			// HCL reads a string as a template; the value of "type" (a
			// variable's type) is read as an expression too
			asExpr := !isKey && string(lastKey) == "type"
			if isKey {
				lastKey = content
			}
			// a template nests only with ${ and %{
			if asExpr || bytes.IndexByte(content, '$') >= 0 || bytes.IndexByte(content, '%') >= 0 {
				inner := limit - depth - 1
				ta, td := sc.measure(content, modeTemplate, inner)
				ea, ed := -1, 0
				if asExpr {
					ea, ed = sc.measure(content, modeExpression, inner)
				}
				deepest = max(deepest, depth+1+max(td, ed))
				if ta >= 0 || ea >= 0 {
					if escaped {
						return i, deepest
					}
					if ta < 0 || ea >= 0 && ea < ta {
						ta = ea
					}
					return i + 1 + ta, deepest
				}
			}
			i = end + 1
		default:
			i++
		}
	}
	return -1, deepest
}

// tokenNesting measures nesting on the tokens of HCL's own lexer, by the
// rules nativeNesting follows on bytes: it is the measure of a source that
// is not UTF-8, and the tests' reference.
func tokenNesting(tokens hclsyntax.Tokens, mode scanMode, limit int) (at, deepest int) {
	s := &nestScanner{limit: limit, at: -1}
	switch mode {
	case modeConfig:
		s.frames = append(s.frames, nestFrame{kind: frBody})
	case modeExpression:
		s.frames = append(s.frames, nestFrame{kind: frExpr})
	case modeTemplate:
		s.frames = append(s.frames, nestFrame{kind: frTmpl})
	}
	for k, t := range tokens {
		switch t.Type {
		case hclsyntax.TokenNewline:
			s.newline()
		case hclsyntax.TokenComment:
			if bytes.HasSuffix(t.Bytes, []byte("\n")) {
				s.newline()
			}
		case hclsyntax.TokenOQuote:
			s.push(frQuote, t.Range.Start.Byte)
		case hclsyntax.TokenCQuote:
			s.popTo(frQuote)
		case hclsyntax.TokenOHeredoc:
			s.push(frHere, t.Range.Start.Byte)
		case hclsyntax.TokenCHeredoc:
			s.popTo(frHere)
		case hclsyntax.TokenTemplateInterp:
			s.push(frInterp, t.Range.Start.Byte)
		case hclsyntax.TokenTemplateControl:
			kw := ""
			if next := nextTokens(tokens[k+1:], 1); len(next) == 1 && next[0].Type == hclsyntax.TokenIdent {
				kw = string(next[0].Bytes)
			}
			switch kw {
			case "if", "for":
				s.op(t.Range.Start.Byte)
			case "endif", "endfor":
				if f := &s.frames[len(s.frames)-1]; f.ops > 0 {
					f.ops--
					s.depth--
				}
			}
			s.push(frInterp, t.Range.Start.Byte)
		case hclsyntax.TokenTemplateSeqEnd:
			s.popTo(frInterp)
		case hclsyntax.TokenOBrace:
			kind := byte(frBrace)
			if next := nextTokens(tokens[k+1:], 2); len(next) == 2 && next[0].Type == hclsyntax.TokenIdent &&
				string(next[0].Bytes) == "for" && next[1].Type == hclsyntax.TokenIdent {
				kind = frFor
			}
			s.push(kind, t.Range.Start.Byte)
		case hclsyntax.TokenCBrace:
			s.pop(frBrace, t.Range.Start.Byte)
		case hclsyntax.TokenOBrack:
			s.push(frBrack, t.Range.Start.Byte)
		case hclsyntax.TokenCBrack:
			s.pop(frBrack, t.Range.Start.Byte)
		case hclsyntax.TokenOParen:
			s.push(frParen, t.Range.Start.Byte)
		case hclsyntax.TokenCParen:
			s.pop(frParen, t.Range.Start.Byte)
		case hclsyntax.TokenComma:
			s.reset()
		case hclsyntax.TokenStar:
			s.star()
			s.op(t.Range.Start.Byte)
		case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenSlash, hclsyntax.TokenPercent,
			hclsyntax.TokenBang, hclsyntax.TokenQuestion, hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual,
			hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq, hclsyntax.TokenGreaterThan,
			hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr:
			s.op(t.Range.Start.Byte)
		}
		if s.at >= 0 {
			break
		}
	}
	return s.at, s.max
}

// refusedFile is the hcl.File of a source refused before parsing, for the
// snippet of d: its bytes, cut a little after d's place (60,000 "[" make
// one line too long to show), or none when even that line is too long.
func refusedFile(src []byte, d *hcl.Diagnostic) *hcl.File {
	if d.Subject == nil {
		return &hcl.File{Body: hcl.EmptyBody()}
	}
	at := d.Subject.Start.Byte
	ls := bytes.LastIndexByte(src[:at], '\n') + 1
	end := len(src)
	if le := bytes.IndexByte(src[at:], '\n'); le >= 0 {
		end = at + le
	}
	end = min(end, at+60)
	for end < len(src) && end > at && !utf8.RuneStart(src[end]) {
		end--
	}
	if end-ls > 1000 {
		return &hcl.File{Body: hcl.EmptyBody()}
	}
	return &hcl.File{Body: hcl.EmptyBody(), Bytes: src[:end:end]}
}
