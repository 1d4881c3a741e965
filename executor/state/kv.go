package state

import (
	"errors"
	"fmt"
)

// Limits of the KV namespaces. They keep module state small: the whole
// state file is rewritten page by page and read by every `orch status`.
const (
	MaxKVNamespace = 255     // bytes in a namespace name
	MaxKVKey       = 1024    // bytes in a key
	MaxKVValue     = 1 << 20 // bytes in a value (1 MiB)
)

// ErrTooLarge is wrapped by the error for a key, value or namespace over
// its limit.
var ErrTooLarge = errors.New("state: too large")

// KV is one namespace of small key-value state, private to one module
// (the namespace is the caller's choice, e.g. the module's address).
// Namespaces are isolated: a key in one is invisible in every other.
// Each method is one transaction; writes are durable when they return and
// do not move the store's serial. Values are copied in and out.
type KV struct {
	s  *Store
	ns string
}

// KVEntry is one key and its value.
type KVEntry struct {
	Key   string
	Value []byte
}

// KV returns the namespace ns of s. It is created by its first Put.
func (s *Store) KV(namespace string) *KV { return &KV{s: s, ns: namespace} }

func (kv *KV) checkNS() error {
	if kv.ns == "" {
		return errors.New("state: empty KV namespace")
	}
	if len(kv.ns) > MaxKVNamespace {
		return fmt.Errorf("%w: KV namespace of %d bytes, the limit is %d", ErrTooLarge, len(kv.ns), MaxKVNamespace)
	}
	return nil
}

func (kv *KV) checkKey(key string) error {
	if err := kv.checkNS(); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("state: KV %s: empty key", kv.ns)
	}
	if len(key) > MaxKVKey {
		return fmt.Errorf("%w: KV %s: key of %d bytes, the limit is %d", ErrTooLarge, kv.ns, len(key), MaxKVKey)
	}
	return nil
}

// Get returns a copy of the value of key, or an error wrapping
// ErrNotFound.
func (kv *KV) Get(key string) ([]byte, error) {
	if err := kv.checkKey(key); err != nil {
		return nil, err
	}
	var out []byte
	err := kv.s.view(func(bt BackendTx) error {
		v, err := bt.KVGet(kv.ns, key)
		if err != nil {
			return err
		}
		if v != nil {
			out = append([]byte{}, v...)
			return nil
		}
		return fmt.Errorf("%w: KV %s: %q", ErrNotFound, kv.ns, key)
	})
	return out, err
}

// Put sets key to value (at most MaxKVValue bytes).
func (kv *KV) Put(key string, value []byte) error {
	if err := kv.checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxKVValue {
		return fmt.Errorf("%w: KV %s: value of %q is %d bytes, the limit is %d", ErrTooLarge, kv.ns, key, len(value), MaxKVValue)
	}
	if value == nil {
		value = []byte{}
	}
	return kv.s.update(func(bt BackendTx) (bool, error) {
		if err := bt.KVPut(kv.ns, key, value); err != nil {
			return false, fmt.Errorf("state: KV %s: %w", kv.ns, err)
		}
		return false, nil
	})
}

// Delete removes key; a missing key is not an error.
func (kv *KV) Delete(key string) error {
	if err := kv.checkKey(key); err != nil {
		return err
	}
	return kv.s.update(func(bt BackendTx) (bool, error) {
		return false, bt.KVDelete(kv.ns, key)
	})
}

// List returns the entries whose key starts with prefix ("" for all),
// sorted by key (bytewise).
func (kv *KV) List(prefix string) ([]KVEntry, error) {
	if err := kv.checkNS(); err != nil {
		return nil, err
	}
	var out []KVEntry
	err := kv.s.view(func(bt BackendTx) error {
		return bt.KVList(kv.ns, prefix, func(k string, v []byte) error {
			out = append(out, KVEntry{Key: k, Value: append([]byte{}, v...)})
			return nil
		})
	})
	return out, err
}

// Drop deletes the whole namespace, for when its module is removed from
// the configuration. Dropping a missing namespace is not an error.
func (kv *KV) Drop() error {
	if err := kv.checkNS(); err != nil {
		return err
	}
	return kv.s.update(func(bt BackendTx) (bool, error) {
		return false, bt.KVDrop(kv.ns)
	})
}
