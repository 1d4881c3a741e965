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
		`{"addr":"job.x","config_apart":true,"config_hash":"ab","status":"stopped"}`,
		`{"addr":"job.x","config_apart":false}`,
		`{"addr":"job.x","config_apart":tru}`,
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
		if fast.Addr != slow.Addr || fast.Runtime != slow.Runtime || !bytes.Equal(fast.Config, slow.Config) || fast.ConfigApart != slow.ConfigApart ||
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

// TestReadPrior: what Put reads of the record it replaces is what a whole
// decode reads, even when the configuration in it holds keys of the same
// names.
func TestReadPrior(t *testing.T) {
	created := time.Date(2026, 11, 22, 10, 0, 0, 123, time.UTC)
	for _, tc := range []struct {
		cfg   string
		apart bool
	}{
		{`null`, false},
		{`{"created_at":"1999-01-01T00:00:00Z","config_apart":true,"config_hash":"x","x":",\"created_at\":\""}`, false},
		{`{"a":1}`, true},
	} {
		inst := Instance{Addr: spec.Address{Kind: spec.KindDaemon, Name: "d"}, Config: []byte(tc.cfg), ConfigHash: "abc",
			LastError: `oops ,"created_at":"2000-01-01T00:00:00Z"`, CreatedAt: created, UpdatedAt: created.Add(time.Hour)}
		b, err := encodeRecord(&inst, tc.apart)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := readPrior(b)
		if !ok || !got.createdAt.Equal(created) || string(got.configHash) != "abc" || got.apart != tc.apart {
			t.Errorf("config %s (apart %v): read %+v, %v; want created_at %v, hash abc", tc.cfg, tc.apart, got, ok, created)
		}
	}
	if m, ok := readPrior([]byte(`{"addr":"daemon.d"}`)); !ok || !m.createdAt.IsZero() || m.apart {
		t.Errorf("a record without created_at read as %+v, %v", m, ok)
	}
	for _, s := range []string{`{"addr":"daemon.d","config_apart":false}`, `{"addr":"daemon.d"`, ` {"addr":"daemon.d"}`} {
		if _, ok := readPrior([]byte(s)); ok {
			t.Errorf("%s read by the fast reader", s)
		}
	}
}
