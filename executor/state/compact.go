package state

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/providers/owned"
)

// compactMin is the size of a state file below which it is never
// compacted: the free pages of a small file cost nothing worth a rewrite.
const compactMin = 4 << 20

// compactIfSparse rewrites the state file without its free pages when
// they are at least three quarters of a file of compactMin or more: a
// bbolt file never shrinks, so a destroy of 10,000 daemons left a 33 MB
// state.db of free pages, whose free list every later transaction read
// and indexed again (bbolt reads it at each open: 234 of the 1,020 MB the
// next apply of 10,000 allocated, issue 19). The caller holds the writer
// lock (Close, before releasing it). The copy is built beside the file,
// synced, and renamed over it; a reader that opened the old file goes on
// reading it, whole and as current. Best effort: on any failure the file
// stays as it was.
func (s *Store) compactIfSparse() error {
	st, err := os.Stat(s.path)
	if err != nil || st.Size() < compactMin {
		return nil
	}
	return guard(s.path, func() error {
		src, err := bolt.Open(s.path, owned.FileMode, &bolt.Options{Timeout: busyTimeout})
		if err != nil {
			return openError(s.path, err)
		}
		defer src.Close()
		stats := src.Stats()
		free := int64(stats.FreePageN+stats.PendingPageN) * int64(src.Info().PageSize)
		var used int64
		if err := src.View(func(btx *bolt.Tx) error {
			used = btx.Size() - free // the pages below the high-water mark that hold data
			return nil
		}); err != nil {
			return err
		}
		if used*4 > st.Size() {
			return nil
		}
		dst, tmp, err := openAside(s.path, ".compact-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp)
		err = bolt.Compact(dst, src, 0) // one transaction, fsynced at its commit
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("state: compact %s: %w", s.path, err)
		}
		if _, err := verify(tmp, false); err != nil {
			return fmt.Errorf("state: compact %s: the copy does not check: %w", s.path, err)
		}
		if err := os.Rename(tmp, s.path); err != nil {
			return fmt.Errorf("state: compact %s: %w", s.path, err)
		}
		return syncDir(filepath.Dir(s.path))
	})
}
