package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// decodeRecordFast reads a record in the exact shape encodeInstance writes
// (compact, known keys, strings without escapes) without reflection; it is
// what keeps List of ten thousand records in the tens of milliseconds.
// It returns false on anything else (an escaped string, an unknown key,
// whitespace), and the caller falls back to encoding/json, which remains
// the definition of the format.
func decodeRecordFast(b []byte, r *record) bool {
	p := scanner{b: b}
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return p.i == len(b)
	}
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return false
		}
		switch string(key) {
		case "config":
			v, ok := p.raw()
			if !ok {
				return false
			}
			r.Config = append(json.RawMessage(nil), v...)
		case "handle":
			v, ok := p.str()
			if !ok {
				return false
			}
			h := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
			n, err := base64.StdEncoding.Decode(h, v)
			if err != nil {
				return false
			}
			r.Handle = h[:n]
		case "created_at", "updated_at":
			v, ok := p.str()
			if !ok {
				return false
			}
			var t time.Time
			if err := t.UnmarshalText(v); err != nil { // what encoding/json does
				return false
			}
			if key[0] == 'c' {
				r.CreatedAt = t
			} else {
				r.UpdatedAt = t
			}
		default:
			var dst *string
			switch string(key) {
			case "addr":
				dst = &r.Addr
			case "runtime":
				dst = &r.Runtime
			case "config_hash":
				dst = &r.ConfigHash
			case "status":
				dst = &r.Status
			case "last_error":
				dst = &r.LastError
			default:
				return false
			}
			v, ok := p.str()
			if !ok {
				return false
			}
			*dst = string(v)
		}
		if p.next(',') {
			continue
		}
		return p.next('}') && p.i == len(b)
	}
}

type scanner struct {
	b []byte
	i int
}

func (p *scanner) next(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string with no escapes and returns its bytes (aliasing b).
func (p *scanner) str() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// raw reads one JSON value and returns its bytes (aliasing b), checked
// with json.Valid.
func (p *scanner) raw() ([]byte, bool) {
	start, depth := p.i, 0
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			p.i++
			for p.i < len(p.b) && p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			if p.i >= len(p.b) {
				return nil, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return p.value(start)
			}
			depth--
		case ',':
			if depth == 0 {
				return p.value(start)
			}
		}
		p.i++
	}
	return nil, false
}

func (p *scanner) value(start int) ([]byte, bool) {
	v := p.b[start:p.i]
	// encoding/json drops whitespace around a value; leave that to it.
	return v, len(v) > 0 && !isSpace(v[0]) && !isSpace(v[len(v)-1]) && json.Valid(v)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// recordCreatedAt reads created_at alone from a record in the shape
// encodeInstance writes, where it is the last key but updated_at: the last
// `,"created_at":"` is the record's own (one inside config, which comes
// before, is earlier; one inside a string would have its quotes escaped).
// Put needs only that of the record it replaces; decoding all of it was a
// twentieth of orch's CPU in orch up of 100 daemons. ok is false when the
// record is in another shape: decode it whole then.
func recordCreatedAt(b []byte) (t time.Time, ok bool) {
	const key = `,"created_at":"`
	i := bytes.LastIndex(b, []byte(key))
	if i < 0 {
		return t, false
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return t, false
	}
	if err := t.UnmarshalText(v[:j]); err != nil {
		return t, false
	}
	return t, true
}
