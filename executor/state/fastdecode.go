package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
//
// With omit, a configuration whose SHA-256 is the record's config_hash
// is left out (r.configOmitted; it is not copied, nor checked with
// json.Valid: those bytes are the ones written, which were checked then);
// any other is read as without.
func decodeRecordFast(b []byte, r *record, omit bool) bool {
	p := scanner{b: b}
	var config []byte // with omit: the configuration, aliasing b
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
			if omit {
				v, ok := p.span()
				if !ok {
					return false
				}
				config = v
				break
			}
			v, ok := p.raw()
			if !ok {
				return false
			}
			r.Config = append(json.RawMessage(nil), v...)
		case "config_apart":
			if !bytes.HasPrefix(b[p.i:], []byte("true")) {
				return false // false is never written: encoding/json decides
			}
			p.i += len("true")
			r.ConfigApart = true
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
		if !p.next('}') || p.i != len(b) {
			return false
		}
		if config != nil {
			if sameHash(config, r.ConfigHash) {
				r.configOmitted = true
			} else if json.Valid(config) {
				r.Config = append(json.RawMessage(nil), config...)
			} else {
				return false
			}
		}
		return true
	}
}

// sameHash reports whether hexHash is the SHA-256 of b, in lower-case hex
// as the records write it.
func sameHash(b []byte, hexHash string) bool {
	if len(hexHash) != 2*sha256.Size {
		return false
	}
	sum := sha256.Sum256(b)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	return string(hx[:]) == hexHash
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
	start := p.i
	if !p.skip() {
		return nil, false
	}
	return p.value(start)
}

// span reads one JSON value as raw does, without json.Valid.
func (p *scanner) span() ([]byte, bool) {
	start := p.i
	if !p.skip() {
		return nil, false
	}
	v := p.b[start:p.i]
	return v, len(v) > 0 && !isSpace(v[0]) && !isSpace(v[len(v)-1])
}

// skip moves past one JSON value, to the ',' or the closing '}' or ']'
// after it, by its strings and brackets alone.
func (p *scanner) skip() bool {
	depth := 0
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
				return false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return true
			}
			depth--
		case ',':
			if depth == 0 {
				return true
			}
		}
		p.i++
	}
	return false
}

func (p *scanner) value(start int) ([]byte, bool) {
	v := p.b[start:p.i]
	// encoding/json drops whitespace around a value; leave that to it.
	return v, len(v) > 0 && !isSpace(v[0]) && !isSpace(v[len(v)-1]) && json.Valid(v)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// priorRecord is what Put needs of the record it replaces.
type priorRecord struct {
	createdAt  time.Time
	configHash []byte // aliasing the record
	apart      bool   // the configuration is kept apart (record.ConfigApart)
}

// readPrior reads a record's created_at, config_hash and config_apart by
// its top-level keys alone, in the shape encodeInstance writes (what it
// skips is not checked). ok is false when the record is in another shape:
// decode it whole then.
func readPrior(b []byte) (m priorRecord, ok bool) {
	p := scanner{b: b}
	if !p.next('{') {
		return m, false
	}
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return m, false
		}
		switch string(key) {
		case "config_hash":
			if m.configHash, ok = p.str(); !ok {
				return m, false
			}
		case "config_apart":
			if !bytes.HasPrefix(b[p.i:], []byte("true")) {
				return m, false
			}
			p.i += len("true")
			m.apart = true
		case "created_at":
			v, ok := p.str()
			if !ok || m.createdAt.UnmarshalText(v) != nil {
				return m, false
			}
		default:
			if !p.skip() {
				return m, false
			}
		}
		if p.next(',') {
			continue
		}
		return m, p.next('}') && p.i == len(b)
	}
}
