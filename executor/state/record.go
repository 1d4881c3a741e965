package state

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	// ConfigOmitted says that the record has a configuration, whose
	// SHA-256 is ConfigHash, that List left out of Config
	// (ListOptions.OmitConfig); Configs reads it.
	ConfigOmitted bool
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

	configOmitted bool // decodeRecordFast left Config out (omit)
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
		if b, ok := encodeRecordFast(&r, inst.Config); ok {
			return b, nil
		}
		if !json.Valid(inst.Config) {
			return nil, fmt.Errorf("state: %s: Config is not valid JSON", r.Addr)
		}
		r.Config = inst.Config
	} else if b, ok := encodeRecordFast(&r, nil); ok {
		return b, nil
	}
	return encodeRecordSlow(&r)
}

// encodeRecordSlow is encodeInstance through encoding/json.
func encodeRecordSlow(r *record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep the caller's JSON byte for byte
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("state: encode %s: %w", r.Addr, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func decodeInstance(key, b []byte) (Instance, error) {
	return decodeInstanceOmitting(key, b, false)
}

// decodeInstanceOmitting is decodeInstance that, with omit, leaves out a
// configuration whose SHA-256 is the record's config hash
// (Instance.ConfigOmitted).
func decodeInstanceOmitting(key, b []byte, omit bool) (Instance, error) {
	var r record
	if !decodeRecordFast(b, &r, omit) {
		r = record{}
		if err := json.Unmarshal(b, &r); err != nil {
			return Instance{}, fmt.Errorf("state: corrupt record %q: %w", key, err)
		}
	}
	addr, err := spec.ParseAddress(r.Addr)
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

		ConfigOmitted: r.configOmitted,
	}
	if len(r.Config) > 0 {
		inst.Config = []byte(r.Config)
	}
	if r.Runtime != "" {
		if inst.Runtime, err = spec.ParseAddress(r.Runtime); err != nil {
			return Instance{}, fmt.Errorf("state: record %q: runtime: %w", key, err)
		}
	}
	return inst, nil
}
