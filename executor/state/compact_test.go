package state

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// fill puts n records of about 1 KB each, in batches.
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		err := s.Update(func(tx *Tx) error {
			for j := i; j < i+500 && j < n; j++ {
				in := testInstance(j)
				in.LastError = strings.Repeat("x", 900)
				if err := tx.Put(in); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func inode(t *testing.T, path string) (uint64, int64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino, st.Size
}

// TestCompactIfSparse: a state file that a destroy emptied is rewritten
// small when its writer closes it, with its lineage, serial and remaining
// records; one that holds what it is the size of is left alone.
func TestCompactIfSparse(t *testing.T) {
	s, path := openTemp(t)
	fill(t, s, 8000)
	lineage := s.Lineage()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ino, size := inode(t, path)
	if size < compactMin {
		t.Fatalf("8,000 records made a file of %d bytes, under compactMin: the test needs more", size)
	}

	// Full: closing leaves it as it is.
	s, err := Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if i, _ := inode(t, path); i != ino {
		t.Fatal("a state file without free pages to speak of was rewritten")
	}

	// Emptied but for three records: rewritten small.
	s, err = Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *Tx) error {
		for j := 3; j < 8000; j++ {
			if err := tx.Delete(testInstance(j).Addr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := serial(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	i, small := inode(t, path)
	if i == ino || small*8 > size {
		t.Fatalf("after deleting all but 3 of 8,000 records, the file is %d bytes (was %d), same inode %v", small, size, i == ino)
	}
	if matches, _ := os.ReadDir(strings.TrimSuffix(path, "state.db")); len(matches) != 2 {
		var names []string
		for _, m := range matches {
			names = append(names, m.Name())
		}
		t.Errorf("files beside the state after compaction: %v, want state.db and its lock", names)
	}
	s, err = Open(path, Options{Operation: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Lineage() != lineage || serial(t, s) != before {
		t.Fatalf("lineage %s serial %d after compaction, want %s %d", s.Lineage(), serial(t, s), lineage, before)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d records after compaction, want 3", len(list))
	}
	for j, in := range list {
		want := testInstance(j)
		want.LastError = strings.Repeat("x", 900)
		sameInstance(t, in, want)
	}
	// And it is a state that takes writes.
	fill(t, s, 10)
}
