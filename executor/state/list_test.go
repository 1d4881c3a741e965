package state

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

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
