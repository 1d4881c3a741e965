package planner

import (
	"bytes"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
	"github.com/zclconf/go-cty/cty"
)

// RenderOptions control Render.
type RenderOptions struct {
	// Color adds ANSI colors; the caller decides (a terminal, NO_COLOR unset).
	Color bool
	// ShowUnchanged lists unchanged attributes of updated instances instead
	// of counting them.
	ShowUnchanged bool
}

const (
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	red    = "\x1b[31m"
	cyan   = "\x1b[36m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

type renderer struct {
	b *bytes.Buffer
	// out, when set, takes b's text whole blocks at a time (spill)
	out  io.Writer
	err  error
	opts RenderOptions
	w    int // width of the attribute names of the current block
}

func (r *renderer) c(color, s string) string {
	if !r.opts.Color {
		return s
	}
	return color + s + reset
}

// Render prints the plan as Terraform does: one section per change, the
// attribute diffs, and the summary line.
func Render(p *Plan, opts RenderOptions) string {
	r := &renderer{b: &bytes.Buffer{}, opts: opts}
	r.render(p, 1)
	return r.b.String()
}

// RenderTo writes what Render returns to w as it goes, whole changes at a
// time (a writer that redacts each write sees every value whole): the
// text of a plan of 10,000 creates is 6.5 MB, which a command printing it
// need not hold. It returns w's first error.
func RenderTo(w io.Writer, p *Plan, opts RenderOptions) error {
	r := &renderer{b: bytes.NewBuffer(make([]byte, 0, 2*spillAt)), out: w, opts: opts}
	r.render(p, workers.Count(len(p.Changes), renderSplitAt))
	r.spill(0)
	return r.err
}

// renderSplitAt is the number of changes from which RenderTo renders on
// several cores: the text of 10,000 creates took 130 ms of one core, a
// third of orch plan's CPU for them.
const renderSplitAt = 512

// changesSplit renders changes on n goroutines: a batch at a time, each
// goroutine renders a consecutive part of the batch into a buffer of its
// own, and the parts are written in order. A change's text depends on
// that change alone.
func (r *renderer) changesSplit(changes []*Change, n int) {
	parts := make([]*renderer, n)
	for i := range parts {
		parts[i] = &renderer{b: bytes.NewBuffer(make([]byte, 0, spillAt)), opts: r.opts}
	}
	batch := n * renderSplitAt / 2
	for lo := 0; lo < len(changes) && r.err == nil; lo += batch {
		cs := changes[lo:min(lo+batch, len(changes))]
		per := (len(cs) + n - 1) / n
		workers.Split(n, n, func(from, to int) {
			for i := from; i < to; i++ {
				for _, c := range cs[min(i*per, len(cs)):min((i+1)*per, len(cs))] {
					parts[i].change(c)
				}
			}
		})
		for _, part := range parts {
			r.b.Write(part.b.Bytes())
			part.b.Reset()
			r.spill(spillAt)
		}
	}
}

// spillAt is how much text RenderTo gathers before it writes.
const spillAt = 32 << 10

// spill writes the text gathered to out once there is at least min.
func (r *renderer) spill(min int) {
	if r.out == nil || r.b.Len() < min || r.b.Len() == 0 {
		return
	}
	if _, err := r.out.Write(r.b.Bytes()); err != nil && r.err == nil {
		r.err = err
	}
	r.b.Reset()
}

// render renders p, its changes on n goroutines (changesSplit) when n
// is more than one.
func (r *renderer) render(p *Plan, n int) {
	if !p.HasChanges() {
		if p.Destroy {
			r.b.WriteString(r.c(bold, "No changes.") + " Nothing is managed by orch for this configuration, so there is nothing to destroy.\n")
		} else {
			r.b.WriteString(r.c(bold, "No changes.") + " Everything declared runs as configured.\n")
		}
		return
	}
	r.b.WriteString("orch will perform the following actions:\n")
	if n > 1 {
		changes := make([]*Change, 0, len(p.Changes))
		for _, c := range p.Changes {
			if c.Action != NoOp {
				changes = append(changes, c)
			}
		}
		r.changesSplit(changes, n)
	} else {
		for _, c := range p.Changes {
			if c.Action != NoOp {
				r.change(c)
				r.spill(spillAt)
			}
		}
	}
	s := p.Summary()
	r.b.WriteString("\n" + r.c(bold, "Plan:") + fmt.Sprintf(" %d to add, %d to change, %d to replace, %d to destroy.\n",
		s.Add, s.Change, s.Replace, s.Destroy))
}

// SummaryLine is the last line of Render: "Plan: X to add, ...".
func SummaryLine(p *Plan) string {
	s := p.Summary()
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to replace, %d to destroy.", s.Add, s.Change, s.Replace, s.Destroy)
}

func (r *renderer) change(c *Change) {
	var sym, color, headline string
	switch c.Action {
	case Create:
		sym, color, headline = "  +", green, "will be created"
	case Update:
		sym, color, headline = "  ~", yellow, "will be updated in-place"
	case Stop:
		sym, color, headline = "  ~", yellow, "will be stopped"
	case Reload:
		sym, color, headline = "  ~", yellow, "will be reloaded in place ("+c.Reason.String()+")"
	case Start:
		sym, color, headline = "  ~", yellow, "will be started ("+c.Reason.String()+")"
	case Adopt:
		sym, color, headline = "  ~", cyan, "will be adopted ("+c.Reason.String()+")"
	case Delete:
		sym, color, headline = "  -", red, "will be destroyed"
		if !c.Reason.IsZero() {
			headline += " (" + c.Reason.String() + ")"
		}
	case Replace:
		sym, color, headline = "-/+", red, "must be replaced"
		if c.CreateBeforeDestroy {
			sym = "+/-"
		}
		if !c.Reason.IsZero() {
			headline += " (" + c.Reason.String() + ")"
		}
	}
	fmt.Fprintf(r.b, "\n  %s %s %s\n", r.c(bold, "#"), r.c(bold, c.Addr.String()), headline)
	if c.Action == Adopt && c.Observed.Pid != 0 {
		fmt.Fprintf(r.b, "  # (pid %d)\n", c.Observed.Pid)
	}
	fmt.Fprintf(r.b, "%s %s {\n", r.c(color, sym), blockHeader(c.Addr))
	r.w = 3
	switch c.Action {
	case Create:
		r.attrs(c.Desired, "+", green)
		r.known("+", green, "pid")
	case Delete:
		if c.Prior != nil && c.Prior.Snapshot != nil {
			r.attrs(c.Prior.Snapshot, "-", red)
		}
		if c.Observed.Pid != 0 {
			r.line("-", red, "pid", fmt.Sprint(c.Observed.Pid), r.w)
		}
	default:
		r.diffs(c)
	}
	r.b.WriteString("    }\n")
	for _, l := range c.Published {
		color := green
		if strings.HasPrefix(l, "-") {
			color = red
		}
		r.b.WriteString("      " + r.c(color, "# "+l) + "\n")
	}
}

func blockHeader(a spec.Address) string {
	return fmt.Sprintf("%s %q", a.Kind, a.Name)
}

func width(names []string) int {
	w := 0
	for _, n := range names {
		if len(n) > w {
			w = len(n)
		}
	}
	return w
}

func (r *renderer) attrs(s *Snapshot, sym, color string) {
	names := sortedKeysV(s.Values)
	r.w = width(append(names, "pid"))
	for _, n := range names {
		r.lineStart(sym, color, n, r.w)
		appendHCL(r.b, s.Values[n], 8, n, s.Sensitive) // "(sensitive value)" for a sensitive one
		r.b.WriteByte('\n')
	}
}

func (r *renderer) known(sym, color, name string) {
	r.line(sym, color, name, "(known after apply)", r.w)
}

// line writes one attribute line, name padded to w runes (as fmt's %-*s
// would, without fmt: a plan of 10,000 new daemons writes 200,000 lines).
func (r *renderer) line(sym, color, name, val string, w int) {
	r.lineStart(sym, color, name, w)
	r.b.WriteString(val)
	r.b.WriteByte('\n')
}

// lineStart writes an attribute line up to its value.
func (r *renderer) lineStart(sym, color, name string, w int) {
	r.b.WriteString("      ")
	r.b.WriteString(r.c(color, sym))
	r.b.WriteByte(' ')
	r.b.WriteString(name)
	for i := utf8.RuneCountInString(name); i < w; i++ {
		r.b.WriteByte(' ')
	}
	r.b.WriteString(" = ")
}

func (r *renderer) diffs(c *Change) {
	names := make([]string, 0, len(c.Diffs))
	for _, d := range c.Diffs {
		names = append(names, d.Name)
	}
	w := width(names)
	for _, d := range c.Diffs {
		forces := ""
		if d.ForcesReplacement && c.Action == Replace {
			forces = r.c(red, " # forces replacement")
		}
		switch {
		case d.Old == cty.NilVal:
			r.line("+", green, d.Name, r.value(d.New, d.Sensitive, 8)+forces, w)
		case d.New == cty.NilVal:
			r.line("-", red, d.Name, r.value(d.Old, d.Sensitive, 8)+" -> null"+forces, w)
		case isMapish(d.Old) && isMapish(d.New) && !c.Desired.Sensitive[d.Name] && !c.Prior.Snapshot.Sensitive[d.Name]:
			fmt.Fprintf(r.b, "      %s %-*s = {%s\n", r.c(yellow, "~"), w, d.Name, forces)
			r.mapDiff(d.Name, d.Old, d.New, c.Prior.Snapshot, c.Desired)
			r.b.WriteString("        }\n")
		default:
			if ops, ok := lineDiffOf(d.Old, d.New, d.Sensitive); ok {
				r.lineStart("~", yellow, d.Name, w)
				r.appendLineDiff(r.b, ops, 8, forces)
				r.b.WriteByte('\n')
			} else {
				r.line("~", yellow, d.Name, r.changed(d.Old, d.Sensitive, 8)+" -> "+r.changed(d.New, d.Sensitive, 8)+forces, w)
			}
		}
	}
	unchanged := 0
	if c.Desired != nil {
		for n := range c.Desired.Values {
			if !contains(names, n) {
				unchanged++
			}
		}
	}
	if unchanged > 0 {
		r.b.WriteString("        " + hiddenComment(unchanged, "attribute") + "\n")
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func isMapish(v cty.Value) bool {
	t := v.Type()
	return (t.IsMapType() || t.IsObjectType()) && !v.IsNull()
}

func (r *renderer) mapDiff(name string, old, new cty.Value, os, ns *Snapshot) {
	om, nm := old.AsValueMap(), new.AsValueMap()
	keys := map[string]bool{}
	for k := range om {
		keys[k] = true
	}
	for k := range nm {
		keys[k] = true
	}
	names := sortedSet(keys)
	w := 0
	for _, k := range names {
		if l := len(quote(k)); l > w {
			w = l
		}
	}
	for _, k := range names {
		o, ok1 := om[k]
		n, ok2 := nm[k]
		qk := quote(k)
		path := name + "." + k
		ov := formatChanged(o, 12, path, os.Sensitive)
		nv := formatChanged(n, 12, path, ns.Sensitive)
		switch {
		case !ok1:
			fmt.Fprintf(r.b, "          %s %-*s = %s\n", r.c(green, "+"), w, qk, nv)
		case !ok2:
			fmt.Fprintf(r.b, "          %s %-*s = %s -> null\n", r.c(red, "-"), w, qk, ov)
		case !o.Equals(n).True():
			sensitive := os.Sensitive[path] || ns.Sensitive[path]
			if ops, ok := lineDiffOf(o, n, sensitive); ok {
				fmt.Fprintf(r.b, "          %s %-*s = ", r.c(yellow, "~"), w, qk)
				r.appendLineDiff(r.b, ops, 12, "")
				r.b.WriteByte('\n')
				continue
			}
			if sensitive {
				nv += " # (sensitive value changed)"
			}
			fmt.Fprintf(r.b, "          %s %-*s = %s -> %s\n", r.c(yellow, "~"), w, qk, ov, nv)
		}
	}
}

// isString reports whether v is a known string that is not null.
func isString(v cty.Value) bool {
	return v != cty.NilVal && v.Type() == cty.String && v.IsKnown() && !v.IsNull()
}

// lineDiffOf is lineDiff for two values: strings, neither sensitive.
func lineDiffOf(old, new cty.Value, sensitive bool) ([]lineOp, bool) {
	if sensitive || !isString(old) || !isString(new) {
		return nil, false
	}
	return lineDiff(old.AsString(), new.AsString())
}

// changed is value for one side of a change (formatChanged).
func (r *renderer) changed(v cty.Value, sensitive bool, indent int) string {
	if sensitive {
		return "(sensitive value)"
	}
	return formatChanged(v, indent, "", nil)
}

// formatChanged is formatValue for one side of a change: a string
// quoted, even of several lines (their diff line by line, lineDiff, was
// not one to show: two heredocs would hide what differs).
func formatChanged(v cty.Value, indent int, path string, sensitive map[string]bool) string {
	if !sensitive[path] && isString(v) {
		return strconv.Quote(v.AsString())
	}
	return formatValue(v, indent, path, sensitive)
}

// value renders a value in HCL syntax, or "(sensitive value)".
func (r *renderer) value(v cty.Value, sensitive bool, indent int) string {
	if sensitive {
		return "(sensitive value)"
	}
	return FormatValue(v, indent)
}

// FormatValue renders v in HCL syntax; nested collections break lines at
// the given indentation.
func FormatValue(v cty.Value, indent int) string { return formatValue(v, indent, "", nil) }

func formatValue(v cty.Value, indent int, path string, sensitive map[string]bool) string {
	var b bytes.Buffer
	appendHCL(&b, v, indent, path, sensitive)
	return b.String()
}

// appendHCL writes formatValue's text to b, with no string of its own
// for each value and collection (a plan of 10,000 new daemons renders
// 200,000 values).
func appendHCL(b *bytes.Buffer, v cty.Value, indent int, path string, sensitive map[string]bool) {
	if sensitive[path] && path != "" {
		b.WriteString("(sensitive value)")
		return
	}
	if v == cty.NilVal || v.IsNull() {
		b.WriteString("null")
		return
	}
	if !v.IsKnown() {
		b.WriteString("(known after apply)")
		return
	}
	t := v.Type()
	switch {
	case t == cty.String:
		if lines, ok := heredocLines(v.AsString()); ok {
			appendHeredoc(b, lines, indent)
			return
		}
		b.Write(strconv.AppendQuote(b.AvailableBuffer(), v.AsString()))
	case t == cty.Number:
		bf := v.AsBigFloat()
		// an integer (a port, a count, most numbers of a plan) without
		// big.Float's decimal conversion: the same text
		if bf.Sign() != 0 && bf.IsInt() {
			if i, acc := bf.Int64(); acc == big.Exact {
				b.Write(strconv.AppendInt(b.AvailableBuffer(), i, 10))
				return
			}
		}
		b.Write(bf.Append(b.AvailableBuffer(), 'f', -1))
	case t == cty.Bool:
		if v.True() {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case t.IsListType() || t.IsSetType() || t.IsTupleType():
		if v.LengthInt() == 0 {
			b.WriteString("[]")
			return
		}
		if primitiveElements(t) {
			b.WriteByte('[')
			for i, it := 0, v.ElementIterator(); it.Next(); i++ {
				_, e := it.Element()
				if i > 0 {
					b.WriteString(", ")
				}
				appendHCL(b, e, indent+2, elemPath(path, i, sensitive), sensitive)
			}
			b.WriteByte(']')
			return
		}
		b.WriteString("[\n")
		for i, it := 0, v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			pad(b, indent+2)
			appendHCL(b, e, indent+2, elemPath(path, i, sensitive), sensitive)
			b.WriteString(",\n")
		}
		pad(b, indent)
		b.WriteByte(']')
	case t.IsMapType() || t.IsObjectType():
		// cty iterates maps and objects in key order: no map, no sort
		if v.LengthInt() == 0 {
			b.WriteString("{}")
			return
		}
		w := 0
		for it := v.ElementIterator(); it.Next(); {
			k, _ := it.Element()
			if l := mapKeyLen(k.AsString()); l > w {
				w = l
			}
		}
		b.WriteString("{\n")
		for it := v.ElementIterator(); it.Next(); {
			kv, e := it.Element()
			k := kv.AsString()
			pad(b, indent+2)
			n := b.Len()
			appendMapKey(b, k)
			for n = b.Len() - n; n < w; n++ {
				b.WriteByte(' ')
			}
			b.WriteString(" = ")
			appendHCL(b, e, indent+2, keyPath(path, k, sensitive), sensitive)
			b.WriteByte('\n')
		}
		pad(b, indent)
		b.WriteByte('}')
	default:
		b.WriteString(v.GoString())
	}
}

// primitiveElements reports whether every element of the list, set or
// tuple type t is of a primitive type: such a collection is written on
// one line.
func primitiveElements(t cty.Type) bool {
	if t.IsTupleType() {
		for _, et := range t.TupleElementTypes() {
			if !et.IsPrimitiveType() {
				return false
			}
		}
		return true
	}
	return t.ElementType().IsPrimitiveType()
}

// pad writes n spaces.
func pad(b *bytes.Buffer, n int) {
	for ; n > 0; n-- {
		b.WriteByte(' ')
	}
}

// elemPath and keyPath are the paths of an element and of a key under
// path, which only a sensitive map needs (none: "", no allocation).
func elemPath(path string, i int, sensitive map[string]bool) string {
	if len(sensitive) == 0 {
		return ""
	}
	return path + "[" + strconv.Itoa(i) + "]"
}

func keyPath(path, k string, sensitive map[string]bool) string {
	if len(sensitive) == 0 {
		return ""
	}
	return path + "." + k
}

// bareKey reports whether k is written as it is, not quoted, as a map
// key (appendMapKey).
func bareKey(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return true
}

// mapKeyLen is the length of what appendMapKey writes for k.
func mapKeyLen(k string) int {
	if bareKey(k) {
		return len(k)
	}
	return len(quote(k))
}

// appendMapKey writes map key k to b: bare, or quoted.
func appendMapKey(b *bytes.Buffer, k string) {
	if bareKey(k) {
		b.WriteString(k)
		return
	}
	b.Write(strconv.AppendQuote(b.AvailableBuffer(), k))
}

func sortedKeysV(m map[string]cty.Value) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
