package spec

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// loader holds the state of one Load.
type loader struct {
	fsys  fs.FS
	opts  Options
	cfg   *Config
	diags hcl.Diagnostics
	funcs map[string]function.Function
	reads *readsFS // what funcs read of the directory (reads.go)
	// restoreGC ends the relaxed collection of a large load (relaxGC).
	restoreGC func()

	vars      map[string]*Variable
	varVals   map[string]cty.Value // marked "sensitive" when the variable is
	locals    map[string]*node
	nodes     map[string]*node // every evaluable node by key
	order     []*node          // declaration order, for deterministic walks
	processRT Address          // the runtime of daemons that name none

	// broken holds the keys ("daemon.api", "runtime.x.y") and variable
	// names whose declaration was refused with a diagnostic: references to
	// them are not reported again.
	broken map[string]bool
	// brokenRef is set by lookupBlock when it meets a reference to a
	// broken block (collectRefs: the node referring is not evaluated).
	brokenRef bool
	// secrets holds the text of every sensitive value met, for redact.
	secrets   map[string]bool
	secretsMu *sync.Mutex

	validations map[string][]validation
	defaults    map[string]*typeexpr.Defaults
	schemaCache map[string]*hcl.BodySchema
	// schemaIndexes indexes the schemas bodyContent met
	schemaIndexes map[*hcl.BodySchema]*schemaIndex
	// resolved holds the results of BlockSchema.Resolve, by value.
	resolved   map[string]*resolution
	resolvedMu *sync.Mutex

	// ctxs holds the evaluation contexts made, by the keys of the nodes
	// referred to (ctxFor).
	ctxs *ctxCache

	// varObj and pathObj are built once, after the variables are resolved.
	varObj, pathObj cty.Value

	// cache is the evaluated-configuration cache (cache.go); nil without
	// Options.Cache.
	cache *cacheState
	// pending holds the pieces of files cut at block boundaries that may
	// be served from the cache: looked up (or parsed) once it is open.
	pending []*piece
	// pieceFiles holds the pieces of each file cut at block boundaries.
	pieceFiles map[string][]*piece
	// blockPiece finds the piece a parsed block came from.
	blockPiece map[*hclsyntax.Body]*piece
	fileIndex  map[string]int
	varFPs     map[string][32]byte
}

// node is one evaluable thing: a local value, a resource block or a runtime.
type node struct {
	key   string // "local.x", "daemon.api", "runtime.docker.local"
	kind  Kind   // KindInvalid for locals
	addr  Address
	decl  hcl.Range
	block *hcl.Block

	expr    hcl.Expression            // locals only
	attrs   map[string]*hcl.Attribute // top-level attributes (resources, runtimes)
	nested  map[string]*nestedBlock   // health, restart, ...
	schema  *RuntimeSchema            // the runtime kind's schema (resources on a known runtime; runtimes)
	dynamic bool                      // accepts any extra attribute (plugin runtimes)
	// noRuntime: the runtime reference is broken (already reported); the
	// attributes it would have allowed are not checked.
	noRuntime bool
	runtime   Address  // resources: the runtime they run on
	deps      []depRef // static depends_on / restart_with
	refs      []*node  // nodes referenced by expressions and static deps
	counted   bool     // has count
	forEach   bool     // has for_each
	// referenced is true when an expression refers to this node's value
	// (depends_on alone needs no value).
	referenced bool

	failed bool      // evaluation failed; dependents are skipped silently
	value  cty.Value // value for references, possibly marked
	// reach is the set of resource/runtime block nodes this node depends on,
	// directly or through locals.
	reach     map[*node]bool
	instances []*Resource
	rt        *Runtime

	// refExpr[i] is true when refs[i] comes from an expression (not only
	// depends_on or the runtime).
	refExpr []bool
	// cached is set when the block is served from the cache; piece is the
	// piece its text came from, when its file was cut (cache.go).
	cached *cachedBlock
	piece  *piece
	// released is set once a daemon or job block is evaluated and its
	// syntax tree let go (release): block, attrs and nested are nil, and
	// what is read of them later is kept here.
	released *releasedBlock
	fpOnce   sync.Once
	fp       [32]byte
	fpOK     bool
}

// ctxCache is shared by the goroutines of evaluateAll.
type ctxCache struct {
	sync.Mutex
	m map[string]*hcl.EvalContext
}

// nestedBlock is what a node keeps of a nested block (health, restart,
// ...): its type, where it is declared and its attributes.
type nestedBlock struct {
	typ   string
	def   hcl.Range
	attrs map[string]*hcl.Attribute
}

type depRef struct {
	target  *node
	rng     hcl.Range
	restart bool // from restart_with
}

func newLoader(fsys fs.FS, dir string, opts Options) *loader {
	l := &loader{
		fsys:      fsys,
		opts:      opts,
		cfg:       &Config{Dir: dir, Files: map[string]*hcl.File{}, Variables: map[string]*Variable{}},
		vars:      map[string]*Variable{},
		varVals:   map[string]cty.Value{},
		locals:    map[string]*node{},
		nodes:     map[string]*node{},
		broken:    map[string]bool{},
		secrets:   map[string]bool{},
		secretsMu: &sync.Mutex{},

		validations: map[string][]validation{},
		defaults:    map[string]*typeexpr.Defaults{},
		schemaCache: map[string]*hcl.BodySchema{},
		resolved:    map[string]*resolution{},
		resolvedMu:  &sync.Mutex{},
		ctxs:        &ctxCache{m: map[string]*hcl.EvalContext{}},
	}
	l.reads = newReadsFS(fsys)
	l.funcs = functions(l.reads, dir)
	return l
}

func (l *loader) errorf(rng *hcl.Range, summary, detail string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: rng,
	})
}

func rangePtr(r hcl.Range) *hcl.Range { return &r }

func (l *loader) run() {
	files := l.parseFiles()
	if l.diags.HasErrors() && len(files) == 0 {
		return
	}
	if l.cache != nil && l.cache.aborted.Load() {
		return
	}
	var varBlocks, runtimeBlocks []*hcl.Block
	var resourceItems []resItem
	var localsBlocks []*hcl.Block
	var orchBlock *hcl.Block
	for _, f := range files {
		content, diags := f.Body.Content(rootSchema)
		l.diags = append(l.diags, diags...)
		if content == nil {
			continue
		}
		for _, b := range content.Blocks {
			switch b.Type {
			case "orch":
				if orchBlock != nil {
					l.errorf(rangePtr(b.DefRange), "Duplicate orch block",
						"An orch block is already declared at %s; merge the two into one.", orchBlock.DefRange)
					continue
				}
				orchBlock = b
			case "variable":
				varBlocks = append(varBlocks, b)
			case "locals":
				localsBlocks = append(localsBlocks, b)
			case "runtime":
				runtimeBlocks = append(runtimeBlocks, b)
			default:
				resourceItems = append(resourceItems, l.itemOf(b))
			}
		}
	}
	// The blocks are taken: each file is kept for diagnostics only, so
	// that a block's syntax tree is held by its node alone, and goes once
	// the block is evaluated (release).
	files = nil
	slimFiles(l.cfg.Files)
	for _, b := range varBlocks {
		l.declareVariable(b)
	}
	l.resolveVariables()
	// after the variables: orch {} may use them
	l.decodeProject(orchBlock)
	if l.cache != nil {
		// the state directory is known: the cache can be read
		l.openCache()
		l.resolvePending()
		if l.cache.aborted.Load() {
			return
		}
		resourceItems = append(resourceItems, l.pendingItems()...)
		sortItems(resourceItems)
		// before the declarations, which let the pieces' trees go
		l.buildNavs()
	}
	for _, b := range localsBlocks {
		l.declareLocals(b)
	}
	for _, b := range runtimeBlocks {
		l.declareRuntime(b)
	}
	l.declareImplicitRuntime()
	// Past this point a load without the cache reports the errors of
	// every block, not those of the first phase that has any: a block
	// with an error is not evaluated (node.failed), and what refers to
	// it is skipped without a word, as Terraform validates every block.
	// Errors before it (variables, locals, runtimes, the orch block)
	// stop the load here, as do any with the cache (the load is done
	// again without it, cache.go).
	goOn := l.cache == nil && !l.diags.HasErrors()
	for i, it := range resourceItems {
		if it.p != nil {
			l.declareCached(it.p)
		} else {
			l.declareResource(it.b)
			resourceItems[i].b = nil // the node holds what it needs
		}
	}
	resourceItems, l.blockPiece = nil, nil
	if l.cache != nil {
		if l.cache.aborted.Load() {
			return
		}
		for _, p := range l.pending {
			// what is read of it later was kept when it was parsed
			p.body = nil
		}
	}
	if l.diags.HasErrors() && !goOn {
		// Declarations are broken: references would only add noise.
		return
	}
	for _, n := range l.order {
		if n.cached != nil {
			l.collectCachedRefs(n)
		} else {
			l.collectRefs(n)
		}
	}
	if l.diags.HasErrors() && !goOn || l.cache != nil && l.cache.aborted.Load() {
		return
	}
	order, ok := l.sortNodes()
	if !ok && !goOn {
		return
	}
	if l.cache != nil {
		l.computeVarFPs()
	}
	l.evaluateAll(order)
	if l.diags.HasErrors() || l.cache != nil && l.cache.aborted.Load() {
		return
	}
	l.buildConfig()
	l.checkServices()
	if l.opts.CheckPrograms {
		l.checkPrograms()
	}
}

func (l *loader) decodeProject(b *hcl.Block) {
	l.cfg.Project = Project{Name: filepath.Base(l.cfg.Dir), StateDir: ".orch"}
	if b == nil {
		return
	}
	l.cfg.Project.DeclRange = b.DefRange
	content, diags := b.Body.Content(orchSchema)
	l.diags = append(l.diags, diags...)
	if content == nil {
		return
	}
	for name, a := range content.Attributes {
		v, ok := l.constString(a)
		if !ok {
			continue
		}
		if v == "" {
			l.errorf(rangePtr(a.Expr.Range()), "Empty "+name, "orch.%s must not be empty; remove it to use the default.", name)
			continue
		}
		switch name {
		case "name":
			if !validName(v) {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid project name",
					"%q is not a valid project name: use letters, digits, '-' and '_', starting with a letter.", v)
				continue
			}
			l.cfg.Project.Name = v
		case "state_dir":
			l.cfg.Project.StateDir = v
		}
	}
	for _, nb := range content.Blocks {
		l.decodeProjectBlock(nb)
	}
}

// constString evaluates an attribute that may only use variables and
// functions, as a string.
func (l *loader) constString(a *hcl.Attribute) (string, bool) {
	ctx := &hcl.EvalContext{Functions: l.funcs, Variables: map[string]cty.Value{"var": l.varObject(), "path": l.pathObject()}}
	v, diags := a.Expr.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return "", false
	}
	s, ok := l.toString(v, a.Expr.Range(), a.Name)
	return s, ok
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '_'):
		default:
			return false
		}
	}
	return true
}

func (l *loader) addNode(n *node) bool {
	if prev, ok := l.nodes[n.key]; ok {
		what := n.key
		l.errorf(rangePtr(n.decl), "Duplicate "+kindOrLocal(n)+" "+quoteName(n),
			"%s is already declared at %s; names must be unique. Rename one of them.", what, prev.decl)
		return false
	}
	l.nodes[n.key] = n
	l.order = append(l.order, n)
	return true
}

func kindOrLocal(n *node) string {
	if n.kind == KindInvalid {
		return "local value"
	}
	return n.kind.String()
}

func quoteName(n *node) string {
	if n.kind == KindRuntime {
		return fmt.Sprintf("%q %q", n.addr.Type, n.addr.Name)
	}
	if n.kind == KindInvalid {
		return fmt.Sprintf("%q", n.key[len("local."):])
	}
	return fmt.Sprintf("%q", n.addr.Name)
}

func (l *loader) declareLocals(b *hcl.Block) {
	attrs, diags := b.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := attrs[name]
		n := &node{key: "local." + name, decl: a.NameRange, expr: a.Expr}
		if l.addNode(n) {
			l.locals[name] = n
		}
	}
}

func (l *loader) declareRuntime(b *hcl.Block) {
	kind, name := b.Labels[0], b.Labels[1]
	addr := Address{Kind: KindRuntime, Type: kind, Name: name}
	ok := false
	defer func() {
		if !ok {
			l.broken[addr.String()] = true
		}
	}()
	for i, lbl := range []struct{ v, what string }{{kind, "kind"}, {name, "name"}} {
		if !validName(lbl.v) {
			l.errorf(rangePtr(b.LabelRanges[i]), "Invalid runtime "+lbl.what,
				"%q is not a valid runtime %s: use letters, digits, '-' and '_', starting with a letter.", lbl.v, lbl.what)
			return
		}
	}
	n := &node{key: addr.String(), kind: KindRuntime, addr: addr, decl: b.DefRange, block: b}
	attrs, diags := b.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	n.attrs = attrs
	schema, known := l.opts.Schemas[kind]
	_, hasPlugin := attrs["plugin"]
	switch {
	case known:
		n.schema = &schema
		if hasPlugin {
			l.errorf(rangePtr(attrs["plugin"].NameRange), "Plugin for a built-in runtime kind",
				"%q is a built-in runtime kind; plugin is only for third-party kinds. Remove plugin, or give the runtime another kind.", kind)
			return
		}
		allowed := map[string]bool{"sha256": false}
		for _, a := range schema.Runtime {
			allowed[a.Name] = true
		}
		for an, a := range attrs {
			if !allowed[an] {
				l.unsupported(a, "runtime "+fmt.Sprintf("%q", kind), attrNames(schema.Runtime))
				n.failed = true
			}
		}
	case hasPlugin:
		ps, ok := l.opts.PluginSchemas[kind]
		if !ok {
			n.dynamic = true
			break
		}
		n.schema = &ps
		allowed := map[string]bool{"plugin": true, "sha256": true}
		for _, a := range ps.Runtime {
			allowed[a.Name] = true
		}
		for an, a := range attrs {
			if !allowed[an] {
				l.unsupported(a, fmt.Sprintf("runtime %q (as its plugin declares it)", kind), attrNames(ps.Runtime))
				n.failed = true
			}
		}
	default:
		kinds := make([]string, 0, len(l.opts.Schemas))
		for k := range l.opts.Schemas {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		detail := fmt.Sprintf("orch has no built-in runtime of kind %q; the built-in kinds are %s. A third-party kind needs plugin = \"./path/to/orch-provider-%s\".", kind, quoteList(kinds), kind)
		if s := suggest(kind, kinds); s != "" {
			detail = fmt.Sprintf("Did you mean %q? ", s) + detail
		}
		l.errorf(rangePtr(b.LabelRanges[0]), "Unknown runtime kind", "%s", detail)
		return
	}
	ok = l.addNode(n) || l.nodes[n.key] != nil
}

// declareImplicitRuntime picks the runtime of daemons that name none: the
// one declared process runtime, else the built-in runtime.process.default.
func (l *loader) declareImplicitRuntime() {
	var procs []*node
	for _, n := range l.order {
		if n.kind == KindRuntime && n.addr.Type == "process" {
			procs = append(procs, n)
		}
	}
	if len(procs) == 1 {
		l.processRT = procs[0].addr
		return
	}
	l.processRT = Address{Kind: KindRuntime, Type: "process", Name: "default"}
	if _, ok := l.nodes[l.processRT.String()]; ok {
		return
	}
	schema, ok := l.opts.Schemas["process"]
	if !ok {
		schema = RuntimeSchema{Kind: "process", CommandRequired: true}
	}
	l.nodes[l.processRT.String()] = &node{
		key: l.processRT.String(), kind: KindRuntime, addr: l.processRT, schema: &schema,
		attrs: map[string]*hcl.Attribute{},
	}
	// not in l.order: it is added to the config only when used
}

func (l *loader) unsupported(a *hcl.Attribute, where string, extra []string) {
	detail := fmt.Sprintf("An argument named %q is not expected in %s.", a.Name, where)
	if s := suggest(a.Name, extra); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	l.errorf(rangePtr(a.NameRange), "Unsupported argument", "%s", detail)
}

func attrNames(as []AttrSchema) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Name
	}
	return out
}

// evaluateAll evaluates nodes level by level of the dependency order: the
// nodes of one level refer only to earlier levels, so a large level is
// spread over every CPU. Each node's diagnostics are kept apart and merged
// in order, so the result is the same as a sequential walk's.
func (l *loader) evaluateAll(order []*node) {
	l.varObject() // fill the shared caches before any goroutine reads them
	l.pathObject()
	level := make(map[*node]int, len(order))
	var levels [][]*node
	for _, n := range order {
		lv := 0
		for _, r := range n.refs {
			if level[r]+1 > lv {
				lv = level[r] + 1
			}
		}
		level[n] = lv
		for len(levels) <= lv {
			levels = append(levels, nil)
		}
		levels[lv] = append(levels[lv], n)
	}
	workers := runtime.GOMAXPROCS(0)
	for _, nodes := range levels {
		if workers < 2 || len(nodes) < 256 {
			for _, n := range nodes {
				l.evaluate(n)
			}
			continue
		}
		diags := make([]hcl.Diagnostics, len(nodes))
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sub := *l // shares the read-only maps; collects its own diagnostics
				for {
					i := int(next.Add(1) - 1)
					if i >= len(nodes) {
						return
					}
					sub.diags = nil
					sub.evaluate(nodes[i])
					diags[i] = sub.diags
				}
			}()
		}
		wg.Wait()
		for _, d := range diags {
			l.diags = append(l.diags, d...)
		}
	}
}
