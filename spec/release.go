package spec

import "github.com/hashicorp/hcl/v2"

// A loaded configuration keeps no syntax tree ("Why does a loaded
// configuration keep no syntax tree?", docs/RATIONALE.md), and the load
// itself lets each daemon's and job's tree go in two stages rather than
// all of them at the end: once the block is declared, everything but
// what the node took (its attributes' expressions, its nested blocks'
// types, ranges and attributes) goes: the bodies, the blocks and the
// syntax attributes, about half the tree; once it is evaluated, the
// rest (release). At 10,000 blocks the trees (about 26 MB) and what the
// declaration took of them (about 12 MB) were all live while the
// evaluated instances (about 27 MB) grew beside them, which is where a
// cold load peaked: 72-94 MB live, now 31-35 MB at each stage.

// releasedBlock is what is read of a daemon or job block after its
// evaluation, once its syntax tree is gone.
type releasedBlock struct {
	command, probe *hcl.Range // commandRange, probeRange
	// entry is the block's cache entry (encodeEntry), made before the
	// tree goes; nil when the block is not cacheable or no cache is
	// written.
	entry []byte
}

// release lets go of the syntax tree of an evaluated daemon or job block:
// its block, attributes, nested blocks and piece's body. What checkPrograms
// and saveCache read of them later is kept first.
func (l *loader) release(n *node) {
	if n.kind != KindDaemon && n.kind != KindJob || n.cached != nil || n.released != nil {
		return
	}
	rb := &releasedBlock{}
	if rng, ok := commandRange(n); ok {
		rb.command = &rng
	}
	if rng, ok := probeRange(n); ok {
		rb.probe = &rng
	}
	if c := l.cache; c != nil && c.writable && !c.aborted.Load() && l.cacheable(n) {
		if blob, ok := l.encodeEntry(n); ok {
			rb.entry = blob
		}
	}
	n.released = rb
	n.attrs, n.nested = nil, nil
}
