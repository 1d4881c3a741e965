package planner

import (
	"encoding/json"
	"github.com/orch-dev/orch/spec/jsonscan"
	"math/big"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/orch-dev/orch/spec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Fast paths of Encode and DecodeSnapshot. A no-op plan of 10,000
// instances decodes 10,000 stored snapshots and encodes (hashes) 10,000
// desired ones; through encoding/json and cty/json (reflection, token
// streams) that took most of the plan's time. The code here writes and
// reads the same bytes by hand for the shapes snapshots have: strings,
// numbers, bools, lists, sets, maps, tuples and objects of them. Anything
// else (dynamic or capsule types, optional attributes, JSON it does not
// expect) goes to the general code, so the encoding stays byte for byte
// what encoding/json and cty/json produce.

// appendEncode appends the canonical JSON of s (see Encode), or reports
// false when s holds something only the general encoder handles.
func (s *Snapshot) appendEncode(b []byte) ([]byte, bool) {
	b = append(b, `{"format":1,"kind":`...)
	b = appendString(b, s.Kind.String())
	if !s.Runtime.IsZero() {
		b = append(b, `,"runtime":`...)
		b = appendString(b, s.Runtime.String())
	}
	b = append(b, `,"values":{`...)
	names := make([]string, 0, len(s.Values))
	for k := range s.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		v := s.Values[k]
		b = append(b, `:{"t":`...)
		var ok bool
		if b, ok = appendType(b, v.Type()); !ok {
			return b, false
		}
		b = append(b, `,"v":`...)
		if b, ok = appendValue(b, v, v.Type()); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	b = appendStrings(b, `,"forces":`, sortedSet(s.Forces))
	b = appendStrings(b, `,"sensitive":`, sortedSet(s.Sensitive))
	if len(s.DependsOn) > 0 {
		deps := make([]string, len(s.DependsOn))
		for i, d := range s.DependsOn {
			deps[i] = d.String()
		}
		sort.Strings(deps)
		b = appendStrings(b, `,"depends_on":`, deps)
	}
	if s.PreventDestroy {
		b = append(b, `,"prevent_destroy":true`...)
	}
	if s.CreateBeforeDestroy {
		b = append(b, `,"create_before_destroy":true`...)
	}
	return append(b, '}'), true
}

// appendStrings appends key and a JSON array of xs, unless xs is empty
// (omitempty).
func appendStrings(b []byte, key string, xs []string) []byte {
	if len(xs) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, x)
	}
	return append(b, ']')
}

// appendString appends s as encoding/json writes it (HTML-escaped).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendType appends what cty.Type.MarshalJSON writes.
func appendType(b []byte, t cty.Type) ([]byte, bool) {
	switch {
	case t == cty.String:
		return append(b, `"string"`...), true
	case t == cty.Number:
		return append(b, `"number"`...), true
	case t == cty.Bool:
		return append(b, `"bool"`...), true
	case t.IsListType(), t.IsSetType(), t.IsMapType():
		switch {
		case t.IsListType():
			b = append(b, `["list",`...)
		case t.IsSetType():
			b = append(b, `["set",`...)
		default:
			b = append(b, `["map",`...)
		}
		b, ok := appendType(b, t.ElementType())
		return append(b, ']'), ok
	case t.IsObjectType():
		if len(t.OptionalAttributes()) > 0 {
			return b, false
		}
		atys := t.AttributeTypes()
		b = append(b, `["object",{`...)
		for i, k := range sortedKeys(atys) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var ok bool
			if b, ok = appendType(b, atys[k]); !ok {
				return b, false
			}
		}
		return append(b, "}]"...), true
	case t.IsTupleType():
		b = append(b, `["tuple",[`...)
		for i, et := range t.TupleElementTypes() {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendType(b, et); !ok {
				return b, false
			}
		}
		return append(b, "]]"...), true
	}
	return b, false // dynamic, capsule
}

func sortedKeys(m map[string]cty.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// appendValue appends what cty/json's Marshal(v, t) writes, for a v of
// type t.
func appendValue(b []byte, v cty.Value, t cty.Type) ([]byte, bool) {
	if v.IsMarked() || !v.IsKnown() || t == cty.DynamicPseudoType {
		return b, false
	}
	if v.IsNull() {
		return append(b, "null"...), true
	}
	ok := true
	switch {
	case t == cty.String:
		return appendString(b, v.AsString()), true
	case t == cty.Number:
		f := v.AsBigFloat()
		if f.IsInf() {
			return b, false
		}
		if i, acc := f.Int64(); acc == big.Exact && (i != 0 || !f.Signbit()) {
			return strconv.AppendInt(b, i, 10), true // what Append writes for an integer, faster
		}
		return f.Append(b, 'f', -1), true
	case t == cty.Bool:
		if v.True() {
			return append(b, "true"...), true
		}
		return append(b, "false"...), true
	case t.IsListType(), t.IsSetType():
		b = append(b, '[')
		et := t.ElementType()
		i := 0
		for it := v.ElementIterator(); it.Next() && ok; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			_, ev := it.Element()
			b, ok = appendValue(b, ev, et)
		}
		return append(b, ']'), ok
	case t.IsTupleType():
		b = append(b, '[')
		ets := t.TupleElementTypes()
		i := 0
		for it := v.ElementIterator(); it.Next() && ok; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			_, ev := it.Element()
			b, ok = appendValue(b, ev, ets[i])
		}
		return append(b, ']'), ok
	case t.IsMapType():
		b = append(b, '{')
		et := t.ElementType()
		i := 0
		for it := v.ElementIterator(); it.Next() && ok; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			ek, ev := it.Element()
			b = appendString(b, ek.AsString())
			b = append(b, ':')
			b, ok = appendValue(b, ev, et)
		}
		return append(b, '}'), ok
	case t.IsObjectType():
		b = append(b, '{')
		atys := t.AttributeTypes()
		for i, k := range sortedKeys(atys) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, ok = appendValue(b, v.GetAttr(k), atys[k]); !ok {
				break
			}
		}
		return append(b, '}'), ok
	}
	return b, false
}

// decodeFast reads what appendEncode writes (and what Encode wrote before
// it). It reports false for anything else, for DecodeSnapshot's general
// path to read.
func decodeFast(b []byte, cache *SnapshotDecoder) (*Snapshot, bool) {
	r := &jreader{Reader: jsonscan.Reader{B: b}, cache: cache}
	s := &Snapshot{Values: map[string]cty.Value{}, Forces: map[string]bool{}, Sensitive: map[string]bool{}}
	if !r.Byte('{') {
		return nil, false
	}
	format := 0
	seen := map[string]bool{}
	for first := true; ; first = false {
		if r.Byte('}') {
			break
		}
		if !first && !r.Byte(',') {
			return nil, false
		}
		key, ok := r.str()
		if !ok || !r.Byte(':') || seen[key] {
			return nil, false
		}
		seen[key] = true
		switch key {
		case "format":
			n, ok := r.number()
			if !ok || n != "1" {
				return nil, false
			}
			format = 1
		case "kind":
			k, ok := r.str()
			if !ok {
				return nil, false
			}
			s.Kind = spec.ParseKind(k)
		case "runtime":
			a, ok := r.addr()
			if !ok {
				return nil, false
			}
			s.Runtime = a
		case "values":
			if !r.values(s.Values) {
				return nil, false
			}
		case "forces", "sensitive":
			m := s.Forces
			if key == "sensitive" {
				m = s.Sensitive
			}
			if !r.strings(func(x string) bool { m[x] = true; return true }) {
				return nil, false
			}
		case "depends_on":
			if !r.strings(func(x string) bool {
				a, err := spec.ParseAddress(x)
				s.DependsOn = append(s.DependsOn, a)
				return err == nil
			}) {
				return nil, false
			}
		case "prevent_destroy", "create_before_destroy":
			v, ok := r.Bool()
			if !ok {
				return nil, false
			}
			if key == "prevent_destroy" {
				s.PreventDestroy = v
			} else {
				s.CreateBeforeDestroy = v
			}
		default:
			return nil, false
		}
	}
	r.WS()
	return s, format == 1 && r.I == len(r.B)
}

// jreader is a minimal JSON reader for decodeFast: every method skips
// white space first and reports false on anything unexpected.
type jreader struct {
	jsonscan.Reader
	cache *SnapshotDecoder // nil: no sharing of values
}

// SnapshotDecoder is DecodeSnapshot for many snapshots in a row (a refresh
// of every recorded instance): the values that are the same JSON of the
// same type in several snapshots (a command, a stop or health block, the
// same environment) are decoded once and shared, as cty values are
// immutable. 10,000 recorded daemons that differ in one variable took 40
// MB of decoded values, each with its own copy of every object type. Not
// safe for concurrent use: one per goroutine.
type SnapshotDecoder struct {
	vals map[string]map[string]cty.Value // type JSON -> value JSON -> value
	n    int
}

const (
	maxSharedValue  = 512   // bytes of JSON: larger values are decoded each time
	maxSharedValues = 16384 // entries, then the cache starts over
)

// NewSnapshotDecoder returns a decoder with an empty cache.
func NewSnapshotDecoder() *SnapshotDecoder {
	return &SnapshotDecoder{vals: map[string]map[string]cty.Value{}}
}

// Decode is DecodeSnapshot, sharing values with the snapshots this decoder
// decoded before.
func (d *SnapshotDecoder) Decode(b []byte) (*Snapshot, error) {
	if s, ok := decodeFast(b, d); ok {
		return s, nil
	}
	return decodeSlow(b)
}

// shared reads the value at r of type ty (its JSON tyJSON) through the
// cache.
func (r *jreader) shared(ty cty.Type, tyJSON []byte) (cty.Value, bool) {
	r.WS()
	start := r.I
	if !r.skip() {
		return cty.NilVal, false
	}
	raw := r.B[start:r.I]
	if len(raw) > maxSharedValue {
		sub := &jreader{Reader: jsonscan.Reader{B: raw}}
		v, ok := sub.value(ty)
		return v, ok && sub.I == len(raw)
	}
	d := r.cache
	if v, ok := d.vals[string(tyJSON)][string(raw)]; ok {
		return v, true
	}
	sub := &jreader{Reader: jsonscan.Reader{B: raw}}
	v, ok := sub.value(ty)
	if !ok || sub.I != len(raw) {
		return cty.NilVal, false
	}
	if d.n >= maxSharedValues {
		clear(d.vals)
		d.n = 0
	}
	m := d.vals[string(tyJSON)]
	if m == nil {
		m = map[string]cty.Value{}
		d.vals[string(tyJSON)] = m
	}
	m[string(raw)] = v
	d.n++
	return v, true
}

// str reads a string. Strings with escapes or non-ASCII bytes are
// decoded by encoding/json.
func (r *jreader) str() (string, bool) {
	if !r.Byte('"') {
		return "", false
	}
	start := r.I
	plain := true
	for r.I < len(r.B) {
		c := r.B[r.I]
		switch {
		case c == '"':
			r.I++
			if plain {
				return string(r.B[start : r.I-1]), true
			}
			var s string
			if err := json.Unmarshal(r.B[start-1:r.I], &s); err != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			plain = false
			r.I += 2
			continue
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			plain = false
		}
		r.I++
	}
	return "", false
}

// number reads a number's text, as JSON's grammar has it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *jreader) number() (string, bool) {
	r.WS()
	start := r.I
	at := func(set string) bool {
		if r.I < len(r.B) {
			for j := 0; j < len(set); j++ {
				if r.B[r.I] == set[j] {
					r.I++
					return true
				}
			}
		}
		return false
	}
	digits := func() int {
		n := 0
		for r.I < len(r.B) && '0' <= r.B[r.I] && r.B[r.I] <= '9' {
			r.I++
			n++
		}
		return n
	}
	at("-")
	if !at("0") && (r.I >= len(r.B) || r.B[r.I] < '1' || r.B[r.I] > '9' || digits() == 0) {
		return "", false
	}
	if at(".") && digits() == 0 {
		return "", false
	}
	if at("eE") {
		at("+-")
		if digits() == 0 {
			return "", false
		}
	}
	return string(r.B[start:r.I]), true
}

func (r *jreader) strings(each func(string) bool) bool {
	if r.Lit("null") {
		return true
	}
	if !r.Byte('[') {
		return false
	}
	for first := true; !r.Byte(']'); first = false {
		if !first && !r.Byte(',') {
			return false
		}
		s, ok := r.str()
		if !ok || !each(s) {
			return false
		}
	}
	return true
}

func (r *jreader) addr() (spec.Address, bool) {
	s, ok := r.str()
	if !ok {
		return spec.Address{}, false
	}
	a, err := spec.ParseAddress(s)
	return a, err == nil
}

// values reads the "values" object: name -> {"t": type, "v": value}.
func (r *jreader) values(m map[string]cty.Value) bool {
	if !r.Byte('{') {
		return false
	}
	for first := true; !r.Byte('}'); first = false {
		if !first && !r.Byte(',') {
			return false
		}
		name, ok := r.str()
		if !ok || !r.Byte(':') || !r.Byte('{') {
			return false
		}
		// Encode writes "t" before "v"; the value needs the type.
		if k, ok := r.str(); !ok || k != "t" || !r.Byte(':') {
			return false
		}
		start := r.I
		if !r.skip() {
			return false
		}
		tyJSON := r.B[start:r.I]
		ty, ok := typeOf(tyJSON)
		if !ok || !r.Byte(',') {
			return false
		}
		if k, ok := r.str(); !ok || k != "v" || !r.Byte(':') {
			return false
		}
		var v cty.Value
		if r.cache != nil {
			v, ok = r.shared(ty, tyJSON)
		} else {
			v, ok = r.value(ty)
		}
		if !ok || !r.Byte('}') {
			return false
		}
		m[name] = v
	}
	return true
}

// skip passes over one value of any kind.
func (r *jreader) skip() bool {
	switch c := r.Peek(); {
	case c == '"':
		_, ok := r.str()
		return ok
	case c == '[' || c == '{':
		r.I++
		end := byte(']')
		if c == '{' {
			end = '}'
		}
		for first := true; !r.Byte(end); first = false {
			if !first && !r.Byte(',') {
				return false
			}
			if c == '{' {
				if _, ok := r.str(); !ok || !r.Byte(':') {
					return false
				}
			}
			if !r.skip() {
				return false
			}
		}
		return true
	case c == 't' || c == 'f':
		_, ok := r.Bool()
		return ok
	case c == 'n':
		return r.Lit("null")
	default:
		_, ok := r.number()
		return ok
	}
}

// value reads a value of type ty as cty/json's Unmarshal does.
func (r *jreader) value(ty cty.Type) (cty.Value, bool) {
	if r.Lit("null") {
		return cty.NullVal(ty), true
	}
	switch {
	case ty == cty.String:
		s, ok := r.str()
		return cty.StringVal(s), ok
	case ty == cty.Number:
		n, ok := r.number()
		if !ok {
			return cty.NilVal, false
		}
		v, err := cty.ParseNumberVal(n)
		return v, err == nil
	case ty == cty.Bool:
		v, ok := r.Bool()
		return cty.BoolVal(v), ok
	case ty.IsListType(), ty.IsSetType():
		et := ty.ElementType()
		var vals []cty.Value
		if !r.Byte('[') {
			return cty.NilVal, false
		}
		for first := true; !r.Byte(']'); first = false {
			if !first && !r.Byte(',') {
				return cty.NilVal, false
			}
			v, ok := r.value(et)
			if !ok {
				return cty.NilVal, false
			}
			vals = append(vals, v)
		}
		switch {
		case ty.IsListType() && len(vals) == 0:
			return cty.ListValEmpty(et), true
		case ty.IsListType():
			return cty.ListVal(vals), true
		case len(vals) == 0:
			return cty.SetValEmpty(et), true
		}
		return cty.SetVal(vals), true
	case ty.IsMapType(), ty.IsObjectType():
		isMap := ty.IsMapType()
		if !isMap && len(ty.OptionalAttributes()) > 0 {
			return cty.NilVal, false
		}
		vals := map[string]cty.Value{}
		if !r.Byte('{') {
			return cty.NilVal, false
		}
		for first := true; !r.Byte('}'); first = false {
			if !first && !r.Byte(',') {
				return cty.NilVal, false
			}
			k, ok := r.str()
			if !ok || !r.Byte(':') {
				return cty.NilVal, false
			}
			et := cty.NilType
			if isMap {
				et = ty.ElementType()
			} else if !ty.HasAttribute(k) {
				return cty.NilVal, false
			} else {
				et = ty.AttributeType(k)
			}
			v, ok := r.value(et)
			if !ok {
				return cty.NilVal, false
			}
			vals[k] = v
		}
		if isMap {
			if len(vals) == 0 {
				return cty.MapValEmpty(ty.ElementType()), true
			}
			return cty.MapVal(vals), true
		}
		for k, at := range ty.AttributeTypes() {
			if _, ok := vals[k]; !ok {
				vals[k] = cty.NullVal(at)
			}
		}
		if len(vals) == 0 {
			return cty.EmptyObjectVal, true
		}
		return cty.ObjectVal(vals), true
	}
	return cty.NilVal, false // tuples, dynamic, capsules: the general path
}

// typeCache remembers decoded types by their JSON: a configuration has
// few distinct ones. Types are immutable values, safe to share.
var typeCache = struct {
	sync.Mutex
	m map[string]cty.Type
}{m: map[string]cty.Type{}}

// typeOf decodes a type's JSON.
func typeOf(b []byte) (cty.Type, bool) {
	switch string(b) {
	case `"string"`:
		return cty.String, true
	case `"number"`:
		return cty.Number, true
	case `"bool"`:
		return cty.Bool, true
	case `["list","string"]`:
		return cty.List(cty.String), true
	case `["map","string"]`:
		return cty.Map(cty.String), true
	}
	typeCache.Lock()
	t, ok := typeCache.m[string(b)]
	typeCache.Unlock()
	if ok {
		return t, true
	}
	t, err := ctyjson.UnmarshalType(b)
	if err != nil || t == cty.DynamicPseudoType {
		return cty.NilType, false
	}
	typeCache.Lock()
	if len(typeCache.m) >= 4096 {
		clear(typeCache.m) // bounded: types of hostile or odd state files
	}
	typeCache.m[string(b)] = t
	typeCache.Unlock()
	return t, true
}

// equalValues is a.RawEquals(b), faster for the shapes snapshot values
// have (strings, bools, lists, maps and objects of them): RawEquals
// compares types and marks again at every level.
func equalValues(a, b cty.Value) bool {
	ta, tb := a.Type(), b.Type()
	if a.IsMarked() || b.IsMarked() || !a.IsKnown() || !b.IsKnown() || a.IsNull() || b.IsNull() {
		return a.RawEquals(b)
	}
	switch {
	case ta == cty.String && tb == cty.String:
		return a.AsString() == b.AsString()
	case ta == cty.Bool && tb == cty.Bool:
		return a.True() == b.True()
	case ta.IsObjectType() && tb.IsObjectType():
		if !ta.Equals(tb) {
			return false
		}
		for k := range ta.AttributeTypes() {
			if !equalValues(a.GetAttr(k), b.GetAttr(k)) {
				return false
			}
		}
		return true
	case ta.IsListType() && tb.IsListType(), ta.IsMapType() && tb.IsMapType():
		if !ta.Equals(tb) || a.LengthInt() != b.LengthInt() {
			return false
		}
		isMap := ta.IsMapType()
		ia, ib := a.ElementIterator(), b.ElementIterator()
		for ia.Next() && ib.Next() {
			ka, va := ia.Element()
			kb, vb := ib.Element()
			if isMap && ka.AsString() != kb.AsString() || !equalValues(va, vb) {
				return false
			}
		}
		return true
	}
	return a.RawEquals(b)
}
