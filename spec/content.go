package spec

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// bodyContent is body.Content(schema), without its copies where it can.
// For a native-syntax body as parsed (not the rest of a PartialContent,
// whose hidden items this cannot see: only a block's own body is given
// here) whose every attribute and block the schema accepts, with the
// labels it expects and every required attribute set, Content's result
// is the schema's attributes that the body sets and its blocks in order,
// and no diagnostic; hclsyntax's Content builds that through
// PartialContent, which copies the body's maps (about 3 KB for a daemon
// block, 31 MB of a cold load of 10,000). Anything else goes to Content
// itself, so the diagnostics are HCL's own.
func (l *loader) bodyContent(body hcl.Body, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return body.Content(schema)
	}
	ix := l.indexOf(schema)
	if ix.slow {
		return body.Content(schema)
	}
	for name := range sb.Attributes {
		if !ix.attrs[name] {
			return body.Content(schema)
		}
	}
	for _, b := range sb.Blocks {
		labels, ok := ix.blocks[b.Type]
		if !ok || len(b.Labels) != labels {
			return body.Content(schema)
		}
	}
	for _, name := range ix.required {
		if sb.Attributes[name] == nil {
			return body.Content(schema)
		}
	}
	c := &hcl.BodyContent{Attributes: make(hcl.Attributes, len(sb.Attributes)), MissingItemRange: sb.MissingItemRange()}
	for name, a := range sb.Attributes {
		c.Attributes[name] = a.AsHCLAttribute()
	}
	if len(sb.Blocks) > 0 {
		c.Blocks = make(hcl.Blocks, len(sb.Blocks))
		for i, b := range sb.Blocks {
			c.Blocks[i] = b.AsHCLBlock()
		}
	}
	return c, nil
}

// schemaIndex is a schema's names, for bodyContent.
type schemaIndex struct {
	attrs    map[string]bool
	blocks   map[string]int // type: number of labels
	required []string
	// slow: a name twice in the schema (Content then says more than
	// the names): always Content
	slow bool
}

// indexOf is s's index, made once per load (the declarations are made on
// one goroutine).
func (l *loader) indexOf(s *hcl.BodySchema) *schemaIndex {
	if ix, ok := l.schemaIndexes[s]; ok {
		return ix
	}
	ix := &schemaIndex{attrs: make(map[string]bool, len(s.Attributes)), blocks: make(map[string]int, len(s.Blocks))}
	for _, a := range s.Attributes {
		ix.slow = ix.slow || ix.attrs[a.Name]
		ix.attrs[a.Name] = true
		if a.Required {
			ix.required = append(ix.required, a.Name)
		}
	}
	for _, b := range s.Blocks {
		_, dup := ix.blocks[b.Type]
		ix.slow = ix.slow || dup
		ix.blocks[b.Type] = len(b.LabelNames)
	}
	if l.schemaIndexes == nil {
		l.schemaIndexes = map[*hcl.BodySchema]*schemaIndex{}
	}
	l.schemaIndexes[s] = ix
	return ix
}
