package spec

import (
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// evaluate computes a node's value. Nodes come in dependency order; a node
// whose dependency failed is skipped without a diagnostic of its own, since
// the dependency already reported the cause.
func (l *loader) evaluate(n *node) {
	n.reach = map[*node]bool{}
	for _, r := range n.refs {
		if r.failed {
			n.failed = true
			return
		}
		if r.kind == KindInvalid {
			for x := range r.reach {
				n.reach[x] = true
			}
		} else {
			n.reach[r] = true
		}
	}
	if n.failed {
		return
	}
	if n.cached != nil {
		l.evalCached(n)
		return
	}
	before := len(l.diags)
	ctx := l.ctxFor(n)
	switch n.kind {
	case KindInvalid:
		v, d := n.expr.Value(ctx)
		l.diags = append(l.diags, d...)
		n.value = v
	case KindRuntime:
		l.evalRuntime(n, ctx)
	default:
		l.evalResource(n, ctx)
	}
	if l.diags[before:].HasErrors() {
		n.failed = true
	}
	l.release(n)
}

// ctxFor builds the evaluation context of a node from what it refers to.
// Nodes that refer to the same nodes share one (an EvalContext is only
// read): the 10,000 daemons of a directory that refer to nothing but
// their runtime built 10,000 alike, each with its own object types.
func (l *loader) ctxFor(n *node) *hcl.EvalContext {
	var key string
	switch len(n.refs) {
	case 0:
	case 1:
		key = n.refs[0].key
	default:
		var b strings.Builder
		for _, r := range n.refs {
			b.WriteString(r.key)
			b.WriteByte(0)
		}
		key = b.String()
	}
	c := l.ctxs
	c.Lock()
	ctx, ok := c.m[key]
	c.Unlock()
	if ok {
		return ctx
	}
	ctx = l.newCtx(n)
	c.Lock()
	if prev, ok := c.m[key]; ok {
		ctx = prev
	} else {
		c.m[key] = ctx
	}
	c.Unlock()
	return ctx
}

// newCtx builds the evaluation context of n's references.
func (l *loader) newCtx(n *node) *hcl.EvalContext {
	vars := map[string]cty.Value{"var": l.varObject(), "path": l.pathObject()}
	locals := map[string]cty.Value{}
	blocks := map[string]map[string]cty.Value{}
	runtimes := map[string]map[string]cty.Value{}
	for _, r := range n.refs {
		switch r.kind {
		case KindInvalid:
			locals[r.key[len("local."):]] = r.value
		case KindRuntime:
			if r.value == cty.NilVal {
				continue
			}
			if runtimes[r.addr.Type] == nil {
				runtimes[r.addr.Type] = map[string]cty.Value{}
			}
			runtimes[r.addr.Type][r.addr.Name] = r.value
		default:
			k := r.kind.String()
			if blocks[k] == nil {
				blocks[k] = map[string]cty.Value{}
			}
			blocks[k][r.addr.Name] = r.value
		}
	}
	if len(locals) > 0 {
		vars["local"] = cty.ObjectVal(locals)
	}
	for k, m := range blocks {
		vars[k] = cty.ObjectVal(m)
	}
	if len(runtimes) > 0 {
		rts := map[string]cty.Value{}
		for k, m := range runtimes {
			rts[k] = cty.ObjectVal(m)
		}
		vars["runtime"] = cty.ObjectVal(rts)
	}
	return &hcl.EvalContext{Variables: vars, Functions: l.funcs}
}

// instEval evaluates the attributes of one instance.
type instEval struct {
	l    *loader
	ctx  *hcl.EvalContext
	n    *node
	r    *Resource
	raw  map[string]cty.Value // marked values, for references to this instance
	errs bool
}

// value evaluates an expression, converts it to ty and strips sensitive
// marks, recording the paths they were on under name. A null result is
// returned as cty.NilVal with ok true: null means "not set".
func (e *instEval) value(expr hcl.Expression, ty cty.Type, name string) (cty.Value, bool) {
	v, d := expr.Value(e.ctx)
	e.l.diags = append(e.l.diags, d...)
	if d.HasErrors() {
		e.errs = true
		return cty.NilVal, false
	}
	if isStringish(ty) {
		v = intsToStrings(v)
	}
	conv, err := convert.Convert(v, ty)
	if err != nil {
		err = elemError(v, ty, err)
		at := expr.Range()
		if pe, ok := err.(cty.PathError); ok {
			at = elemRange(expr, pe.Path)
		}
		e.l.errorf(&at, "Incorrect attribute value type",
			"Inappropriate value for %s of %s: %s.", name, e.n.addr, describeConvError(err, ty))
		e.errs = true
		return cty.NilVal, false
	}
	if !conv.IsWhollyKnown() {
		e.l.errorf(rangePtr(expr.Range()), "Value not known", "The value of %s must be known when the configuration is loaded.", name)
		e.errs = true
		return cty.NilVal, false
	}
	unmarked, pvms := conv, []cty.PathValueMarks(nil)
	if conv.ContainsMarked() {
		unmarked, pvms = conv.UnmarkDeepWithPaths()
	}
	for _, pvm := range pvms {
		if _, ok := pvm.Marks[sensitiveMark]; ok {
			if e.r != nil {
				e.r.Sensitive[name+formatPath(pvm.Path)] = true
			}
			if leaf, err := pvm.Path.Apply(unmarked); err == nil {
				e.l.noteSecret(leaf)
			}
		}
	}
	if unmarked.IsNull() {
		return cty.NilVal, true
	}
	return unmarked, true
}

func describeConvError(err error, ty cty.Type) string {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		return fmt.Sprintf("%s: %s (a %s is required)", formatPath(pe.Path), pe.Error(), ty.FriendlyName())
	}
	return fmt.Sprintf("%s is required", ty.FriendlyName())
}

// elemError turns a failed conversion of a whole collection into the
// failure of its first element that does not convert, with that element's
// path: converting {A = "x", B = ["y"]} to a map of strings fails without
// saying that B is at fault.
func elemError(v cty.Value, ty cty.Type, err error) error {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		return err
	}
	if !(ty.IsMapType() || ty.IsListType() || ty.IsSetType()) || v.IsNull() || !v.IsKnown() || !v.CanIterateElements() {
		return err
	}
	et := ty.ElementType()
	for it := v.ElementIterator(); it.Next(); {
		k, x := it.Element()
		if _, e := convert.Convert(x, et); e != nil {
			p := cty.Path{cty.IndexStep{Key: k}}
			if pe, ok := e.(cty.PathError); ok {
				p = append(p, pe.Path...)
			}
			return p.NewErrorf("%s", e.Error())
		}
	}
	return err
}

// elemRange finds where the element at path was written inside expr (a
// map entry, a list element, an object attribute), so that a diagnostic
// points at the entry at fault, not at the whole attribute. It falls back
// to the closest enclosing expression it can find.
func elemRange(expr hcl.Expression, path cty.Path) hcl.Range {
	for _, step := range path {
		var key cty.Value
		switch st := step.(type) {
		case cty.GetAttrStep:
			key = cty.StringVal(st.Name)
		case cty.IndexStep:
			key = st.Key
		default:
			return expr.Range()
		}
		next := hcl.Expression(nil)
		if key.Type() == cty.Number {
			if items, d := hcl.ExprList(expr); !d.HasErrors() {
				if i, acc := key.AsBigFloat().Int64(); acc == 0 && i >= 0 && int(i) < len(items) {
					next = items[i]
				}
			}
		} else if key.Type() == cty.String {
			if pairs, d := hcl.ExprMap(expr); !d.HasErrors() {
				for _, kv := range pairs {
					k, d := kv.Key.Value(nil)
					if d.HasErrors() {
						// a bare word key (env = { PATH = ... })
						if t := hcl.ExprAsKeyword(kv.Key); t != "" {
							k = cty.StringVal(t)
						} else {
							continue
						}
					}
					if k.Type() == cty.String && k.IsKnown() && !k.IsNull() && k.AsString() == key.AsString() {
						next = kv.Value
						break
					}
				}
			}
		}
		if next == nil {
			return expr.Range()
		}
		expr = next
	}
	return expr.Range()
}

func formatPath(p cty.Path) string {
	s := ""
	for _, step := range p {
		switch st := step.(type) {
		case cty.GetAttrStep:
			s += "." + st.Name
		case cty.IndexStep:
			if st.Key.Type() == cty.String {
				s += "." + st.Key.AsString()
			} else if st.Key.Type() == cty.Number {
				s += "[" + st.Key.AsBigFloat().Text('f', -1) + "]"
			}
		}
	}
	return s
}

func (l *loader) evalResource(n *node, ctx *hcl.EvalContext) {
	type inst struct {
		key   Key
		count cty.Value
		each  [2]cty.Value
	}
	var insts []inst
	switch {
	case n.counted:
		a := n.attrs["count"]
		v, d := a.Expr.Value(ctx)
		l.diags = append(l.diags, d...)
		if d.HasErrors() {
			return
		}
		v, _ = v.Unmark()
		c, err := convert.Convert(v, cty.Number)
		var cnt int
		if err == nil && !c.IsNull() && c.IsKnown() {
			err = gocty.FromCtyValue(c, &cnt)
		} else if err == nil {
			err = fmt.Errorf("count must be a known number")
		}
		if err != nil || cnt < 0 || cnt > 100000 {
			l.errorf(rangePtr(a.Expr.Range()), "Invalid count",
				"count must be a whole number from 0 to 100000, known when the configuration is loaded.")
			return
		}
		for i := 0; i < cnt; i++ {
			insts = append(insts, inst{key: IntKey(i), count: cty.NumberIntVal(int64(i))})
		}
	case n.forEach:
		a := n.attrs["for_each"]
		v, d := a.Expr.Value(ctx)
		l.diags = append(l.diags, d...)
		if d.HasErrors() {
			return
		}
		if v.IsMarked() {
			l.errorf(rangePtr(a.Expr.Range()), "Sensitive value in for_each",
				"for_each keys become part of instance addresses, which are printed; they cannot come from a sensitive value.")
			return
		}
		ty := v.Type()
		switch {
		case v.IsNull() || !v.IsWhollyKnown():
			l.errorf(rangePtr(a.Expr.Range()), "Invalid for_each", "for_each must be a known map, object or set of strings; this value is null.")
			return
		case ty.IsMapType() || ty.IsObjectType():
			for it := v.ElementIterator(); it.Next(); {
				k, ev := it.Element()
				insts = append(insts, inst{key: StringKey(k.AsString()), each: [2]cty.Value{k, ev}})
			}
		case ty.IsSetType() && ty.ElementType() == cty.String:
			for it := v.ElementIterator(); it.Next(); {
				k, _ := it.Element()
				insts = append(insts, inst{key: StringKey(k.AsString()), each: [2]cty.Value{k, k}})
			}
		default:
			l.errorf(rangePtr(a.Expr.Range()), "Invalid for_each",
				"for_each must be a map, an object or a set of strings, not a %s. To iterate over a list, use toset(...).", ty.FriendlyName())
			return
		}
		sort.Slice(insts, func(i, j int) bool { return insts[i].key.Less(insts[j].key) })
	default:
		insts = []inst{{key: NoKey}}
	}
	values := make([]cty.Value, 0, len(insts))
	byKey := map[string]cty.Value{}
	for _, in := range insts {
		ictx := ctx
		if in.key.Type == IntKeyType {
			ictx = ctx.NewChild()
			ictx.Variables = map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": in.count})}
		} else if in.key.Type == StringKeyType {
			ictx = ctx.NewChild()
			ictx.Variables = map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": in.each[0], "value": in.each[1]})}
		}
		r, obj, ok := l.decodeInstance(n, ictx, in.key)
		if !ok {
			continue
		}
		n.instances = append(n.instances, r)
		values = append(values, obj)
		if in.key.Type == StringKeyType {
			byKey[in.key.Str] = obj
		}
	}
	switch {
	case !n.referenced:
		// nobody reads the block's value: do not build it
	case n.counted:
		if len(values) == 0 {
			n.value = cty.EmptyTupleVal
		} else {
			n.value = cty.TupleVal(values)
		}
	case n.forEach:
		if len(byKey) == 0 {
			n.value = cty.EmptyObjectVal
		} else {
			n.value = cty.ObjectVal(byKey)
		}
	default:
		if len(values) == 1 {
			n.value = values[0]
		}
	}
}

func (l *loader) evalRuntime(n *node, ctx *hcl.EvalContext) {
	rt := &Runtime{Addr: n.addr, Kind: n.addr.Type, Name: n.addr.Name, DeclRange: n.decl,
		Attrs: map[string]cty.Value{}, Implicit: n.block == nil}
	e := &instEval{l: l, ctx: ctx, n: n}
	obj := map[string]cty.Value{"kind": cty.StringVal(rt.Kind), "name": cty.StringVal(rt.Name)}
	if a := n.attrs["plugin"]; a != nil {
		if v, ok := e.value(a.Expr, cty.String, "plugin"); ok && v != cty.NilVal {
			rt.Plugin = absPath(l.cfg.Dir, v.AsString())
			if st, err := statConfigFile(l.fsys, l.cfg.Dir, v.AsString()); err != nil || st.IsDir() {
				l.errorf(rangePtr(a.Expr.Range()), "Plugin not found",
					"The plugin of %s, %s, does not exist or is not a file. Build it, or fix the path (relative paths start at the configuration directory).", n.addr, rt.Plugin)
			}
		}
	}
	if a := n.attrs["sha256"]; a != nil {
		rt.SHA256 = e.sha256(a)
	}
	if n.schema != nil {
		for _, as := range n.schema.Runtime {
			v := l.schemaAttr(e, n.attrs[as.Name], as, n.decl)
			if v != cty.NilVal {
				rt.Attrs[as.Name] = v
				obj[as.Name] = v
			}
		}
	} else {
		for name, a := range n.attrs {
			if name == "plugin" || name == "sha256" {
				continue
			}
			if v, ok := e.value(a.Expr, cty.DynamicPseudoType, name); ok && v != cty.NilVal {
				rt.Attrs[name] = v
			}
		}
	}
	if !e.errs {
		n.rt = rt
		n.value = cty.ObjectVal(obj)
	}
}

// schemaAttr evaluates one schema-declared attribute, filling its default.
func (l *loader) schemaAttr(e *instEval, a *hcl.Attribute, as AttrSchema, decl hcl.Range) cty.Value {
	if a == nil {
		if as.Required && !waived(e.n, as) {
			l.errorf(rangePtr(decl), "Missing required argument", "The argument %q is required (%s).", as.Name, as.Doc)
			e.errs = true
		}
		return as.Default
	}
	ty := as.Type
	if ty == cty.NilType {
		ty = cty.DynamicPseudoType
	}
	v, ok := e.value(a.Expr, ty, as.Name)
	if !ok {
		return cty.NilVal
	}
	if v == cty.NilVal {
		return as.Default
	}
	if as.Sensitive && e.r != nil {
		e.r.Sensitive[as.Name] = true
	}
	if as.Check != nil {
		if err := as.Check(v); err != nil {
			e.checkFailed(a, as.Name, "", err)
			return cty.NilVal
		}
	}
	return v
}

// checkFailed reports the error of a schema's Check or Resolve about
// attribute a (name, within block when set), at the element it names; an
// errors.Join of several is reported as several diagnostics.
func (e *instEval) checkFailed(a *hcl.Attribute, name, block string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, one := range j.Unwrap() {
			e.checkFailed(a, name, block, one)
		}
		return
	}
	rng := a.Expr.Range()
	summary := "Invalid " + name
	var ce *CheckError
	if errors.As(err, &ce) {
		if ce.InList {
			if elems, d := hcl.ExprList(a.Expr); !d.HasErrors() && ce.Index >= 0 && ce.Index < len(elems) {
				rng = elems[ce.Index].Range()
			}
		}
		if ce.InMap {
			// the entry's key and value: its whole line
			k := elemRange(a.Expr, cty.Path{cty.IndexStep{Key: cty.StringVal(ce.Key)}})
			if k != a.Expr.Range() {
				rng = k
			}
		}
		if ce.Summary != "" {
			summary = ce.Summary
		}
		err = ce.Err
	}
	what := name
	if block != "" {
		what = block + "." + name
	}
	who := e.n.addr.String()
	if e.r != nil {
		who = e.r.Addr.String()
	}
	e.l.errorf(&rng, summary, "%s of %s: %s.", what, who, strings.TrimSuffix(err.Error(), "."))
	e.errs = true
}

func (e *instEval) sha256(a *hcl.Attribute) string {
	v, ok := e.value(a.Expr, cty.String, "sha256")
	if !ok || v == cty.NilVal {
		return ""
	}
	s := v.AsString()
	if len(s) != 64 || !isHex(s) {
		e.l.errorf(rangePtr(a.Expr.Range()), "Invalid sha256",
			"sha256 must be 64 lowercase hexadecimal digits, as printed by `sha256sum FILE`.")
		e.errs = true
		return ""
	}
	return s
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// isStringish reports whether ty is string or a collection of strings, the
// types whose numbers intsToStrings may convert ahead of go-cty.
func isStringish(ty cty.Type) bool {
	if ty == cty.String {
		return true
	}
	return (ty.IsListType() || ty.IsMapType() || ty.IsSetType()) && ty.ElementType() == cty.String
}

// intsToStrings converts whole numbers (in v, or one level down in a tuple
// or object) to their decimal text, as go-cty's conversion to string would.
// go-cty renders every number with the shortest exact decimal of a 512-bit
// float, which dominated the evaluation of large configurations
// (["--port", var.base + 1]); an int64 is rendered exactly by strconv.
func intsToStrings(v cty.Value) cty.Value {
	if !v.IsKnown() || v.IsNull() {
		return v
	}
	if v.IsMarked() {
		u, marks := v.Unmark()
		return intsToStrings(u).WithMarks(marks)
	}
	ty := v.Type()
	switch {
	case ty == cty.Number:
		if i, acc := v.AsBigFloat().Int64(); acc == big.Exact {
			return cty.StringVal(strconv.FormatInt(i, 10))
		}
	case ty.IsTupleType():
		if !hasNumberElem(ty.TupleElementTypes()) {
			return v
		}
		elems := make([]cty.Value, 0, len(ty.TupleElementTypes()))
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() == cty.Number {
				e = intsToStrings(e)
			}
			elems = append(elems, e)
		}
		return cty.TupleVal(elems)
	case ty.IsObjectType():
		var found bool
		for _, at := range ty.AttributeTypes() {
			if at == cty.Number {
				found = true
				break
			}
		}
		if !found {
			return v
		}
		attrs := make(map[string]cty.Value, len(ty.AttributeTypes()))
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if e.Type() == cty.Number {
				e = intsToStrings(e)
			}
			attrs[k.AsString()] = e
		}
		return cty.ObjectVal(attrs)
	}
	return v
}

func hasNumberElem(tys []cty.Type) bool {
	for _, t := range tys {
		if t == cty.Number {
			return true
		}
	}
	return false
}
