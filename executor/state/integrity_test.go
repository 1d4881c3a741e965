package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/providers/owned"
)

// writeState writes a real state file with n records and some KV entries
// through the store, and returns its path.
func writeState(t testing.TB, dir string, n int) string {
	t.Helper()
	path := filepath.Join(dir, ".orch", "state.db")
	s, err := Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for base := 0; base < n; base += 1000 {
		err := s.Update(func(tx *Tx) error {
			for i := base; i < min(n, base+1000); i++ {
				if err := tx.Put(testInstance(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := s.KV("module.m").Put(strings.Repeat("k", i+1), bytes.Repeat([]byte{byte(i)}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// pagesInUse lists the pages of the file at path that hold buckets (leaf
// and branch pages, not free ones), and the page size.
func pagesInUse(t *testing.T, path string) ([]int, int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p == nil {
				return nil
			}
			if p.Type == "leaf" || p.Type == "branch" {
				ids = append(ids, id)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, db.Info().PageSize
}

// expectDamaged checks that every way in to the state at path fails with
// one *DamagedError naming it, and that the file is left as it was.
func expectDamaged(t *testing.T, path string) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var de *DamagedError
		if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
			t.Fatalf("%s: got %v, want a *DamagedError", what, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "orch state recover") || !strings.Contains(msg, path+".backup") {
			t.Fatalf("%s: the message does not name the file and what to do: %s", what, msg)
		}
	}
	s, err := Open(path, Options{Operation: "test"})
	if err == nil {
		s.Close()
	}
	check("Open", err)
	r, err := OpenReadOnly(path)
	if err == nil {
		r.Close()
	}
	check("OpenReadOnly", err)
	_, err = Check(path)
	check("Check", err)
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the damaged file was changed")
	}
	// The lock was released: a healthy file at the same path opens.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatalf("after a refusal, a new state does not open: %v", err)
	}
	s.Close()
}

// TestDamagedPages overwrites some pages in use of a real state file with
// random bytes (several seeds): each open refuses it with a
// *DamagedError, never a panic (old code: a panic inside bbolt, e.g.
// "Page expected to be: 5, but self identifies as ...").
func TestDamagedPages(t *testing.T) {
	good := writeState(t, t.TempDir(), 2000)
	ids, pageSize := pagesInUse(t, good)
	if len(ids) < 10 {
		t.Fatalf("only %d pages in use", len(ids))
	}
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7919))
		b := append([]byte{}, orig...)
		n := 1 + rng.IntN(3)
		var hit []int
		for range n {
			id := ids[rng.IntN(len(ids))]
			hit = append(hit, id)
			end := pageSize
			if seed%2 == 0 { // half a page, header included
				end = pageSize / 2
			}
			for i := 0; i < end; i++ {
				b[id*pageSize+i] = byte(rng.Uint32())
			}
		}
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: pages %v", seed, hit)
		expectDamaged(t, path)
	}
}

// TestDamagedFiles: a truncated file, an empty file, a file of zeros, a
// file of random bytes, and both meta pages damaged.
func TestDamagedFiles(t *testing.T) {
	good := writeState(t, t.TempDir(), 500)
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, len(orig))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	metas := append([]byte{}, orig...)
	for i := 0; i < 2*4096; i += 7 {
		metas[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name    string
		content []byte
		detail  string
	}{
		{"truncated", orig[:len(orig)/2], "truncated"},
		{"truncated to one page", orig[:4096], "truncated"},
		{"empty", []byte{}, "empty"},
		{"zeros", make([]byte, len(orig)), "zero bytes"},
		{"random", random, "not a bbolt database"},
		{"meta pages", metas, "meta pages are invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenReadOnly(path)
			if err == nil || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("got %v, want an error saying %q", err, tc.detail)
			}
			expectDamaged(t, path)
		})
	}
}

// TestDamagedAfterOpen: a file damaged while a store has it open (by
// something other than orch) fails the next transaction with a
// *DamagedError instead of a panic.
func TestDamagedAfterOpen(t *testing.T) {
	path := writeState(t, t.TempDir(), 2000)
	ids, pageSize := pagesInUse(t, path)
	s, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xa7}, pageSize)
	for _, id := range ids {
		if _, err := f.WriteAt(junk, int64(id*pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	_, err = s.List()
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("List of a file damaged after open: %v, want a *DamagedError", err)
	}
}

// TestCreateIsAtomic: a new state file appears whole (no temporary file
// left, 0600 in a 0700 directory), and an existing empty file is never
// taken for a missing one.
func TestCreateIsAtomic(t *testing.T) {
	s, path := openTemp(t)
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", di.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "state.db state.db.lock" {
		t.Errorf("state dir holds %v", names)
	}
}

// TestOwnership: a state directory writable by others, or owned by
// another user, and a state or lock file owned by another user, are
// refused with the path and the fix.
func TestOwnership(t *testing.T) {
	wantRefused := func(t *testing.T, err error, path string) {
		t.Helper()
		var ue *owned.UntrustedError
		if !errors.As(err, &ue) || ue.Path != path {
			t.Fatalf("got %v, want a refusal of %s", err, path)
		}
	}
	t.Run("dir 0777", func(t *testing.T) {
		path := writeState(t, t.TempDir(), 3)
		dir := filepath.Dir(path)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, Options{})
		wantRefused(t, err, dir)
		if !strings.Contains(err.Error(), "chmod go-w "+dir) {
			t.Errorf("no fix in %q", err)
		}
		_, err = OpenReadOnly(path)
		wantRefused(t, err, dir)
		_, err = Check(path)
		wantRefused(t, err, dir)
	})
	t.Run("new dir 0777", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), ".orch")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o777)
		_, err := Open(filepath.Join(dir, "state.db"), Options{})
		wantRefused(t, err, dir)
		if _, err := os.Stat(filepath.Join(dir, "state.db")); !errors.Is(err, fs.ErrNotExist) {
			t.Error("a state file was created in the refused directory")
		}
	})
	t.Run("file 0666", func(t *testing.T) {
		path := writeState(t, t.TempDir(), 3)
		os.Chmod(path, 0o666)
		_, err := Open(path, Options{})
		wantRefused(t, err, path)
		_, err = OpenReadOnly(path)
		wantRefused(t, err, path)
	})
	if os.Geteuid() != 0 {
		t.Skip("the chown cases need root")
	}
	for _, which := range []string{"dir", "state.db", "state.db.lock"} {
		t.Run("chown "+which, func(t *testing.T) {
			path := writeState(t, t.TempDir(), 3)
			target := filepath.Join(filepath.Dir(path), which)
			if which == "dir" {
				target = filepath.Dir(path)
			}
			if err := os.Chown(target, 1234, 1234); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, Options{})
			wantRefused(t, err, target)
			if !strings.Contains(err.Error(), "uid 1234") {
				t.Errorf("the refusal does not name the owner: %v", err)
			}
			if which != "state.db.lock" {
				_, err = OpenReadOnly(path)
				wantRefused(t, err, target)
			}
		})
	}
}

// TestFullCheck: Check passes a healthy file and counts its records; it
// finds a record that no longer decodes, which the cheap check on open
// does not read.
func TestFullCheck(t *testing.T) {
	path := writeState(t, t.TempDir(), 1500)
	n, err := Check(path)
	if err != nil || n != 1500 {
		t.Fatalf("Check = %d, %v; want 1500 records", n, err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstances).Put([]byte(testInstance(7).Addr.String()), []byte(`{"addr":`))
	})
	db.Close()
	if _, err := OpenReadOnly(path); err != nil {
		t.Fatalf("the cheap check does not decode records, yet: %v", err)
	}
	if _, err := Check(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "daemon.svc[7]") {
		t.Fatalf("Check of a bad record: %v", err)
	}
}

// TestBackupAndReplace covers state pull and push: the snapshot round
// trip, the refusals of another lineage and of an older serial, -force,
// and the backup kept before the replacement.
func TestBackupAndReplace(t *testing.T) {
	path := writeState(t, t.TempDir(), 10)
	s, err := Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Instances) != 10 || snap.Lineage != s.Lineage() || len(snap.KV["module.m"]) != 20 {
		t.Fatalf("snapshot: %d instances, lineage %s, %d KV", len(snap.Instances), snap.Lineage, len(snap.KV["module.m"]))
	}
	js, _ := json.Marshal(snap)
	var back Snapshot
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	// Newer records in the store: the pulled snapshot is now older.
	if err := s.Delete(testInstance(0).Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Replace(&back, false); !errors.Is(err, ErrRefusedPush) || !strings.Contains(err.Error(), "older") {
		t.Fatalf("push of an older serial: %v", err)
	}
	other := back
	other.Lineage = strings.Repeat("ab", 16)
	other.Serial = 1000
	if _, err := s.Replace(&other, false); !errors.Is(err, ErrRefusedPush) || !strings.Contains(err.Error(), "lineage") {
		t.Fatalf("push of another lineage: %v", err)
	}
	if n, _ := s.List(); len(n) != 9 {
		t.Fatalf("a refused push changed the state: %d records", len(n))
	}
	if _, err := os.Stat(BackupPath(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused push replaced the backup: %v", err)
	}
	before, _ := s.Serial()
	backup, err := s.Replace(&back, true)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Serial(); after != before+1 {
		t.Errorf("serial %d after a forced push over %d", after, before)
	}
	if l, _ := s.List(); len(l) != 10 {
		t.Fatalf("after push: %d records", len(l))
	}
	if v, err := s.KV("module.m").Get("kkk"); err != nil || len(v) != 300 {
		t.Fatalf("KV after push: %v", err)
	}
	fi, err := os.Stat(backup)
	if err != nil || fi.Mode().Perm() != 0o600 || backup != path+".backup" {
		t.Fatalf("backup %s: %v %v", backup, fi, err)
	}
	b, err := OpenReadOnly(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if l, _ := b.List(); len(l) != 9 {
		t.Fatalf("the backup holds %d records, want the 9 from before the push", len(l))
	}
}

// TestRecover: Recover moves a damaged file aside and makes a new state;
// it refuses a healthy one without force.
func TestRecover(t *testing.T) {
	path := writeState(t, t.TempDir(), 5)
	if _, _, err := Recover(path, Options{}, false); err == nil || !strings.Contains(err.Error(), "not damaged") {
		t.Fatalf("Recover of a healthy state: %v", err)
	}
	if err := os.Truncate(path, 4096*3); err != nil {
		t.Fatal(err)
	}
	damaged, _ := os.ReadFile(path)
	s, moved, err := Recover(path, Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := os.ReadFile(moved); !bytes.Equal(got, damaged) {
		t.Fatalf("the damaged file was not kept at %s", moved)
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("recovered state: %v %v", l, err)
	}
}

// TestSuspectMetaRunsFullCheck: when one meta page is invalid (bbolt
// falls back to the other, older one: a torn write or damage), every open
// runs the full check, which finds what the walk does not (here a record
// that no longer decodes); with both meta pages valid it does not.
func TestSuspectMetaRunsFullCheck(t *testing.T) {
	path := writeState(t, t.TempDir(), 50)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstances).Put([]byte(testInstance(3).Addr.String()), []byte(`{"addr":`))
	})
	txid := uint64(0)
	db.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil })
	pageSize := db.Info().PageSize
	db.Close()
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatalf("both meta pages valid: the open should not decode records: %v", err)
	}
	r.Close()
	// Spoil the checksum of the other meta page (the newest transaction
	// wrote page txid%2), as damage to it would: bbolt still reads the
	// newest tree, which holds the bad record.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xff}, int64((txid+1)%2)*int64(pageSize)+pageHeaderSize+56)
	f.Close()
	_, err = OpenReadOnly(path)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "daemon.svc[3]") {
		t.Fatalf("one meta page invalid: got %v, want the full check's finding", err)
	}
}
