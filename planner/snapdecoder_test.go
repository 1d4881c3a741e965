package planner

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// encodedSnapshots loads n daemons that differ in one variable and returns
// their encoded snapshots, as the state holds them.
func encodedSnapshots(t testing.TB, n int) [][]byte {
	var b strings.Builder
	fmt.Fprintf(&b, `daemon "d" {
  count   = %d
  command = ["/bin/sleep", "600", "--flag"]
  env     = { INDEX = "${count.index}", MODE = "same", OTHER = "also the same" }
  stop {
    signal  = "SIGINT"
    timeout = "3s"
  }
}

daemon "lone" {
  command = ["/bin/true"]
}
`, n)
	cfg := load(t, b.String(), nil)
	var out [][]byte
	for _, r := range cfg.Resources {
		out = append(out, SnapshotOf(r, cfg.Graph.DependenciesOf(r.Addr), nil).Encode())
	}
	return out
}

func TestSnapshotDecoderDecodesAsDecodeSnapshot(t *testing.T) {
	enc := encodedSnapshots(t, 50)
	dec := NewSnapshotDecoder()
	for round := 0; round < 2; round++ { // the second round from the cache
		for _, e := range enc {
			got, err := dec.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			want, err := DecodeSnapshot(e)
			if err != nil {
				t.Fatal(err)
			}
			if got.Hash() != want.Hash() || string(got.Encode()) != string(e) {
				t.Fatalf("decoded %s\nwant %s", got.Encode(), e)
			}
			for k, v := range want.Values {
				if !got.Values[k].RawEquals(v) {
					t.Fatalf("%s: %#v, want %#v", k, got.Values[k], v)
				}
			}
		}
	}
	// what the fast path refuses still decodes
	if _, err := dec.Decode([]byte(`{"format":1,"kind":"daemon","values":{}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Decode([]byte(`{"format":2}`)); err == nil {
		t.Fatal("format 2 decoded")
	}
}

// The values the snapshots have in common are held once.
func TestSnapshotDecoderShares(t *testing.T) {
	enc := encodedSnapshots(t, 2000)
	retained := func(decode func([]byte) *Snapshot) uint64 {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		snaps := make([]*Snapshot, len(enc))
		for i, e := range enc {
			snaps[i] = decode(e)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(snaps)
		return m1.HeapAlloc - m0.HeapAlloc
	}
	plain := retained(func(b []byte) *Snapshot { s, _ := DecodeSnapshot(b); return s })
	dec := NewSnapshotDecoder()
	shared := retained(func(b []byte) *Snapshot { s, _ := dec.Decode(b); return s })
	t.Logf("2,001 snapshots: %d KB decoded one by one, %d KB shared", plain/1024, shared/1024)
	if shared*10 > plain*7 {
		t.Fatalf("shared decoding retains %d KB, not less than 70%% of the %d KB of one by one", shared/1024, plain/1024)
	}
}
