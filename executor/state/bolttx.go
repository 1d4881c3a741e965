package state

import (
	"bytes"
	"encoding/json"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// boltTx is a BackendTx on a bbolt transaction of the state file.
type boltTx struct {
	btx     *bolt.Tx
	serial  uint64
	lineage string
	cfgs    *bolt.Bucket // the configurations kept apart; nil in format 1
}

func (t *boltTx) Serial() uint64  { return t.serial }
func (t *boltTx) Lineage() string { return t.lineage }

func (t *boltTx) instances() *bolt.Bucket { return t.btx.Bucket(bucketInstances) }

func (t *boltTx) Record(key []byte) ([]byte, error) { return t.instances().Get(key), nil }

func (t *boltTx) Records(fn func(key, value []byte) error) error {
	return t.instances().ForEach(fn)
}

func (t *boltTx) PutRecord(key, value []byte) error { return t.instances().Put(key, value) }
func (t *boltTx) DeleteRecord(key []byte) error     { return t.instances().Delete(key) }

// putConfig keeps inst's configuration apart, under key, when its SHA-256
// (compacted) is inst.ConfigHash, and says whether it did: the record
// then leaves it out (record.ConfigApart). A configuration kept apart
// already under the same hash (prior) stays as it is, unread and
// unwritten: the record of a daemon that stops, restarts or changes
// status is its status, handle and times (the planner holds an equal hash
// for an equal configuration too). Any other configuration stays in its
// record, as in format 1, checked by encodeRecord.
func (t *boltTx) putConfig(key []byte, inst *Instance, prior priorRecord) (bool, error) {
	if prior.apart && string(prior.configHash) == inst.ConfigHash {
		return true, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(inst.Config))
	if json.Compact(&buf, inst.Config) != nil || !sameHash(buf.Bytes(), inst.ConfigHash) {
		return false, nil
	}
	return true, t.cfgs.Put(key, buf.Bytes())
}

// kvBucket returns the namespace's bucket, or nil when it does not exist
// (and create is false).
func (t *boltTx) kvBucket(ns string, create bool) (*bolt.Bucket, error) {
	root := t.btx.Bucket(bucketKV)
	if root == nil {
		if !create {
			return nil, nil
		}
		var err error
		if root, err = t.btx.CreateBucket(bucketKV); err != nil {
			return nil, err
		}
	}
	if !create {
		return root.Bucket([]byte(ns)), nil
	}
	return root.CreateBucketIfNotExists([]byte(ns))
}

func (t *boltTx) KVGet(ns, key string) ([]byte, error) {
	b, _ := t.kvBucket(ns, false)
	if b == nil {
		return nil, nil
	}
	if k, v := b.Cursor().Seek([]byte(key)); k != nil && string(k) == key {
		if v == nil {
			v = []byte{}
		}
		return v, nil
	}
	return nil, nil
}

func (t *boltTx) KVList(ns, prefix string, fn func(key string, value []byte) error) error {
	b, _ := t.kvBucket(ns, false)
	if b == nil {
		return nil
	}
	p := []byte(prefix)
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (t *boltTx) KVPut(ns, key string, value []byte) error {
	b, err := t.kvBucket(ns, true)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), value)
}

func (t *boltTx) KVDelete(ns, key string) error {
	b, _ := t.kvBucket(ns, false)
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}

func (t *boltTx) KVDrop(ns string) error {
	root := t.btx.Bucket(bucketKV)
	if root == nil || root.Bucket([]byte(ns)) == nil {
		return nil
	}
	return root.DeleteBucket([]byte(ns))
}

func (t *boltTx) KVNamespaces() ([]string, error) {
	root := t.btx.Bucket(bucketKV)
	if root == nil {
		return nil, nil
	}
	var out []string
	err := root.ForEachBucket(func(ns []byte) error {
		out = append(out, string(ns))
		return nil
	})
	return out, err
}

// Reset empties the instances, configs and kv buckets and sets the meta
// keys. The serial is set to serial; update adds one after, as for any
// change.
func (t *boltTx) Reset(lineage string, serial uint64) error {
	for _, name := range [][]byte{bucketInstances, bucketConfigs, bucketKV} {
		if t.btx.Bucket(name) != nil {
			if err := t.btx.DeleteBucket(name); err != nil {
				return err
			}
		} else if string(name) == string(bucketConfigs) && t.cfgs == nil {
			continue // format 1 (Reset is of writers, whose files are 2)
		}
		b, err := t.btx.CreateBucket(name)
		if err != nil {
			return err
		}
		if string(name) == string(bucketConfigs) {
			t.cfgs = b
		}
	}
	meta := t.btx.Bucket(bucketMeta)
	if err := meta.Put(keyLineage, []byte(lineage)); err != nil {
		return err
	}
	t.lineage = lineage
	t.serial = serial
	return meta.Put(keySerial, strconv.AppendUint(nil, serial, 10))
}
