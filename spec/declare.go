package spec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func (l *loader) declareResource(b *hcl.Block) {
	before := len(l.diags)
	kind := ParseKind(b.Type)
	name := b.Labels[0]
	if !validName(name) {
		l.errorf(rangePtr(b.LabelRanges[0]), "Invalid "+b.Type+" name",
			"%q is not a valid name: use letters, digits, '-' and '_', starting with a letter.", name)
		l.broken[kind.String()+"."+name] = true
		return
	}
	addr := Address{Kind: kind, Name: name}
	// The node keeps what it takes of the block (its attributes' and
	// nested blocks' contents), not the block: the rest of its syntax
	// tree (bodies, attribute maps, ranges) goes once the declarations
	// are done, before any block is evaluated (release.go).
	n := &node{key: addr.String(), kind: kind, addr: addr, decl: b.DefRange,
		nested: map[string]*nestedBlock{}}
	if sb, ok := b.Body.(*hclsyntax.Body); ok && l.blockPiece != nil {
		n.piece = l.blockPiece[sb]
		delete(l.blockPiece, sb)
		if n.piece != nil {
			// what is read of it later was kept when it was parsed
			defer func() { n.piece.body = nil }()
		}
	}
	if kind != KindModule {
		if sb, ok := b.Body.(*hclsyntax.Body); ok {
			// what PartialContent(runtimeOnlySchema) gives for a body
			// just parsed (none is hidden), without copying the body
			n.attrs = hcl.Attributes{}
			if a, ok := sb.Attributes["runtime"]; ok {
				n.attrs["runtime"] = a.AsHCLAttribute()
			}
		} else {
			pre, _, _ := b.Body.PartialContent(runtimeOnlySchema)
			n.attrs = pre.Attributes
		}
		l.resolveRuntime(n)
	}
	var content *hcl.BodyContent
	var diags hcl.Diagnostics
	if n.dynamic || n.noRuntime {
		// A plugin runtime's schema is known only when the plugin runs: any
		// extra attribute is kept and checked by the plugin.
		var rest hcl.Body
		content, rest, diags = b.Body.PartialContent(schemaFor(kind))
		if content != nil {
			for an, a := range extraAttributes(rest) {
				content.Attributes[an] = a
			}
		}
	} else {
		schema := l.resourceSchema(kind, n.schema)
		content, diags = l.bodyContent(b.Body, schema)
		suggestArguments(diags, schemaAttrNames(schema))
	}
	if kind == KindJob {
		for _, d := range diags {
			if d.Summary == "Unsupported block type" && strings.Contains(d.Detail, `"health"`) {
				d.Detail += " A job runs to completion and has no health check; make it a daemon to check its health."
			}
		}
	}
	l.diags = append(l.diags, diags...)
	if content == nil {
		l.broken[addr.String()] = true
		return
	}
	n.attrs = content.Attributes
	for _, nb := range content.Blocks {
		if prev, ok := n.nested[nb.Type]; ok {
			l.errorf(rangePtr(nb.DefRange), "Duplicate "+nb.Type+" block",
				"%s already has a %s block at %s; merge the two into one.", addr, nb.Type, prev.def)
			continue
		}
		c, d := l.bodyContent(nb.Body, l.nestedSchema(n, nb.Type))
		l.diags = append(l.diags, d...)
		if c == nil {
			continue
		}
		n.nested[nb.Type] = &nestedBlock{typ: nb.Type, def: nb.DefRange, attrs: c.Attributes}
	}
	if c, f := n.attrs["count"], n.attrs["for_each"]; c != nil && f != nil {
		l.errorf(rangePtr(f.NameRange), "Invalid combination of count and for_each",
			"%s sets both count and for_each; use one of them: count for N identical instances, for_each for one instance per key.", addr)
	}
	n.counted = n.attrs["count"] != nil
	n.forEach = n.attrs["for_each"] != nil
	// With unsupported arguments, a missing one is most likely misspelt:
	// report only the misspelling.
	if kind != KindModule && n.schema != nil && !diags.HasErrors() {
		for _, as := range n.schema.Daemon {
			if as.Required && n.attrs[as.Name] == nil && !waived(n, as) {
				l.errorf(rangePtr(b.DefRange), "Missing required argument",
					"%s runs on %s, which needs the argument %q (%s).", addr, n.runtime, as.Name, as.Doc)
			}
		}
		if n.schema.CommandRequired && n.attrs["command"] == nil {
			l.errorf(rangePtr(b.DefRange), "Missing command",
				"%s runs on %s, which starts a native process: set command = [\"/path/to/program\", \"arg\", ...].", addr, n.runtime)
		}
	}
	if l.addNode(n) && l.diags[before:].HasErrors() {
		// reported: not evaluated, and what refers to it is skipped
		// silently (a load without the cache goes on with the other
		// blocks, to report their errors too)
		n.failed = true
	}
}

var runtimeOnlySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "runtime"}}}

// resourceSchema is the block schema of a resource kind plus the attributes
// its runtime kind adds, built once per pair.
func (l *loader) resourceSchema(kind Kind, rs *RuntimeSchema) *hcl.BodySchema {
	base := schemaFor(kind)
	if rs == nil || len(rs.Daemon)+len(rs.Blocks) == 0 || kind == KindModule {
		return base
	}
	key := kind.String() + "/" + rs.Kind
	if s, ok := l.schemaCache[key]; ok {
		return s
	}
	s := &hcl.BodySchema{Blocks: base.Blocks, Attributes: append([]hcl.AttributeSchema(nil), base.Attributes...)}
	for _, a := range rs.Daemon {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name})
	}
	if len(rs.Blocks) > 0 {
		s.Blocks = append([]hcl.BlockHeaderSchema(nil), base.Blocks...)
		for _, b := range rs.Blocks {
			s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: b.Name})
		}
	}
	l.schemaCache[key] = s
	return s
}

// nestedSchema is the schema of a nested block of n: the language's own,
// or one its runtime kind adds.
func (l *loader) nestedSchema(n *node, typ string) *hcl.BodySchema {
	if s, ok := nestedSchemas[typ]; ok {
		return s
	}
	if n.schema != nil {
		if b := n.schema.block(typ); b != nil {
			key := "block/" + n.schema.Kind + "/" + typ
			if s, ok := l.schemaCache[key]; ok {
				return s
			}
			s := &hcl.BodySchema{}
			for _, a := range b.Attrs {
				s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required})
			}
			l.schemaCache[key] = s
			return s
		}
	}
	return &hcl.BodySchema{}
}

// waived reports whether as is required but another attribute or block
// that n sets waives it (RequiredUnless).
func waived(n *node, as AttrSchema) bool {
	if as.RequiredUnless == "" {
		return false
	}
	return n.attrs[as.RequiredUnless] != nil || n.nested[as.RequiredUnless] != nil
}

// extraAttributes lists the attributes a partial decode left over.
func extraAttributes(rest hcl.Body) hcl.Attributes {
	if sb, ok := rest.(*hclsyntax.Body); ok {
		out := hcl.Attributes{}
		for name, a := range sb.Attributes {
			if !isCoreAttr(name) {
				out[name] = a.AsHCLAttribute()
			}
		}
		return out
	}
	attrs, _ := rest.JustAttributes()
	return attrs
}

// suggestArguments adds "Did you mean" to HCL's unsupported-argument
// diagnostics, from the names the schema accepts.
func suggestArguments(diags hcl.Diagnostics, names []string) {
	for _, d := range diags {
		if d.Summary != "Unsupported argument" {
			continue
		}
		var given string
		if _, err := fmt.Sscanf(d.Detail, "An argument named %q is not expected here.", &given); err != nil {
			continue
		}
		if s := suggest(given, names); s != "" {
			d.Detail = fmt.Sprintf("An argument named %q is not expected here. Did you mean %q?", given, s)
		}
	}
}

func schemaAttrNames(s *hcl.BodySchema) []string {
	out := make([]string, 0, len(s.Attributes))
	for _, a := range s.Attributes {
		out = append(out, a.Name)
	}
	return out
}

// resolveRuntime reads the static runtime reference of a daemon or job.
func (l *loader) resolveRuntime(n *node) {
	a := n.attrs["runtime"]
	if a == nil {
		n.runtime = l.processRT
	} else {
		trav, diags := hcl.AbsTraversalForExpr(a.Expr)
		if diags.HasErrors() {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid runtime reference",
				"runtime must be a reference such as runtime.docker.local, not a string or an expression.")
			n.noRuntime = true
			return
		}
		addr, rest, err := addressFromTraversal(trav)
		if err != nil || addr.Kind != KindRuntime || len(rest) > 0 || addr.Key != NoKey {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid runtime reference",
				"runtime must name a runtime block as runtime.<kind>.<name>, such as runtime.docker.local.")
			n.noRuntime = true
			return
		}
		n.runtime = addr
	}
	rt := l.nodes[n.runtime.String()]
	if rt == nil && l.broken[n.runtime.String()] {
		n.noRuntime = true
		return
	}
	if rt == nil {
		detail := fmt.Sprintf("There is no runtime block %s.", n.runtime)
		if s := l.suggestBlock(n.runtime); s != "" {
			detail += fmt.Sprintf(" Did you mean %s?", s)
		} else {
			detail += fmt.Sprintf(" Declare it: runtime %q %q {}.", n.runtime.Type, n.runtime.Name)
		}
		l.errorf(rangePtr(a.Expr.Range()), "Reference to undeclared runtime", "%s", detail)
		n.noRuntime = true
		return
	}
	n.schema = rt.schema
	n.dynamic = rt.dynamic
}

// collectRefs finds every node n refers to, from its expressions and its
// static references, reporting references to things that do not exist.
func (l *loader) collectRefs(n *node) {
	before := len(l.diags)
	l.brokenRef = false
	defer func() {
		// A reference that does not resolve was reported; one to a block
		// whose declaration was refused was reported there: either way n
		// is not evaluated.
		if l.brokenRef || l.diags[before:].HasErrors() {
			n.failed = true
		}
	}()
	seen := map[*node]int{}
	add := func(t *node, expr bool) {
		if t == nil {
			return
		}
		if i, ok := seen[t]; ok {
			n.refExpr[i] = n.refExpr[i] || expr
			return
		}
		seen[t] = len(n.refs)
		n.refs = append(n.refs, t)
		n.refExpr = append(n.refExpr, expr)
	}
	exprs := l.exprsOf(n)
	for _, e := range exprs {
		for _, trav := range e.Variables() {
			if t := l.resolveTraversal(n, trav); t != nil {
				t.referenced = true
				add(t, true)
			}
		}
	}
	if n.kind == KindDaemon || n.kind == KindJob {
		if rt := l.nodes[n.runtime.String()]; rt != nil {
			add(rt, false)
		}
	}
	for _, which := range []string{"depends_on", "restart_with"} {
		a := n.attrs[which]
		if a == nil {
			continue
		}
		travs, diags := staticList(a.Expr)
		if diags.HasErrors() {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid "+which,
				"%s must be a list of references to blocks, such as [daemon.db, job.migrate].", which)
			continue
		}
		for _, trav := range travs {
			addr, _, err := addressFromTraversal(trav)
			if err != nil || addr.Kind == KindInvalid {
				l.errorf(rangePtr(trav.SourceRange()), "Invalid "+which+" reference",
					"Each element of %s must name a daemon, job, module or runtime, such as daemon.db.", which)
				continue
			}
			t := l.lookupBlock(addr.Block(), trav.SourceRange())
			if t == nil {
				continue
			}
			if t == n {
				l.errorf(rangePtr(trav.SourceRange()), "Self-referential "+which, "%s cannot depend on itself.", n.addr)
				continue
			}
			add(t, false)
			n.deps = append(n.deps, depRef{target: t, rng: trav.SourceRange(), restart: which == "restart_with"})
		}
	}
}

func staticList(e hcl.Expression) ([]hcl.Traversal, hcl.Diagnostics) {
	exprs, diags := hcl.ExprList(e)
	if diags.HasErrors() {
		return nil, diags
	}
	out := make([]hcl.Traversal, 0, len(exprs))
	for _, x := range exprs {
		t, d := hcl.AbsTraversalForExpr(x)
		diags = append(diags, d...)
		if !d.HasErrors() {
			out = append(out, t)
		}
	}
	return out, diags
}

// exprsOf lists the expressions of n that are evaluated.
func (l *loader) exprsOf(n *node) []hcl.Expression {
	if n.expr != nil {
		return []hcl.Expression{n.expr}
	}
	var out []hcl.Expression
	for name, a := range n.attrs {
		if !staticAttrs[name] {
			out = append(out, a.Expr)
		}
	}
	for bt, nb := range n.nested {
		for name, a := range nb.attrs {
			if bt == "lifecycle" && name == "ignore_changes" {
				continue
			}
			if bt == "reload" && name == "on" {
				// Bare names (env) name attributes; the rest is evaluated.
				if exprs, d := hcl.ExprList(a.Expr); !d.HasErrors() {
					for _, x := range exprs {
						if t, d := hcl.AbsTraversalForExpr(x); d.HasErrors() || len(t) != 1 {
							out = append(out, x)
						}
					}
					continue
				}
			}
			out = append(out, a.Expr)
		}
	}
	return out
}

func (l *loader) lookupBlock(addr Address, rng hcl.Range) *node {
	if t := l.nodes[addr.String()]; t != nil {
		return t
	}
	if l.broken[addr.String()] {
		l.brokenRef = true
		return nil // its declaration was already reported
	}
	detail := fmt.Sprintf("There is no %s block named %q.", addr.Kind, addr.Name)
	if addr.Kind == KindRuntime {
		detail = fmt.Sprintf("There is no runtime %q %q block.", addr.Type, addr.Name)
	}
	if s := l.suggestBlock(addr); s != "" {
		detail += fmt.Sprintf(" Did you mean %s?", s)
	}
	l.errorf(&rng, "Reference to undeclared "+addr.Kind.String(), "%s", detail)
	return nil
}

// suggestBlock proposes a declared block for a reference to addr, which does
// not exist: the same name of another kind (job.db for daemon.db), else a
// block of the same kind (and runtime type) whose name is close.
func (l *loader) suggestBlock(addr Address) string {
	var names []string
	for _, o := range l.order {
		if o.kind == KindInvalid {
			continue
		}
		if o.addr.Name == addr.Name && (o.kind != addr.Kind || o.addr.Type != addr.Type) {
			return o.addr.String()
		}
		if o.kind == addr.Kind && o.addr.Type == addr.Type {
			names = append(names, o.addr.Name)
		}
	}
	if s := suggest(addr.Name, names); s != "" {
		a := addr
		a.Name = s
		return a.String()
	}
	return ""
}

// resolveTraversal checks one reference from an expression of n and returns
// the node it points at (nil for variables, path, count and each).
func (l *loader) resolveTraversal(n *node, t hcl.Traversal) *node {
	rng := t.SourceRange()
	root := t.RootName()
	attrAt := func(i int) (string, bool) {
		if len(t) <= i {
			return "", false
		}
		a, ok := t[i].(hcl.TraverseAttr)
		return a.Name, ok
	}
	switch root {
	case "var":
		name, ok := attrAt(1)
		if !ok {
			l.errorf(&rng, "Invalid reference", "A reference to an input variable needs its name, as in var.port.")
			return nil
		}
		if _, ok := l.vars[name]; !ok {
			l.errorf(&rng, "Reference to undeclared input variable", "%s",
				withSuggestion(fmt.Sprintf("There is no variable %q. Declare it with a variable %q {} block.", name, name), name, keysOf(l.vars)))
		}
		return nil
	case "local":
		name, ok := attrAt(1)
		if !ok {
			l.errorf(&rng, "Invalid reference", "A reference to a local value needs its name, as in local.bin.")
			return nil
		}
		t := l.locals[name]
		if t == nil {
			l.errorf(&rng, "Reference to undeclared local value", "%s",
				withSuggestion(fmt.Sprintf("There is no local value %q. Declare it in a locals {} block.", name), name, keysOf(l.locals)))
		}
		return t
	case "path":
		name, ok := attrAt(1)
		if !ok || name != "root" {
			l.errorf(&rng, "Invalid path reference", "The only path value is path.root, the absolute path of the configuration directory.")
		}
		return nil
	case "count":
		name, ok := attrAt(1)
		if !n.counted {
			l.errorf(&rng, "Reference to count in non-counted context",
				"count.index is only available in a block that sets count.")
		} else if !ok || name != "index" {
			l.errorf(&rng, "Invalid count reference", "The only count value is count.index.")
		}
		return nil
	case "each":
		name, ok := attrAt(1)
		if !n.forEach {
			l.errorf(&rng, "Reference to each in a block without for_each",
				"each.key and each.value are only available in a block that sets for_each.")
		} else if !ok || (name != "key" && name != "value") {
			l.errorf(&rng, "Invalid each reference", "Use each.key or each.value.")
		}
		return nil
	case "daemon", "job", "module", "runtime":
		addr, _, err := addressFromTraversal(t)
		if err != nil {
			l.errorf(&rng, "Invalid reference", "%s.", err.Error())
			return nil
		}
		target := l.lookupBlock(addr.Block(), rng)
		if target == n {
			l.errorf(&rng, "Self-referential block", "%s refers to itself; an attribute cannot depend on its own block.", n.addr)
			return nil
		}
		return target
	}
	roots := []string{"var", "local", "path", "daemon", "job", "module", "runtime"}
	if n.counted {
		roots = append(roots, "count")
	}
	if n.forEach {
		roots = append(roots, "each")
	}
	l.errorf(&rng, "Unknown reference", "%s", withSuggestion(
		fmt.Sprintf("%q is not something orch knows. References start with one of %s.", root, quoteList(roots)), root, roots))
	return nil
}

func withSuggestion(detail, given string, names []string) string {
	if s := suggest(given, names); s != "" {
		return detail + fmt.Sprintf(" Did you mean %q?", s)
	}
	return detail
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sortNodes orders nodes so that each comes after what it refers to, and
// reports every cycle with all of its members: ok is false then, and the
// order leaves out the cycles' members and what depends on them.
func (l *loader) sortNodes() ([]*node, bool) {
	all := append([]*node(nil), l.order...)
	if rt := l.nodes[l.processRT.String()]; rt != nil && !containsNode(all, rt) {
		all = append(all, rt)
	}
	idx := make(map[*node]int, len(all))
	for i, n := range all {
		idx[n] = i
	}
	adj := make([][]int, len(all))
	for i, n := range all {
		for _, r := range n.refs {
			adj[i] = append(adj[i], idx[r])
		}
	}
	cycles := stronglyConnected(len(all), func(i int) []int { return adj[i] })
	for _, c := range cycles {
		names := make([]string, len(c))
		for i, m := range c {
			names[i] = all[m].key
		}
		first := all[c[0]]
		detail := "These refer to each other, directly or through depends_on, so none can be evaluated or started first: "
		for i, m := range c {
			if i > 0 {
				detail += ", "
			}
			detail += fmt.Sprintf("%s (%s)", all[m].key, all[m].decl)
		}
		detail += ". Remove one of the references to break the cycle."
		l.errorf(rangePtr(first.decl), "Dependency cycle "+joinCycle(names), "%s", detail)
		for _, m := range c {
			all[m].failed = true
		}
	}
	// Kahn's algorithm in declaration order: deterministic.
	indeg := make([]int, len(all))
	rev := make([][]int, len(all))
	for i := range all {
		indeg[i] = len(adj[i])
		for _, j := range adj[i] {
			rev[j] = append(rev[j], i)
		}
	}
	var queue, out []int
	for i := range all {
		if indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		out = append(out, i)
		for _, j := range rev[i] {
			indeg[j]--
			if indeg[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	res := make([]*node, len(out))
	for k, i := range out {
		res[k] = all[i]
	}
	return res, len(cycles) == 0
}

func joinCycle(names []string) string {
	if len(names) == 1 {
		return names[0] + " depends on itself"
	}
	return "between " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func containsNode(ns []*node, n *node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}
