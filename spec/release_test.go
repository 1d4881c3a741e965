package spec

import (
	"os"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestReleaseAfterEvaluation: once a load has evaluated its blocks, no
// daemon's or job's syntax tree is held any more (by its node, its piece
// or its file), with the cache and without it; and the load still gives
// what it gave (the cache's equivalence, with the cache written by the
// released blocks and then served).
func TestReleaseAfterEvaluation(t *testing.T) {
	c := newCacheCase(t)
	for round, cache := range []bool{false, true, true} {
		l := newLoader(os.DirFS(c.dir), c.dir, c.opts(cache))
		if cache {
			l.cache = &cacheState{lookups: true}
			l.pieceFiles = map[string][]*piece{}
			l.blockPiece = map[*hclsyntax.Body]*piece{}
		}
		l.run()
		if l.diags.HasErrors() || cache && l.cache.aborted.Load() {
			t.Fatalf("round %d: %s", round, l.diags.Error())
		}
		if cache {
			l.saveCache()
		}
		released := 0
		for _, n := range l.order {
			if n.kind != KindDaemon && n.kind != KindJob || n.cached != nil {
				continue
			}
			if n.block != nil || n.attrs != nil || n.nested != nil || n.released == nil {
				// (a daemon's or job's node never holds its block)
				t.Fatalf("round %d: %s keeps its syntax tree after evaluation", round, n.key)
			}
			if n.piece != nil && n.piece.body != nil {
				t.Fatalf("round %d: the piece of %s keeps its syntax tree", round, n.key)
			}
			released++
		}
		if round < 2 && released == 0 {
			t.Fatalf("round %d: no block released", round)
		}
		for name, f := range l.cfg.Files {
			if b, ok := f.Body.(*hclsyntax.Body); ok && len(b.Blocks) > 0 {
				for _, blk := range b.Blocks {
					if blk.Type == "daemon" || blk.Type == "job" {
						t.Fatalf("round %d: %s keeps the tree of %s %s", round, name, blk.Type, blk.Labels)
					}
				}
			}
		}
		if l.blockPiece != nil {
			t.Fatalf("round %d: blockPiece kept", round)
		}
		for _, p := range l.pending {
			if p.body != nil {
				t.Fatalf("round %d: a piece of %s keeps its syntax tree", round, p.file)
			}
		}
	}
	// the cache the released blocks wrote serves, and loads as without it
	if hits := c.check(t); hits < 4 {
		t.Fatalf("%d hits from the cache written by released blocks (last abort: %v)", hits, lastCacheAbort.Load())
	}
}
