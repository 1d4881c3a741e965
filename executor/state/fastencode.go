package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"time"
)

// encodeRecordFast writes r, with config as its Config, byte for byte as
// encoding/json does (encodeRecordSlow), without reflection and with one
// pass over config (json.Compact checks and compacts it; encoding/json
// checked it, then compacted it again): a stop of 1,000 daemons spent
// 2.6% of orch up's CPU encoding their records. ok is false when r holds
// what it does not write the same way (a string to escape, a time
// outside years 0-9999, invalid config): the caller takes the slow path,
// which also reports the error.
func encodeRecordFast(r *record, config []byte) (b []byte, ok bool) {
	if !plain(r.Addr) || !plain(r.Runtime) || !plain(r.ConfigHash) || !plain(r.Status) || !plain(r.LastError) ||
		!rfc3339able(r.CreatedAt) || !rfc3339able(r.UpdatedAt) {
		return nil, false
	}
	out := bytes.NewBuffer(make([]byte, 0, 160+len(config)+len(r.LastError)+base64.StdEncoding.EncodedLen(len(r.Handle))))
	str := func(key, v string) {
		if v != "" {
			out.WriteString(`,"`)
			out.WriteString(key)
			out.WriteString(`":"`)
			out.WriteString(v)
			out.WriteByte('"')
		}
	}
	out.WriteString(`{"addr":"`)
	out.WriteString(r.Addr)
	out.WriteByte('"')
	str("runtime", r.Runtime)
	if len(config) > 0 {
		out.WriteString(`,"config":`)
		if json.Compact(out, config) != nil {
			return nil, false
		}
	}
	if r.ConfigApart {
		out.WriteString(`,"config_apart":true`)
	}
	str("config_hash", r.ConfigHash)
	if len(r.Handle) > 0 {
		out.WriteString(`,"handle":"`)
		out.Write(base64.StdEncoding.AppendEncode(out.AvailableBuffer(), r.Handle))
		out.WriteByte('"')
	}
	str("status", r.Status)
	str("last_error", r.LastError)
	out.WriteString(`,"created_at":"`)
	out.Write(r.CreatedAt.AppendFormat(out.AvailableBuffer(), time.RFC3339Nano))
	out.WriteString(`","updated_at":"`)
	out.Write(r.UpdatedAt.AppendFormat(out.AvailableBuffer(), time.RFC3339Nano))
	out.WriteString(`"}`)
	return out.Bytes(), true
}

// plain reports whether encoding/json writes s as it is between quotes:
// printable ASCII but '"' and '\\' (with HTML escaping off).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// rfc3339able reports whether time.Time's MarshalJSON writes t as
// AppendFormat with RFC3339Nano does (it refuses years outside 0-9999).
func rfc3339able(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}
