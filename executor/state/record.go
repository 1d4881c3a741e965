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

// record is the JSON form of an Instance. Its field names are part of the
// on-disk format. ConfigApart (file format 2) says that the configuration
// is not in the record but in the configs bucket, under the same key, and
// that its SHA-256 is ConfigHash; a record never has both. Snapshots
// (orch state pull) and the etcd backend keep configurations in their
// records.
type record struct {
	Addr        string          `json:"addr"`
	Runtime     string          `json:"runtime,omitempty"`
	Config      json.RawMessage `json:"config,omitempty"`
	ConfigApart bool            `json:"config_apart,omitempty"`
	ConfigHash  string          `json:"config_hash,omitempty"`
	Handle      []byte          `json:"handle,omitempty"`
	Status      string          `json:"status,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`

	configOmitted bool // decodeRecordFast left Config out (omit)
}

func encodeInstance(inst *Instance) ([]byte, error) {
	return encodeRecord(inst, false)
}

// encodeRecord is encodeInstance; with apart, the record says that its
// configuration is kept apart (record.ConfigApart) and leaves
// inst.Config out.
func encodeRecord(inst *Instance, apart bool) ([]byte, error) {
	r := record{
		ConfigApart: apart,
		Addr:        inst.Addr.String(),
		ConfigHash:  inst.ConfigHash,
		Handle:      inst.Handle,
		Status:      inst.Status,
		LastError:   inst.LastError,
		CreatedAt:   inst.CreatedAt.UTC(),
		UpdatedAt:   inst.UpdatedAt.UTC(),
	}
	if !inst.Runtime.IsZero() {
		r.Runtime = inst.Runtime.String()
	}
	if len(inst.Config) > 0 && !apart {
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

// decodeInstance decodes a record that keeps its configuration, if any,
// in itself: one of a snapshot or of a backend other than the file.
func decodeInstance(key, b []byte) (Instance, error) {
	inst, apart, err := decodeRecord(key, b, false)
	if err == nil && apart {
		err = fmt.Errorf("state: record %q: its configuration is kept apart, where there is none", key)
	}
	return inst, err
}

// decodeRecord decodes a record. With omit, it leaves out a configuration
// whose SHA-256 is the record's config hash (Instance.ConfigOmitted).
// apart says that the record's configuration is kept apart
// (record.ConfigApart): the caller reads it, or with omit marks it
// omitted.
func decodeRecord(key, b []byte, omit bool) (inst Instance, apart bool, err error) {
	var r record
	if !decodeRecordFast(b, &r, omit) {
		r = record{}
		if err := json.Unmarshal(b, &r); err != nil {
			return Instance{}, false, fmt.Errorf("state: corrupt record %q: %w", key, err)
		}
	}
	if r.ConfigApart && (len(r.Config) > 0 || r.configOmitted || r.ConfigHash == "") {
		return Instance{}, false, fmt.Errorf("state: corrupt record %q: its configuration is both kept apart and in it, or has no hash", key)
	}
	addr, err := spec.ParseAddress(r.Addr)
	if err != nil {
		return Instance{}, false, fmt.Errorf("state: record %q: %w", key, err)
	}
	inst = Instance{
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
			return Instance{}, false, fmt.Errorf("state: record %q: runtime: %w", key, err)
		}
	}
	return inst, r.ConfigApart, nil
}
