package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/orch-dev/orch/providers"
	"github.com/orch-dev/orch/spec"
)

// Instance is what the store records about one resource instance.
type Instance struct {
	Addr    spec.Address // the instance: daemon.api[1]; never zero
	Runtime spec.Address // the runtime it runs on: runtime.process.host
	// Config is the configuration that was applied, as canonical JSON
	// given by the caller. It is stored compacted (insignificant
	// whitespace dropped); nil or empty means none.
	Config     []byte
	ConfigHash string
	Handle     providers.Handle // opaque, handed back to the provider unchanged
	// Status is free text the executor sets: "starting", "running",
	// "failed", ...
	Status    string
	LastError string
	// CreatedAt is kept from the stored record when the caller leaves it
	// zero, and set to the time of the first Put otherwise. UpdatedAt is
	// set by every Put. Both are UTC.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// record is the JSON form of an Instance in format 1. Its field names are
// part of the on-disk format.
type record struct {
	Addr       string          `json:"addr"`
	Runtime    string          `json:"runtime,omitempty"`
	Config     json.RawMessage `json:"config,omitempty"`
	ConfigHash string          `json:"config_hash,omitempty"`
	Handle     []byte          `json:"handle,omitempty"`
	Status     string          `json:"status,omitempty"`
	LastError  string          `json:"last_error,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func encodeInstance(inst *Instance) ([]byte, error) {
	r := record{
		Addr:       inst.Addr.String(),
		ConfigHash: inst.ConfigHash,
		Handle:     inst.Handle,
		Status:     inst.Status,
		LastError:  inst.LastError,
		CreatedAt:  inst.CreatedAt.UTC(),
		UpdatedAt:  inst.UpdatedAt.UTC(),
	}
	if !inst.Runtime.IsZero() {
		r.Runtime = inst.Runtime.String()
	}
	if len(inst.Config) > 0 {
		if !json.Valid(inst.Config) {
			return nil, fmt.Errorf("state: %s: Config is not valid JSON", r.Addr)
		}
		r.Config = inst.Config
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep the caller's JSON byte for byte
	if err := enc.Encode(&r); err != nil {
		return nil, fmt.Errorf("state: encode %s: %w", r.Addr, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func decodeInstance(key, b []byte) (Instance, error) {
	var r record
	if !decodeRecordFast(b, &r) {
		r = record{}
		if err := json.Unmarshal(b, &r); err != nil {
			return Instance{}, fmt.Errorf("state: corrupt record %q: %w", key, err)
		}
	}
	addr, err := parseAddr(r.Addr)
	if err != nil {
		return Instance{}, fmt.Errorf("state: record %q: %w", key, err)
	}
	inst := Instance{
		Addr:       addr,
		ConfigHash: r.ConfigHash,
		Handle:     r.Handle,
		Status:     r.Status,
		LastError:  r.LastError,
		CreatedAt:  r.CreatedAt,
		UpdatedAt:  r.UpdatedAt,
	}
	if len(r.Config) > 0 {
		inst.Config = []byte(r.Config)
	}
	if r.Runtime != "" {
		if inst.Runtime, err = parseAddr(r.Runtime); err != nil {
			return Instance{}, fmt.Errorf("state: record %q: runtime: %w", key, err)
		}
	}
	return inst, nil
}

// parseAddr reads an address the store wrote. spec.ParseAddress goes
// through the HCL parser (microseconds per call, too slow for listing ten
// thousand records), so the common shapes (kind.name, kind.name[N],
// runtime.type.name) are read here directly and accepted only when they
// render back to the same string; anything else (string keys) goes to
// spec.ParseAddress.
func parseAddr(s string) (spec.Address, error) {
	if a, ok := parseAddrFast(s); ok {
		return a, nil
	}
	return spec.ParseAddress(s)
}

func parseAddrFast(s string) (spec.Address, bool) {
	var a spec.Address
	i := 0
	word := func() string {
		j := i
		for j < len(s) {
			c := s[j]
			if c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
				j++
				continue
			}
			break
		}
		w := s[i:j]
		i = j
		return w
	}
	dot := func() bool {
		if i < len(s) && s[i] == '.' {
			i++
			return true
		}
		return false
	}
	if a.Kind = spec.ParseKind(word()); a.Kind == spec.KindInvalid || !dot() {
		return a, false
	}
	if a.Kind == spec.KindRuntime {
		if a.Type = word(); a.Type == "" || !dot() {
			return a, false
		}
	}
	if a.Name = word(); a.Name == "" {
		return a, false
	}
	if i < len(s) {
		if s[i] != '[' || s[len(s)-1] != ']' {
			return a, false
		}
		n, err := strconv.Atoi(s[i+1 : len(s)-1])
		if err != nil || n < 0 {
			return a, false
		}
		a.Key = spec.IntKey(n)
	}
	// Identifiers start with a letter or '_'; "1x" or "01" are not ours.
	for _, w := range []string{a.Name, a.Type} {
		if w != "" && ('0' <= w[0] && w[0] <= '9' || w[0] == '-') {
			return a, false
		}
	}
	return a, a.String() == s
}
