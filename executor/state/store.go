package state

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/orch-dev/orch/providers/owned"
	"github.com/orch-dev/orch/spec"
	"github.com/orch-dev/orch/spec/workers"
)

// FormatVersion is the format of a record whose configuration is in it,
// of a snapshot (orch state pull) and of the other backends' states: what
// this package writes and the newest it reads.
const FormatVersion = 1

// FileFormat is the format of the bbolt state file this package writes
// and the newest it reads. Format 2 keeps each record's configuration
// apart, in the configs bucket (record.ConfigApart), so that a change of
// status does not rewrite it and a plan does not read it (issue 19); a
// writer moves a format 1 file to format 2 when it opens it, and its
// records as it rewrites them.
const FileFormat = 2

// busyTimeout bounds how long one operation waits for the bbolt file while
// another process has it open. Writers open it only for one transaction
// and readers only for one snapshot, so running into it means a process
// is stuck holding the file.
const busyTimeout = 10 * time.Second

var (
	bucketMeta      = []byte("meta")
	bucketInstances = []byte("instances")
	bucketKV        = []byte("kv")
	bucketConfigs   = []byte("configs")

	keyFormat  = []byte("format")
	keyLineage = []byte("lineage")
	keySerial  = []byte("serial")
)

var (
	// ErrNotFound is returned by Get when there is no such record.
	ErrNotFound = errors.New("state: not found")
	// ErrReadOnly is returned by writes through a store from OpenReadOnly,
	// or through the Tx of a View.
	ErrReadOnly = errors.New("state: read-only")
	// ErrClosed is returned by any method called after Close.
	ErrClosed = errors.New("state: store is closed")
	// ErrUnsupportedFormat is wrapped by the error for a state file written
	// in a newer format than FormatVersion.
	ErrUnsupportedFormat = errors.New("state: unsupported format")
)

// DefaultPath is where a config directory keeps its state:
// <dir>/.orch/state.db.
func DefaultPath(configDir string) string {
	return filepath.Join(configDir, ".orch", "state.db")
}

// Options configure a writer.
type Options struct {
	// Operation names what the writer does ("apply", "up", "destroy");
	// it is recorded in the lock and shown to whoever finds it locked.
	Operation string
	// LockTimeout is how long Open waits for another writer to release
	// the lock. Zero or less: fail at once with a *LockedError.
	LockTimeout time.Duration
	// Backend, when set, is where the configuration declares the state
	// lives (orch { backend "etcd" { ... } }); nil: the bbolt file at the
	// path, or where that path's pointer (PointerPath) says.
	Backend *BackendConfig
	// Import opens a backend to receive a whole state (orch state
	// migrate, then Load): it must hold no state, or only the marker of
	// one moved away.
	Import bool

	onWait func() // tests: called each time Open finds the lock held and waits
}

// Store is an open state file. A Store from Open holds the writer lock
// until Close; one from OpenReadOnly holds nothing and only reads.
//
// Every method is one bbolt transaction on a file that is opened for that
// transaction and closed again, so a Store keeps no records in memory and
// no file open between calls (only the writer's lock file). Methods are
// safe for concurrent use; they run one at a time.
type Store struct {
	path     string
	readOnly bool
	lock     *fileLock // nil for readers

	mu      sync.Mutex // serialises transactions and guards closed
	closed  bool
	lineage string

	be Backend // nil: the bbolt file at path
}

// Open opens the state file at path for writing, creating it (and its
// directory) when missing, and takes the writer lock on path+".lock".
// When another writer holds the lock it waits up to opts.LockTimeout and
// then returns a *LockedError naming the holder.
//
// The directory, the file and the lock file must belong to the user
// running orch (or root) and not be writable by others (providers/owned);
// a directory orch creates is 0700, files 0600. An existing file is
// checked before anything is written to it (see verify): a damaged one,
// even an empty one, is refused with a *DamagedError, never replaced. A
// new file is built aside and linked into place, so that a crash never
// leaves an empty state.db behind.
func Open(path string, opts Options) (*Store, error) {
	if err := owned.Dir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if opts.Backend != nil {
		return openDeclared(path, opts)
	}
	if err := owned.Check(path); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	host, _ := os.Hostname()
	info := LockInfo{
		Pid:       os.Getpid(),
		Operation: opts.Operation,
		Since:     time.Now().UTC().Truncate(time.Second),
		Host:      host,
	}
	l, err := acquireLock(path+".lock", info, opts.LockTimeout, opts.onWait)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, lock: l}
	if err := s.init(); err != nil {
		l.release()
		if errors.Is(err, errMoved) {
			// The state was moved elsewhere (orch state migrate) while
			// this process waited for the lock: follow it.
			if ptr, perr := ReadPointer(path); perr == nil && ptr != nil {
				return openBackend(path, *ptr, opts, false)
			}
		}
		return nil, err
	}
	return s, nil
}

// errMoved is init's error for a missing state file whose pointer says
// where the state is.
var errMoved = errors.New("state: moved")

// openDeclared opens the state of a backend the configuration declares:
// refused while the state is still in the file at path, or recorded as
// being elsewhere.
func openDeclared(path string, opts Options) (*Store, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("state: the configuration keeps the state in %s, and it is still in %s: move it there with orch state migrate -to %s (the daemons keep running)",
			opts.Backend, path, opts.Backend.Kind)
	}
	ptr, err := ReadPointer(path)
	if err != nil {
		return nil, err
	}
	if ptr != nil && !ptr.Same(opts.Backend) {
		return nil, fmt.Errorf("state: the configuration keeps the state in %s, and %s says it is in %s: move it with orch state migrate, or correct the configuration",
			opts.Backend, PointerPath(path), ptr)
	}
	s, err := openBackend(path, *opts.Backend, opts, false)
	if err != nil {
		return nil, err
	}
	if ptr == nil {
		if err := WritePointer(path, opts.Backend); err != nil {
			s.Close()
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	return s, nil
}

// init creates a new state file, or checks an existing one, and reads the
// lineage. The caller holds the lock.
func (s *Store) init() error {
	if _, err := os.Lstat(s.path); errors.Is(err, fs.ErrNotExist) {
		if ptr, err := ReadPointer(s.path); err != nil {
			return err
		} else if ptr != nil {
			return errMoved
		}
		return s.create()
	} else if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := verify(s.path, false); err != nil {
		return err
	}
	return s.withDB(true, func(db *bolt.DB) error {
		format := 0
		err := db.View(func(btx *bolt.Tx) error {
			var err error
			s.lineage, _, format, err = s.checkMeta(btx)
			return err
		})
		if err == nil && format < FileFormat {
			return db.Update(upgrade)
		}
		if !errors.Is(err, errNoMeta) {
			return err
		}
		// A bbolt file without a single bucket holds nothing (an older
		// orch created the file and its buckets in two steps): make it a
		// state.
		return db.Update(func(btx *bolt.Tx) error {
			if k, _ := btx.Cursor().First(); k != nil {
				return fmt.Errorf("state: %s is a bbolt file but not an orch state file (no %q bucket)", s.path, bucketMeta)
			}
			var err error
			s.lineage, err = initBuckets(btx)
			return err
		})
	})
}

// initBuckets creates the buckets and meta keys of a new state, with a
// new random lineage and serial 0, in an empty bbolt file.
func initBuckets(btx *bolt.Tx) (string, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	lineage := hex.EncodeToString(raw[:])
	meta, err := btx.CreateBucket(bucketMeta)
	if err != nil {
		return "", err
	}
	for _, kv := range [][2][]byte{
		{keyFormat, []byte(strconv.Itoa(FileFormat))},
		{keyLineage, []byte(lineage)},
		{keySerial, []byte("0")},
	} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return "", err
		}
	}
	for _, b := range [][]byte{bucketInstances, bucketConfigs, bucketKV} {
		if _, err := btx.CreateBucket(b); err != nil {
			return "", err
		}
	}
	return lineage, nil
}

// upgrade moves a state file of an older format to FileFormat: from 1,
// the configs bucket is made; the records keep their configurations until
// they are rewritten (Tx.Put).
func upgrade(btx *bolt.Tx) error {
	if _, err := btx.CreateBucketIfNotExists(bucketConfigs); err != nil {
		return err
	}
	return btx.Bucket(bucketMeta).Put(keyFormat, []byte(strconv.Itoa(FileFormat)))
}

// create makes a new state file at s.path: built whole in a temporary
// file beside it, synced, and linked into place (link fails rather than
// replace a file that appeared meanwhile).
func (s *Store) create() error {
	return s.build(func(btx *bolt.Tx) error {
		var err error
		s.lineage, err = initBuckets(btx)
		return err
	})
}

// build writes a new bbolt file with fn in one transaction, in a
// temporary file in the state's directory, and links it to s.path, which
// must not exist. The directory is synced after.
func (s *Store) build(fn func(btx *bolt.Tx) error) error {
	dir := filepath.Dir(s.path)
	db, tmp, err := openAside(s.path, ".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: create %s: %w", s.path, err)
	}
	if err := os.Link(tmp, s.path); err != nil {
		return fmt.Errorf("state: create %s: %w", s.path, err)
	}
	return syncDir(dir)
}

// openAside opens a new, empty bbolt file beside path, named for it with
// pattern (os.CreateTemp's), mode owned.FileMode. The caller removes it
// (or links or renames it into place).
func openAside(path, pattern string) (*bolt.DB, string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+pattern)
	if err != nil {
		return nil, "", fmt.Errorf("state: %w", err)
	}
	tmp := f.Name()
	f.Close()
	if err := os.Chmod(tmp, owned.FileMode); err != nil {
		os.Remove(tmp)
		return nil, "", fmt.Errorf("state: %w", err)
	}
	db, err := bolt.Open(tmp, owned.FileMode, &bolt.Options{Timeout: busyTimeout, NoStatistics: true})
	if err != nil {
		os.Remove(tmp)
		return nil, "", fmt.Errorf("state: create %s: %w", tmp, err)
	}
	return db, tmp, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", dir, err)
	}
	return nil
}

// OpenReadOnly opens the state file at path for reading. It takes no lock
// and coexists with a writer: each read waits at most for the writer's
// transaction in flight and sees everything committed before it. A
// missing file is an error that wraps fs.ErrNotExist. The directory and
// the file are checked for ownership and the file for damage as by Open.
func OpenReadOnly(path string) (*Store, error) {
	if err := owned.Check(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if ptr, perr := ReadPointer(path); perr != nil {
				return nil, perr
			} else if ptr != nil {
				return openBackend(path, *ptr, Options{}, true)
			}
			return nil, fmt.Errorf("state: no state at %s: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := owned.Check(path); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if _, err := verify(path, false); err != nil {
		return nil, err
	}
	s := &Store{path: path, readOnly: true}
	err := s.view(func(BackendTx) error { return nil })
	if err != nil {
		return nil, err
	}
	return s, nil
}

var errNoMeta = errors.New("state: no meta bucket")

// checkMeta validates the format of an open transaction and returns the
// lineage, serial and format.
func (s *Store) checkMeta(btx *bolt.Tx) (lineage string, serial uint64, format int, err error) {
	meta := btx.Bucket(bucketMeta)
	if meta == nil {
		if s.readOnly {
			return "", 0, 0, fmt.Errorf("state: %s is not an orch state file (no %q bucket)", s.path, bucketMeta)
		}
		return "", 0, 0, errNoMeta
	}
	f, err := strconv.Atoi(string(meta.Get(keyFormat)))
	if err != nil || f < 1 {
		return "", 0, 0, fmt.Errorf("state: %s: invalid format %q", s.path, meta.Get(keyFormat))
	}
	if f > FileFormat {
		return "", 0, 0, fmt.Errorf("%w: %s has state format %d, and this orch reads format %d or older; use a newer orch",
			ErrUnsupportedFormat, s.path, f, FileFormat)
	}
	serial, err = strconv.ParseUint(string(meta.Get(keySerial)), 10, 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("state: %s: invalid serial %q", s.path, meta.Get(keySerial))
	}
	return string(meta.Get(keyLineage)), serial, f, nil
}

// newBoltTx is the BackendTx of btx, of a file of the given format.
func newBoltTx(btx *bolt.Tx, serial uint64, lineage string, format int) *boltTx {
	t := &boltTx{btx: btx, serial: serial, lineage: lineage}
	if format >= 2 {
		if t.cfgs = btx.Bucket(bucketConfigs); t.cfgs != nil {
			// A configuration is about 1.5 KB: at bbolt's default
			// (a page split at half full) a page held one.
			t.cfgs.FillPercent = 0.9
		}
	}
	return t
}

// withDB opens the bbolt file for one operation and closes it after.
// The caller holds s.mu (or is init, before s is shared). A panic inside
// bbolt, or a fault reading the mapped file, is a *DamagedError (guard):
// the file was checked when the store was opened, so this means it was
// damaged since, by something other than orch.
func (s *Store) withDB(write bool, fn func(*bolt.DB) error) error {
	return guard(s.path, func() error {
		db, err := bolt.Open(s.path, owned.FileMode, &bolt.Options{
			Timeout:      busyTimeout,
			ReadOnly:     !write,
			NoStatistics: true,
		})
		if err != nil {
			return openError(s.path, err)
		}
		err = fn(db)
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("state: close %s: %w", s.path, cerr)
		}
		return err
	})
}

// openError is the error for a failed bolt.Open of path.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("state: %s is busy: another process kept it open for more than %s", path, busyTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		return &DamagedError{Path: path, Detail: "bbolt refused it: " + err.Error()}
	}
	return fmt.Errorf("state: open %s: %w", path, err)
}

// view runs fn in a read-only snapshot.
func (s *Store) view(fn func(bt BackendTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.be != nil {
		return s.be.View(fn)
	}
	return s.withDB(false, func(db *bolt.DB) error {
		return db.View(func(btx *bolt.Tx) error {
			lineage, serial, format, err := s.checkMeta(btx)
			if err != nil {
				return err
			}
			if s.lineage == "" {
				s.lineage = lineage
			}
			return fn(newBoltTx(btx, serial, lineage, format))
		})
	})
}

// update runs fn in a write transaction, committed (and, for the bbolt
// file, fsynced) before it returns. fn returns whether it changed an
// instance record; if so the serial moves on.
func (s *Store) update(fn func(bt BackendTx) (changed bool, err error)) error {
	if s.readOnly {
		return ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.be != nil {
		return s.be.Update(fn)
	}
	return s.withDB(true, func(db *bolt.DB) error {
		return db.Update(func(btx *bolt.Tx) error {
			lineage, serial, format, err := s.checkMeta(btx)
			if err != nil {
				return err
			}
			bt := newBoltTx(btx, serial, lineage, format)
			changed, err := fn(bt)
			if err != nil || !changed {
				return err
			}
			return btx.Bucket(bucketMeta).Put(keySerial, strconv.AppendUint(nil, bt.serial+1, 10))
		})
	})
}

// Local reports whether the state is this host's state file, not a
// backend shared by several hosts (etcd), whose records say which host
// runs what.
func (s *Store) Local() bool { return s.be == nil }

// Close releases the writer lock, after rewriting the state file without
// its free pages when they are most of a large one (compactIfSparse). It
// is safe to call more than once;
// every other method fails with ErrClosed afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.be != nil {
		return s.be.Close()
	}
	if s.lock != nil {
		s.compactIfSparse() // best effort: the file stays as it was on a failure
		return s.lock.release()
	}
	return nil
}

// Lineage returns the store's lineage: 32 hex digits chosen at random when
// the file was created, never changed after. A saved plan records it to
// refuse being applied to another state.
func (s *Store) Lineage() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lineage
}

// Serial returns the serial as committed now: it counts the write
// transactions that changed an instance record. KV writes do not move it.
func (s *Store) Serial() (uint64, error) {
	var n uint64
	err := s.view(func(bt BackendTx) error { n = bt.Serial(); return nil })
	return n, err
}

// Get returns the record of addr, or ErrNotFound.
func (s *Store) Get(addr spec.Address) (inst Instance, err error) {
	err = s.View(func(tx *Tx) error {
		inst, err = tx.Get(addr)
		return err
	})
	return inst, err
}

// List returns every record, sorted by address (spec.Address.Less).
func (s *Store) List() (insts []Instance, err error) {
	return s.ListWith(ListOptions{})
}

// ListSerial is List with the serial the records were read at, in one
// transaction: they are the records of every state whose Serial is that
// one.
func (s *Store) ListSerial() (insts []Instance, serial uint64, err error) {
	err = s.View(func(tx *Tx) error {
		serial = tx.Serial()
		insts, err = tx.List()
		return err
	})
	return insts, serial, err
}

// ListOptions are List's.
type ListOptions struct {
	// OmitConfig leaves out of each record the configuration whose
	// SHA-256 is its config hash, marking it ConfigOmitted (a plan reads
	// only those that differ from the desired ones: issue 19); Configs
	// reads them. Other backends than the file may read them all.
	OmitConfig bool
}

// ListWith is List with options.
func (s *Store) ListWith(opts ListOptions) (insts []Instance, err error) {
	err = s.View(func(tx *Tx) error {
		insts, err = tx.ListWith(opts)
		return err
	})
	return insts, err
}

// Configs returns the recorded configuration of each of addrs that has a
// record with one, read in one transaction.
func (s *Store) Configs(addrs []spec.Address) (map[spec.Address][]byte, error) {
	out := make(map[spec.Address][]byte, len(addrs))
	err := s.View(func(tx *Tx) error {
		for _, a := range addrs {
			key := []byte(a.String())
			v, err := tx.bt.Record(key)
			if err != nil {
				return err
			}
			if v == nil {
				continue
			}
			inst, err := decodeStored(tx.bt, key, v, false)
			if err != nil {
				return err
			}
			if len(inst.Config) > 0 {
				out[a] = inst.Config
			}
		}
		return nil
	})
	return out, err
}

// Records returns the record of each of addrs that has one, read in one
// transaction: what an apply of a few changes wrote, without listing
// (and decoding) every record (orch up after each apply of a reload:
// 34-52 ms of a one-line edit at 10,000 daemons, then 2-3.5 ms).
func (s *Store) Records(addrs []spec.Address) (map[spec.Address]Instance, error) {
	out := make(map[spec.Address]Instance, len(addrs))
	err := s.View(func(tx *Tx) error {
		for _, a := range addrs {
			inst, err := tx.Get(a)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out[a] = inst
		}
		return nil
	})
	return out, err
}

// Pick returns the records of list whose address is one of addrs (what
// Records returns, for a store that can only list).
func Pick(list []Instance, addrs []spec.Address) map[spec.Address]Instance {
	want := make(map[spec.Address]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	out := make(map[spec.Address]Instance, len(addrs))
	for _, r := range list {
		if want[r.Addr] {
			out[r.Addr] = r
		}
	}
	return out
}

// Put writes one record in its own transaction, durable when Put returns.
// See Instance for how the timestamps are set.
func (s *Store) Put(inst Instance) error {
	return s.Update(func(tx *Tx) error { return tx.Put(inst) })
}

// Delete removes the record of addr in its own transaction. Deleting a
// missing record succeeds and changes nothing.
func (s *Store) Delete(addr spec.Address) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(addr) })
}

// Update runs fn in one write transaction: everything fn puts and deletes
// is committed together, durably, when Update returns nil, and nothing is
// when fn returns an error (Update returns it). The serial moves on by one
// if fn changed anything. fn must not call methods of the Store.
func (s *Store) Update(fn func(tx *Tx) error) error {
	_, err := s.update1(fn, false)
	return err
}

// Write is one record an Update committed: Put is the record as written
// (its times set), or nil when the record of Addr was deleted.
type Write struct {
	Addr spec.Address
	Put  *Instance
}

// UpdateWrites is Update, returning also what it committed, in the order
// fn wrote it (nil when Update fails): a copy of the records kept beside
// the store follows its own writes without reading them back.
func (s *Store) UpdateWrites(fn func(tx *Tx) error) ([]Write, error) {
	return s.update1(fn, true)
}

func (s *Store) update1(fn func(tx *Tx) error, logged bool) ([]Write, error) {
	now := time.Now().UTC()
	var writes []Write
	err := s.update(func(bt BackendTx) (bool, error) {
		tx := &Tx{bt: bt, writable: true, serial: bt.Serial(), now: now, logged: logged}
		err := fn(tx)
		writes = tx.writes // of this run of fn, should a backend run it again
		return tx.changed, err
	})
	if err != nil {
		return nil, err
	}
	return writes, nil
}

// View runs fn on one consistent read-only snapshot, such as the records
// and the serial they belong to. fn must not call methods of the Store.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.view(func(bt BackendTx) error {
		return fn(&Tx{bt: bt, serial: bt.Serial()})
	})
}

// Tx is a transaction given to the function of Update or View. It is valid
// only while that function runs and must not be shared between
// goroutines.
type Tx struct {
	bt       BackendTx
	writable bool
	serial   uint64
	changed  bool
	now      time.Time
	logged   bool // UpdateWrites: writes collects what fn wrote
	writes   []Write
}

// Serial returns the serial as of the start of the transaction.
func (tx *Tx) Serial() uint64 { return tx.serial }

// Get returns the record of addr, or ErrNotFound. It sees the
// transaction's own writes.
func (tx *Tx) Get(addr spec.Address) (Instance, error) {
	key := []byte(addr.String())
	b, err := tx.bt.Record(key)
	if err != nil {
		return Instance{}, err
	}
	if b == nil {
		return Instance{}, fmt.Errorf("%w: %s", ErrNotFound, addr)
	}
	return decodeStored(tx.bt, key, b, false)
}

// decodeStored decodes the record of key, as stored in bt: with its
// configuration when kept apart, or marked omitted with omit.
func decodeStored(bt BackendTx, key, b []byte, omit bool) (Instance, error) {
	inst, apart, err := decodeRecord(key, b, omit)
	if err != nil || !apart {
		return inst, err
	}
	if omit {
		inst.ConfigOmitted = true
		return inst, nil
	}
	return inst, attachConfig(bt, key, &inst)
}

// attachConfig reads the configuration kept apart of the record of key
// into inst.
func attachConfig(bt BackendTx, key []byte, inst *Instance) error {
	var c []byte
	if t, ok := bt.(*boltTx); ok && t.cfgs != nil {
		c = t.cfgs.Get(key)
	}
	if len(c) == 0 {
		return fmt.Errorf("state: record %q: its configuration, kept apart, is missing", key)
	}
	inst.Config = bytes.Clone(c)
	return nil
}

// List returns every record, sorted by address.
func (tx *Tx) List() ([]Instance, error) {
	return tx.ListWith(ListOptions{})
}

// ListWith is List with options.
func (tx *Tx) ListWith(opts ListOptions) ([]Instance, error) {
	if bt, ok := tx.bt.(*boltTx); ok {
		return listBolt(bt, opts.OmitConfig)
	}
	var out []Instance
	err := tx.bt.Records(func(k, v []byte) error {
		inst, err := decodeStored(tx.bt, k, v, false)
		if err != nil {
			return err
		}
		out = append(out, inst)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Instance{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// listDecodeMin is the number of records from which listBolt decodes
// them on every CPU.
var listDecodeMin = 1024

// listBolt is List of a bbolt file: its keys and values stay valid for
// the whole transaction, so they are collected in one pass and then
// decoded, on every CPU when there are many (checking each record's
// configuration with json.Valid was 40% of listing 10,000, and
// presizing the result by walking the bucket first 16%). The error is
// the one of the first bad record in key order, as a decoding in one
// loop gives.
func listBolt(bt *boltTx, omit bool) ([]Instance, error) {
	type kv struct{ k, v []byte }
	var recs []kv
	if err := bt.Records(func(k, v []byte) error {
		recs = append(recs, kv{k, v})
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]Instance, len(recs))
	errs := make([]error, len(recs))
	apart := make([]bool, len(recs))
	decode := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if out[i], apart[i], errs[i] = decodeRecord(recs[i].k, recs[i].v, omit); errs[i] != nil {
				return // what follows in this part is not looked at
			}
		}
	}
	workers.Split(len(recs), workers.Count(len(recs), listDecodeMin), decode)
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		if !apart[i] {
			continue
		}
		// Read here, in one goroutine: the transaction's cursors are
		// not shared.
		if omit {
			out[i].ConfigOmitted = true
		} else if err := attachConfig(bt, recs[i].k, &out[i]); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// Put writes the record of inst.Addr, replacing any. UpdatedAt is set to
// the transaction's time; CreatedAt, when zero, is kept from the record
// it replaces or set to that time.
func (tx *Tx) Put(inst Instance) error {
	if !tx.writable {
		return ErrReadOnly
	}
	if inst.Addr.IsZero() {
		return errors.New("state: Put of an instance without an address")
	}
	key := []byte(inst.Addr.String())
	file, _ := tx.bt.(*boltTx)
	if file != nil && file.cfgs == nil {
		file = nil // format 1: configurations in their records
	}
	var prior priorRecord
	if inst.CreatedAt.IsZero() || file != nil {
		old, err := tx.bt.Record(key)
		if err != nil {
			return err
		}
		if old != nil {
			var ok bool
			if prior, ok = readPrior(old); !ok {
				if prev, apart, err := decodeRecord(key, old, true); err == nil {
					prior = priorRecord{createdAt: prev.CreatedAt, configHash: []byte(prev.ConfigHash), apart: apart}
				} else {
					// An unreadable record is replaced, with whatever
					// was kept apart under its key.
					prior.apart = file != nil
				}
			}
		}
		if inst.CreatedAt.IsZero() {
			inst.CreatedAt = prior.createdAt
		}
	}
	if inst.CreatedAt.IsZero() {
		inst.CreatedAt = tx.now
	}
	inst.UpdatedAt = tx.now
	apart := false
	if file != nil && len(inst.Config) > 0 && inst.ConfigHash != "" {
		var err error
		if apart, err = file.putConfig(key, &inst, prior); err != nil {
			return fmt.Errorf("state: put %s: %w", key, err)
		}
	}
	if !apart && prior.apart && file != nil {
		if err := file.cfgs.Delete(key); err != nil {
			return fmt.Errorf("state: put %s: %w", key, err)
		}
	}
	b, err := encodeRecord(&inst, apart)
	if err != nil {
		return err
	}
	if err := tx.bt.PutRecord(key, b); err != nil {
		return fmt.Errorf("state: put %s: %w", key, err)
	}
	tx.changed = true
	if tx.logged {
		put := inst // a copy: taking inst's address would put every Put's on the heap
		tx.writes = append(tx.writes, Write{Addr: inst.Addr, Put: &put})
	}
	return nil
}

// Delete removes the record of addr; a missing record is not an error.
func (tx *Tx) Delete(addr spec.Address) error {
	if !tx.writable {
		return ErrReadOnly
	}
	key := []byte(addr.String())
	old, err := tx.bt.Record(key)
	if err != nil {
		return err
	}
	if old == nil {
		return nil
	}
	if err := tx.bt.DeleteRecord(key); err != nil {
		return fmt.Errorf("state: delete %s: %w", key, err)
	}
	if file, ok := tx.bt.(*boltTx); ok && file.cfgs != nil {
		if err := file.cfgs.Delete(key); err != nil {
			return fmt.Errorf("state: delete %s: %w", key, err)
		}
	}
	tx.changed = true
	if tx.logged {
		tx.writes = append(tx.writes, Write{Addr: addr})
	}
	return nil
}
