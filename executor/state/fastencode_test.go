package state

import (
	"bytes"
	"testing"
	"time"
)

// FuzzEncodeRecord holds the fast encoder to encoding/json: whatever it
// writes, encoding/json writes byte for byte the same.
func FuzzEncodeRecord(f *testing.F) {
	f.Add("daemon.api[1]", "runtime.process.host", []byte(`{"command":["sleep","1"]}`), "abc123", []byte(`{"pid":1}`), "running", "", int64(1700000000123456789), int64(0), false)
	f.Add("daemon.api[2]", "runtime.process.host", []byte(nil), "abc123", []byte(`{"pid":2}`), "stopped", "", int64(1700000000123456789), int64(0), true)
	f.Add("job.x", "", []byte(" {\"a\" : [1, 2]}\n"), "", []byte(nil), "", "exit \"1\"", int64(0), int64(-62135596800000000), false)
	f.Add("daemon.x", "", []byte(`{"a":"<&>\u2028é"}`), "", []byte{0, 1, 255}, "failed", "bad\nline", int64(1), int64(2), false)
	f.Add("daemon.y", "", []byte(`{"a":`), "", []byte(nil), "", "", int64(5), int64(5), false)
	f.Add("daemon.é", "", []byte(`null`), "", []byte(nil), "", "", int64(5), int64(253402300800000000), false)
	f.Fuzz(func(t *testing.T, addr, runtime string, config []byte, hash string, handle []byte, status, lastErr string, created, updated int64, apart bool) {
		r := record{Addr: addr, Runtime: runtime, ConfigApart: apart, ConfigHash: hash, Handle: handle, Status: status, LastError: lastErr,
			CreatedAt: time.Unix(0, created).UTC(), UpdatedAt: time.Unix(0, updated).UTC()}
		fast, ok := encodeRecordFast(&r, config)
		if !ok {
			return
		}
		if len(config) > 0 {
			r.Config = config
		}
		slow, err := encodeRecordSlow(&r)
		if err != nil {
			t.Fatalf("fast encoder wrote what encoding/json refuses (%v): %s", err, fast)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("encoders disagree:\nfast %s\nslow %s", fast, slow)
		}
	})
}

// TestEncodeFastTaken: the records the executor writes (plain addresses
// and statuses, compact configuration) take the fast path, and a record
// with a string to escape still encodes, through encoding/json.
func TestEncodeFastTaken(t *testing.T) {
	inst := testInstance(1)
	r := record{Addr: inst.Addr.String(), Status: inst.Status, CreatedAt: inst.CreatedAt.UTC(), UpdatedAt: inst.UpdatedAt.UTC(), Handle: inst.Handle}
	if _, ok := encodeRecordFast(&r, inst.Config); !ok {
		t.Fatalf("the record of %s does not take the fast path", inst.Addr)
	}
	inst.LastError = "exited with \"code 1\"\n"
	b, err := encodeInstance(&inst)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeInstance([]byte("k"), b)
	if err != nil || got.LastError != inst.LastError {
		t.Fatalf("round trip: %q, %v; want %q", got.LastError, err, inst.LastError)
	}
}
