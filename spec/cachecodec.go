package spec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// The evaluated-configuration cache (cache.go) stores each Resource in a
// compact binary form written by a codec compiled once from the Resource
// type by reflection: every exported field, recursively, so that a field
// added to Resource (or to a struct it holds) is cached without anyone
// remembering to; a field of a kind the codec does not know (an
// interface, a func, an unexported field) makes the cache refuse to run
// (resourceCodec returns an error and Load works without it), and
// TestCacheCodecRoundTrip fills every field to prove the round trip.
//
// Ranges (hcl.Range) are written relative to the start of the block's
// source piece, without their file name: a block moved down the file, or
// to another file, keeps its entry, and is given its new place on decode.

// rebase is the position of a block's piece: ranges are stored relative to
// it.
type rebase struct {
	file string
	line int // the piece's first line
	byte int // the piece's first byte offset
}

type encFn func(b []byte, v reflect.Value, rb *rebase) ([]byte, error)
type decFn func(d *decoder, v reflect.Value) error

type decoder struct {
	b  []byte
	rb *rebase
}

var errShort = errors.New("cache entry truncated")

func (d *decoder) uvarint() (uint64, error) {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, errShort
	}
	d.b = d.b[n:]
	return x, nil
}

func (d *decoder) varint() (int64, error) {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		return 0, errShort
	}
	d.b = d.b[n:]
	return x, nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if uint64(len(d.b)) < n {
		return nil, errShort
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out, nil
}

func (d *decoder) str() (string, error) {
	b, err := d.bytes()
	return string(b), err
}

// length reads the prefix of a nil-able slice or map: ok is false for
// nil (0); otherwise the length (written plus one), which cannot exceed
// what is left, as every element takes a byte at least.
func (d *decoder) length() (n int, ok bool, err error) {
	u, err := d.uvarint()
	if err != nil || u == 0 {
		return 0, false, err
	}
	if u-1 > uint64(len(d.b)) {
		return 0, false, errShort
	}
	return int(u - 1), true, nil
}

// decStringKeyed decodes a map[string]V written as its length, then each
// key and value; value decodes one V.
func decStringKeyed[V any](d *decoder, v reflect.Value, value func() (V, error)) error {
	n, ok, err := d.length()
	if !ok {
		return err
	}
	m := make(map[string]V, n)
	for range n {
		k, err := d.str()
		if err != nil {
			return err
		}
		if m[k], err = value(); err != nil {
			return err
		}
	}
	v.Set(reflect.ValueOf(m))
	return nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var (
	rangeType = reflect.TypeOf(hcl.Range{})
	ctyType   = reflect.TypeOf(cty.Value{})
)

// codec holds the compiled encoder and decoder of one type.
type codec struct {
	enc encFn
	dec decFn
}

var (
	resCodecOnce sync.Once
	resCodec     *codec
	resCodecErr  error
)

// resourceCodec is the codec of Resource, compiled on first use.
func resourceCodec() (*codec, error) {
	resCodecOnce.Do(func() {
		resCodec, resCodecErr = compileCodec(reflect.TypeOf(Resource{}), map[reflect.Type]*codec{})
	})
	return resCodec, resCodecErr
}

func compileCodec(t reflect.Type, seen map[reflect.Type]*codec) (*codec, error) {
	if c, ok := seen[t]; ok {
		return c, nil
	}
	c := &codec{}
	seen[t] = c // recursive types resolve to this one, filled below
	switch {
	case t == rangeType:
		c.enc, c.dec = encRange, decRange
		return c, nil
	case t == ctyType:
		c.enc, c.dec = encCty, decCty
		return c, nil
	case t == reflect.TypeOf(map[string]string(nil)):
		// the commonest maps and slices of a Resource, without reflect
		// per element (the same bytes as the general codec's)
		c.enc, c.dec = encStringMap, decStringMap
		return c, nil
	case t == reflect.TypeOf(map[string]hcl.Range(nil)):
		c.enc, c.dec = encRangeMap, decRangeMap
		return c, nil
	case t == reflect.TypeOf([]string(nil)):
		c.enc, c.dec = encStrings, decStrings
		return c, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		c.enc = func(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
			if v.Bool() {
				return append(b, 1), nil
			}
			return append(b, 0), nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			if len(d.b) == 0 {
				return errShort
			}
			v.SetBool(d.b[0] != 0)
			d.b = d.b[1:]
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.enc = func(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
			return binary.AppendVarint(b, v.Int()), nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			x, err := d.varint()
			v.SetInt(x)
			return err
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.enc = func(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
			return binary.AppendUvarint(b, v.Uint()), nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			x, err := d.uvarint()
			v.SetUint(x)
			return err
		}
	case reflect.Float32, reflect.Float64:
		c.enc = func(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Float())), nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			if len(d.b) < 8 {
				return errShort
			}
			v.SetFloat(math.Float64frombits(binary.LittleEndian.Uint64(d.b)))
			d.b = d.b[8:]
			return nil
		}
	case reflect.String:
		c.enc = func(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
			return appendStr(b, v.String()), nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			s, err := d.str()
			v.SetString(s)
			return err
		}
	case reflect.Pointer:
		elem, err := compileCodec(t.Elem(), seen)
		if err != nil {
			return nil, err
		}
		c.enc = func(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
			if v.IsNil() {
				return append(b, 0), nil
			}
			return elem.enc(append(b, 1), v.Elem(), rb)
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			if len(d.b) == 0 {
				return errShort
			}
			set := d.b[0] != 0
			d.b = d.b[1:]
			if !set {
				return nil
			}
			p := reflect.New(t.Elem())
			if err := elem.dec(d, p.Elem()); err != nil {
				return err
			}
			v.Set(p)
			return nil
		}
	case reflect.Slice:
		elem, err := compileCodec(t.Elem(), seen)
		if err != nil {
			return nil, err
		}
		// the length plus one; 0 is a nil slice (nil and empty differ to
		// reflect.DeepEqual, and so to whoever compares configurations)
		c.enc = func(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
			if v.IsNil() {
				return append(b, 0), nil
			}
			b = binary.AppendUvarint(b, uint64(v.Len())+1)
			var err error
			for i := 0; i < v.Len(); i++ {
				if b, err = elem.enc(b, v.Index(i), rb); err != nil {
					return nil, err
				}
			}
			return b, nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			n, ok, err := d.length()
			if !ok {
				return err
			}
			s := reflect.MakeSlice(t, n, n)
			for i := 0; i < n; i++ {
				if err := elem.dec(d, s.Index(i)); err != nil {
					return err
				}
			}
			v.Set(s)
			return nil
		}
	case reflect.Map:
		key, err := compileCodec(t.Key(), seen)
		if err != nil {
			return nil, err
		}
		elem, err := compileCodec(t.Elem(), seen)
		if err != nil {
			return nil, err
		}
		c.enc = func(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
			if v.IsNil() {
				return append(b, 0), nil
			}
			b = binary.AppendUvarint(b, uint64(v.Len())+1)
			var err error
			for it := v.MapRange(); it.Next(); {
				if b, err = key.enc(b, it.Key(), rb); err != nil {
					return nil, err
				}
				if b, err = elem.enc(b, it.Value(), rb); err != nil {
					return nil, err
				}
			}
			return b, nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			n, ok, err := d.length()
			if !ok {
				return err
			}
			m := reflect.MakeMapWithSize(t, n)
			for i := 0; i < n; i++ {
				k := reflect.New(t.Key()).Elem()
				if err := key.dec(d, k); err != nil {
					return err
				}
				e := reflect.New(t.Elem()).Elem()
				if err := elem.dec(d, e); err != nil {
					return err
				}
				m.SetMapIndex(k, e)
			}
			v.Set(m)
			return nil
		}
	case reflect.Struct:
		type field struct {
			i int
			c *codec
		}
		var fields []field
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				return nil, fmt.Errorf("%s.%s is not exported: the configuration cache cannot store it", t, f.Name)
			}
			fc, err := compileCodec(f.Type, seen)
			if err != nil {
				return nil, err
			}
			fields = append(fields, field{i, fc})
		}
		c.enc = func(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
			var err error
			for _, f := range fields {
				if b, err = f.c.enc(b, v.Field(f.i), rb); err != nil {
					return nil, err
				}
			}
			return b, nil
		}
		c.dec = func(d *decoder, v reflect.Value) error {
			for _, f := range fields {
				if err := f.c.dec(d, v.Field(f.i)); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		return nil, fmt.Errorf("the configuration cache cannot store a %s", t)
	}
	return c, nil
}

// A range: start and end as (line, column, byte) relative to the piece.
func encRange(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
	r := v.Interface().(hcl.Range)
	if r != (hcl.Range{}) && r.Filename != rb.file {
		// decoded, it would be given the piece's file: not stored
		return nil, errors.New("a range in another file")
	}
	return appendRange(b, r, rb), nil
}

func appendRange(b []byte, r hcl.Range, rb *rebase) []byte {
	if r.Filename == "" && r.Start == (hcl.Pos{}) && r.End == (hcl.Pos{}) {
		return append(b, 0)
	}
	b = append(b, 1)
	for _, p := range []hcl.Pos{r.Start, r.End} {
		b = binary.AppendVarint(b, int64(p.Line-rb.line))
		b = binary.AppendVarint(b, int64(p.Column))
		b = binary.AppendVarint(b, int64(p.Byte-rb.byte))
	}
	return b
}

func decRange(d *decoder, v reflect.Value) error {
	r, err := d.rng()
	if err != nil {
		return err
	}
	v.Set(reflect.ValueOf(r))
	return nil
}

func (d *decoder) rng() (hcl.Range, error) {
	if len(d.b) == 0 {
		return hcl.Range{}, errShort
	}
	set := d.b[0] != 0
	d.b = d.b[1:]
	if !set {
		return hcl.Range{}, nil
	}
	var x [6]int64
	for i := range x {
		var err error
		if x[i], err = d.varint(); err != nil {
			return hcl.Range{}, err
		}
	}
	return hcl.Range{
		Filename: d.rb.file,
		Start:    hcl.Pos{Line: int(x[0]) + d.rb.line, Column: int(x[1]), Byte: int(x[2]) + d.rb.byte},
		End:      hcl.Pos{Line: int(x[3]) + d.rb.line, Column: int(x[4]), Byte: int(x[5]) + d.rb.byte},
	}, nil
}

// A cty value: cty.NilVal (0), a value built of strings, numbers, bools,
// non-empty lists and maps, tuples and objects, without nulls (2, then
// the value by structure: go-cty's JSON decoder allocates a decoder per
// element), or anything else as its type and value in go-cty's JSON (1).
// Values with marks are not cached (the loader never offers one).
func encCty(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
	cv := v.Interface().(cty.Value)
	if cv == cty.NilVal {
		return append(b, 0), nil
	}
	if cv.ContainsMarked() || !cv.IsWhollyKnown() {
		return nil, errors.New("a marked or unknown value")
	}
	if sb, ok := appendStructural(append(b, 2), cv); ok {
		return sb, nil
	}
	ty, err := ctyjson.MarshalType(cv.Type())
	if err != nil {
		return nil, err
	}
	val, err := ctyjson.Marshal(cv, cv.Type())
	if err != nil {
		return nil, err
	}
	b = append(b, 1)
	b = appendStr(b, string(ty))
	return appendStr(b, string(val)), nil
}

func decCty(d *decoder, v reflect.Value) error {
	if len(d.b) == 0 {
		return errShort
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case 0:
		v.Set(reflect.ValueOf(cty.NilVal))
		return nil
	case 2:
		cv, err := d.structural(0)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(cv))
		return nil
	case 1:
	default:
		return errors.New("a cache entry's value has an unknown tag")
	}
	tyb, err := d.bytes()
	if err != nil {
		return err
	}
	valb, err := d.bytes()
	if err != nil {
		return err
	}
	ty, err := ctyjson.UnmarshalType(tyb)
	if err != nil {
		return err
	}
	cv, err := ctyjson.Unmarshal(valb, ty)
	if err != nil {
		return err
	}
	v.Set(reflect.ValueOf(cv))
	return nil
}

// encodeResource appends r, its ranges relative to rb.
func encodeResource(b []byte, r *Resource, rb *rebase) ([]byte, error) {
	c, err := resourceCodec()
	if err != nil {
		return nil, err
	}
	return c.enc(b, reflect.ValueOf(r).Elem(), rb)
}

// decodeResource reads a Resource written by encodeResource.
func (d *decoder) resource() (*Resource, error) {
	c, err := resourceCodec()
	if err != nil {
		return nil, err
	}
	r := &Resource{}
	if err := c.dec(d, reflect.ValueOf(r).Elem()); err != nil {
		return nil, err
	}
	return r, nil
}

func encStringMap(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
	if v.IsNil() {
		return append(b, 0), nil
	}
	m := v.Interface().(map[string]string)
	b = binary.AppendUvarint(b, uint64(len(m))+1)
	for k, x := range m {
		b = appendStr(appendStr(b, k), x)
	}
	return b, nil
}

func decStringMap(d *decoder, v reflect.Value) error {
	return decStringKeyed(d, v, d.str)
}

func encRangeMap(b []byte, v reflect.Value, rb *rebase) ([]byte, error) {
	if v.IsNil() {
		return append(b, 0), nil
	}
	m := v.Interface().(map[string]hcl.Range)
	b = binary.AppendUvarint(b, uint64(len(m))+1)
	for k, r := range m {
		if r != (hcl.Range{}) && r.Filename != rb.file {
			return nil, errors.New("a range in another file")
		}
		b = appendRange(appendStr(b, k), r, rb)
	}
	return b, nil
}

func decRangeMap(d *decoder, v reflect.Value) error {
	return decStringKeyed(d, v, d.rng)
}

func encStrings(b []byte, v reflect.Value, _ *rebase) ([]byte, error) {
	if v.IsNil() {
		return append(b, 0), nil
	}
	xs := v.Interface().([]string)
	b = binary.AppendUvarint(b, uint64(len(xs))+1)
	for _, x := range xs {
		b = appendStr(b, x)
	}
	return b, nil
}

func decStrings(d *decoder, v reflect.Value) error {
	n, ok, err := d.length()
	if !ok {
		return err
	}
	xs := make([]string, n)
	for i := range xs {
		if xs[i], err = d.str(); err != nil {
			return err
		}
	}
	v.Set(reflect.ValueOf(xs))
	return nil
}

// appendStructural writes v by its structure; false when v holds
// something it does not write (a null, a set, an empty list or map, a
// capsule): the caller writes JSON instead.
func appendStructural(b []byte, v cty.Value) ([]byte, bool) {
	if v.IsNull() {
		return nil, false
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return appendStr(append(b, 's'), v.AsString()), true
	case ty == cty.Number:
		return appendStr(append(b, 'n'), v.AsBigFloat().Text('g', -1)), true
	case ty == cty.Bool:
		if v.True() {
			return append(b, 't'), true
		}
		return append(b, 'f'), true
	case ty.IsObjectType(), ty.IsTupleType(), ty.IsListType(), ty.IsMapType():
		var tag byte
		switch {
		case ty.IsObjectType():
			tag = 'o'
		case ty.IsTupleType():
			tag = 'u'
		case ty.IsListType():
			tag = 'l'
		default:
			tag = 'm'
		}
		n := v.LengthInt()
		if n == 0 && (tag == 'l' || tag == 'm') {
			return nil, false // the element type is not in the elements
		}
		b = binary.AppendUvarint(append(b, tag), uint64(n))
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if tag == 'o' || tag == 'm' {
				b = appendStr(b, k.AsString())
			}
			var ok bool
			if b, ok = appendStructural(b, e); !ok {
				return nil, false
			}
		}
		return b, true
	}
	return nil, false
}

func (d *decoder) structural(depth int) (cty.Value, error) {
	if depth > 64 || len(d.b) == 0 {
		return cty.NilVal, errShort
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case 's':
		s, err := d.str()
		return cty.StringVal(s), err
	case 'n':
		s, err := d.str()
		if err != nil {
			return cty.NilVal, err
		}
		return cty.ParseNumberVal(s)
	case 't':
		return cty.True, nil
	case 'f':
		return cty.False, nil
	case 'o', 'u', 'l', 'm':
		n, err := d.uvarint()
		if err != nil || n > uint64(len(d.b)) {
			return cty.NilVal, errShort
		}
		var attrs map[string]cty.Value
		var elems []cty.Value
		if tag == 'o' || tag == 'm' {
			attrs = make(map[string]cty.Value, n)
		} else {
			elems = make([]cty.Value, 0, n)
		}
		for i := uint64(0); i < n; i++ {
			var k string
			if attrs != nil {
				if k, err = d.str(); err != nil {
					return cty.NilVal, err
				}
			}
			e, err := d.structural(depth + 1)
			if err != nil {
				return cty.NilVal, err
			}
			if attrs != nil {
				attrs[k] = e
			} else {
				elems = append(elems, e)
			}
		}
		var out cty.Value
		err = nil
		func() {
			// go-cty panics on inconsistent element types: a corrupt
			// entry, refused like one
			defer func() {
				if recover() != nil {
					err = errors.New("a cache entry's value is inconsistent")
				}
			}()
			switch tag {
			case 'o':
				out = cty.ObjectVal(attrs)
			case 'u':
				out = cty.TupleVal(elems)
			case 'l':
				out = cty.ListVal(elems)
			default:
				out = cty.MapVal(attrs)
			}
		}()
		return out, err
	}
	return cty.NilVal, errors.New("a cache entry's value has an unknown tag")
}
