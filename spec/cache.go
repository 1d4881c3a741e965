package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// The evaluated-configuration cache: with Options.Cache, Load keeps, in
// the state directory (CacheFile), the evaluated instances of each
// daemon and job block, so that a block whose text and inputs did not
// change is neither parsed nor evaluated again. docs/RATIONALE.md, "Why
// an evaluated-configuration cache", says why and how; in short:
//
//   - A native-syntax file is cut into pieces at top-level block
//     boundaries (a line "}" followed by a line that starts a word, or by
//     the line comments before one). A piece that starts (after its
//     comments) with "daemon" or "job" is looked up by the SHA-256 of its
//     file name and bytes; any other piece is parsed.
//   - An entry holds the block's instances (every field of Resource,
//     ranges relative to the piece), its value when another block referred
//     to it, what it refers to with a fingerprint of each one's value
//     (variables, locals with what they reach, other blocks, its runtime),
//     and the runtime it was on. It is used only when every fingerprint
//     matches the values of this load, and, when another block refers to
//     it now, its value was stored.
//   - Only blocks that evaluated without a diagnostic, on a built-in
//     runtime kind without a block that reads files, with no sensitive
//     value and whose text does not mention "file" (file(), filebase64(),
//     fileexists(), templatefile() read the disk) are stored.
//   - The file is salted with the cache format, the orch binary, Go's
//     version, the configuration directory and the runtime kinds: a
//     change of any of these ignores it. A file that is unreadable,
//     truncated or corrupt (its checksum) is ignored, without a word; an
//     unwritable state directory leaves the load without a cache, and so
//     does one (or a file) that another user could have written
//     (trustedPath).
//   - Errors are never served from the cache: a load with any error, or
//     anything unexpected in the cached path (a piece that does not parse
//     alone, a stale fingerprint, a reference that does not resolve), is
//     done again without it, so that its results and diagnostics are the
//     ones of a load without a cache (FuzzCacheEquivalence,
//     FuzzCacheBytes).

// CacheFile is the name of the cache in the state directory.
const CacheFile = "config-cache"

const cacheMagic = "orch evaluated-configuration cache\n"

// cacheFormat changes whenever the format or the meaning of an entry does.
const cacheFormat = 4 // 3: a block's health.exec program's range; 4: Ranges a sorted slice

// cacheSalt is what an entry depends on besides its inputs.
var (
	exeIdentityOnce sync.Once
	exeIdentity     string
)

func binaryIdentity() string {
	exeIdentityOnce.Do(func() {
		id := runtime.Version()
		if bi, ok := debug.ReadBuildInfo(); ok {
			id += "\x00" + bi.Main.Version
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" || s.Key == "vcs.modified" || s.Key == "vcs.time" {
					id += "\x00" + s.Value
				}
			}
		}
		// the executable itself: a rebuilt orch (same version, other
		// code) does not trust the cache of the previous one
		if exe, err := os.Executable(); err == nil {
			if st, err := os.Stat(exe); err == nil {
				id += "\x00" + exe + "\x00" + strconv.FormatInt(st.Size(), 10) + "\x00" + strconv.FormatInt(st.ModTime().UnixNano(), 10)
			}
		}
		exeIdentity = id
	})
	return exeIdentity
}

func (l *loader) cacheSalt() [32]byte {
	h := sha256.New()
	h.Write([]byte(cacheMagic))
	h.Write([]byte{cacheFormat, 0})
	h.Write([]byte(binaryIdentity()))
	h.Write([]byte{0})
	h.Write([]byte(l.cfg.Dir))
	kinds := keysOf(l.opts.Schemas)
	for _, k := range kinds {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// cacheState is the cache of one Load, shared by its evaluating goroutines.
type cacheState struct {
	lookups bool // serve entries (false: only write them)
	path    string
	salt    [32]byte
	loaded  bool
	// writable: the state directory exists and is trusted, so the cache
	// is written at the end of the load (saveCache)
	writable bool
	// makeDir is the state directory saveCache makes first (missing at
	// the start of a load with Options.MakeStateDir); "": none.
	makeDir string
	entries map[[32]byte][]byte // key -> blob, from the file
	// aborted is set when the cached path meets anything it cannot vouch
	// for: the load is then done again without serving entries.
	aborted atomic.Bool
	reason  atomic.Value // string, for tests
	hits    atomic.Int64
}

func (c *cacheState) abort(why string) {
	if c.aborted.CompareAndSwap(false, true) {
		c.reason.Store(why)
	}
}

// piece is a part of a native-syntax file cut at a top-level block
// boundary.
type piece struct {
	file  string
	fi    int // the file's index in name order
	src   []byte
	start hcl.Pos
	key   [32]byte
	body  *hclsyntax.Body // once parsed, until the blocks are declared
	// single: the parsed piece is one block and nothing else (it may be
	// cached), whose range is span and header def
	single    bool
	span, def hcl.Range
	// candidate: it starts with "daemon" or "job", so it may be cached;
	// it is looked up (or parsed) once the cache is open.
	candidate bool
	cached    *cachedBlock // a hit
}

func (p *piece) rebase() *rebase {
	return &rebase{file: p.file, line: p.start.Line, byte: p.start.Byte}
}

// blockCuts returns the offsets where the pieces of src start: 0, then
// the first non-blank line after every line "}" when that line starts a
// word, or starts the line comments (# or //) just before such a line: a
// block's comment goes with the block.
func blockCuts(src []byte) []int {
	cuts := []int{0}
	for at := 0; at < len(src); {
		i := bytes.Index(src[at:], []byte("\n}\n"))
		if i < 0 {
			break
		}
		j := skipBlank(src, at+i+3)
		start := j
		for isLineComment(src[j:]) {
			k := bytes.IndexByte(src[j:], '\n')
			if k < 0 {
				j = len(src)
				break
			}
			j = skipBlank(src, j+k+1)
		}
		if j >= len(src) {
			break
		}
		if c := src[j]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' {
			cuts = append(cuts, start)
		}
		at = j
	}
	return cuts
}

func skipBlank(src []byte, j int) int {
	for j < len(src) && (src[j] == '\n' || src[j] == '\r') {
		j++
	}
	return j
}

func isLineComment(b []byte) bool {
	return len(b) > 0 && b[0] == '#' || len(b) > 1 && b[0] == '/' && b[1] == '/'
}

// firstWord skips the line comments and blank lines a piece starts with.
func firstWord(b []byte) []byte {
	for isLineComment(b) {
		k := bytes.IndexByte(b, '\n')
		if k < 0 {
			return nil
		}
		b = b[skipBlank(b, k+1):]
	}
	return b
}

// cutPieces cuts a file into pieces, each with its position.
func cutPieces(src []byte, name string, fi int) []*piece {
	cuts := blockCuts(src)
	out := make([]*piece, len(cuts))
	pos := hcl.InitialPos
	prev := 0
	for i, c := range cuts {
		if i > 0 {
			pos = hcl.Pos{Line: pos.Line + bytes.Count(src[prev:c], []byte("\n")), Column: 1, Byte: c}
		}
		end := len(src)
		if i+1 < len(cuts) {
			end = cuts[i+1]
		}
		p := &piece{file: name, fi: fi, src: src[c:end], start: pos}
		w := firstWord(p.src)
		p.candidate = startsWord(w, "daemon") || startsWord(w, "job")
		out[i] = p
		prev = c
	}
	return out
}

func startsWord(b []byte, w string) bool {
	return len(b) > len(w) && string(b[:len(w)]) == w && (b[len(w)] == ' ' || b[len(w)] == '\t' || b[len(w)] == '"')
}

func (p *piece) hash() {
	h := sha256.New()
	h.Write([]byte(p.file))
	h.Write([]byte{0})
	h.Write(p.src)
	h.Sum(p.key[:0])
}

// parse parses the piece alone, at its place in the file; false when it
// has a diagnostic.
func (p *piece) parse() bool {
	f, diags := hclsyntax.ParseConfig(p.src, p.file, p.start)
	if len(diags) > 0 || f == nil {
		return false
	}
	p.body = f.Body.(*hclsyntax.Body)
	if p.single = len(p.body.Blocks) == 1 && len(p.body.Attributes) == 0; p.single {
		blk := p.body.Blocks[0]
		p.span, p.def = blk.Range(), blk.DefRange()
	}
	return true
}

// parsePieces parses pieces in parallel; false when one fails.
func parsePieces(ps []*piece) bool {
	var failed atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(ps)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ps) || failed.Load() {
					return
				}
				if !ps[i].parse() {
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// cachedBlock is the head of an entry, decoded when its piece is looked
// up; the instances are decoded when the block is evaluated.
type cachedBlock struct {
	key      [32]byte
	blob     []byte // the whole entry, written back as is
	kind     Kind
	name     string
	runtime  Address
	implicit bool // the runtime was the implicit one (no runtime = ...)
	counted  bool
	forEach  bool
	refs     []cachedRef
	span     hcl.Range // the block, for diagnostics' context
	def      hcl.Range
	command  *hcl.Range // where checkPrograms points
	probe    *hcl.Range // and for health.exec's program
	rest     []byte     // the instances, encoded
	rb       *rebase
}

type cachedRef struct {
	key  string // "var.x", "local.y", "daemon.z", "runtime.process.default"
	expr bool   // referred to by an expression (not only depends_on)
	fp   [32]byte
}

// readCache reads the cache file; any problem leaves it empty.
func (c *cacheState) read() {
	c.entries = map[[32]byte][]byte{}
	if !trustedPath(filepath.Dir(c.path), true) || !trustedPath(c.path, false) {
		return
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	hdr := len(cacheMagic) + 32 + 32
	if len(b) < hdr || string(b[:len(cacheMagic)]) != cacheMagic {
		return
	}
	if !bytes.Equal(b[len(cacheMagic):len(cacheMagic)+32], c.salt[:]) {
		return
	}
	sum := b[len(cacheMagic)+32 : hdr]
	payload := b[hdr:]
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], sum) {
		return
	}
	d := &decoder{b: payload}
	n, err := d.uvarint()
	if err != nil || n > uint64(len(payload)) {
		return
	}
	entries := make(map[[32]byte][]byte, n)
	for i := uint64(0); i < n; i++ {
		if len(d.b) < 32 {
			return
		}
		var k [32]byte
		copy(k[:], d.b)
		d.b = d.b[32:]
		blob, err := d.bytes()
		if err != nil {
			return
		}
		entries[k] = blob
	}
	c.entries = entries
	c.loaded = true
}

// write replaces the cache file with entries, atomically; a failure is
// ignored (the next load works without a cache).
func (c *cacheState) write(keys [][32]byte, blobs [][]byte) {
	dir := filepath.Dir(c.path)
	// One buffer of the file's size, the payload written in place after
	// the header: growing the payload by appending, then copying it
	// behind the header, was 60 ms of the plan after a one-line edit of
	// 10,000 daemons (a 3.4 MB file).
	hdr := len(cacheMagic) + 64
	size := hdr + binary.MaxVarintLen64
	for _, b := range blobs {
		size += 32 + binary.MaxVarintLen64 + len(b)
	}
	out := make([]byte, hdr, size)
	copy(out, cacheMagic)
	copy(out[len(cacheMagic):], c.salt[:])
	out = binary.AppendUvarint(out, uint64(len(keys)))
	for i, k := range keys {
		out = append(out, k[:]...)
		out = binary.AppendUvarint(out, uint64(len(blobs[i])))
		out = append(out, blobs[i]...)
	}
	sum := sha256.Sum256(out[hdr:])
	copy(out[len(cacheMagic)+32:], sum[:])
	f, err := os.CreateTemp(dir, CacheFile+".*.tmp")
	if err != nil {
		return
	}
	_, err = f.Write(out)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// head decodes the head of an entry.
func decodeHead(key [32]byte, blob []byte, rb *rebase) (*cachedBlock, error) {
	d := &decoder{b: blob, rb: rb}
	cb := &cachedBlock{key: key, blob: blob, rb: rb}
	var err error
	u := func() uint64 {
		if err != nil {
			return 0
		}
		var x uint64
		x, err = d.uvarint()
		return x
	}
	s := func() string {
		if err != nil {
			return ""
		}
		var x string
		x, err = d.str()
		return x
	}
	r := func() hcl.Range {
		if err != nil {
			return hcl.Range{}
		}
		var x hcl.Range
		x, err = d.rng()
		return x
	}
	cb.kind = Kind(u())
	cb.name = s()
	cb.runtime = Address{Kind: Kind(u()), Type: s(), Name: s()}
	flags := u()
	cb.implicit, cb.counted, cb.forEach = flags&1 != 0, flags&2 != 0, flags&4 != 0
	nrefs := u()
	if err == nil && nrefs > uint64(len(d.b)) {
		err = errShort
	}
	for i := uint64(0); err == nil && i < nrefs; i++ {
		ref := cachedRef{key: s(), expr: u() != 0}
		if err == nil && len(d.b) < 32 {
			err = errShort
		}
		if err == nil {
			copy(ref.fp[:], d.b)
			d.b = d.b[32:]
		}
		cb.refs = append(cb.refs, ref)
	}
	cb.span = r()
	cb.def = r()
	if u() != 0 {
		c := r()
		cb.command = &c
	}
	if u() != 0 {
		c := r()
		cb.probe = &c
	}
	if err != nil {
		return nil, err
	}
	if cb.kind != KindDaemon && cb.kind != KindJob {
		return nil, errors.New("not a daemon or job")
	}
	cb.rest = d.b
	return cb, nil
}

// instances decodes the instances of an entry, and the block's value for
// references (cty.NilVal when no block referred to it when it was stored).
func (cb *cachedBlock) instances() ([]*Resource, cty.Value, error) {
	d := &decoder{b: cb.rest, rb: cb.rb}
	n, err := d.uvarint()
	if err != nil || n > uint64(len(d.b)) {
		return nil, cty.NilVal, errShort
	}
	out := make([]*Resource, 0, n)
	for i := uint64(0); i < n; i++ {
		r, err := d.resource()
		if err != nil {
			return nil, cty.NilVal, err
		}
		out = append(out, r)
	}
	var v cty.Value
	if err := decCty(d, reflect.ValueOf(&v).Elem()); err != nil {
		return nil, cty.NilVal, err
	}
	if len(d.b) != 0 {
		return nil, cty.NilVal, errors.New("trailing bytes in a cache entry")
	}
	return out, v, nil
}

// openCache finds the cache file once the project's state directory is
// known (after the orch block is decoded), and reads it.
func (l *loader) openCache() {
	c := l.cache
	if c == nil {
		return
	}
	dir := l.opts.CacheStateDir
	if dir == "" {
		dir = l.cfg.Project.StateDir
	}
	if dir == "" {
		dir = ".orch"
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(l.cfg.Dir, dir)
	}
	c.path = filepath.Join(dir, CacheFile)
	c.salt = l.cacheSalt()
	// decided once, before any block is evaluated: entries are encoded
	// as their blocks are (release)
	c.writable = trustedPath(filepath.Dir(c.path), true)
	if !c.writable && l.opts.MakeStateDir {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			c.writable, c.makeDir = true, dir
		}
	}
	if c.lookups {
		c.read()
	}
}

// resolvePending looks the candidate pieces up, and parses the misses.
func (l *loader) resolvePending() {
	c := l.cache
	if len(l.pending) == 0 {
		return
	}
	var parse []*piece
	if c.lookups && len(c.entries) > 0 {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < min(runtime.GOMAXPROCS(0), len(l.pending)); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(l.pending) {
						return
					}
					p := l.pending[i]
					p.hash()
					if blob, ok := c.entries[p.key]; ok {
						if cb, err := decodeHead(p.key, blob, p.rebase()); err == nil {
							p.cached = cb
						}
					}
				}
			}()
		}
		wg.Wait()
	}
	for _, p := range l.pending {
		if p.cached == nil {
			parse = append(parse, p)
		}
	}
	if !parsePieces(parse) {
		c.abort("a piece does not parse alone")
	}
}

// declareCached declares the block of a cache hit.
func (l *loader) declareCached(p *piece) {
	cb := p.cached
	addr := Address{Kind: cb.kind, Name: cb.name}
	n := &node{key: addr.String(), kind: cb.kind, addr: addr, decl: cb.def, cached: cb, piece: p,
		runtime: cb.runtime, counted: cb.counted, forEach: cb.forEach}
	if cb.implicit && cb.runtime != l.processRT {
		l.cache.abort("the implicit runtime changed")
		return
	}
	rt := l.nodes[cb.runtime.String()]
	if rt == nil || rt.schema == nil || rt.dynamic {
		l.cache.abort("the runtime is gone or not built in")
		return
	}
	n.schema = rt.schema
	if !l.addNode(n) {
		l.cache.abort("a duplicate")
	}
}

// collectCachedRefs is collectRefs for a cache hit.
func (l *loader) collectCachedRefs(n *node) {
	for _, r := range n.cached.refs {
		if name, ok := cutPrefix(r.key, "var."); ok {
			if _, ok := l.vars[name]; !ok {
				l.cache.abort("a variable is gone")
			}
			continue
		}
		t := l.nodes[r.key]
		if t == nil || t == n {
			l.cache.abort("a reference is gone")
			continue
		}
		if r.expr {
			t.referenced = true
		}
		n.refs = append(n.refs, t)
	}
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// evalCached is evaluate for a cache hit: the fingerprints of what the
// block refers to are checked, and its instances decoded.
func (l *loader) evalCached(n *node) {
	for _, r := range n.cached.refs {
		var fp [32]byte
		var ok bool
		if name, isVar := cutPrefix(r.key, "var."); isVar {
			fp, ok = l.varFP(name)
		} else {
			fp, ok = l.nodeFP(l.nodes[r.key], r.expr)
		}
		if !ok || fp != r.fp {
			l.cache.abort("stale: " + r.key)
			n.failed = true
			return
		}
	}
	insts, value, err := n.cached.instances()
	if err != nil {
		l.cache.abort("an entry does not decode")
		n.failed = true
		return
	}
	if n.referenced {
		// another block reads its value: stored only when one did then
		if value == cty.NilVal {
			l.cache.abort("a cached block is referenced, and its value was not stored")
			n.failed = true
			return
		}
		n.value = value
	}
	n.instances = insts
	l.cache.hits.Add(1)
}

// valueFP is a fingerprint of a value: its type and its JSON; false for a
// value that cannot be cached (marked: sensitive, or unknown).
func valueFP(h interface{ Write([]byte) (int, error) }, v cty.Value) bool {
	if v == cty.NilVal {
		h.Write([]byte("nil"))
		return true
	}
	if v.ContainsMarked() || !v.IsWhollyKnown() {
		return false
	}
	ty, err := ctyjson.MarshalType(v.Type())
	if err != nil {
		return false
	}
	js, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return false
	}
	h.Write(ty)
	h.Write([]byte{0})
	h.Write(js)
	return true
}

// varFP is the fingerprint of a variable's value.
func (l *loader) varFP(name string) ([32]byte, bool) {
	fp, ok := l.varFPs[name]
	return fp, ok
}

// computeVarFPs fingerprints every variable, before evaluation.
func (l *loader) computeVarFPs() {
	l.varFPs = make(map[string][32]byte, len(l.varVals))
	for name, v := range l.varVals {
		if vr := l.vars[name]; vr == nil || vr.Sensitive {
			continue
		}
		h := sha256.New()
		if !valueFP(h, v) {
			continue
		}
		var fp [32]byte
		h.Sum(fp[:0])
		l.varFPs[name] = fp
	}
}

// nodeFP is the fingerprint of what a block or local gives a block that
// refers to it: its value (an expression's reference) or its existence
// (depends_on), and for a local the blocks it reaches (they become
// dependencies of the block). Computed once per node.
func (l *loader) nodeFP(t *node, expr bool) ([32]byte, bool) {
	if t == nil {
		return [32]byte{}, false
	}
	t.fpOnce.Do(func() {
		h := sha256.New()
		h.Write([]byte(t.key))
		h.Write([]byte{0})
		if t.failed || !valueFP(h, t.value) {
			return
		}
		reach := make([]string, 0, len(t.reach))
		for x := range t.reach {
			reach = append(reach, x.key)
		}
		sort.Strings(reach)
		for _, k := range reach {
			h.Write([]byte{0})
			h.Write([]byte(k))
		}
		h.Sum(t.fp[:0])
		t.fpOK = true
	})
	if !expr && t.kind != KindInvalid && t.kind != KindRuntime {
		// depends_on only: the block's address is all that is used
		h := sha256.Sum256([]byte("exists\x00" + t.key))
		return h, true
	}
	return t.fp, t.fpOK
}

// cacheable reports whether n's evaluation may be stored: see the top of
// this file.
func (l *loader) cacheable(n *node) bool {
	p := n.piece
	if p == nil || !p.single {
		return false
	}
	if n.kind != KindDaemon && n.kind != KindJob || n.failed || n.dynamic || n.noRuntime || n.schema == nil {
		return false
	}
	if bytes.Contains(p.src, []byte("file")) {
		return false // file functions read the disk
	}
	if rt := l.nodes[n.runtime.String()]; rt == nil || rt.dynamic || rt.attrs["plugin"] != nil {
		return false
	} else if _, builtIn := l.opts.Schemas[n.runtime.Type]; !builtIn {
		return false
	}
	for name := range n.nested {
		if bs := n.schema.block(name); bs != nil && bs.Resolve != nil {
			return false // Resolve may read files
		}
	}
	for _, r := range n.instances {
		if len(r.Sensitive) > 0 {
			return false
		}
	}
	return true
}

// encodeEntry writes the entry of a block evaluated this load.
func (l *loader) encodeEntry(n *node) ([]byte, bool) {
	p := n.piece
	rb := p.rebase()
	b := binary.AppendUvarint(nil, uint64(n.kind))
	b = appendStr(b, n.addr.Name)
	b = binary.AppendUvarint(b, uint64(n.runtime.Kind))
	b = appendStr(b, n.runtime.Type)
	b = appendStr(b, n.runtime.Name)
	var flags uint64
	if n.attrs["runtime"] == nil {
		flags |= 1
	}
	if n.counted {
		flags |= 2
	}
	if n.forEach {
		flags |= 4
	}
	b = binary.AppendUvarint(b, flags)
	// the variables its expressions read
	vars := map[string]bool{}
	for _, e := range l.exprsOf(n) {
		for _, t := range e.Variables() {
			if t.RootName() != "var" || len(t) < 2 {
				continue
			}
			if a, ok := t[1].(hcl.TraverseAttr); ok {
				vars[a.Name] = true
			}
		}
	}
	var refs []cachedRef
	for _, name := range keysOf(vars) {
		fp, ok := l.varFP(name)
		if !ok {
			return nil, false
		}
		refs = append(refs, cachedRef{key: "var." + name, expr: true, fp: fp})
	}
	for i, t := range n.refs {
		expr := n.refExpr[i]
		fp, ok := l.nodeFP(t, expr)
		if !ok {
			return nil, false
		}
		refs = append(refs, cachedRef{key: t.key, expr: expr, fp: fp})
	}
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = appendStr(b, r.key)
		if r.expr {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = append(b, r.fp[:]...)
	}
	b = appendRange(b, p.span, rb)
	b = appendRange(b, p.def, rb)
	for _, at := range []func(*node) (hcl.Range, bool){commandRange, probeRange} {
		if rng, ok := at(n); ok {
			b = append(b, 1)
			b = appendRange(b, rng, rb)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(n.instances)))
	var err error
	for _, r := range n.instances {
		if b, err = encodeResource(b, r, rb); err != nil {
			return nil, false
		}
	}
	// the value other blocks read (NilVal when none does); a marked one
	// (sensitive) is refused
	if b, err = encCty(b, reflect.ValueOf(n.value), rb); err != nil {
		return nil, false
	}
	return b, true
}

// saveCache writes the entries of this load's cacheable blocks, when they
// differ from the file's.
func (l *loader) saveCache() {
	c := l.cache
	if !c.writable {
		// no state directory yet (orch validate before any plan), or one
		// another user may write: nothing is written
		return
	}
	keys := make([][32]byte, 0, len(l.order))
	blobs := make([][]byte, 0, len(l.order))
	changed := false
	for _, n := range l.order {
		if n.piece == nil {
			continue
		}
		if cb := n.cached; cb != nil {
			keys = append(keys, cb.key)
			blobs = append(blobs, cb.blob)
			continue
		}
		var blob []byte
		if rb := n.released; rb != nil {
			// encoded when its syntax tree was let go (release)
			if blob = rb.entry; blob == nil {
				continue
			}
		} else if !l.cacheable(n) {
			continue
		} else if b, ok := l.encodeEntry(n); ok {
			blob = b
		} else {
			continue
		}
		n.piece.hash()
		keys = append(keys, n.piece.key)
		blobs = append(blobs, blob)
		changed = true
	}
	if !changed && c.loaded && len(keys) == len(c.entries) {
		return
	}
	if len(keys) == 0 && !c.loaded {
		return
	}
	if c.makeDir != "" {
		// Made as the CLI makes it (owned.Dir): by this user, for this
		// user alone; anything else found there is not written to.
		if err := os.MkdirAll(c.makeDir, 0o700); err != nil || !trustedPath(c.makeDir, true) {
			return
		}
	}
	c.write(keys, blobs)
}

// commandRange is where a diagnostic about the program of n points: the
// first element of its command, else the whole command.
func commandRange(n *node) (hcl.Range, bool) {
	if n.cached != nil {
		if n.cached.command == nil {
			return hcl.Range{}, false
		}
		return *n.cached.command, true
	}
	if rb := n.released; rb != nil {
		if rb.command == nil {
			return hcl.Range{}, false
		}
		return *rb.command, true
	}
	return firstElementRange(n.attrs["command"])
}

// firstElementRange is where a diagnostic about a program given as the
// list attribute a points: its first element, else the whole list.
func firstElementRange(a *hcl.Attribute) (hcl.Range, bool) {
	if a == nil {
		return hcl.Range{}, false
	}
	rng := a.Expr.Range()
	if elems, d := hcl.ExprList(a.Expr); !d.HasErrors() && len(elems) > 0 {
		rng = elems[0].Range()
	}
	return rng, true
}

// probeRange is where a diagnostic about the program of n's health.exec
// points: its first element, else the whole list.
func probeRange(n *node) (hcl.Range, bool) {
	if n.cached != nil {
		if n.cached.probe == nil {
			return hcl.Range{}, false
		}
		return *n.cached.probe, true
	}
	if rb := n.released; rb != nil {
		if rb.probe == nil {
			return hcl.Range{}, false
		}
		return *rb.probe, true
	}
	nb := n.nested["health"]
	if nb == nil {
		return hcl.Range{}, false
	}
	return firstElementRange(nb.attrs["exec"])
}

// resItem is a daemon, job or module block to declare, parsed or from the
// cache, at its place: declarations follow the files' order and the
// blocks' order in each, as without the cache.
type resItem struct {
	fi, off int
	b       *hcl.Block
	p       *piece // a cache hit
}

func (l *loader) itemOf(b *hcl.Block) resItem {
	return resItem{fi: l.fileIndex[b.DefRange.Filename], off: b.DefRange.Start.Byte, b: b}
}

func sortItems(items []resItem) {
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].fi != items[j].fi {
			return items[i].fi < items[j].fi
		}
		return items[i].off < items[j].off
	})
}

// pendingItems turns the looked-up pieces into items: a hit, or the
// blocks of the parsed piece.
func (l *loader) pendingItems() []resItem {
	var out []resItem
	for _, p := range l.pending {
		if p.cached != nil {
			out = append(out, resItem{fi: p.fi, off: p.start.Byte, p: p})
			continue
		}
		content, diags := l.bodyContent(p.body, rootSchema)
		l.diags = append(l.diags, diags...)
		if p.single {
			l.blockPiece[p.body.Blocks[0].Body] = p
		}
		if content == nil {
			continue
		}
		for _, b := range content.Blocks {
			switch b.Type {
			case "daemon", "job", "module":
				out = append(out, l.itemOf(b))
			default:
				// a piece that starts with daemon or job holds only
				// those; anything else is taken the slow way
				l.cache.abort("a candidate piece holds another block")
			}
		}
	}
	return out
}

// buildNavs gives each file cut in pieces the table of its top-level
// blocks (blockNav), from the parsed pieces and the hits.
func (l *loader) buildNavs() {
	for name, ps := range l.pieceFiles {
		f := l.cfg.Files[name]
		if f == nil {
			continue
		}
		nav := &blockNav{}
		for _, p := range ps {
			switch {
			case p.cached != nil:
				cb := p.cached
				nav.spans = append(nav.spans, navSpan{start: cb.span.Start.Byte, end: cb.span.End.Byte,
					context: cb.kind.String() + " " + strconv.Quote(cb.name), def: cb.def})
			case p.body != nil:
				nav.spans = append(nav.spans, newBlockNav(p.body).spans...)
			}
		}
		sort.SliceStable(nav.spans, func(i, j int) bool { return nav.spans[i].start < nav.spans[j].start })
		f.Nav = nav
	}
}

// parsePieceFile parses a native-syntax file in pieces cut at its
// blocks: the pieces that may come from the cache are left for
// resolvePending; the others are parsed now and merged into the file's
// body. nil when a piece does not parse alone (the cache is then given up
// for this load).
func (l *loader) parsePieceFile(name string, fi int, src []byte) *hcl.File {
	ps := cutPieces(src, name, fi)
	var now []*piece
	for _, p := range ps {
		if p.candidate {
			l.pending = append(l.pending, p)
		} else {
			now = append(now, p)
		}
	}
	if !parsePieces(now) {
		l.cache.abort("a piece does not parse alone")
		return nil
	}
	merged := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	for _, p := range now {
		for k, a := range p.body.Attributes {
			if _, dup := merged.Attributes[k]; dup {
				l.cache.abort("a top-level attribute twice")
				return nil
			}
			merged.Attributes[k] = a
		}
		merged.Blocks = append(merged.Blocks, p.body.Blocks...)
	}
	end := hcl.Pos{Line: 1, Column: 1, Byte: len(src)}
	end.Line += bytes.Count(src, []byte("\n"))
	if i := bytes.LastIndexByte(src, '\n'); i >= 0 {
		end.Column = len(src) - i
	} else {
		end.Column = len(src) + 1
	}
	merged.SrcRange = hcl.Range{Filename: name, Start: hcl.InitialPos, End: end}
	merged.EndRange = hcl.Range{Filename: name, Start: end, End: end}
	l.pieceFiles[name] = ps
	return &hcl.File{Body: merged, Bytes: src}
}

// lastCacheHits and lastCacheAbort say what the last cached load did, for
// tests.
var (
	lastCacheHits  atomic.Int64
	lastCacheAbort atomic.Value
)
