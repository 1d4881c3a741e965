package engine

import (
	"fmt"
	"os"
	"testing"

	"github.com/fsnotify/fsnotify"
)

// TestCloseWatcherHandsOn: the configuration watcher's inotify descriptor
// is told apart from the others, and a copy of it goes to CloseLater
// before the watcher closes its own (whose close is then not the last,
// so it does not wait for the kernel's SRCU grace period).
func TestCloseWatcherHandsOn(t *testing.T) {
	other, err := fsnotify.NewWatcher() // an inotify descriptor that is not the one
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before := inotifyFDs()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	fd := newFD(before, inotifyFDs())
	if fd < 0 {
		t.Fatalf("the watcher's descriptor was not found among %v (before: %v)", inotifyFDs(), before)
	}
	var handed []string
	e := &Engine{opts: Options{CloseLater: func(dup int) error {
		l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", dup))
		if err != nil {
			return err
		}
		handed = append(handed, l)
		return nil
	}}}
	e.closeWatcher(w, fd)
	if len(handed) != 1 || handed[0] != "anon_inode:inotify" {
		t.Fatalf("handed to CloseLater: %v, want one inotify descriptor", handed)
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
		if got := inotifyFDs(); got[fd] {
			t.Fatalf("descriptor %d still open after closeWatcher", fd)
		}
	}
	if newFD(map[int]bool{1: true}, map[int]bool{1: true, 2: true, 3: true}) != -1 {
		t.Fatal("two new descriptors: not told apart, must be -1")
	}
}
