package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/orch-dev/orch/providers/owned"
)

// A Store keeps its records in the bbolt file at its path unless it was
// opened with a BackendConfig: then a Backend registered for its Kind
// (package executor/state/etcdstate registers "etcd") holds them. The
// Store's API, the record format and the serial and lineage rules are the
// same on every backend; only where the bytes live, and how the writer
// is kept alone, differ.
//
// The bbolt file does not go through this interface: its code path is the
// one it always was, so that the single-host path pays nothing for the
// others (no registry lookup, no extra allocation per transaction beyond
// the one Tx wrapper).

// Backend is the storage of a Store other than the bbolt file. A Backend
// returned by an Opener for writing holds the writer lock until Close, and
// every write it commits must be fenced: refused, with an error wrapping
// ErrLockLost, unless it still holds the lock at the moment of the commit.
type Backend interface {
	// View runs fn on one consistent snapshot.
	View(fn func(BackendTx) error) error
	// Update runs fn and commits what it wrote, atomically, when fn
	// returns nil and changed or not; when changed is true the serial
	// moves on by one in the same commit.
	Update(fn func(BackendTx) (changed bool, err error)) error
	// Lineage is the state's lineage, read or made when it was opened.
	Lineage() string
	// Where names the state for messages: "etcd http://127.0.0.1:2379
	// prefix /orch/app".
	Where() string
	// Close releases the lock (a writer) and every connection.
	Close() error
}

// BackendTx is one transaction of a Backend. Keys of records are
// addresses (spec.Address.String()); values are the JSON records of
// record.go, which the backend stores as opaque bytes. Bytes returned are
// valid only during the transaction.
type BackendTx interface {
	// Serial is the serial as of the start of the transaction.
	Serial() uint64
	// Lineage is the lineage as of the start of the transaction.
	Lineage() string
	// Record returns the record of key, or nil when there is none. It sees
	// the transaction's own writes.
	Record(key []byte) ([]byte, error)
	// Records calls fn for every record, in key order.
	Records(fn func(key, value []byte) error) error
	PutRecord(key, value []byte) error
	DeleteRecord(key []byte) error
	// KVGet returns the value of key in namespace ns, or nil when none.
	KVGet(ns, key string) ([]byte, error)
	// KVList calls fn for every key of ns that starts with prefix, in
	// bytewise key order.
	KVList(ns, prefix string, fn func(key string, value []byte) error) error
	KVPut(ns, key string, value []byte) error
	KVDelete(ns, key string) error
	KVDrop(ns string) error
	// KVNamespaces lists the namespaces that hold at least one key.
	KVNamespaces() ([]string, error)
	// Reset drops every record and KV namespace and sets the lineage and
	// the serial (Replace, and migrations, load a whole state so).
	Reset(lineage string, serial uint64) error
}

// ErrLockLost is wrapped by the error of a write refused because the
// writer no longer holds the lock (its lease lapsed while it was paused or
// cut off, and another writer may have taken it since). Nothing of that
// write was committed; the writer must stop writing.
var ErrLockLost = errors.New("state: the state lock was lost")

// BackendConfig says where a state that is not a bbolt file lives. It is
// what the configuration's orch { backend "KIND" { ... } } block, or the
// ORCH_BACKEND setting, declares, and what the state directory's pointer
// file (PointerPath) records.
type BackendConfig struct {
	Kind      string        `json:"kind"` // "etcd"
	Endpoints []string      `json:"endpoints"`
	Prefix    string        `json:"prefix"`
	LockTTL   time.Duration `json:"lock_ttl,omitempty"` // 0: the backend's default
	CA        string        `json:"ca,omitempty"`       // TLS files, absolute paths; "" when none
	Cert      string        `json:"cert,omitempty"`
	Key       string        `json:"key,omitempty"`
}

// Same reports whether c and o name the same state (kind, prefix and the
// same set of endpoints); the lock TTL and TLS files may differ.
func (c *BackendConfig) Same(o *BackendConfig) bool {
	if c.Kind != o.Kind || c.Prefix != o.Prefix || len(c.Endpoints) != len(o.Endpoints) {
		return false
	}
	a, b := append([]string{}, c.Endpoints...), append([]string{}, o.Endpoints...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *BackendConfig) String() string {
	return fmt.Sprintf("%s %v prefix %s", c.Kind, c.Endpoints, c.Prefix)
}

// An Opener opens the state a BackendConfig names: for writing (taking
// the lock as Options say, and creating an empty state when there is
// none) or, when readOnly, for reading (a missing state is an error
// wrapping fs.ErrNotExist).
type Opener func(cfg BackendConfig, opts Options, readOnly bool) (Backend, error)

var (
	openersMu sync.Mutex
	openers   = map[string]Opener{}
)

// RegisterBackend makes kind available to Open and OpenReadOnly. The
// package of a backend does not register itself: the program that links
// it does (orch's cmd/orch/cli), so that a program without it does not
// carry its code.
func RegisterBackend(kind string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[kind] = open
}

func opener(kind string) (Opener, error) {
	openersMu.Lock()
	defer openersMu.Unlock()
	o := openers[kind]
	if o == nil {
		return nil, fmt.Errorf("state: no %q backend in this orch", kind)
	}
	return o, nil
}

// PointerPath is the file, beside the state file path, that says where
// the state of that state directory lives when it is not in path: it
// holds the BackendConfig as JSON. orch state migrate writes it (and
// removes it when the state comes back to a file); Open writes it when a
// configuration declares a backend. Commands that find the state through
// the state directory alone (status, logs, orch state list) follow it.
func PointerPath(path string) string { return path + ".backend" }

// ReadPointer returns the BackendConfig recorded beside path, or nil when
// there is none.
func ReadPointer(path string) (*BackendConfig, error) {
	p := PointerPath(path)
	if err := owned.Check(p); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var c BackendConfig
	if err := json.Unmarshal(b, &c); err != nil || c.Kind == "" {
		return nil, fmt.Errorf("state: %s does not say where the state is (%v); remove it if the state is in %s", p, err, path)
	}
	return &c, nil
}

// WritePointer records cfg beside path (0600, atomically).
func WritePointer(path string, cfg *BackendConfig) error {
	b, _ := json.MarshalIndent(cfg, "", "  ")
	b = append(b, '\n')
	return writeAtomically(PointerPath(path), func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

// RemovePointer removes the pointer beside path; a missing one is fine.
func RemovePointer(path string) error {
	if err := os.Remove(PointerPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// openBackend opens the Store of a backend. path is the state file the
// state directory would hold; it is where Backup writes and where the
// pointer is kept.
func openBackend(path string, cfg BackendConfig, opts Options, readOnly bool) (*Store, error) {
	open, err := opener(cfg.Kind)
	if err != nil {
		return nil, err
	}
	be, err := open(cfg, opts, readOnly)
	var moved *MovedError
	if errors.As(err, &moved) && !opts.Import && moved.To == path {
		// It came back to this very file while this process followed
		// the pointer: use the file.
		if readOnly {
			return OpenReadOnly(path)
		}
		return Open(path, Options{Operation: opts.Operation, LockTimeout: opts.LockTimeout, onWait: opts.onWait})
	}
	if err != nil {
		return nil, err
	}
	return &Store{path: path, readOnly: readOnly, be: be, lineage: be.Lineage()}, nil
}

// Where names the state for messages: the bbolt file's path, or the
// backend's description.
func (s *Store) Where() string {
	if s.be != nil {
		return s.be.Where()
	}
	return s.path
}

// IsFile reports whether the store is the bbolt file at its path.
func (s *Store) IsFile() bool { return s.be == nil }

// OpenBackend opens the state cfg names for writing, without looking at
// the state file at path or its pointer (orch state migrate does that
// itself). path is where Backup writes.
func OpenBackend(path string, cfg BackendConfig, opts Options) (*Store, error) {
	return openBackend(path, cfg, opts, false)
}

// OpenBackendReadOnly opens the state cfg names for reading, without
// looking at a state file or its pointer: orch status reads the state of
// each node of a multi-node project so. A missing state is an error
// wrapping fs.ErrNotExist.
func OpenBackendReadOnly(path string, cfg BackendConfig) (*Store, error) {
	return openBackend(path, cfg, Options{}, true)
}

// Load replaces the whole state with snap, lineage included, without
// Replace's refusals and backup: orch state migrate loads a state into a
// new store so. The serial ends one past snap's.
func (s *Store) Load(snap *Snapshot) error {
	recs, err := checkSnapshot(snap)
	if err != nil {
		return err
	}
	err = s.update(func(bt BackendTx) (bool, error) {
		return true, load(bt, snap, recs, snap.Serial+1)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.lineage = snap.Lineage
	s.mu.Unlock()
	return nil
}

// A Mover is a Backend that can leave a marker saying where its state
// went, and drop the state, under its lock.
type Mover interface {
	MoveOut(to string) error
}

// MoveOut drops the whole state of a backend store, leaving the marker
// that it was moved to to (orch state migrate -to file, once the file is
// in place): a writer that followed the old pointer and waited for the
// lock finds the marker, not an empty state to fill again.
func (s *Store) MoveOut(to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.be.(Mover)
	if !ok {
		return fmt.Errorf("state: %s cannot be moved out", s.Where())
	}
	return m.MoveOut(to)
}

// MovedError is a backend's error for a state that orch state migrate
// moved to the file To.
type MovedError struct {
	Where, To string
}

func (e *MovedError) Error() string {
	return fmt.Sprintf("state: the state in %s was moved to the file %s by orch state migrate -to file", e.Where, e.To)
}

// LockLost returns a channel closed when the store's lock is found lost
// (the lease of an etcd lock lapsed while this process was paused or cut
// off): every write is refused from then on, wrapping ErrLockLost. It is
// nil, never closed, for the state file, whose flock cannot be lost while
// the process lives, and for readers.
func (s *Store) LockLost() <-chan struct{} {
	if l, ok := s.be.(interface{ Lost() <-chan struct{} }); ok {
		return l.Lost()
	}
	return nil
}

// CheckLock returns an error wrapping ErrLockLost when the store's lock is
// no longer its own, asking the backend (one linearizable read for etcd);
// nil for the state file, whose flock cannot be lost while the process
// lives. Writes are fenced whatever this says; a writer calls it before
// side effects that no fence covers, such as starting processes after a
// long wait at a prompt.
func (s *Store) CheckLock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if c, ok := s.be.(interface{ CheckLock() error }); ok && !s.readOnly {
		return c.CheckLock()
	}
	return nil
}
