// Package jsonscan is the common part of orch's fast JSON decoders: a
// cursor over JSON that orch wrote itself (process handles and registry
// lines, planner snapshots), read without reflection. Each decoder reads
// only the shape it expects and reports false on anything else, and its
// caller then takes encoding/json's way, which remains the definition of
// the format.
package jsonscan

// Reader is a cursor over B at I.
type Reader struct {
	B []byte
	I int
}

// WS skips white space.
func (r *Reader) WS() {
	for r.I < len(r.B) {
		switch r.B[r.I] {
		case ' ', '\t', '\n', '\r':
			r.I++
		default:
			return
		}
	}
}

// Byte consumes c (after white space) if it comes next.
func (r *Reader) Byte(c byte) bool {
	r.WS()
	if r.I < len(r.B) && r.B[r.I] == c {
		r.I++
		return true
	}
	return false
}

// Peek returns the next byte after white space, 0 at the end.
func (r *Reader) Peek() byte {
	r.WS()
	if r.I < len(r.B) {
		return r.B[r.I]
	}
	return 0
}

// Lit consumes lit (after white space) if it comes next.
func (r *Reader) Lit(lit string) bool {
	r.WS()
	if len(r.B)-r.I >= len(lit) && string(r.B[r.I:r.I+len(lit)]) == lit {
		r.I += len(lit)
		return true
	}
	return false
}

// Bool reads true or false.
func (r *Reader) Bool() (v, ok bool) {
	switch {
	case r.Lit("true"):
		return true, true
	case r.Lit("false"):
		return false, true
	}
	return false, false
}

// End reports whether only white space is left.
func (r *Reader) End() bool {
	r.WS()
	return r.I == len(r.B)
}

// PlainStr reads a string of printable ASCII without escapes; anything
// else reports false.
func (r *Reader) PlainStr() (string, bool) {
	if !r.Byte('"') {
		return "", false
	}
	start := r.I
	for r.I < len(r.B) {
		c := r.B[r.I]
		switch {
		case c == '"':
			s := string(r.B[start:r.I])
			r.I++
			return s, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return "", false
		}
		r.I++
	}
	return "", false
}

// Uint reads an unsigned integer of at most 18 digits, without a leading
// zero, a fraction or an exponent (as encoding/json writes an integer).
func (r *Reader) Uint() (uint64, bool) {
	r.WS()
	start := r.I
	var n uint64
	for r.I < len(r.B) && r.B[r.I] >= '0' && r.B[r.I] <= '9' {
		n = n*10 + uint64(r.B[r.I]-'0')
		r.I++
	}
	d := r.I - start
	if d == 0 || d > 18 || d > 1 && r.B[start] == '0' {
		return 0, false
	}
	if r.I < len(r.B) {
		switch r.B[r.I] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}
