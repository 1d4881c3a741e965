package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/orch-dev/orch/spec"
	bolt "go.etcd.io/bbolt"
)

// TestListDecodedOnEveryCPU: a List of more records than listDecodeMin,
// decoded on every CPU, is the List decoded in one loop (every field, in
// address order); with bad records, both fail on the first in key order.
func TestListDecodedOnEveryCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // several workers, on any machine
	path := writeState(t, t.TempDir(), 1500)
	list := func(min int) ([]Instance, error) {
		defer func(old int) { listDecodeMin = old }(listDecodeMin)
		listDecodeMin = min
		s, err := OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.List()
	}
	seq, err := list(1 << 30)
	if err != nil || len(seq) != 1500 {
		t.Fatalf("List in one loop: %d records, %v", len(seq), err)
	}
	par, err := list(2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seq, par) {
		t.Fatal("the List decoded on every CPU differs from the one decoded in one loop")
	}

	// Bad records in the first and the last quarter (each worker's part
	// of its own): the error names the first in key order.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{}
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstances).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	first, last := keys[len(keys)/8], keys[len(keys)-3]
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInstances)
		b.Put([]byte(last), []byte(`{"addr":`))
		return b.Put([]byte(first), []byte(`{"addr":`))
	})
	db.Close()
	for _, min := range []int{1 << 30, 2} {
		_, err := list(min)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", first)) {
			t.Fatalf("List (decoded from %d records on every CPU) with bad %s and %s: %v", min, first, last, err)
		}
	}
}

// TestListOmitConfig: ListWith(OmitConfig) leaves out each configuration
// whose SHA-256 is its record's config hash (ConfigOmitted), keeps one
// whose hash is another and a record without one as List reads them, and
// Configs reads the omitted ones back byte for byte.
func TestListOmitConfig(t *testing.T) {
	s, _ := openTemp(t)
	config := []byte(`{"format":1,"values":{"command":{"t":["list","string"],"v":["sleep","1"]}}}`)
	sum := sha256.Sum256(config)
	good := Instance{Addr: mustAddr(t, "daemon.good"), Config: config, ConfigHash: hex.EncodeToString(sum[:]), Status: "running"}
	other := Instance{Addr: mustAddr(t, "daemon.other"), Config: config, ConfigHash: strings.Repeat("0", 64), Status: "running"}
	bare := Instance{Addr: mustAddr(t, "daemon.bare"), ConfigHash: hex.EncodeToString(sum[:]), Status: "running"}
	for _, in := range []Instance{good, other, bare} {
		if err := s.Put(in); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ListWith(ListOptions{OmitConfig: true})
	if err != nil || len(got) != 3 || len(all) != 3 {
		t.Fatalf("ListWith: %d records, %v", len(got), err)
	}
	for i, g := range got {
		want := all[i]
		if g.Addr.Name == "good" {
			if !g.ConfigOmitted || g.Config != nil {
				t.Errorf("%s: ConfigOmitted %v, Config %q; want it left out", g.Addr, g.ConfigOmitted, g.Config)
			}
			want.Config, want.ConfigOmitted = nil, true
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: ListWith\n%+v\nList\n%+v", g.Addr, g, want)
		}
	}
	back, err := s.Configs([]spec.Address{good.Addr, bare.Addr, mustAddr(t, "daemon.none")})
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || !bytes.Equal(back[good.Addr], config) {
		t.Fatalf("Configs = %q", back)
	}
}
