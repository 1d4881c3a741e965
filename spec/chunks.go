package spec

import (
	"bytes"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// A large native-syntax file is parsed in pieces of about chunkSize bytes,
// cut after a line "}" that closes a top-level block, in parallel, each at
// its own position in the file (so every range is the file's own), and the
// pieces' top-level bodies are merged into one.
//
// Why: hclsyntax lexes a whole file into one token slice that it grows by
// append (a 10,000-daemon file: ~310,000 tokens of 96 bytes; growing by a
// quarter at a time, the slice is copied over and over: 290 MB of the 775
// MB that orch plan allocated), then parses it in one goroutine. In pieces
// of 2 KB, each token slice stays small and is garbage once its piece is
// parsed, and every core parses: loading that file allocates 308 MB instead
// of 372 MB.
//
// A cut is only a guess made on the bytes (a "}" alone on its line, then a
// line that starts a word); a wrong guess (inside a heredoc, a comment or a
// nested block) leaves a piece that does not parse, and then the whole file
// is parsed again with the next pieces (up to maxJoin of them), and a file
// that still does not parse is parsed whole, as before, and its
// diagnostics are the ones reported.
// A piece that parses without error ends at a top-level boundary: it holds
// whole body items only.
const (
	chunkSize = 2 << 10
	maxJoin   = 8
)

// parseNative parses an HCL native-syntax file, in pieces when it is large.
func parseNative(src []byte, name string) (*hcl.File, hcl.Diagnostics) {
	if len(src) >= 2*chunkSize {
		if f := parseChunked(src, name); f != nil {
			return f, nil
		}
	}
	return hclsyntax.ParseConfig(src, name, hcl.InitialPos)
}

// chunkCuts returns the byte offsets where pieces start (the first is 0).
func chunkCuts(src []byte) []int {
	cuts := []int{0}
	for at := chunkSize; at < len(src); {
		i := bytes.Index(src[at:], []byte("\n}\n"))
		if i < 0 {
			break
		}
		cut := at + i + 3 // after the newline that ends the "}" line
		// the next non-blank line must start a word (a block or an
		// attribute), not a comment or a closing brace
		j := cut
		for j < len(src) && (src[j] == '\n' || src[j] == '\r') {
			j++
		}
		if j >= len(src) {
			break
		}
		if c := src[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			at = j
			continue
		}
		cuts = append(cuts, cut)
		at = cut + chunkSize
	}
	return cuts
}

// parseChunked parses src in pieces; nil when a piece has a diagnostic or
// two pieces set the same top-level attribute (the caller parses src whole).
func parseChunked(src []byte, name string) *hcl.File {
	cuts := chunkCuts(src)
	if len(cuts) < 2 {
		return nil
	}
	// the position of each cut: line and column counted once, in order
	starts := make([]hcl.Pos, len(cuts))
	pos := hcl.InitialPos
	prev := 0
	for i, c := range cuts {
		lines := bytes.Count(src[prev:c], []byte("\n"))
		pos = hcl.Pos{Line: pos.Line + lines, Column: 1, Byte: c}
		if i == 0 {
			pos = hcl.InitialPos
		}
		starts[i] = pos
		prev = c
	}
	bodies := make([]*hclsyntax.Body, len(cuts))
	failed := make([]bool, len(cuts))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(cuts)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				end := len(src)
				if i+1 < len(cuts) {
					end = cuts[i+1]
				}
				f, diags := hclsyntax.ParseConfig(src[cuts[i]:end], name, starts[i])
				if len(diags) > 0 || f == nil {
					failed[i] = true
					continue
				}
				bodies[i] = f.Body.(*hclsyntax.Body)
			}
		}()
	}
	for i := range cuts {
		next <- i
	}
	close(next)
	wg.Wait()
	merged := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	var first, last *hclsyntax.Body
	for i := 0; i < len(cuts); i++ {
		b := bodies[i]
		if failed[i] {
			// A cut inside something: the piece with the next ones, up
			// to maxJoin of them; a file that still does not parse is
			// parsed whole.
			b = nil
			for j := i + 1; j < len(cuts) && j <= i+maxJoin; j++ {
				end := len(src)
				if j+1 < len(cuts) {
					end = cuts[j+1]
				}
				f, diags := hclsyntax.ParseConfig(src[cuts[i]:end], name, starts[i])
				if len(diags) == 0 && f != nil {
					b, i = f.Body.(*hclsyntax.Body), j
					break
				}
			}
			if b == nil {
				return nil
			}
		}
		for k, a := range b.Attributes {
			if _, dup := merged.Attributes[k]; dup {
				return nil
			}
			merged.Attributes[k] = a
		}
		merged.Blocks = append(merged.Blocks, b.Blocks...)
		if first == nil {
			first = b
		}
		last = b
	}
	merged.SrcRange = hcl.RangeBetween(first.SrcRange, last.SrcRange)
	merged.EndRange = last.EndRange
	// The pieces' ranges hold the piece's bytes' offsets in the file, but
	// a range's Bytes are read from the file's source by whoever shows it:
	// fix up nothing else.
	return &hcl.File{Body: merged, Bytes: src, Nav: newBlockNav(merged)}
}

// blockNav answers what hclsyntax's own navigation answers for a
// diagnostic's context ("in daemon "web""): the top-level block holding an
// offset, from a sorted table instead of the syntax tree, so that a file
// kept only for its diagnostics does not keep its tree.
type blockNav struct {
	spans []navSpan
}

type navSpan struct {
	start, end int
	context    string
	def        hcl.Range
}

func newBlockNav(body *hclsyntax.Body) *blockNav {
	n := &blockNav{spans: make([]navSpan, 0, len(body.Blocks))}
	for _, b := range body.Blocks {
		r := b.Range()
		ctx := b.Type
		if len(b.Labels) > 0 {
			labels := make([]string, len(b.Labels))
			for i, l := range b.Labels {
				labels[i] = fmt.Sprintf("%q", l)
			}
			ctx += " " + strings.Join(labels, " ")
		}
		n.spans = append(n.spans, navSpan{start: r.Start.Byte, end: r.End.Byte, context: ctx, def: b.DefRange()})
	}
	sort.SliceStable(n.spans, func(i, j int) bool { return n.spans[i].start < n.spans[j].start })
	return n
}

func (n *blockNav) find(offset int) *navSpan {
	i := sort.Search(len(n.spans), func(i int) bool { return n.spans[i].end > offset })
	if i < len(n.spans) && n.spans[i].start <= offset && offset < n.spans[i].end {
		return &n.spans[i]
	}
	return nil
}

// ContextString is hcl's contextStringer: the header of the top-level
// block that holds offset, or "".
func (n *blockNav) ContextString(offset int) string {
	if s := n.find(offset); s != nil {
		return s.context
	}
	return ""
}

// ContextDefRange is hcl's contextDefRanger.
func (n *blockNav) ContextDefRange(offset int) hcl.Range {
	if s := n.find(offset); s != nil {
		return s.def
	}
	return hcl.Range{}
}

// slimFiles replaces, once the configuration is loaded, every native-syntax
// file of cfg.Files by its bytes and a blockNav: all a diagnostic needs to
// show a snippet and its context. The syntax trees are then garbage: the
// configuration is kept as its evaluated values only.
func slimFiles(files map[string]*hcl.File) {
	for name, f := range files {
		if f == nil {
			continue
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			continue
		}
		nav, ok := f.Nav.(*blockNav)
		if !ok {
			nav = newBlockNav(body)
		}
		files[name] = &hcl.File{Body: hcl.EmptyBody(), Bytes: f.Bytes, Nav: nav}
	}
}
