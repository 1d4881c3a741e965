package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ErrDamaged is wrapped by every error about a state file that cannot be
// trusted: empty, truncated, with bad meta pages or pages bbolt cannot
// walk. See DamagedError.
var ErrDamaged = errors.New("state: damaged state file")

// DamagedError says that the state file at Path is damaged and what the
// user can do about it. orch never replaces a damaged file with a new
// state: the records it holds are the only list of what orch started.
type DamagedError struct {
	Path   string
	Detail string // what is wrong: "it is empty (0 bytes)", "page 7: ..."
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("state file %s is damaged: %s.\n"+
		"orch will neither use it nor replace it with a new state. Either restore a good copy of it "+
		"(%s.backup, if there is one, is the copy orch state rm and orch state push keep; "+
		"orch state push -force FILE loads a copy printed by orch state pull), "+
		"or run orch state recover to set it aside and rebuild the state from what the runtimes report",
		e.Path, e.Detail, e.Path)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// bbolt's on-disk constants (go.etcd.io/bbolt/internal/common), for the
// check of the meta pages made before bbolt maps the file.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	metaSize       = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	noFreelist     = ^uint64(0)
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// parseMeta decodes and validates the meta page at the start of b.
func parseMeta(b []byte) (boltMeta, string) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, "short"
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, "no bbolt magic number"
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Sprintf("bbolt format version %d, not %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return boltMeta{}, "checksum mismatch"
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]),
		pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, ""
}

// checkHeader reads the two meta pages of the file at path without
// mapping it, and refuses a file bbolt would misread or fault on: empty,
// shorter than its meta pages say, or with no valid meta page. It is a
// few hundred bytes of reading. A missing file is returned as the
// *fs.PathError of os.Open. suspect is true when the file is usable but
// one meta page is invalid (a torn write, or damage: bbolt falls back to
// the other, older one) or its size is not a whole number of pages; the
// caller then runs the full check.
func checkHeader(path string) (suspect bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	size := fi.Size()
	if size == 0 {
		return false, &DamagedError{Path: path, Detail: "it is empty (0 bytes)"}
	}
	first := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(first, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	m0, bad0 := parseMeta(first)
	pageSize := int64(os.Getpagesize())
	if bad0 == "" {
		pageSize = int64(m0.pageSize)
	}
	var m1 boltMeta
	bad1 := "short"
	if pageSize >= 512 && pageSize <= 1<<20 {
		second := make([]byte, pageHeaderSize+metaSize)
		if n, _ := f.ReadAt(second, pageSize); n == len(second) {
			m1, bad1 = parseMeta(second)
		}
	}
	var m boltMeta
	switch {
	case bad0 == "" && bad1 == "":
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case bad0 == "":
		m = m0
	case bad1 == "":
		m = m1
	default:
		if bad0 == "no bbolt magic number" && (bad1 == "short" || bad1 == "no bbolt magic number") {
			if allZero(f, size) {
				return false, &DamagedError{Path: path, Detail: fmt.Sprintf("it holds only zero bytes (%d)", size)}
			}
			return false, &DamagedError{Path: path, Detail: fmt.Sprintf("it is not a bbolt database (%d bytes, no bbolt header)", size)}
		}
		return false, &DamagedError{Path: path, Detail: fmt.Sprintf("both meta pages are invalid (page 0: %s; page 1: %s)", bad0, bad1)}
	}
	if int64(m.pageSize) != pageSize && bad0 == "" && bad1 == "" && m0.pageSize != m1.pageSize {
		return false, &DamagedError{Path: path, Detail: "the meta pages disagree on the page size"}
	}
	if m.pgid < 2 || m.root >= m.pgid || (m.freelist != noFreelist && m.freelist >= m.pgid) {
		return false, &DamagedError{Path: path, Detail: fmt.Sprintf("the meta page points outside the file's %d pages", m.pgid)}
	}
	if need := int64(m.pgid) * int64(m.pageSize); need > size || need/int64(m.pageSize) != int64(m.pgid) {
		return false, &DamagedError{Path: path, Detail: fmt.Sprintf("it is truncated: %d bytes, and its pages need %d", size, need)}
	}
	return bad0 != "" || bad1 != "" || size%int64(m.pageSize) != 0, nil
}

// allZero reports whether the first MiB of f is all zero bytes.
func allZero(f *os.File, size int64) bool {
	buf := make([]byte, min(size, 1<<20))
	n, _ := f.ReadAt(buf, 0)
	for _, c := range buf[:n] {
		if c != 0 {
			return false
		}
	}
	return true
}

// guard runs fn so that a panic inside bbolt, or a memory fault on the
// mapped file (a page number pointing past its end), becomes a
// *DamagedError instead of killing orch. bbolt trusts the file's page
// numbers and lengths; a damaged page makes it index out of range or
// read outside the map. A panic inside bolt.Open itself leaves that
// bbolt handle (its descriptor and flock) unclosed, as bbolt gives no way
// to close it; this is why verify opens read-only (a shared flock) and
// loads the free list before any writer opens the file.
func guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Detail: fmt.Sprintf("bbolt failed reading it: %s", firstLine(fmt.Sprint(r)))}
		}
	}()
	return fn()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// walk reads every key and value of every bucket, so that every page in
// use is visited: a page bbolt cannot read panics (turned into an error
// by guard), and the caller knows the file reads back whole. Free pages
// are not visited; the full check (CheckFull) visits them.
func walk(btx *bolt.Tx) (records int, err error) {
	var sum byte
	var visit func(b *bolt.Bucket, depth int) error
	visit = func(b *bolt.Bucket, depth int) error {
		if depth > 8 {
			return errors.New("buckets nested deeper than orch writes them")
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sum ^= k[len(k)-1]
			if v == nil {
				nb := b.Bucket(k)
				if nb == nil {
					return fmt.Errorf("bucket entry %q without a bucket", k)
				}
				if err := visit(nb, depth+1); err != nil {
					return err
				}
				continue
			}
			if len(v) > 0 {
				sum ^= v[0] ^ v[len(v)-1]
			}
			if depth == 1 {
				records++
			}
		}
		return nil
	}
	c := btx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		b := btx.Bucket(k)
		if b == nil {
			return 0, fmt.Errorf("top-level key %q is not a bucket", k)
		}
		n := records
		if err := visit(b, 1); err != nil {
			return 0, err
		}
		if string(k) != string(bucketInstances) {
			records = n
		}
	}
	_ = sum
	return records, nil
}

// verify checks the file at path before orch uses it: the meta pages
// (checkHeader), then a read-only open of it with its free-page list
// loaded and every page in use read (walk). With full, or when the meta
// pages look off (checkHeader's suspect), bbolt's own consistency check
// (Tx.Check: every page reachable or free exactly once, keys in order)
// runs as well, and every instance record is decoded.
// It returns the number of instance records.
func verify(path string, full bool) (int, error) {
	suspect, err := checkHeader(path)
	if err != nil {
		return 0, err
	}
	full = full || suspect
	var records int
	err = guard(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: busyTimeout, PreLoadFreelist: true, NoStatistics: true})
		if err != nil {
			return openError(path, err)
		}
		defer db.Close()
		return db.View(func(btx *bolt.Tx) error {
			var err error
			if records, err = walk(btx); err != nil {
				return &DamagedError{Path: path, Detail: err.Error()}
			}
			if !full {
				return nil
			}
			// Tx.Check runs in a goroutine of its own, where a memory
			// fault could not be recovered; walk has read every page in
			// use and the free list is loaded, so it reads nothing new
			// but the free pages' ids.
			var problems []string
			for err := range btx.Check() {
				problems = append(problems, err.Error())
			}
			if len(problems) > 0 {
				d := problems[0]
				if len(problems) > 1 {
					d += fmt.Sprintf(" (and %d more problems)", len(problems)-1)
				}
				return &DamagedError{Path: path, Detail: "bbolt's consistency check: " + d}
			}
			if b := btx.Bucket(bucketInstances); b != nil {
				bt := newBoltTx(btx, 0, "", FileFormat)
				return b.ForEach(func(k, v []byte) error {
					if _, err := decodeStored(bt, k, v, false); err != nil {
						return &DamagedError{Path: path, Detail: err.Error()}
					}
					return nil
				})
			}
			return nil
		})
	})
	return records, err
}
