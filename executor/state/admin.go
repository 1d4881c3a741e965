package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/providers/owned"
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
func (s *Store) Backup() (string, error) {
	dst := BackupPath(s.path)
	err := s.view(func(btx *bolt.Tx, _ uint64) error {
		return writeAtomically(dst, func(f *os.File) error {
			_, err := btx.WriteTo(f)
			return err
		})
	})
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

// Snapshot reads the whole state in one transaction.
func (s *Store) Snapshot() (*Snapshot, error) {
	out := &Snapshot{Format: FormatVersion, Instances: []json.RawMessage{}}
	err := s.view(func(btx *bolt.Tx, serial uint64) error {
		out.Serial = serial
		out.Lineage = string(btx.Bucket(bucketMeta).Get(keyLineage))
		tx := &Tx{btx: btx, serial: serial}
		insts, err := tx.List()
		if err != nil {
			return err
		}
		for _, inst := range insts {
			b := tx.instances().Get([]byte(inst.Addr.String()))
			out.Instances = append(out.Instances, json.RawMessage(append([]byte{}, b...)))
		}
		root := btx.Bucket(bucketKV)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(ns []byte) error {
			m := map[string][]byte{}
			err := root.Bucket(ns).ForEach(func(k, v []byte) error {
				m[string(k)] = append([]byte{}, v...)
				return nil
			})
			if out.KV == nil {
				out.KV = map[string]map[string][]byte{}
			}
			out.KV[string(ns)] = m
			return err
		})
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
	if snap.Format < 1 || snap.Format > FormatVersion {
		return "", fmt.Errorf("%w: the snapshot has format %d, and this orch reads format 1 to %d", ErrUnsupportedFormat, snap.Format, FormatVersion)
	}
	if len(snap.Lineage) != 32 {
		return "", fmt.Errorf("state: the snapshot's lineage %q is not 32 hex digits", snap.Lineage)
	}
	if _, err := hex.DecodeString(snap.Lineage); err != nil {
		return "", fmt.Errorf("state: the snapshot's lineage %q is not 32 hex digits", snap.Lineage)
	}
	type kv struct{ k, v []byte }
	recs := make([]kv, 0, len(snap.Instances))
	seen := map[string]bool{}
	for i, raw := range snap.Instances {
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return "", fmt.Errorf("state: instance %d of the snapshot: %w", i, err)
		}
		inst, err := decodeInstance([]byte(r.Addr), raw)
		if err != nil {
			return "", fmt.Errorf("state: instance %d of the snapshot: %w", i, err)
		}
		key := inst.Addr.String()
		if seen[key] {
			return "", fmt.Errorf("state: the snapshot holds %s twice", key)
		}
		seen[key] = true
		b, err := encodeInstance(&inst)
		if err != nil {
			return "", err
		}
		recs = append(recs, kv{[]byte(key), b})
	}
	refuse := func(btx *bolt.Tx, serial uint64) error {
		lineage := string(btx.Bucket(bucketMeta).Get(keyLineage))
		if !force && snap.Lineage != lineage {
			return fmt.Errorf("%w: the snapshot has lineage %s and the state %s has lineage %s: it is another state (pass -force to replace it all the same)",
				ErrRefusedPush, snap.Lineage, s.path, lineage)
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
	err = s.update(func(btx *bolt.Tx, serial uint64) (bool, error) {
		if err := refuse(btx, serial); err != nil {
			return false, err
		}
		for _, name := range [][]byte{bucketInstances, bucketKV} {
			if btx.Bucket(name) != nil {
				if err := btx.DeleteBucket(name); err != nil {
					return false, err
				}
			}
		}
		insts, err := btx.CreateBucket(bucketInstances)
		if err != nil {
			return false, err
		}
		for _, r := range recs {
			if err := insts.Put(r.k, r.v); err != nil {
				return false, fmt.Errorf("state: put %s: %w", r.k, err)
			}
		}
		root, err := btx.CreateBucket(bucketKV)
		if err != nil {
			return false, err
		}
		for ns, m := range snap.KV {
			if ns == "" || len(ns) > MaxKVNamespace {
				return false, fmt.Errorf("state: the snapshot's KV namespace %q is empty or too long", ns)
			}
			b, err := root.CreateBucket([]byte(ns))
			if err != nil {
				return false, err
			}
			for k, v := range m {
				if k == "" || len(k) > MaxKVKey || len(v) > MaxKVValue {
					return false, fmt.Errorf("state: the snapshot's KV %s: key %q or its value is empty or too long", ns, k)
				}
				if err := b.Put([]byte(k), v); err != nil {
					return false, err
				}
			}
		}
		meta := btx.Bucket(bucketMeta)
		if err := meta.Put(keyLineage, []byte(snap.Lineage)); err != nil {
			return false, err
		}
		next := max(snap.Serial, serial+1)
		// update adds one to the serial it read when fn changed
		// something: leave it next-1.
		if err := meta.Put(keySerial, strconv.AppendUint(nil, next-1, 10)); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return backup, err
	}
	s.mu.Lock()
	s.lineage = snap.Lineage
	s.mu.Unlock()
	return backup, nil
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
