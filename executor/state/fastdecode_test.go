package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/spec"
)

// FuzzDecodeRecord holds the fast decoder to encoding/json: whatever it
// accepts, encoding/json reads the same way.
func FuzzDecodeRecord(f *testing.F) {
	for i := range 3 {
		inst := testInstance(i)
		b, err := encodeInstance(&inst)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`,
		`{"addr":"job.x","config":null,"created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z"}`,
		`{"addr":"daemon.api[\"eu\"]","config":{"a":[1,2,{"b":"}]"}]},"handle":"AAEC/w=="}`,
		`{"addr":"job.x","config":"str,with}","status":"ok"}`,
		`{"addr":"job.x","extra":1}`,
		`{"ADDR":"job.x"}`,
		`{"addr":"job.x","created_at":"2024-02-30T00:00:00Z"}`,
		`{"addr":"job.x","config":{"a":1}`,
		`{"addr":"job.x"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow record
		if !decodeRecordFast(b, &fast, false) {
			return
		}
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast decoder accepted what encoding/json refuses (%v): %s", err, b)
		}
		if fast.Addr != slow.Addr || fast.Runtime != slow.Runtime || !bytes.Equal(fast.Config, slow.Config) ||
			fast.ConfigHash != slow.ConfigHash || !bytes.Equal(fast.Handle, slow.Handle) ||
			fast.Status != slow.Status || fast.LastError != slow.LastError ||
			!fast.CreatedAt.Equal(slow.CreatedAt) || !fast.UpdatedAt.Equal(slow.UpdatedAt) {
			t.Fatalf("decoders disagree on %s:\nfast %+v\nslow %+v", b, fast, slow)
		}
		// Omitting: the same record, but for a configuration whose
		// SHA-256 is the config hash, left out.
		var omit record
		if !decodeRecordFast(b, &omit, true) {
			t.Fatalf("the decoder omitting configurations refuses %s", b)
		}
		if omit.configOmitted {
			sum := sha256.Sum256(fast.Config)
			if len(fast.Config) == 0 || hex.EncodeToString(sum[:]) != fast.ConfigHash || omit.Config != nil {
				t.Fatalf("configuration of %s omitted, its hash not its config hash", b)
			}
			omit.Config, omit.configOmitted = fast.Config, false
		}
		if !reflect.DeepEqual(omit, fast) {
			t.Fatalf("decoders disagree on %s:\nomitting %+v\nfast %+v", b, omit, fast)
		}
	})
}

// TestDecodeOmitsHashedConfig: the omitting decoder leaves out exactly the
// configuration whose SHA-256 is the config hash.
func TestDecodeOmitsHashedConfig(t *testing.T) {
	cfg := `{"a":[1,"x"]}`
	sum := sha256.Sum256([]byte(cfg))
	for _, tc := range []struct {
		hash string
		omit bool
	}{{hex.EncodeToString(sum[:]), true}, {strings.Repeat("a", 64), false}, {"", false}} {
		b := []byte(`{"addr":"job.x","config":` + cfg + `,"config_hash":"` + tc.hash + `"}`)
		var r record
		if !decodeRecordFast(b, &r, true) || r.configOmitted != tc.omit || (r.Config == nil) != tc.omit {
			t.Errorf("hash %q: omitted %v, config %q; want omitted %v", tc.hash, r.configOmitted, r.Config, tc.omit)
		}
	}
}

// Records the fast decoder does not take still decode, through
// encoding/json.
func TestDecodeFallback(t *testing.T) {
	for _, s := range []string{
		`{"addr":"daemon.api[\"eu\"]","status":"line\nbreak"}`,
		` {"addr":"job.x", "status":"ok", "future_field":{"x":1}}`,
	} {
		inst, err := decodeInstance([]byte("k"), []byte(s))
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if inst.Addr.IsZero() || inst.Status == "" {
			t.Errorf("%s: decoded %+v", s, inst)
		}
	}
	if _, err := decodeInstance([]byte("k"), []byte(`{"addr":`)); err == nil {
		t.Error("a truncated record decoded")
	}
}

// TestRecordCreatedAt: created_at read alone is what a whole decode reads,
// even when the config holds a "created_at" of its own.
func TestRecordCreatedAt(t *testing.T) {
	created := time.Date(2026, 11, 22, 10, 0, 0, 123, time.UTC)
	for _, cfg := range []string{`null`, `{"created_at":"1999-01-01T00:00:00Z","x":",\"created_at\":\""}`} {
		b, err := encodeInstance(&Instance{Addr: spec.Address{Kind: spec.KindDaemon, Name: "d"}, Config: []byte(cfg),
			LastError: `oops ,"created_at":"2000-01-01T00:00:00Z"`, CreatedAt: created, UpdatedAt: created.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := recordCreatedAt(b)
		if !ok || !got.Equal(created) {
			t.Errorf("config %s: created_at %v, %v; want %v", cfg, got, ok, created)
		}
	}
	if _, ok := recordCreatedAt([]byte(`{"addr":"daemon.d"}`)); ok {
		t.Error("a record without created_at read as having one")
	}
}
