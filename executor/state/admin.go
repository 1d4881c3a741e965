package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
)

// This file holds what `orch state` needs beyond the executor's reads and
// writes: a full check, backups, and the whole state as one JSON document
// to pull and push.

// Check runs the full integrity check of the state file at path: what
// every open checks (the meta pages, every page in use read back), then
// bbolt's own consistency check (Tx.Check: every page reachable or free
// exactly once, keys in order) and a decode of every instance record. It
// takes no lock; it returns the number of instance records. Its errors
// are *DamagedError, or wrap fs.ErrNotExist for a missing file.
func Check(path string) (records int, err error) {
	if err := owned.Check(filepath.Dir(path)); err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	if err := owned.Check(path); err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ptr, _ := ReadPointer(path); ptr != nil {
			return 0, fmt.Errorf("state: the state of %s is in %s (see %s): orch state check checks a state file, and etcd checks its own data (etcdctl endpoint health, etcdctl check)",
				filepath.Dir(path), ptr, PointerPath(path))
		}
		return 0, fmt.Errorf("state: no state at %s: %w", path, fs.ErrNotExist)
	}
	return verify(path, true)
}

// BackupPath is where Backup copies the state file at path.
func BackupPath(path string) string { return path + ".backup" }

// Backup copies one consistent snapshot of the state file to
// BackupPath(path) (mode 0600), replacing the previous backup, and
// returns that path. Commands that rewrite or forget records (state rm,
// push) call it first; Replace does itself.
//
// The backup of a state kept elsewhere (etcd) is a bbolt state file all
// the same, built from one snapshot of it, so that orch state push
// restores either the same way.
func (s *Store) Backup() (string, error) {
	dst := BackupPath(s.path)
	var err error
	if s.be != nil {
		var snap *Snapshot
		if snap, err = s.Snapshot(); err == nil {
			err = WriteFile(dst, snap)
		}
	} else {
		err = s.view(func(bt BackendTx) error {
			return writeAtomically(dst, func(f *os.File) error {
				_, err := bt.(*boltTx).btx.WriteTo(f)
				return err
			})
		})
	}
	if err != nil {
		return "", fmt.Errorf("state: backup to %s: %w", dst, err)
	}
	return dst, nil
}

// writeAtomically writes name through a temporary file beside it (0600,
// synced) renamed into place.
func writeAtomically(name string, fn func(*os.File) error) error {
	dir := filepath.Dir(name)
	if err := owned.Check(name); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(name)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(owned.FileMode)
	if err == nil {
		err = fn(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// Snapshot is the whole state as one JSON document: what `orch state
// pull` prints and `orch state push` reads. Instances are the records in
// their on-disk JSON form (record.go), timestamps included; KV values are
// base64.
type Snapshot struct {
	Format    int                          `json:"format"`
	Lineage   string                       `json:"lineage"`
	Serial    uint64                       `json:"serial"`
	Instances []json.RawMessage            `json:"instances"`
	KV        map[string]map[string][]byte `json:"kv,omitempty"`
}

// copyRaw appends a copy of the record v, as stored, to out.
func copyRaw(out *Snapshot, v []byte) error {
	out.Instances = append(out.Instances, json.RawMessage(append([]byte{}, v...)))
	return nil
}

// Snapshot reads the whole state in one transaction.
func (s *Store) Snapshot() (*Snapshot, error) {
	out := &Snapshot{Format: FormatVersion, Instances: []json.RawMessage{}}
	err := s.view(func(bt BackendTx) error {
		out.Serial = bt.Serial()
		out.Lineage = bt.Lineage()
		err := bt.Records(func(k, v []byte) error {
			// A snapshot's records hold their configurations: a record
			// that keeps its own is copied as it is, told without a
			// decode where readPrior can read it.
			if m, ok := readPrior(v); ok && !m.apart {
				return copyRaw(out, v)
			}
			inst, apart, err := decodeRecord(k, v, false)
			if err != nil {
				return err
			}
			if !apart {
				return copyRaw(out, v)
			}
			if err := attachConfig(bt, k, &inst); err != nil {
				return err
			}
			b, err := encodeInstance(&inst)
			if err != nil {
				return err
			}
			out.Instances = append(out.Instances, b)
			return nil
		})
		if err != nil {
			return err
		}
		// Records come in key order; the document lists them in address
		// order, as List does.
		addrs := make([]spec.Address, len(out.Instances))
		for i, raw := range out.Instances {
			var r struct {
				Addr string `json:"addr"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("state: corrupt record: %w", err)
			}
			if addrs[i], err = spec.ParseAddress(r.Addr); err != nil {
				return fmt.Errorf("state: record %q: %w", r.Addr, err)
			}
		}
		idx := make([]int, len(addrs))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(i, j int) bool { return addrs[idx[i]].Less(addrs[idx[j]]) })
		sorted := make([]json.RawMessage, len(idx))
		for i, j := range idx {
			sorted[i] = out.Instances[j]
		}
		out.Instances = sorted
		nss, err := bt.KVNamespaces()
		if err != nil {
			return err
		}
		for _, ns := range nss {
			m := map[string][]byte{}
			err := bt.KVList(ns, "", func(k string, v []byte) error {
				m[k] = append([]byte{}, v...)
				return nil
			})
			if err != nil {
				return err
			}
			if out.KV == nil {
				out.KV = map[string]map[string][]byte{}
			}
			out.KV[ns] = m
		}
		return nil
	})
	return out, err
}

// ErrRefusedPush is wrapped by Replace's refusals of a snapshot of
// another lineage or of an older serial.
var ErrRefusedPush = errors.New("state: push refused")

// Replace replaces the whole state with snap in one transaction, after a
// Backup. It refuses, unless force, a snapshot of another lineage than
// the store's or with a serial older than the store's: like Terraform's
// state push, that would overwrite newer records with older ones. The
// store takes snap's lineage; its serial becomes snap's, or the current
// serial plus one when that is not newer. Every record is checked (it
// must decode, and its key is its address) before anything is written.
func (s *Store) Replace(snap *Snapshot, force bool) (backup string, err error) {
	if s.readOnly {
		return "", ErrReadOnly
	}
	recs, err := checkSnapshot(snap)
	if err != nil {
		return "", err
	}
	refuse := func(bt BackendTx) error {
		lineage, serial := bt.Lineage(), bt.Serial()
		if !force && snap.Lineage != lineage {
			return fmt.Errorf("%w: the snapshot has lineage %s and the state %s has lineage %s: it is another state (pass -force to replace it all the same)",
				ErrRefusedPush, snap.Lineage, s.Where(), lineage)
		}
		if !force && snap.Serial < serial {
			return fmt.Errorf("%w: the snapshot has serial %d, older than the state's %d: it would undo newer records (pull the state again, or pass -force)",
				ErrRefusedPush, snap.Serial, serial)
		}
		return nil
	}
	// Refuse before the backup, so that a refused push keeps the backup
	// of the last change; the lock keeps the state as it is meanwhile.
	if err := s.view(refuse); err != nil {
		return "", err
	}
	if backup, err = s.Backup(); err != nil {
		return "", err
	}
	err = s.update(func(bt BackendTx) (bool, error) {
		if err := refuse(bt); err != nil {
			return false, err
		}
		return true, load(bt, snap, recs, max(snap.Serial, bt.Serial()+1))
	})
	if err != nil {
		return backup, err
	}
	s.mu.Lock()
	s.lineage = snap.Lineage
	s.mu.Unlock()
	return backup, nil
}

type kv struct{ k, v []byte }

// load replaces everything in bt with snap (its records already checked
// and encoded in recs), with the serial next once the update commits.
func load(bt BackendTx, snap *Snapshot, recs []kv, next uint64) error {
	// update adds one to the serial when fn changed something: leave it
	// next-1.
	if err := bt.Reset(snap.Lineage, next-1); err != nil {
		return err
	}
	for _, r := range recs {
		if err := bt.PutRecord(r.k, r.v); err != nil {
			return fmt.Errorf("state: put %s: %w", r.k, err)
		}
	}
	for ns, m := range snap.KV {
		if ns == "" || len(ns) > MaxKVNamespace {
			return fmt.Errorf("state: the snapshot's KV namespace %q is empty or too long", ns)
		}
		for k, v := range m {
			if k == "" || len(k) > MaxKVKey || len(v) > MaxKVValue {
				return fmt.Errorf("state: the snapshot's KV %s: key %q or its value is empty or too long", ns, k)
			}
			if v == nil {
				v = []byte{}
			}
			if err := bt.KVPut(ns, k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSnapshot checks every record of snap (it must decode, once each)
// and returns them encoded as the store writes them.
func checkSnapshot(snap *Snapshot) ([]kv, error) {
	if snap.Format < 1 || snap.Format > FormatVersion {
		return nil, fmt.Errorf("%w: the snapshot has format %d, and this orch reads format 1 to %d", ErrUnsupportedFormat, snap.Format, FormatVersion)
	}
	if len(snap.Lineage) != 32 {
		return nil, fmt.Errorf("state: the snapshot's lineage %q is not 32 hex digits", snap.Lineage)
	}
	if _, err := hex.DecodeString(snap.Lineage); err != nil {
		return nil, fmt.Errorf("state: the snapshot's lineage %q is not 32 hex digits", snap.Lineage)
	}
	recs := make([]kv, 0, len(snap.Instances))
	seen := map[string]bool{}
	for i, raw := range snap.Instances {
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("state: instance %d of the snapshot: %w", i, err)
		}
		inst, err := decodeInstance([]byte(r.Addr), raw)
		if err != nil {
			return nil, fmt.Errorf("state: instance %d of the snapshot: %w", i, err)
		}
		key := inst.Addr.String()
		if seen[key] {
			return nil, fmt.Errorf("state: the snapshot holds %s twice", key)
		}
		seen[key] = true
		b, err := encodeInstance(&inst)
		if err != nil {
			return nil, err
		}
		recs = append(recs, kv{[]byte(key), b})
	}
	return recs, nil
}

// WriteFile writes snap as a new bbolt state file at path, replacing any
// file there (through a temporary file renamed into place): a backup, or
// the state migrated back from another backend. Lineage and serial are
// snap's.
func WriteFile(path string, snap *Snapshot) error {
	recs, err := checkSnapshot(snap)
	if err != nil {
		return err
	}
	return writeAtomically(path, func(f *os.File) error {
		db, err := bolt.Open(f.Name(), owned.FileMode, &bolt.Options{Timeout: busyTimeout, NoStatistics: true})
		if err != nil {
			return err
		}
		err = db.Update(func(btx *bolt.Tx) error {
			if _, err := initBuckets(btx); err != nil {
				return err
			}
			bt := &boltTx{btx: btx}
			if err := load(bt, snap, recs, snap.Serial+1); err != nil {
				return err
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// moveAside renames the state file at path (which must not be open by
// this process) to path.damaged-<UTC time>, and returns the new name.
// orch state recover does it under the writer lock (see Recover) before
// building a new state.
func moveAside(path string) (string, error) {
	dst := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(path, dst); err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return dst, syncDir(filepath.Dir(path))
}

// Recover opens the state at path for writing like Open, after moving
// a file at path that cannot be opened (a *DamagedError) aside, to
// path.damaged-<time>; a file that opens is moved aside too when force.
// The new state is empty, with a new lineage; the caller fills it (orch
// state recover records what the runtimes' adoption reports). It returns
// the store and where the old file went ("" when there was none).
func Recover(path string, opts Options, force bool) (s *Store, movedTo string, err error) {
	if err := owned.Dir(filepath.Dir(path)); err != nil {
		return nil, "", fmt.Errorf("state: %w", err)
	}
	if err := owned.Check(path); err != nil {
		return nil, "", fmt.Errorf("state: %w", err)
	}
	if ptr, err := ReadPointer(path); err != nil {
		return nil, "", err
	} else if ptr != nil {
		return nil, "", fmt.Errorf("state: the state of %s is in %s (see %s), which keeps its own copies: orch state recover rebuilds a damaged state file only",
			filepath.Dir(path), ptr, PointerPath(path))
	}
	host, _ := os.Hostname()
	info := LockInfo{Pid: os.Getpid(), Operation: opts.Operation, Since: time.Now().UTC().Truncate(time.Second), Host: host}
	l, err := acquireLock(path+".lock", info, opts.LockTimeout, opts.onWait)
	if err != nil {
		return nil, "", err
	}
	s = &Store{path: path, lock: l}
	fail := func(err error) (*Store, string, error) {
		l.release()
		return nil, movedTo, err
	}
	if _, err := os.Lstat(path); err == nil {
		if _, verr := verify(path, true); verr == nil && !force {
			return fail(fmt.Errorf("state: %s is not damaged: nothing to recover (pass -force to set it aside and rebuild all the same)", path))
		} else if verr != nil && !errors.Is(verr, ErrDamaged) {
			return fail(verr)
		}
		if movedTo, err = moveAside(path); err != nil {
			return fail(err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("state: %w", err))
	}
	if err := s.create(); err != nil {
		return fail(err)
	}
	return s, movedTo, nil
}

// ReadSnapshot reads the whole state of the state file at path, such as
// a state.db.backup, without any lock: the file must not be written
// meanwhile. It is checked as an open checks it; its directory's
// ownership is not (the caller names the file).
func ReadSnapshot(path string) (*Snapshot, error) {
	if _, err := verify(path, false); err != nil {
		return nil, err
	}
	s := &Store{path: path, readOnly: true}
	return s.Snapshot()
}

// RetireFile renames the state file of a store opened on it (with the
// lock) to path.migrated-<UTC time>, once orch state migrate has copied
// it elsewhere and written the pointer: a writer waiting for the lock then
// finds no file and follows the pointer. The copy is kept, never read
// again by orch. It returns the new name.
func (s *Store) RetireFile() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.be != nil || s.readOnly || s.closed {
		return "", fmt.Errorf("state: %s is not a state file open for writing", s.Where())
	}
	dst := fmt.Sprintf("%s.migrated-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(s.path, dst); err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return dst, syncDir(filepath.Dir(s.path))
}
