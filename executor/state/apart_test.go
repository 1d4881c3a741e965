package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/spec"
)

// hashedInstance is instance i of daemon.web with a configuration of
// about 1.5 KB whose SHA-256 is its config hash, as the executor records
// them.
func hashedInstance(i int) Instance {
	inst := testInstance(i)
	inst.Addr.Name = "web"
	inst.Config = []byte(`{"format":1,"kind":"daemon","values":{"command":["/usr/bin/web","--port","` + strconv.Itoa(8000+i) +
		`"],"env":{"INDEX":"` + strconv.Itoa(i) + `"},"pad":"` + strings.Repeat("x", 1400) + `"}}`)
	sum := sha256.Sum256(inst.Config)
	inst.ConfigHash = hex.EncodeToString(sum[:])
	return inst
}

// raw reads the bytes of key in bucket of the file at path, outside the
// store.
func raw(t *testing.T, path string, bucket []byte, key string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucket); b != nil {
			if v := b.Get([]byte(key)); v != nil {
				out = bytes.Clone(v)
			}
		}
		return nil
	})
	return out
}

// TestConfigKeptApart: in format 2 a configuration whose hash is its
// config hash is kept in the configs bucket, out of its record; every
// read gives it back, a plan's list leaves it out, a status change does
// not write it again, and a delete removes it.
func TestConfigKeptApart(t *testing.T) {
	s, path := openTemp(t)
	inst := hashedInstance(1)
	if err := s.Put(inst); err != nil {
		t.Fatal(err)
	}
	key := inst.Addr.String()
	rec := raw(t, path, bucketInstances, key)
	if bytes.Contains(rec, []byte(`"config":`)) || !bytes.Contains(rec, []byte(`"config_apart":true`)) {
		t.Fatalf("record kept its configuration: %s", rec)
	}
	if got := raw(t, path, bucketConfigs, key); !bytes.Equal(got, inst.Config) {
		t.Fatalf("configs bucket holds %q", got)
	}
	got, err := s.Get(inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	sameInstance(t, got, inst)
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	sameInstance(t, list[0], inst)
	omitted, err := s.ListWith(ListOptions{OmitConfig: true})
	if err != nil || len(omitted) != 1 || !omitted[0].ConfigOmitted || omitted[0].Config != nil {
		t.Fatalf("list omitting configurations: %+v, %v", omitted, err)
	}
	configs, err := s.Configs([]spec.Address{inst.Addr})
	if err != nil || !bytes.Equal(configs[inst.Addr], inst.Config) {
		t.Fatalf("Configs: %q, %v", configs[inst.Addr], err)
	}

	// A stop: the same configuration and hash, another status. The
	// configuration is not written again: a different one given under
	// the same hash does not replace it (as the planner, the store holds
	// an equal hash for an equal configuration).
	stopped := inst
	stopped.Status = "stopped"
	stopped.Config = []byte(`{"not":"read"}`)
	if err := s.Put(stopped); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(inst.Addr); err != nil || got.Status != "stopped" || !bytes.Equal(got.Config, inst.Config) {
		t.Fatalf("after a status change: %+v, %v", got, err)
	}

	// A new configuration with its own hash replaces the one apart.
	changed := hashedInstance(2)
	changed.Addr = inst.Addr
	if err := s.Put(changed); err != nil {
		t.Fatal(err)
	}
	if got := raw(t, path, bucketConfigs, key); !bytes.Equal(got, changed.Config) {
		t.Fatalf("configs bucket holds %q after a change", got)
	}

	// One whose hash is not its own stays in its record (format 1's
	// way: a plan then reads and compares it), and the one apart goes.
	mismatched := changed
	mismatched.ConfigHash = strings.Repeat("0", 64)
	if err := s.Put(mismatched); err != nil {
		t.Fatal(err)
	}
	if rec := raw(t, path, bucketInstances, key); !bytes.Contains(rec, []byte(`"config":`)) || bytes.Contains(rec, []byte(`config_apart`)) {
		t.Fatalf("a configuration under another hash was kept apart: %s", rec)
	}
	if got := raw(t, path, bucketConfigs, key); got != nil {
		t.Fatalf("configs bucket kept %q", got)
	}
	omitted, err = s.ListWith(ListOptions{OmitConfig: true})
	if err != nil || omitted[0].ConfigOmitted || !bytes.Equal(omitted[0].Config, changed.Config) {
		t.Fatalf("list omitting configurations, hash not the configuration's: %+v, %v", omitted, err)
	}

	// A configuration that is not compact is kept apart compacted, under
	// the hash of its compact form.
	spaced := hashedInstance(3)
	spaced.Addr = inst.Addr
	var indented bytes.Buffer
	json.Indent(&indented, spaced.Config, "", "  ")
	spaced.Config = indented.Bytes()
	if err := s.Put(spaced); err != nil {
		t.Fatal(err)
	}
	if got := raw(t, path, bucketConfigs, key); !bytes.Equal(got, hashedInstance(3).Config) {
		t.Fatalf("configs bucket holds %q", got)
	}

	if err := s.Delete(inst.Addr); err != nil {
		t.Fatal(err)
	}
	if got := raw(t, path, bucketConfigs, key); got != nil {
		t.Fatalf("configs bucket kept %q after the delete", got)
	}
}

// TestFormat1Upgraded: a format 1 file (configurations in their records)
// is read as it is by a reader; a writer moves it to format 2, and its
// records keep their configurations until they are rewritten.
func TestFormat1Upgraded(t *testing.T) {
	s, path := openTemp(t)
	s.Close()
	a, b := hashedInstance(1), hashedInstance(2)
	// Make it a format 1 file, as an older orch wrote it.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketConfigs); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keyFormat, []byte("1")); err != nil {
			return err
		}
		for _, inst := range []Instance{a, b} {
			rec, err := encodeInstance(&inst)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketInstances).Put([]byte(inst.Addr.String()), rec); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ro.List()
	if err != nil || len(list) != 2 || !bytes.Equal(list[0].Config, a.Config) {
		t.Fatalf("format 1 read: %+v, %v", list, err)
	}
	ro.Close()
	if f := raw(t, path, bucketMeta, string(keyFormat)); string(f) != "1" {
		t.Fatalf("a reader changed the format to %q", f)
	}

	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if f := raw(t, path, bucketMeta, string(keyFormat)); string(f) != "2" {
		t.Fatalf("a writer left format %q", f)
	}
	stopped := a
	stopped.Status = "stopped"
	if err := w.Put(stopped); err != nil {
		t.Fatal(err)
	}
	if rec := raw(t, path, bucketInstances, a.Addr.String()); bytes.Contains(rec, []byte(`"config":`)) {
		t.Fatalf("a rewritten record kept its configuration: %s", rec)
	}
	if rec := raw(t, path, bucketInstances, b.Addr.String()); !bytes.Contains(rec, []byte(`"config":`)) {
		t.Fatalf("a record not rewritten lost its configuration: %s", rec)
	}
	list, err = w.List()
	if err != nil || len(list) != 2 || !bytes.Equal(list[0].Config, a.Config) || !bytes.Equal(list[1].Config, b.Config) ||
		list[0].Status != "stopped" {
		t.Fatalf("after the upgrade: %+v, %v", list, err)
	}
	// The full check reads every record with its configuration.
	if n, err := Check(path); err != nil || n != 2 {
		t.Fatalf("Check: %d records, %v", n, err)
	}
}

// TestSnapshotHoldsConfigs: a snapshot's records hold their
// configurations, whether kept apart or not, and push back as they were.
func TestSnapshotHoldsConfigs(t *testing.T) {
	s, _ := openTemp(t)
	a, b := hashedInstance(1), testInstance(2) // b's hash is not its configuration's
	for _, inst := range []Instance{a, b} {
		if err := s.Put(inst); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range snap.Instances {
		if !bytes.Contains(r, []byte(`"config":`)) || bytes.Contains(r, []byte(`config_apart`)) {
			t.Fatalf("snapshot record without its configuration: %s", r)
		}
	}
	if _, err := s.Replace(snap, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []Instance{a, b} {
		got, err := s.Get(want.Addr)
		if err != nil || !bytes.Equal(got.Config, want.Config) || got.ConfigHash != want.ConfigHash {
			t.Fatalf("%s after the push: %+v, %v", want.Addr, got, err)
		}
	}
}

// TestConfigApartMissing: a record whose configuration kept apart is
// missing is damage: the read naming it fails, and so does the full
// check.
func TestConfigApartMissing(t *testing.T) {
	s, path := openTemp(t)
	inst := hashedInstance(1)
	if err := s.Put(inst); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketConfigs).Delete([]byte(inst.Addr.String())) })
	db.Close()
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Get(inst.Addr); err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), inst.Addr.String()) {
		t.Errorf("Get: %v", err)
	}
	if _, err := Check(path); !errors.Is(err, ErrDamaged) {
		t.Errorf("Check: %v", err)
	}
}

// TestPutOverUnreadableRecord: a record that does not decode is replaced
// by a Put, and so is what was kept apart under its key.
func TestPutOverUnreadableRecord(t *testing.T) {
	s, path := openTemp(t)
	inst := hashedInstance(1)
	if err := s.Put(inst); err != nil {
		t.Fatal(err)
	}
	key := []byte(inst.Addr.String())
	err := s.update(func(bt BackendTx) (bool, error) { return true, bt.PutRecord(key, []byte(`{"addr":`)) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(inst.Addr); err == nil {
		t.Fatal("a truncated record decoded")
	}
	inline := inst
	inline.ConfigHash = strings.Repeat("0", 64)
	if err := s.Put(inline); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(inst.Addr); err != nil || !bytes.Equal(got.Config, inst.Config) {
		t.Fatalf("after the Put: %+v, %v", got, err)
	}
	if got := raw(t, path, bucketConfigs, string(key)); got != nil {
		t.Fatalf("configs bucket kept %q", got)
	}
}
